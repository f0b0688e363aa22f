package main

import (
	"os"
	"path/filepath"
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
