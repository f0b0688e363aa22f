package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kpush/kpush/internal/testproc"
)

// queuedProc runs `kpush queued` as a separate process, so a test can kill
// or stop it, on listen ("127.0.0.1:0" for any port) and dataDir.
func queuedProc(t *testing.T, listen, dataDir string) (*testproc.Proc, string) {
	t.Helper()
	p := testproc.Start(t, "queued", "--listen", listen, "--data-dir", dataDir)
	return p, p.Addr("queued")
}

func TestFailoverWhenAServerIsKilledMidStream(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	procs := make([]*testproc.Proc, 3)
	addrs := make([]string, 3)
	for i := range procs {
		procs[i], addrs[i] = queuedProc(t, "127.0.0.1:0", dirs[i])
	}
	logs := newLogRecorder()
	p := newTestProducer(t, addrs, WithLogger(slog.New(logs)), WithTimeout(5*time.Second),
		WithRetryBackoff(10*time.Millisecond, 100*time.Millisecond))

	const n, goroutines, killAfter = 3000, 8, 1000
	errs := make([]error, n)
	var stored, next atomic.Int64
	var atKill map[string]ServerStats
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				errs[i] = p.EnqueueRaw(context.Background(), "fo", fmt.Appendf(nil, "id-%d", i))
				if errs[i] == nil && stored.Add(1) == killAfter {
					procs[1].Kill() // SIGKILL while the other goroutines keep sending
					atKill = p.Stats()
				}
			}
		})
	}
	wg.Wait()

	unknown := map[string]bool{}
	for i, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, ErrOutcomeUnknown):
			var ee *EnqueueError
			if !errors.As(err, &ee) || ee.Server != addrs[1] {
				t.Errorf("item %d: unknown outcome not blamed on the killed server %s: %v", i, addrs[1], err)
			}
			unknown[fmt.Sprintf("id-%d", i)] = true
		default:
			t.Errorf("item %d: %v (two servers were up: it should have failed over)", i, err)
		}
	}
	if len(unknown) > goroutines {
		t.Errorf("%d items with unknown outcome, but at most %d were in flight at the kill", len(unknown), goroutines)
	}
	// The killed server's share went evenly to the two others.
	end := p.Stats()
	d0 := end[addrs[0]].Stored - atKill[addrs[0]].Stored
	d2 := end[addrs[2]].Stored - atKill[addrs[2]].Stored
	if diff := int64(d0) - int64(d2); diff > 2*goroutines || diff < -2*goroutines {
		t.Errorf("after the kill the survivors stored %d and %d items, want an even split", d0, d2)
	}
	if got := logs.count("queued server down"); got != 1 {
		t.Errorf("logged %d server-down records, want 1", got)
	}
	if st := p.Stats()[addrs[1]]; st.Healthy {
		t.Errorf("killed server still healthy: %+v", st)
	}

	// Restart it on the same address and data: the probe brings it back
	// and it gets its share again.
	procs[1], _ = queuedProc(t, addrs[1], dirs[1])
	logs.wait(t, "queued server up again", 1, 30*time.Second)
	before := p.Stats()[addrs[1]].Stored
	const late = 300
	for i, err := range enqueueConcurrently(t, p, "fo", "late-", late, 4) {
		if err != nil {
			t.Fatalf("late item %d: %v", i, err)
		}
	}
	if got := p.Stats()[addrs[1]].Stored - before; got < late/3-late/10 {
		t.Errorf("restarted server took %d of %d new items, want about a third", got, late)
	}

	// Every item reported stored is on exactly one server; an item with an
	// unknown outcome is on at most one; nothing else is anywhere.
	seen := map[string]int{}
	for i, addr := range addrs {
		items := drain(t, addr, "fo")
		st := p.Stats()[addr]
		if i != 1 && uint64(len(items)) != st.Stored {
			t.Errorf("%s holds %d items, the producer was told STORED %d times", addr, len(items), st.Stored)
		}
		if i == 1 && (uint64(len(items)) < st.Stored || uint64(len(items)) > st.Stored+st.Unknown) {
			t.Errorf("killed server holds %d items, want between %d stored and %d stored+unknown", len(items), st.Stored, st.Stored+st.Unknown)
		}
		for _, it := range items {
			seen[it]++
		}
	}
	for i, err := range errs {
		id := fmt.Sprintf("id-%d", i)
		switch {
		case err == nil && seen[id] != 1:
			t.Errorf("%s was reported stored but is on %d servers", id, seen[id])
		case err != nil && seen[id] > 1:
			t.Errorf("%s (outcome unknown) is on %d servers", id, seen[id])
		}
		delete(seen, id)
	}
	for i := range late {
		id := fmt.Sprintf("late-%d", i)
		if seen[id] != 1 {
			t.Errorf("%s is on %d servers, want 1", id, seen[id])
		}
		delete(seen, id)
	}
	if len(seen) != 0 {
		t.Errorf("unexpected items on the servers: %v", seen)
	}
	t.Logf("killed after %d stored: %d items with unknown outcome", killAfter, len(unknown))
}

