package queued

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
)

func TestQueuedBinaryUsesConfigFile(t *testing.T) {
	// Black box: the real daemon started with --config takes its listen
	// addresses, data dir and queue settings from the file, warns about
	// unknown keys with file:line, and `reload` applies edited queue
	// settings.
	dir := t.TempDir()
	path := filepath.Join(dir, "queued.conf")
	conf := func(maxItems int) string {
		return fmt.Sprintf(`# test config
host = "127.0.0.1"
port = 0
queue_path = %q
admin_listen = "127.0.0.1:0"
jmx_port = 9999
queues {
  tiny {
    max_items = %d
  }
}
`, filepath.Join(dir, "data"), maxItems)
	}
	if err := os.WriteFile(path, []byte(conf(1)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testproc.Start(t, "queued", "--config", path)
	c := dialMemcache(t, p.Addr("queued"))
	admin := "http://" + p.Addr("admin")
	p.WaitLog(regexp.MustCompile(`unknown config key ignored.*at=\S*queued.conf:6 key=jmx_port`), 10*time.Second)

	c.expect("set tiny 0 0 1\r\na\r\n", "STORED")
	c.expect("set tiny 0 0 1\r\nb\r\n", "NOT_STORED")
	c.send("dump_config\r\n")
	var dump []string
	for l := c.line(); l != "END"; l = c.line() {
		dump = append(dump, l)
	}
	if !slices.Contains(dump, "queue 'tiny' {") || !slices.Contains(dump, "  max_items=1") {
		t.Errorf("dump_config:\n%s", strings.Join(dump, "\n"))
	}
	if code, _, body := httpGet(t, admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}

	if err := os.WriteFile(path, []byte(conf(2)), 0o644); err != nil {
		t.Fatal(err)
	}
	c.expect("reload\r\n", "Reloaded config.")
	c.expect("set tiny 0 0 1\r\nb\r\n", "STORED")
	c.expect("set tiny 0 0 1\r\nc\r\n", "NOT_STORED")

	// A broken file: reload fails and the running settings stay.
	if err := os.WriteFile(path, []byte("queues {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.send("reload\r\n")
	if l := c.line(); !strings.HasPrefix(l, "SERVER_ERROR") || !strings.Contains(l, "queued.conf:2:1") {
		t.Errorf("reload of a broken file: %q, want SERVER_ERROR naming queued.conf:2:1", l)
	}
	c.expect("get tiny\r\n", "VALUE tiny 0 1")
}

func TestQueuedBinaryRefusesBadConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.conf")
	if err := os.WriteFile(path, []byte("port = 22133\nmax_items = lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := testproc.Run(t, nil, "queued", "--config", path)
	if err == nil {
		t.Fatal("queued started with a bad config file")
	}
	if !strings.Contains(stderr, "bad.conf:2:13: max_items: want an integer") {
		t.Errorf("stderr does not name the file, line, column and key:\n%s", stderr)
	}
}
