// Package testqueued runs a real queue daemon in the test's process, on
// 127.0.0.1:0 with a fresh data directory, for the tests of packages that
// talk to one (package queued's own tests have their own helper: they
// cannot import this package).
package testqueued

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/kpush/kpush/queued"
	"github.com/kpush/kpush/queued/journal"
)

// Start serves queued with the default config under sync never, changed
// by mutate if given, and returns its address. The server is shut down
// when the test ends.
func Start(t testing.TB, mutate func(*queued.Config)) string {
	t.Helper()
	cfg := queued.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Defaults.Sync = queued.SyncPolicy{Mode: journal.SyncNever}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := queued.NewServer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-errc; !errors.Is(err, queued.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}
