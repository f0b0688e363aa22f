package producer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/queued"
)

func testMessage(i int) *push.Message {
	return &push.Message{
		ID:     fmt.Sprintf("m%d", i),
		Tokens: []string{"a1b2c3d4e5f60718a1b2c3d4e5f60718a1b2c3d4e5f60718a1b2c3d4e5f60718"},
		Topic:  "com.example.app",
		Alert:  &push.Alert{Text: fmt.Sprintf("hello %d", i)},
	}
}

// enqueueConcurrently sends n raw items "<prefix><i>" from g goroutines and
// returns the errors by index.
func enqueueConcurrently(t *testing.T, p *Producer, queue, prefix string, n, g int, opts ...EnqueueOption) []error {
	t.Helper()
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				errs[i] = p.EnqueueRaw(context.Background(), queue, fmt.Appendf(nil, "%s%d", prefix, i), opts...)
			}
		})
	}
	wg.Wait()
	return errs
}

func TestEvenSpread(t *testing.T) {
	servers := []string{startQueued(t, syncNever), startQueued(t, syncNever), startQueued(t, syncNever)}
	for _, g := range []int{1, 8} {
		t.Run(fmt.Sprintf("goroutines=%d", g), func(t *testing.T) {
			queue := fmt.Sprintf("spread%d", g)
			p := newTestProducer(t, servers)
			const n = 3000
			for i, err := range enqueueConcurrently(t, p, queue, "x", n, g) {
				if err != nil {
					t.Fatalf("item %d: %v", i, err)
				}
			}
			total := 0
			stats := p.Stats()
			for _, addr := range servers {
				got := queueItems(t, addr, queue)
				total += got
				if dev := math.Abs(float64(got)-n/3) / (n / 3); dev > 0.03 {
					t.Errorf("%s holds %d of %d items, %.1f%% from an even third", addr, got, n, 100*dev)
				}
				if st := stats[addr]; int(st.Stored) != got || !st.Healthy {
					t.Errorf("%s: producer counted %+v, server holds %d", addr, st, got)
				}
			}
			if total != n {
				t.Fatalf("servers hold %d items, want %d", total, n)
			}
		})
	}
}