// A server that takes the request but never answers (here: stopped with
// SIGSTOP) makes the outcome unknown. Without WithAtLeastOnce the item is
// not sent elsewhere; with it, it is, and once the server resumes the item
// exists twice: the documented duplicate risk.
func TestUnresponsiveServerOutcomeUnknown(t *testing.T) {
	slow, slowAddr := queuedProc(t, "127.0.0.1:0", t.TempDir())
	otherAddr := startQueued(t, syncNever)
	servers := []string{slowAddr, otherAddr}
	const timeout = 300 * time.Millisecond

	// A routing key owned by the slow server makes the first try land there.
	ring := newRing(servers)
	key := ""
	for i := 0; key == ""; i++ {
		if k := fmt.Sprint("k", i); ring.order(k, nil)[0] == 0 {
			key = k
		}
	}
	stop := func() {
		if err := syscall.Kill(slow.PID(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	resume := func() {
		if err := syscall.Kill(slow.PID(), syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	// waitItem blocks (Kestrel's get with a wait) until the queue has an
	// item on addr and returns it.
	waitItem := func(addr, queue string) string {
		mc := memcache.New(addr)
		mc.Timeout = 20 * time.Second
		defer mc.Close()
		it, err := mc.Get(queue + "/t=15000")
		if err != nil {
			t.Fatalf("waiting for an item in %s on %s: %v", queue, addr, err)
		}
		return string(it.Value)
	}

	for _, tc := range []struct {
		name        string
		atLeastOnce bool
	}{{"default", false}, {"at-least-once", true}} {
		t.Run(tc.name, func(t *testing.T) {
			queue := strings.ReplaceAll(tc.name, "-", "_")
			opts := []Option{WithTimeout(timeout), WithLogger(slog.New(slog.DiscardHandler))}
			if tc.atLeastOnce {
				opts = append(opts, WithAtLeastOnce())
			}
			p := newTestProducer(t, servers, opts...)
			stop()
			start := time.Now()
			err := p.EnqueueRaw(context.Background(), queue, []byte("maybe"), RoutingKey(key))
			took := time.Since(start)
			resume()
			if took < timeout {
				t.Errorf("gave up after %v, before the %v timeout", took, timeout)
			}
			if tc.atLeastOnce {
				if err != nil {
					t.Fatalf("at-least-once: %v, want stored on the other server", err)
				}
				if got := waitItem(otherAddr, queue); got != "maybe" {
					t.Fatalf("other server has %q", got)
				}
			} else {
				var ee *EnqueueError
				if !errors.Is(err, ErrOutcomeUnknown) || !errors.As(err, &ee) || ee.Server != slowAddr {
					t.Fatalf("got %v, want ErrOutcomeUnknown naming %s", err, slowAddr)
				}
				if got := queueItems(t, otherAddr, queue); got != 0 {
					t.Fatalf("the item was also sent to the other server (%d items)", got)
				}
			}
			// The stopped server had the request all along: resumed, it
			// stores it. That is why the outcome was "unknown".
			if got := waitItem(slowAddr, queue); got != "maybe" {
				t.Fatalf("resumed server has %q", got)
			}
			if st := p.Stats()[slowAddr]; st.Unknown != 1 || st.Healthy && st.DownSince.IsZero() {
				t.Fatalf("stats of the slow server: %+v", st)
			}
		})
	}
}

// A server restarted gracefully closes every connection the producer keeps
// idle. Those are found dead before a request is written on them, so the
// restart costs no error, no unknown outcome and no failover.
func TestRestartedServerLeavesNoStaleConnections(t *testing.T) {
	dir := t.TempDir()
	proc, addr := queuedProc(t, "127.0.0.1:0", dir)
	logs := newLogRecorder()
	p := newTestProducer(t, []string{addr}, WithLogger(slog.New(logs)))
	for _, round := range []string{"before-", "after-"} {
		for i, err := range enqueueConcurrently(t, p, "stale", round, 200, 8) {
			if err != nil {
				t.Fatalf("%s%d: %v", round, i, err)
			}
		}
		if round == "before-" {
			if err := proc.Stop(10 * time.Second); err != nil {
				t.Fatalf("stop queued: %v", err)
			}
			proc, _ = queuedProc(t, addr, dir)
		}
	}
	if st := p.Stats()[addr]; st.Failed != 0 || st.Unknown != 0 || !st.Healthy || st.Stored != 400 {
		t.Fatalf("stats after a restart: %+v, want 400 stored and no failures", st)
	}
	if n := logs.count("queued server down"); n != 0 {
		t.Fatalf("the server was marked down %d times", n)
	}
	if got := queueItems(t, addr, "stale"); got != 400 {
		t.Fatalf("server holds %d, want 400", got)
	}
}

// With WithLeastLoaded, a server that stops answering (but is within the
// timeout) is passed over once requests pile up on it, and the other
// server keeps taking items.
func TestLeastLoadedPassesOverAStalledServer(t *testing.T) {
	slow, slowAddr := queuedProc(t, "127.0.0.1:0", t.TempDir())
	fastAddr := startQueued(t, syncNever)
	p := newTestProducer(t, []string{slowAddr, fastAddr}, WithLeastLoaded(), WithTimeout(time.Minute))

	if err := syscall.Kill(slow.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	const goroutines, target = 16, 500
	reached := make(chan struct{})
	var once sync.Once
	var fastStored atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := range goroutines {
		wg.Go(func() {
			for i := 0; fastStored.Load() < target; i++ {
				if err := p.EnqueueRaw(context.Background(), "ll", fmt.Appendf(nil, "%d-%d", g, i)); err != nil {
					failed.Add(1)
					return
				}
				if int64(p.Stats()[fastAddr].Stored) >= target {
					fastStored.Store(target)
					once.Do(func() { close(reached) })
				}
			}
		})
	}
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Errorf("the fast server did not reach %d items while the other was stalled: %+v", target, p.Stats())
	}
	if err := syscall.Kill(slow.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d enqueues failed", failed.Load())
	}
	st := p.Stats()[slowAddr]
	if st.Stored > goroutines || st.Unknown != 0 {
		t.Fatalf("stalled server: %+v, want at most the %d requests stuck on it", st, goroutines)
	}
	if got := queueItems(t, slowAddr, "ll"); uint64(got) != st.Stored {
		t.Fatalf("stalled server holds %d, producer counted %d", got, st.Stored)
	}
}

// A cancelled ctx ends Enqueue at once even though gomemcache cannot
// abandon the request; the outcome is unknown (the stalled server stores
// the item once it resumes) and the request is still accounted for.
func TestContextEndsAnInFlightRequest(t *testing.T) {
	slow, addr := queuedProc(t, "127.0.0.1:0", t.TempDir())
	p, err := New([]string{addr}, WithTimeout(time.Minute), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := syscall.Kill(slow.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.EnqueueRaw(ctx, "ctx", []byte("late"))
	took := time.Since(start)
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrOutcomeUnknown and context.DeadlineExceeded", err)
	}
	if took > 10*time.Second {
		t.Fatalf("returned after %v, not when ctx ended", took)
	}
	if err := syscall.Kill(slow.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Close waits for the abandoned request, which the resumed server
	// answers: it was stored after all.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats()[addr]; st.Stored != 1 || !st.Healthy {
		t.Fatalf("stats after the abandoned request finished: %+v", st)
	}
	if got := queueItems(t, addr, "ctx"); got != 1 {
		t.Fatalf("server holds %d items, want 1", got)
	}
}
