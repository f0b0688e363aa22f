package producer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kpush/kpush/internal/testproc"
	"github.com/kpush/kpush/queued"
	"github.com/kpush/kpush/queued/journal"
)

// startQueued runs a real queued server in this process on a loopback
// port with its own data directory and returns its address. mutate may
// adjust the configuration (queue limits, sync policy).
func startQueued(t testing.TB, mutate func(*queued.Config)) string {
	t.Helper()
	return startQueuedOn(t, "127.0.0.1:0", mutate)
}

// startQueuedAt starts an in-process queued on a given address (one a
// producer already knows).
func startQueuedAt(t testing.TB, addr string) {
	t.Helper()
	startQueuedOn(t, addr, syncNever)
}

func startQueuedOn(t testing.TB, listen string, mutate func(*queued.Config)) string {
	t.Helper()
	cfg := queued.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = listen
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := queued.NewServer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("queued.NewServer: %v", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("queued shutdown: %v", err)
		}
		if err := <-done; err != nil && !errors.Is(err, queued.ErrServerClosed) {
			t.Errorf("queued serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func syncNever(cfg *queued.Config) { cfg.Defaults.Sync = queued.SyncPolicy{Mode: journal.SyncNever} }

// serverStats reads a server's `stats` over a raw connection.
func serverStats(t testing.TB, addr string) map[string]string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("stats %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("stats\r\n")); err != nil {
		t.Fatalf("stats %s: %v", addr, err)
	}
	stats := map[string]string{}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stats %s: %v (got %v)", addr, err, stats)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "END" {
			return stats
		}
		f := strings.SplitN(line, " ", 3)
		if len(f) != 3 || f[0] != "STAT" {
			t.Fatalf("stats %s: unexpected line %q", addr, line)
		}
		stats[f[1]] = f[2]
	}
}

// queueItems is the queue's item count on one server (0 if the server
// never saw the queue).
func queueItems(t testing.TB, addr, queue string) int {
	t.Helper()
	v, ok := serverStats(t, addr)["queue_"+queue+"_items"]
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("queue_%s_items = %q: %v", queue, v, err)
	}
	return n
}

// drain takes every item off a queue with plain gets, in order.
func drain(t testing.TB, addr, queue string) []string {
	t.Helper()
	mc := memcache.New(addr)
	mc.Timeout = 5 * time.Second
	defer mc.Close()
	var items []string
	for {
		it, err := mc.Get(queue)
		if errors.Is(err, memcache.ErrCacheMiss) {
			return items
		}
		if err != nil {
			t.Fatalf("get %s from %s: %v", queue, addr, err)
		}
		items = append(items, string(it.Value))
	}
}

// logRecorder is a slog.Handler that keeps messages so a test can wait for
// one (the producer logs server state changes).
type logRecorder struct {
	mu     sync.Mutex
	msgs   []string
	notify chan struct{}
}

func newLogRecorder() *logRecorder { return &logRecorder{notify: make(chan struct{})} }

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	h.msgs = append(h.msgs, b.String())
	close(h.notify)
	h.notify = make(chan struct{})
	h.mu.Unlock()
	return nil
}

// count returns how many records so far contain sub.
func (h *logRecorder) count(sub string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

// wait blocks until n records contain sub.
func (h *logRecorder) wait(t testing.TB, sub string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		ch := h.notify
		h.mu.Unlock()
		if h.count(sub) >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			h.mu.Lock()
			defer h.mu.Unlock()
			t.Fatalf("no %d log records containing %q within %v; got %q", n, sub, timeout, h.msgs)
		}
	}
}

func newTestProducer(t testing.TB, servers []string, opts ...Option) *Producer {
	t.Helper()
	p, err := New(servers, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// freeAddr returns a loopback address nothing listens on, kept from
// other processes until the test ends (startQueuedAt may listen there).
func freeAddr(t testing.TB) string {
	t.Helper()
	return testproc.ReserveAddr(t)
}
