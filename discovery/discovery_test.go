package discovery_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpush/kpush/discovery"
	"github.com/kpush/kpush/internal/testdns"
)

func TestParse(t *testing.T) {
	good := []struct {
		in      string
		dynamic bool
	}{
		{"q1:22133", false},
		{"10.0.0.1:22133, 10.0.0.2:22133", false},
		{"[::1]:22133", false},
		{"dns:queued:22133", true},
		{"dns+srv:_kestrel._tcp.queued.ns.svc", true},
		{"q1:22133,dns:queued-headless.ns.svc:22133", true},
	}
	for _, tt := range good {
		l, err := discovery.ParseComma(tt.in)
		if err != nil {
			t.Errorf("ParseComma(%q) = %v", tt.in, err)
			continue
		}
		if l.Dynamic() != tt.dynamic {
			t.Errorf("ParseComma(%q).Dynamic() = %v", tt.in, l.Dynamic())
		}
	}
	bad := map[string]string{
		"":                              "no servers",
		"q1":                            "is not host:port",
		"q1:0":                          "is not host:port",
		"q1:70000":                      "is not host:port",
		":22133":                        "is not host:port",
		"dns:queued":                    "want dns:NAME:PORT",
		"dns::22133":                    "want dns:NAME:PORT",
		"dns:queued:x":                  "want dns:NAME:PORT",
		"dns+srv:":                      "want dns+srv:NAME",
		"dns+srv:queued:22133":          "want dns+srv:NAME",
		"q1:22133,q1:22133":             "listed twice",
		"dns:queued:1,dns:queued:1,q:1": "listed twice",
	}
	for in, want := range bad {
		_, err := discovery.ParseComma(in)
		if !errors.Is(err, discovery.ErrBadServers) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseComma(%q) = %v, want ErrBadServers saying %q", in, err, want)
		}
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestWatcherFollowsRecordsAndKeepsLastGoodSet(t *testing.T) {
	d := testdns.Start(t)
	d.SetSRV("_kestrel._tcp.queued.kpush.test", testdns.Target{Host: "q0.kpush.test", Port: 22133}, testdns.Target{Host: "q1.kpush.test", Port: 22134})
	d.SetIPs("headless.kpush.test", net.ParseIP("127.0.0.2"), net.ParseIP("::1"))
	l, err := discovery.Parse([]string{"fixed:1", "dns+srv:_kestrel._tcp.queued.kpush.test", "dns:headless.kpush.test:22133"})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	w := discovery.NewWatcher(l, discovery.Options{Resolver: discovery.NewResolver(d.Addr), Interval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()

	got, err := w.Resolve(ctx)
	want := []string{"fixed:1", "q0.kpush.test:22133", "q1.kpush.test:22134", "127.0.0.2:22133", "[::1]:22133"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Resolve = %v, %v; want %v", got, err, want)
	}

	// A new record is followed; a removed one disappears.
	d.SetSRV("_kestrel._tcp.queued.kpush.test", testdns.Target{Host: "q1.kpush.test", Port: 22134}, testdns.Target{Host: "q2.kpush.test", Port: 22135})
	got, err = w.Resolve(ctx)
	want = []string{"fixed:1", "q1.kpush.test:22134", "q2.kpush.test:22135", "127.0.0.2:22133", "[::1]:22133"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("after a change, Resolve = %v, %v; want %v", got, err, want)
	}
	if !strings.Contains(logs.String(), `msg="servers changed" servers=5 added=q2.kpush.test:22135 removed=q0.kpush.test:22133`) {
		t.Errorf("no change in the log:\n%s", logs.String())
	}

	// The DNS server fails: the last good set is kept, counted, logged.
	d.Fail(true)
	for range 2 {
		got, err = w.Resolve(ctx)
		if err == nil || !slices.Equal(got, want) {
			t.Fatalf("while DNS fails, Resolve = %v, %v; want the last good %v and an error", got, err, want)
		}
	}
	if w.Failures() != 4 || w.Stale() != 2 || w.Err() == nil {
		t.Errorf("Failures %d, Stale %d, Err %v; want 4 (two names, twice), 2 and an error", w.Failures(), w.Stale(), w.Err())
	}
	if n := strings.Count(logs.String(), "server discovery failed; keeping the servers it last found"); n != 2 {
		t.Errorf("the failure is logged %d times, want once per name:\n%s", n, logs.String())
	}

	// A name that resolves to nothing is a failure too: never shrink to
	// nothing on an empty answer.
	d.Fail(false)
	d.SetSRV("_kestrel._tcp.queued.kpush.test")
	got, err = w.Resolve(ctx)
	if err == nil || !slices.Equal(got, want) || w.Stale() != 1 {
		t.Fatalf("with no SRV records, Resolve = %v, %v (stale %d); want the last good %v, an error, one stale name", got, err, w.Stale(), want)
	}

	// Recovery.
	d.SetSRV("_kestrel._tcp.queued.kpush.test", testdns.Target{Host: "q3.kpush.test", Port: 22136})
	got, err = w.Resolve(ctx)
	want = []string{"fixed:1", "q3.kpush.test:22136", "127.0.0.2:22133", "[::1]:22133"}
	if err != nil || !slices.Equal(got, want) || w.Stale() != 0 || w.Err() != nil {
		t.Fatalf("after recovery, Resolve = %v, %v (stale %d); want %v", got, err, w.Stale(), want)
	}
	if !strings.Contains(logs.String(), "server discovery works again") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

func TestWatcherNeverResolvedIsEmpty(t *testing.T) {
	d := testdns.Start(t)
	l, _ := discovery.ParseComma("dns:nowhere.kpush.test:22133")
	w := discovery.NewWatcher(l, discovery.Options{Resolver: discovery.NewResolver(d.Addr), Logger: slog.New(slog.DiscardHandler)})
	got, err := w.Resolve(context.Background())
	if len(got) != 0 || err == nil || !strings.Contains(err.Error(), "dns:nowhere.kpush.test:22133") {
		t.Fatalf("Resolve = %v, %v; want nothing and an error naming the entry", got, err)
	}
}

func TestWatcherRun(t *testing.T) {
	d := testdns.Start(t)
	d.SetIPs("q.kpush.test", net.ParseIP("127.0.0.1"))
	l, _ := discovery.ParseComma("dns:q.kpush.test:1")
	w := discovery.NewWatcher(l, discovery.Options{Resolver: discovery.NewResolver(d.Addr), Interval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	updates := make(chan []string, 100)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, func(s []string) { updates <- s }) }()
	d.SetIPs("q.kpush.test", net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.3"))
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-updates:
			if slices.Equal(s, []string{"127.0.0.1:1", "127.0.0.3:1"}) {
				cancel()
				<-done
				return
			}
		case <-deadline:
			t.Fatal("Run never reported the new address")
		}
	}
}

// TestDialerKeepsAddressesThroughDNSOutage: a name the Dialer resolved
// once is still dialled, at its last addresses, while the DNS server
// fails; a name it never resolved, and a name that no longer exists, are
// not.
func TestDialerKeepsAddressesThroughDNSOutage(t *testing.T) {
	dns := testdns.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dns.SetIPs("q0.kpush.test", net.IPv4(127, 0, 0, 1))
	dns.SetIPs("q1.kpush.test", net.IPv4(127, 0, 0, 1))
	d := &discovery.Dialer{Resolver: discovery.NewResolver(dns.Addr)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(host string) error {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial("q0.kpush.test"); err != nil {
		t.Fatalf("dial while DNS answers: %v", err)
	}

	dns.Fail(true)
	if err := dial("q0.kpush.test"); err != nil {
		t.Errorf("dial of a name resolved before, while DNS fails: %v; want its last address dialled", err)
	}
	if err := dial("q1.kpush.test"); err == nil {
		t.Error("dial of a name never resolved succeeded while DNS fails")
	}

	dns.Fail(false)
	dns.SetIPs("q0.kpush.test") // the name is gone: "no such host"
	if err := dial("q0.kpush.test"); err == nil {
		t.Error("dial of a name that no longer resolves succeeded; want no fallback to its old address")
	}
	dns.Fail(true)
	if err := dial("q0.kpush.test"); err == nil {
		t.Error("dial of a removed name succeeded while DNS fails; its old address should be forgotten")
	}
	if err := dial("127.0.0.1"); err != nil {
		t.Errorf("dial of an IP address while DNS fails: %v", err)
	}
}
