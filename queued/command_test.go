package queued

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
)

// kpush queued as an operator runs it: config file, flags over it, reload,
// SIGTERM and the shutdown command.
func TestCommandQueued(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "queued.conf")
	write := func(s string) {
		if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The file says port 1 and another directory; the flags win.
	write("host = \"127.0.0.1\"\nport = 1\nqueue_path = \"/nonexistent\"\nqueues {\n  small {\n    max_items = 1\n  }\n}\n")
	data := filepath.Join(dir, "data")
	args := []string{"queued", "--config", conf, "--listen", "127.0.0.1:0", "--data-dir", data}
	p := testproc.Start(t, args...)
	c := dial(t, p.Addr("queued"))
	c.do("set small 0 0 1\r\na\r\nset small 0 0 1\r\nb\r\n", "STORED\r\nNOT_STORED\r\n")

	write("queues {\n  small {\n    max_items = 2\n  }\n}\n")
	c.do("reload\r\n", "Reloaded config.\r\n")
	c.do("set small 0 0 1\r\nb\r\nset small 0 0 1\r\nc\r\n", "STORED\r\nNOT_STORED\r\n")
	write("queues {\n  small {\n    max_items = \n")
	c.send("reload\r\n")
	if l := c.line(); !strings.HasPrefix(l, "SERVER_ERROR reload: ") {
		t.Fatalf("reload of a broken file: %q", l)
	}
	write("queues {\n  small {\n    max_items = 2\n  }\n}\n")

	// An open read at SIGTERM goes back to the queue; exit status 0.
	c.do("get small/open\r\n", "VALUE small 0 1\r\na\r\nEND\r\n")
	if err := p.Stop(20 * time.Second); err != nil {
		t.Fatalf("SIGTERM: exit %v, want 0", err)
	}
	if out := p.Output(); !strings.Contains(out, "journals closed") {
		t.Fatalf("no orderly shutdown in the log:\n%s", out)
	}

	p2 := testproc.Start(t, args...)
	c2 := dial(t, p2.Addr("queued"))
	c2.do("get small\r\nget small\r\nget small\r\n", "VALUE small 0 1\r\na\r\nEND\r\nVALUE small 0 1\r\nb\r\nEND\r\nEND\r\n")
	// shutdown is refused by default; the server and the connection go on.
	c2.do("shutdown\r\n", "SERVER_ERROR shutdown command disabled (enable it with enable_shutdown_command = true or kpush queued --enable-shutdown)\r\n")
	c2.do("version\r\n", "VERSION "+Version+"\r\n")
	if err := p2.Stop(20 * time.Second); err != nil {
		t.Fatalf("SIGTERM: exit %v, want 0", err)
	}

	// Enabled by the config file or by the flag, it stops the daemon.
	for _, tc := range []struct {
		name string
		conf string
		args []string
	}{
		{"enable_shutdown_command = true", "enable_shutdown_command = true\n", nil},
		{"--enable-shutdown", "", []string{"--enable-shutdown"}},
	} {
		write(tc.conf)
		p := testproc.Start(t, append(append([]string{}, args...), tc.args...)...)
		c := dial(t, p.Addr("queued"))
		c.send("shutdown\r\n")
		c.expectClosed()
		if err := p.Wait(20 * time.Second); err != nil {
			t.Fatalf("shutdown command with %s: exit %v, want 0", tc.name, err)
		}
	}

	t.Run("bad flags and files", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"queued", "--config", filepath.Join(dir, "missing.conf")}, "missing.conf"},
			{[]string{"queued", "--sync", "sometimes", "--data-dir", data}, "--sync"},
			{[]string{"queued", "--listen", "127.0.0.1:99999", "--data-dir", data}, "127.0.0.1:99999"},
		} {
			_, stderr, err := testproc.Run(t, nil, tc.args...)
			if err == nil || !strings.Contains(stderr, tc.want) {
				t.Errorf("kpush %s: err %v, stderr %q; want a failure mentioning %q", strings.Join(tc.args, " "), err, stderr, tc.want)
			}
		}
	})
}
