package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
)

// TestQueuedConfigLogBlock checks that a Kestrel config's log block is
// honoured: its file receives the log (stderr still does too), and
// --log-level overrides its level.
func TestQueuedConfigLogBlock(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "queued.log")
	conf := filepath.Join(dir, "kestrel.conf")
	body := "port = 22133\nqueue_path = \"" + filepath.Join(dir, "q") + "\"\nlog {\n  filename = \"" + logFile + "\"\n  level = \"warning\"\n  roll = \"daily\"\n}\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// --log-level wins over the file's level, so "listening" (info) is
	// logged; without it the file's "warning" would hide it.
	q := testproc.Start(t, "queued", "--config", conf, "--listen", "127.0.0.1:0", "--log-level", "info")
	q.Addr("queued")
	if err := q.Stop(time.Minute); err != nil {
		t.Fatalf("queued exit: %v", err)
	}
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("log file from the config's log block: %v", err)
	}
	if !strings.Contains(string(b), "msg=listening") {
		t.Fatalf("log file lacks the listening line:\n%s", b)
	}

}

func TestNumericVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3": "1.2.3", "1.2.3": "1.2.3", "v1.2.3-rc.1": "1.2.3", "v2.10.0+incompatible": "2.10.0", "v1.0.0": "1.0.0",
		"v1.4.1-0.20261204231725-abcdef123456": "1.4.1",
		// libmemcached refuses a major version of 0 and numbers over 255.
		"v0.0.0-20261204231725-abcdef123456": "1.0.0", "v0.3.1": "1.0.0", "v1.256.0": "1.0.0",
		"devel": "1.0.0", "": "1.0.0", "v1.2": "1.0.0", "v1.2.x": "1.0.0", "v01.2.3": "1.0.0", "(devel)": "1.0.0",
	} {
		if got := numericVersion(in); got != want {
			t.Errorf("numericVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLibmemcachedClients: clients built on the C libmemcached parse the
// version reply as numbers; memcping and memcstat (libmemcached-tools,
// which scripts/test installs) must work against a development build, and
// stats keeps the build.
func TestLibmemcachedClients(t *testing.T) {
	for _, tool := range []string{"memcping", "memcstat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install libmemcached-tools (scripts/test does)", tool)
		}
	}
	addr := testproc.Start(t, "queued", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()).Addr("queued")
	if out, err := exec.Command("memcping", "--servers="+addr).CombinedOutput(); err != nil {
		t.Errorf("memcping: %v\n%s", err, out)
	}
	out, err := exec.Command("memcstat", "--servers="+addr, "--server-version").CombinedOutput()
	if err != nil || !regexp.MustCompile(`^\S+ \d+\.\d+\.\d+\n$`).Match(out) {
		t.Errorf("memcstat --server-version: %v\n%s", err, out)
	}
	out, err = exec.Command("memcstat", "--servers="+addr).CombinedOutput()
	if err != nil || !regexp.MustCompile(`(?m)^\s*version: \d+\.\d+\.\d+$`).Match(out) || !regexp.MustCompile(`(?m)^\s*build: devel$`).Match(out) {
		t.Errorf("memcstat: %v, want a numeric version and the build:\n%s", err, out)
	}
}