func TestRoutingKeyPinsAndKeepsOrder(t *testing.T) {
	servers := []string{startQueued(t, syncNever), startQueued(t, syncNever), startQueued(t, syncNever)}
	p := newTestProducer(t, servers)
	// 30 keys: with ports chosen at random, a handful of keys can all hash
	// to one server by chance; 30 cannot (p < 1e-13).
	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprintf("user-%d", i))
	}
	const perKey = 8
	for i := range perKey {
		for _, k := range keys {
			if err := p.EnqueueRaw(context.Background(), "pinned", fmt.Appendf(nil, "%s/%03d", k, i), RoutingKey(k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	where := map[string]string{}
	seq := map[string][]string{}
	for _, addr := range servers {
		for _, item := range drain(t, addr, "pinned") {
			k, n, _ := strings.Cut(item, "/")
			if w, ok := where[k]; ok && w != addr {
				t.Fatalf("key %s is on both %s and %s", k, w, addr)
			}
			where[k] = addr
			seq[k] = append(seq[k], n)
		}
	}
	for _, k := range keys {
		if len(seq[k]) != perKey || !slices.IsSorted(seq[k]) {
			t.Errorf("key %s: got %d items in order %v, want %d in order", k, len(seq[k]), seq[k], perKey)
		}
		if owner := servers[p.set.Load().ring.order(k, nil)[0]]; where[k] != owner {
			t.Errorf("key %s is on %s, its ketama owner is %s", k, where[k], owner)
		}
	}
	used := map[string]bool{}
	for _, k := range keys {
		used[where[k]] = true
	}
	if len(used) < 2 {
		t.Errorf("%d keys all landed on one server: %v", len(keys), where)
	}
}

func TestConsistentHashingWhenAServerIsAdded(t *testing.T) {
	servers := []string{startQueued(t, syncNever), startQueued(t, syncNever), startQueued(t, syncNever), startQueued(t, syncNever)}
	const keys = 1200
	placement := func(servers []string, queue string) map[string]string {
		p := newTestProducer(t, servers)
		for k := range keys {
			key := fmt.Sprintf("user-%d", k)
			if err := p.EnqueueRaw(context.Background(), queue, []byte(key), RoutingKey(key)); err != nil {
				t.Fatal(err)
			}
		}
		where := map[string]string{}
		for _, addr := range servers {
			for _, key := range drain(t, addr, queue) {
				where[key] = addr
			}
		}
		if len(where) != keys {
			t.Fatalf("found %d keys on the servers, want %d", len(where), keys)
		}
		return where
	}
	before := placement(servers[:3], "before")
	after := placement(servers, "after")
	moved := 0
	for key, was := range before {
		if now := after[key]; now != was {
			moved++
			if now != servers[3] {
				t.Errorf("key %s moved from %s to %s, an old server", key, was, now)
			}
		}
	}
	if frac := float64(moved) / keys; frac < 0.15 || frac > 0.35 {
		t.Errorf("adding a 4th server moved %.1f%% of the keys, want about 25%%", 100*frac)
	}
}

func TestBackPressure(t *testing.T) {
	limit := func(n int64) func(*queued.Config) {
		return func(c *queued.Config) { syncNever(c); c.Defaults.MaxItems = n }
	}
	t.Run("full server's share goes to the others", func(t *testing.T) {
		small, big := startQueued(t, limit(3)), startQueued(t, limit(1000))
		p := newTestProducer(t, []string{small, big})
		for i := range 30 {
			if err := p.Enqueue(context.Background(), "bp", testMessage(i)); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		if got := queueItems(t, small, "bp"); got != 3 {
			t.Errorf("full server holds %d, want its max_items 3", got)
		}
		if got := queueItems(t, big, "bp"); got != 27 {
			t.Errorf("other server holds %d, want 27", got)
		}
		if st := p.Stats()[small]; !st.Healthy || st.NotStored == 0 {
			t.Errorf("a full server must stay healthy and count NOT_STORED: %+v", st)
		}
	})
	t.Run("all full is ErrQueueFull, then space frees", func(t *testing.T) {
		a, b := startQueued(t, limit(2)), startQueued(t, limit(2))
		p := newTestProducer(t, []string{a, b})
		for i := range 4 {
			if err := p.EnqueueRaw(context.Background(), "bp", fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatalf("item %d: %v", i, err)
			}
		}
		err := p.EnqueueRaw(context.Background(), "bp", []byte("one too many"))
		if !errors.Is(err, ErrQueueFull) {
			t.Fatalf("fifth item: %v, want ErrQueueFull", err)
		}
		var ee *EnqueueError
		if !errors.As(err, &ee) || len(ee.Attempts) != 2 || ee.Queue != "bp" {
			t.Fatalf("error %#v: want an *EnqueueError with both servers' attempts", err)
		}
		if total := queueItems(t, a, "bp") + queueItems(t, b, "bp"); total != 4 {
			t.Fatalf("servers hold %d items, want 4 (nothing stored on failure)", total)
		}
		if got := drain(t, b, "bp"); len(got) != 2 {
			t.Fatalf("drained %d from %s, want 2", len(got), b)
		}
		if err := p.EnqueueRaw(context.Background(), "bp", []byte("fits now")); err != nil {
			t.Fatalf("after draining: %v", err)
		}
	})
}

func TestInvalidInputIsNotSent(t *testing.T) {
	addr := startQueued(t, syncNever)
	p := newTestProducer(t, []string{addr})
	bad := testMessage(1)
	bad.Tokens = []string{"not-hex"}
	tests := []struct {
		name string
		send func() error
		want error
	}{
		{"invalid message", func() error { return p.Enqueue(context.Background(), "in", bad) }, push.ErrInvalidMessage},
		{"nil message", func() error { return p.Enqueue(context.Background(), "in", nil) }, push.ErrInvalidMessage},
		{"bad queue name", func() error { return p.Enqueue(context.Background(), "in valid", testMessage(1)) }, ErrInvalidQueue},
		{"raw, bad queue name", func() error { return p.EnqueueRaw(context.Background(), "a/b", []byte("x")) }, ErrInvalidQueue},
		{"bad expiry", func() error {
			return p.EnqueueRaw(context.Background(), "in", []byte("x"), Expiry(time.Unix(5, 0)))
		}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.send()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	var ve *push.ValidationError
	if err := p.Enqueue(context.Background(), "in", bad); !errors.As(err, &ve) || ve.Field != "tokens[0]" {
		t.Fatalf("got %v, want a *push.ValidationError on tokens[0]", err)
	}
	if got := serverStats(t, addr)["cmd_set"]; got != "0" {
		t.Fatalf("server saw %s sets, want 0", got)
	}
}

func TestEnqueueStoresTheEncodedMessage(t *testing.T) {
	addr := startQueued(t, syncNever)
	p := newTestProducer(t, []string{addr})
	msg := testMessage(7)
	if err := p.Enqueue(context.Background(), "enc", msg); err != nil {
		t.Fatal(err)
	}
	if msg.EnqueuedAt != 0 {
		t.Errorf("Enqueue changed the caller's message: EnqueuedAt=%d", msg.EnqueuedAt)
	}
	items := drain(t, addr, "enc")
	if len(items) != 1 {
		t.Fatalf("got %d items, want 1", len(items))
	}
	got, err := push.ParseMessage([]byte(items[0]))
	if err != nil {
		t.Fatalf("stored item does not parse: %v\n%s", err, items[0])
	}
	if got.ID != "m7" || got.Alert.Text != "hello 7" || got.EnqueuedAt == 0 {
		t.Fatalf("stored %+v", got)
	}
}

func TestExpiryReachesTheServer(t *testing.T) {
	addr := startQueued(t, syncNever)
	p := newTestProducer(t, []string{addr})
	if err := p.EnqueueRaw(context.Background(), "exp", []byte("expired"), Expiry(time.Now().Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := p.EnqueueRaw(context.Background(), "exp", []byte("delayed"), Delay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, addr, "exp"); !slices.Equal(got, []string{"delayed"}) {
		t.Fatalf("got %q, want only the unexpired item", got)
	}
}

func TestEnqueueBatch(t *testing.T) {
	servers := []string{startQueued(t, syncNever), startQueued(t, syncNever)}
	p := newTestProducer(t, servers, WithBatchConcurrency(4))
	msgs := make([]*push.Message, 50)
	for i := range msgs {
		msgs[i] = testMessage(i)
	}
	msgs[3].Topic = ""
	msgs[41] = nil
	stored, err := p.EnqueueBatch(context.Background(), "batch", msgs)
	var be *BatchError
	if !errors.As(err, &be) || stored != 48 {
		t.Fatalf("EnqueueBatch = %d, %v; want 48 and a *BatchError", stored, err)
	}
	if idx := []int{be.Failed[0].Index, be.Failed[1].Index}; len(be.Failed) != 2 || !slices.Equal(idx, []int{3, 41}) {
		t.Fatalf("failed items %+v, want 3 and 41", be.Failed)
	}
	if !errors.Is(err, push.ErrInvalidMessage) {
		t.Fatalf("errors.Is(%v, push.ErrInvalidMessage) = false", err)
	}
	if total := queueItems(t, servers[0], "batch") + queueItems(t, servers[1], "batch"); total != 48 {
		t.Fatalf("servers hold %d, want 48", total)
	}

	// With a routing key the batch is sent in order to one server.
	stored, err = p.EnqueueBatch(context.Background(), "ordered", msgs[:20], RoutingKey("k"))
	if err != nil || stored != 19 {
		if stored != 19 || !errors.As(err, &be) || len(be.Failed) != 1 {
			t.Fatalf("ordered batch = %d, %v", stored, err)
		}
	}
	owner := servers[p.set.Load().ring.order("k", nil)[0]]
	var ids []string
	for _, item := range drain(t, owner, "ordered") {
		m, err := push.ParseMessage([]byte(item))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	want := []string{"m0", "m1", "m2", "m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11", "m12", "m13", "m14", "m15", "m16", "m17", "m18", "m19"}
	if !slices.Equal(ids, want) {
		t.Fatalf("routing-key batch order on %s: %v", owner, ids)
	}
}

func TestNoServersThenRecovery(t *testing.T) {
	addr := freeAddr(t)
	logs := newLogRecorder()
	p := newTestProducer(t, []string{addr}, WithLogger(slog.New(logs)), WithRetryBackoff(5*time.Millisecond, 50*time.Millisecond))
	err := p.EnqueueRaw(context.Background(), "nos", []byte("x"))
	var ee *EnqueueError
	if !errors.Is(err, ErrNoServers) || !errors.As(err, &ee) || len(ee.Attempts) != 1 || ee.Attempts[0].Server != addr {
		t.Fatalf("first try: %v, want ErrNoServers naming %s", err, addr)
	}
	// Now the server is known down: refused at once, with the reason.
	err = p.EnqueueRaw(context.Background(), "nos", []byte("x"))
	if !errors.Is(err, ErrNoServers) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("second try: %v, want ErrNoServers with the last error", err)
	}
	if st := p.Stats()[addr]; st.Healthy || st.Failed != 1 || st.DownSince.IsZero() {
		t.Fatalf("stats after failures: %+v", st)
	}

	startQueuedAt(t, addr)
	logs.wait(t, "queued server up again", 1, 30*time.Second)
	if err := p.EnqueueRaw(context.Background(), "nos", []byte("y")); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if got := drain(t, addr, "nos"); !slices.Equal(got, []string{"y"}) {
		t.Fatalf("server holds %q, want only the item sent after recovery", got)
	}
}

func TestClosed(t *testing.T) {
	addr := freeAddr(t)
	p, err := New([]string{addr}, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	// Leave a probe running; Close must stop it.
	_ = p.EnqueueRaw(context.Background(), "c", []byte("x"))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.EnqueueRaw(context.Background(), "c", []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}

func TestContextCancelled(t *testing.T) {
	addr := startQueued(t, syncNever)
	p := newTestProducer(t, []string{addr})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.EnqueueRaw(ctx, "ctx", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if got := queueItems(t, addr, "ctx"); got != 0 {
		t.Fatalf("server holds %d items after a cancelled enqueue", got)
	}
}

func TestItemTooLarge(t *testing.T) {
	small := func(c *queued.Config) { syncNever(c); c.Defaults.MaxItemSize = 64 }
	smallA, smallB := startQueued(t, small), startQueued(t, small)
	big := startQueued(t, syncNever)

	p := newTestProducer(t, []string{smallA, smallB})
	err := p.EnqueueRaw(context.Background(), "big", make([]byte, 100))
	var ee *EnqueueError
	if !errors.Is(err, ErrRejected) || !errors.As(err, &ee) || len(ee.Attempts) != 2 || !strings.Contains(err.Error(), "max_item_size") {
		t.Fatalf("got %v, want ErrRejected after both servers refused it", err)
	}
	for addr, st := range p.Stats() {
		if !st.Healthy || st.Rejected != 1 {
			t.Errorf("%s: an oversized item must not take the server down: %+v", addr, st)
		}
	}
	if err := p.EnqueueRaw(context.Background(), "big", make([]byte, 10)); err != nil {
		t.Fatalf("small item after the refusal: %v", err)
	}

	// A server with a larger limit takes what the others refuse.
	p2 := newTestProducer(t, []string{smallA, big})
	for i := range 4 {
		if err := p2.EnqueueRaw(context.Background(), "big2", make([]byte, 100)); err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	if got := queueItems(t, big, "big2"); got != 4 {
		t.Fatalf("the server without a size limit holds %d, want 4", got)
	}
}

// setStatus sends queued's `status` command (READONLY refuses sets with
// SERVER_ERROR).
func setStatus(t *testing.T, addr, status string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "status %s\r\n", status); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "END\r\n" {
		t.Fatalf("status %s: %q, %v", status, line, err)
	}
}

func TestServerErrorMovesTheItemOnly(t *testing.T) {
	a, b := startQueued(t, syncNever), startQueued(t, syncNever)
	p := newTestProducer(t, []string{a, b})
	setStatus(t, a, "READONLY")
	for i, err := range enqueueConcurrently(t, p, "ro", "x", 40, 4) {
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	if got := queueItems(t, b, "ro"); got != 40 {
		t.Fatalf("writable server holds %d, want all 40", got)
	}
	if st := p.Stats()[a]; !st.Healthy || st.Failed == 0 || !strings.Contains(st.LastError, "read-only") {
		t.Fatalf("read-only server: %+v, want healthy (it answers) with failed attempts", st)
	}

	setStatus(t, b, "READONLY")
	err := p.EnqueueRaw(context.Background(), "ro", []byte("nowhere"))
	if !errors.Is(err, ErrNoServers) || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("both read-only: %v, want ErrNoServers quoting the SERVER_ERROR", err)
	}
	setStatus(t, a, "UP")
	if err := p.EnqueueRaw(context.Background(), "ro", []byte("back")); err != nil {
		t.Fatalf("after status UP: %v", err)
	}
	if got := drain(t, a, "ro"); !slices.Equal(got, []string{"back"}) {
		t.Fatalf("server holds %q", got)
	}
}

// Host names are resolved when connecting, not in New: a name that does
// not resolve yet (a container still starting) does not stop a producer
// from being built, and a name is followed at each connect. (Only
// localhost is dialled here: tests send nothing off the machine.)
func TestHostNamesResolveAtConnect(t *testing.T) {
	p, err := New([]string{"no-such-host.invalid:22133"}, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("New with a name that does not resolve: %v", err)
	}
	p.Close()

	addr := startQueued(t, syncNever)
	_, port, _ := net.SplitHostPort(addr)
	byName := "localhost:" + port
	p = newTestProducer(t, []string{byName})
	if err := p.EnqueueRaw(context.Background(), "dns", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats()[byName]; st.Stored != 1 {
		t.Fatalf("stats by name: %+v", st)
	}
	if got := queueItems(t, addr, "dns"); got != 1 {
		t.Fatalf("server holds %d, want 1", got)
	}
}

// A server at max_connections answers a new connection with SERVER_ERROR
// before any request: the producer takes it for down and moves on.
func TestServerAtMaxConnections(t *testing.T) {
	full := startQueued(t, func(c *queued.Config) { syncNever(c); c.MaxConnections = 1 })
	other := startQueued(t, syncNever)
	hog, err := net.Dial("tcp", full)
	if err != nil {
		t.Fatal(err)
	}
	defer hog.Close()
	// Make sure the hog is the one connection the server counts.
	if _, err := hog.Write([]byte("version\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(hog).ReadString('\n'); err != nil || !strings.HasPrefix(line, "VERSION") {
		t.Fatalf("version: %q, %v", line, err)
	}
	p := newTestProducer(t, []string{full, other}, WithLogger(slog.New(slog.DiscardHandler)))
	for i, err := range enqueueConcurrently(t, p, "maxconn", "x", 20, 1) {
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	if got := queueItems(t, other, "maxconn"); got != 20 {
		t.Fatalf("other server holds %d, want 20", got)
	}
	if st := p.Stats()[full]; st.Healthy || st.Stored != 0 {
		t.Fatalf("server at max_connections: %+v, want down with nothing stored", st)
	}
}
