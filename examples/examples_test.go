// Package examples_test runs every example against a real queued server and
// checks what it stored.
package examples_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kpush/kpush/internal/testproc"
	"github.com/kpush/kpush/push"
)

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..")
}

// buildGoExamples compiles the Go examples once into a temp dir.
func buildGoExamples(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "./examples/gomemcache", "./examples/producer")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build examples: %v\n%s", err, out)
	}
	return dir
}

// pythonWithPymemcache finds a Python 3 that can import pymemcache (the
// Debian package installs it for /usr/bin/python3, which may not be the
// python3 first on PATH).
func pythonWithPymemcache(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import pymemcache").Run() == nil {
			return py
		}
	}
	t.Fatal("no python3 with pymemcache: install python3-pymemcache (scripts/test does)")
	return ""
}

// drain takes every item off queue on addr and checks each is a valid
// push message.
func drain(t *testing.T, addr, queue string) []*push.Message {
	t.Helper()
	mc := memcache.New(addr)
	mc.Timeout = 5 * time.Second
	defer mc.Close()
	var msgs []*push.Message
	for {
		it, err := mc.Get(queue)
		if errors.Is(err, memcache.ErrCacheMiss) {
			return msgs
		}
		if err != nil {
			t.Fatalf("get %s: %v", queue, err)
		}
		m, err := push.ParseMessage(it.Value)
		if err != nil {
			t.Fatalf("item %q is not a valid message: %v", it.Value, err)
		}
		msgs = append(msgs, m)
	}
}

func TestExamples(t *testing.T) {
	q := testproc.Start(t, "queued", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--sync", "never")
	addr := q.Addr("queued")
	bin := buildGoExamples(t)
	root := repoRoot(t)

	tests := []struct {
		name    string
		cmd     []string
		queue   string
		wantN   int
		wantIDs string // prefix of the stored messages' ids
	}{
		{"gomemcache", []string{filepath.Join(bin, "gomemcache"), "-queue", "ex_gomemcache"}, "ex_gomemcache", 1, "example-gomemcache-"},
		{"producer", []string{filepath.Join(bin, "producer"), "-queue", "ex_producer", "-n", "5"}, "ex_producer", 5, "example-producer-"},
		{"shell", []string{"bash", filepath.Join(root, "examples/shell/enqueue.sh")}, "ex_shell", 1, "example-shell-"},
		{"python", []string{pythonWithPymemcache(t), filepath.Join(root, "examples/python/enqueue.py"), "--queue", "ex_python"}, "ex_python", 1, "example-python-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(tt.cmd[0], tt.cmd[1:]...)
			cmd.Env = append(os.Environ(), "KPUSH_SERVER="+addr, "KPUSH_SERVERS="+addr, "KPUSH_QUEUE="+tt.queue)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v\n%s", tt.cmd, err, out)
			}
			if !strings.Contains(string(out), "stored") {
				t.Errorf("output does not report the enqueue:\n%s", out)
			}
			msgs := drain(t, addr, tt.queue)
			if len(msgs) != tt.wantN {
				t.Fatalf("queue %s holds %d messages, want %d\n%s", tt.queue, len(msgs), tt.wantN, out)
			}
			for _, m := range msgs {
				if !strings.HasPrefix(m.ID, tt.wantIDs) {
					t.Errorf("message id %q, want prefix %q", m.ID, tt.wantIDs)
				}
			}
		})
	}

	// The flags: --servers, as kpush's own commands spell it, and the old
	// --server; the environment points nowhere, so the flag is what works.
	for _, tc := range []struct {
		name  string
		cmd   []string
		queue string
	}{
		{"gomemcache -servers", []string{filepath.Join(bin, "gomemcache"), "-servers", addr, "-queue", "ex_flag1"}, "ex_flag1"},
		{"gomemcache -server", []string{filepath.Join(bin, "gomemcache"), "-server", addr, "-queue", "ex_flag2"}, "ex_flag2"},
		{"python --servers", []string{pythonWithPymemcache(t), filepath.Join(root, "examples/python/enqueue.py"), "--servers", addr, "--queue", "ex_flag3"}, "ex_flag3"},
		{"python --server", []string{pythonWithPymemcache(t), filepath.Join(root, "examples/python/enqueue.py"), "--server", addr, "--queue", "ex_flag4"}, "ex_flag4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.cmd[0], tc.cmd[1:]...)
			cmd.Env = append(os.Environ(), "KPUSH_SERVER=127.0.0.1:1", "KPUSH_SERVERS=127.0.0.1:1")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", tc.cmd, err, out)
			}
			if n := len(drain(t, addr, tc.queue)); n != 1 {
				t.Fatalf("queue %s holds %d messages, want 1", tc.queue, n)
			}
		})
	}

	// The shell example reports a refusal instead of claiming success.
	t.Run("shell reports an error", func(t *testing.T) {
		cmd := exec.Command("bash", filepath.Join(root, "examples/shell/enqueue.sh"))
		cmd.Env = append(os.Environ(), "KPUSH_SERVER="+addr, "KPUSH_QUEUE=bad/name")
		out, err := cmd.CombinedOutput()
		if err == nil || strings.Contains(string(out), "stored 1") || !strings.Contains(string(out), "CLIENT_ERROR") {
			t.Fatalf("bad queue name: err=%v, want a failure quoting the server's CLIENT_ERROR\n%s", err, out)
		}
	})
}
