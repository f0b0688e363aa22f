package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/discovery"
	"github.com/kpush/kpush/internal/testdns"
)

const testSRV = "_kestrel._tcp.queued.kpush.test"

// srvTargets names each server q<i>.kpush.test (as a StatefulSet's pods
// are named), on its own port.
func srvTargets(t testing.TB, addrs ...string) ([]testdns.Target, []string) {
	var targets []testdns.Target
	var names []string
	for _, a := range addrs {
		tg := testdns.TargetOf(t, a)
		tg.Host = fmt.Sprintf("q%d.kpush.test", tg.Port)
		targets = append(targets, tg)
		names = append(names, fmt.Sprintf("%s:%d", tg.Host, tg.Port))
	}
	return targets, names
}

// TestDiscoveryFollowsServers: a producer given an SRV name places items
// on the servers the records name now: a new server gets its even share
// once it appears, a removed one gets nothing more, and a failing DNS
// keeps the set.
func TestDiscoveryFollowsServers(t *testing.T) {
	d := testdns.Start(t)
	addrs := []string{startQueued(t, syncNever), startQueued(t, syncNever), startQueued(t, syncNever), startQueued(t, syncNever)}
	targets, names := srvTargets(t, addrs...)
	d.SetSRV(testSRV, targets[:3]...)
	const interval = 20 * time.Millisecond
	p := newTestProducer(t, []string{"dns+srv:" + testSRV}, WithResolver(discovery.NewResolver(d.Addr)),
		WithResolveInterval(interval), WithLogger(slog.New(slog.DiscardHandler)))
	if got, want := p.Servers(), slices.Sorted(slices.Values(names[:3])); !slices.Equal(got, want) {
		t.Fatalf("Servers() = %v, want %v (sorted); discovery: %v", got, want, p.watcher.Err())
	}
	ctx := context.Background()
	send := func(n int) {
		t.Helper()
		for i := range n {
			if err := p.EnqueueRaw(ctx, "disc", []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	items := func() []int {
		var n []int
		for _, a := range addrs {
			n = append(n, queueItems(t, a, "disc"))
		}
		return n
	}
	send(300)
	if got := items(); !slices.Equal(got, []int{100, 100, 100, 0}) {
		t.Fatalf("items per server = %v, want 100 on each of the three", got)
	}

	// A fourth server: within an interval it is in rotation, with an
	// exact quarter of what follows.
	d.SetSRV(testSRV, targets...)
	waitUntil(t, 5*time.Second, "the fourth server in rotation", func() bool { return len(p.Servers()) == 4 })
	send(400)
	if got := items(); !slices.Equal(got, []int{200, 200, 200, 100}) {
		t.Fatalf("items per server after adding one = %v, want 100 more on each of four", got)
	}

	// Two go away: they take nothing more, the two left share it all.
	d.SetSRV(testSRV, targets[0], targets[1])
	waitUntil(t, 5*time.Second, "two servers removed", func() bool { return len(p.Servers()) == 2 })
	send(200)
	if got := items(); !slices.Equal(got, []int{300, 300, 200, 100}) {
		t.Fatalf("items per server after removing two = %v, want 100 more on each of the first two only", got)
	}
	if _, ok := p.Stats()[names[2]]; ok {
		t.Errorf("Stats still lists removed server %s", names[2])
	}

	// DNS fails: the last good set stays, and /metrics says so.
	d.Fail(true)
	waitUntil(t, 5*time.Second, "a failed resolution counted", func() bool { return p.watcher.Stale() == 1 && p.watcher.Failures() > 0 })
	send(20)
	if got := items(); !slices.Equal(got, []int{310, 310, 200, 100}) {
		t.Fatalf("items per server while DNS fails = %v, want the last two servers still used", got)
	}
}

// TestDiscoveryNothingResolvedYet: a name that does not resolve is not an
// error at New; enqueues fail with ErrNoServers naming the name until it
// resolves, then succeed.
func TestDiscoveryNothingResolvedYet(t *testing.T) {
	d := testdns.Start(t)
	addr := startQueued(t, syncNever)
	p := newTestProducer(t, []string{"dns+srv:" + testSRV}, WithResolver(discovery.NewResolver(d.Addr)),
		WithResolveInterval(20*time.Millisecond), WithLogger(slog.New(slog.DiscardHandler)))
	err := p.EnqueueRaw(context.Background(), "disc", []byte("x"))
	if !errors.Is(err, ErrNoServers) || !strings.Contains(err.Error(), "dns+srv:"+testSRV) {
		t.Fatalf("EnqueueRaw with nothing resolved = %v, want ErrNoServers naming the SRV name", err)
	}
	targets, _ := srvTargets(t, addr)
	d.SetSRV(testSRV, targets...)
	waitUntil(t, 5*time.Second, "the server found", func() bool { return len(p.Servers()) == 1 })
	if err := p.EnqueueRaw(context.Background(), "disc", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n := queueItems(t, addr, "disc"); n != 1 {
		t.Fatalf("items = %d, want 1", n)
	}
}

// TestDiscoveryRemovedDownServerStopsProbing: a server that is down and
// then removed from DNS is no longer probed, and its probe goroutine ends
// (Close would wait for it otherwise).
func TestDiscoveryRemovedDownServerStopsProbing(t *testing.T) {
	d := testdns.Start(t)
	up := startQueued(t, syncNever)
	down := freeAddr(t)
	targets, names := srvTargets(t, up, down)
	d.SetSRV(testSRV, targets...)
	p := newTestProducer(t, []string{"dns+srv:" + testSRV}, WithResolver(discovery.NewResolver(d.Addr)),
		WithResolveInterval(20*time.Millisecond), WithRetryBackoff(time.Hour, time.Hour), WithLogger(slog.New(slog.DiscardHandler)))
	for range 4 {
		if err := p.EnqueueRaw(context.Background(), "disc", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.Stats()[names[1]]; st.Healthy {
		t.Fatalf("%s should be down: %+v", names[1], st)
	}
	d.SetSRV(testSRV, targets[0])
	waitUntil(t, 5*time.Second, "the down server removed", func() bool { return len(p.Servers()) == 1 })
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for the probe of a removed server (backoff one hour)")
	}
}

func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
