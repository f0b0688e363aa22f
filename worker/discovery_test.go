package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpush/kpush/discovery"
	"github.com/kpush/kpush/internal/testdns"
	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
	"github.com/kpush/kpush/worker"
)

const (
	testSRV           = "_kestrel._tcp.queued.kpush.test"
	testResolveEvery  = 100 * time.Millisecond
	discoveryDeadline = 30 * time.Second
)

// srvCluster is a set of in-process queued servers named in a test DNS
// server's SRV records as q<port>.kpush.test, the way a StatefulSet's pods
// are named.
type srvCluster struct {
	t       *testing.T
	dns     *testdns.Server
	addrs   []string // 127.0.0.1:port, for the test's own connections
	targets []testdns.Target
	ks      []*kestrel // the test's one connection to each server
}

func startSRVCluster(t *testing.T, n int) *srvCluster {
	c := &srvCluster{t: t, dns: testdns.Start(t)}
	for range n {
		addr := startQueued(t, true)
		tg := testdns.TargetOf(t, addr)
		tg.Host = fmt.Sprintf("q%d.kpush.test", tg.Port)
		c.addrs = append(c.addrs, addr)
		c.targets = append(c.targets, tg)
		c.ks = append(c.ks, dialKestrel(t, addr))
	}
	return c
}

// publish makes the SRV records name the servers of the given indexes.
func (c *srvCluster) publish(idx ...int) {
	var tgs []testdns.Target
	for _, i := range idx {
		tgs = append(tgs, c.targets[i])
	}
	c.dns.SetSRV(testSRV, tgs...)
}

func (c *srvCluster) producer(t *testing.T) *producer.Producer {
	p, err := producer.New([]string{"dns+srv:" + testSRV}, producer.WithAtLeastOnce(), producer.WithTimeout(30*time.Second),
		producer.WithResolver(discovery.NewResolver(c.dns.Addr)), producer.WithResolveInterval(testResolveEvery), producer.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func (c *srvCluster) workerConfig(t *testing.T) worker.Config {
	return worker.Config{Servers: []string{"dns+srv:" + testSRV}, Resolver: discovery.NewResolver(c.dns.Addr),
		ResolveInterval: testResolveEvery, Queue: testQueue, Concurrency: 200, Logger: testLogger(t)}
}

// stat reads one stat of the test queue on server i.
func (c *srvCluster) stat(i int, name string) int { return c.ks[i].queueStat(testQueue, name) }

// conns is the number of connections server i has, the test's included.
func (c *srvCluster) conns(i int) string { return c.ks[i].stats()["curr_connections"] }

// load enqueues messages of one fresh token each from a few goroutines,
// paced to about rate per second in all, until stop is called; it returns
// every token that was STORED.
type load struct {
	mu     sync.Mutex
	tokens []string
	stored atomic.Int64
	stop   func() []string
}

func startLoad(t *testing.T, p *producer.Producer, rate int) *load {
	l := &load{}
	const goroutines = 4
	pause := time.Duration(goroutines) * time.Second / time.Duration(rate)
	var next atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			tick := time.NewTicker(pause)
			defer tick.Stop()
			for ctx.Err() == nil {
				i := int(next.Add(1))
				tok := token(1_000_000 + i)
				msg := &push.Message{ID: "d" + strconv.Itoa(i), Tokens: []string{tok}, Topic: "com.example.app", Alert: &push.Alert{Text: "hi"}}
				if err := p.Enqueue(context.Background(), testQueue, msg); err != nil {
					t.Errorf("enqueue under load: %v", err)
					return
				}
				l.mu.Lock()
				l.tokens = append(l.tokens, tok)
				l.mu.Unlock()
				l.stored.Add(1)
				select {
				case <-tick.C:
				case <-ctx.Done():
				}
			}
		})
	}
	l.stop = func() []string {
		cancel()
		wg.Wait()
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.tokens
	}
	t.Cleanup(func() { l.stop() })
	return l
}

func workerMetric(t *testing.T, w *worker.Worker, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(httptestBody(t, w.Handler(), "/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// TestDiscoveryScalesUnderLoad: producer and worker find the servers
// through SRV records that change while messages flow: 3 servers, then 4
// (the new one gets its share of production and consumption within a few
// resolve intervals), then 2 (the two to go are drained the documented
// way first: READONLY, wait until empty, then out of DNS), then DNS fails
// (the last good set is kept, /metrics says so). Every message stored is
// delivered exactly once and nothing is left anywhere.
func TestDiscoveryScalesUnderLoad(t *testing.T) {
	c := startSRVCluster(t, 4)
	c.publish(0, 1, 2)
	sim := startSim(t, apnssim.Config{})
	prod := c.producer(t)
	w, err := worker.New(c.workerConfig(t), newSender(t, apnsConfig(t, sim)), prod)
	if err != nil {
		t.Fatal(err)
	}
	stopWorker := runWorker(t, w)
	l := startLoad(t, prod, 800)
	waitFor(t, discoveryDeadline, "deliveries from three servers", func() bool {
		return sim.Stats().Accepted >= 300 && c.stat(0, "transactions") > 0 && c.stat(1, "transactions") > 0 && c.stat(2, "transactions") > 0
	})
	if got := workerMetric(t, w, "kpush_worker_servers"); got != 3 {
		t.Fatalf("kpush_worker_servers = %v, want 3", got)
	}

	// 3 -> 4: the new server is used within a few intervals, and then
	// takes a quarter of production and consumption.
	c.publish(0, 1, 2, 3)
	added := time.Now()
	waitFor(t, discoveryDeadline, "the new server read from and written to", func() bool {
		return c.stat(3, "total_items") > 0 && c.stat(3, "transactions") > 0
	})
	if took := time.Since(added); took > 20*testResolveEvery {
		t.Errorf("the new server was in use after %v, more than 20 resolve intervals", took)
	}
	var added0, taken0 [4]int
	for i := range 4 {
		added0[i], taken0[i] = c.stat(i, "total_items"), c.stat(i, "transactions")
	}
	start := l.stored.Load()
	waitFor(t, discoveryDeadline, "800 more messages stored", func() bool { return l.stored.Load() >= start+800 })
	var addedSum, takenSum int
	var addedD, takenD [4]int
	for i := range 4 {
		addedD[i], takenD[i] = c.stat(i, "total_items")-added0[i], c.stat(i, "transactions")-taken0[i]
		addedSum += addedD[i]
		takenSum += takenD[i]
	}
	for i := range 4 {
		if share := float64(addedD[i]) / float64(addedSum); share < 0.2 || share > 0.3 {
			t.Errorf("server %d got %.2f of the items enqueued after the 4th appeared (%v), want a quarter", i, share, addedD)
		}
		if share := float64(takenD[i]) / float64(takenSum); share < 0.125 || share > 0.375 {
			t.Errorf("server %d gave %.2f of the items read after the 4th appeared (%v), want about a quarter", i, share, takenD)
		}
	}

	// 4 -> 2: servers 2 and 3 are drained first (READONLY: producers move
	// on, the worker keeps reading), then taken out of DNS.
	for _, i := range []int{2, 3} {
		k := c.ks[i]
		k.cmd("status readonly")
		if got := k.line(); got != "END" {
			t.Fatalf("status readonly on server %d: %q", i, got)
		}
	}
	waitFor(t, discoveryDeadline, "servers 2 and 3 drained", func() bool {
		for _, i := range []int{2, 3} {
			if c.stat(i, "items") != 0 || c.stat(i, "open_transactions") != 0 {
				return false
			}
		}
		return true
	})
	c.publish(0, 1)
	waitFor(t, discoveryDeadline, "worker and producer using two servers", func() bool {
		return workerMetric(t, w, "kpush_worker_servers") == 2 && len(prod.Servers()) == 2
	})
	// Nobody keeps a connection to the removed servers: only this one.
	for _, i := range []int{2, 3} {
		waitFor(t, discoveryDeadline, fmt.Sprintf("connections to server %d closed", i), func() bool {
			return c.conns(i) == "1"
		})
	}

	// DNS fails: the two servers stay in use; /metrics says so.
	c.dns.Fail(true)
	waitFor(t, discoveryDeadline, "the failed resolution in /metrics", func() bool {
		return workerMetric(t, w, "kpush_worker_discovery_stale_names") == 1 && workerMetric(t, w, "kpush_worker_discovery_failures_total") > 0
	})
	before := sim.Stats().Accepted
	waitFor(t, discoveryDeadline, "deliveries going on while DNS fails", func() bool { return sim.Stats().Accepted >= before+200 })
	if got := workerMetric(t, w, "kpush_worker_servers"); got != 2 {
		t.Errorf("kpush_worker_servers = %v while DNS fails, want the last good 2", got)
	}

	tokens := l.stop()
	waitFor(t, discoveryDeadline, "every stored message delivered", func() bool { return sim.Stats().Accepted >= int64(len(tokens)) })
	if err := stopWorker(); err != nil {
		t.Fatal(err)
	}
	st := sim.Stats()
	for _, tok := range tokens {
		if n := st.Tokens[tok]; n != 1 {
			t.Fatalf("token %s delivered %d times, want once (of %d stored)", tok, n, len(tokens))
		}
	}
	if st.Accepted != int64(len(tokens)) {
		t.Errorf("simulator accepted %d, want %d", st.Accepted, len(tokens))
	}
	for i := range c.addrs {
		if items, open := c.stat(i, "items"), c.stat(i, "open_transactions"); items != 0 || open != 0 {
			t.Errorf("server %d: %d items, %d open reads left", i, items, open)
		}
	}
	t.Logf("%d messages through 3 -> 4 -> 2 servers; shares after the 4th appeared: enqueued %v, read %v", len(tokens), addedD, takenD)
}

// TestDiscoveryRemovedServerIsLetGo: a server taken out of DNS without
// being drained. The worker fetches nothing more from it, finishes and
// confirms what it held from it (delivered once, not given back), and the
// producer places nothing more there; what is left on it waits, and is
// delivered once the server is back in DNS.
func TestDiscoveryRemovedServerIsLetGo(t *testing.T) {
	c := startSRVCluster(t, 2)
	c.publish(0, 1)
	sim := startSim(t, apnssim.Config{})
	prod := c.producer(t)
	// Every push of the first 40 messages waits for the gate, so the
	// worker holds them.
	const held = 40
	tokens := enqueue(t, prod, held, 1)
	slow := map[string]bool{}
	for _, tok := range tokens {
		slow[tok] = true
	}
	g := &gatedPusher{Pusher: newSender(t, apnsConfig(t, sim)), slow: slow, release: make(chan struct{})}
	w, err := worker.New(c.workerConfig(t), g, prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	waitFor(t, discoveryDeadline, "every message held by the worker", func() bool { return g.started.Load() == held })
	heldOn1 := c.stat(1, "open_transactions")
	if heldOn1 == 0 {
		t.Fatal("the worker holds nothing from server 1")
	}

	c.publish(0)
	waitFor(t, discoveryDeadline, "server 1 out of the worker's and the producer's sets", func() bool {
		return workerMetric(t, w, "kpush_worker_servers") == 1 && len(prod.Servers()) == 1
	})
	// A monitor in progress at the change runs to its end (at most
	// MonitorSeconds); after that no read is waiting on server 1.
	waitFor(t, discoveryDeadline, "no read waiting on server 1", func() bool { return c.stat(1, "waiters") == 0 })
	// New messages go to server 0 only; one put straight on server 1 is
	// not fetched.
	var later []string
	for i := range 20 {
		tok := token(500_000 + i)
		later = append(later, tok)
		if err := prod.Enqueue(context.Background(), testQueue, &push.Message{Tokens: []string{tok}, Topic: "com.example.app", Alert: &push.Alert{Text: "later"}}); err != nil {
			t.Fatal(err)
		}
	}
	k1 := c.ks[1]
	msg := `{"id":"late","tokens":["` + token(999_999) + `"],"topic":"com.example.app","alert":"late"}`
	k1.cmd(fmt.Sprintf("set %s 0 0 %d\r\n%s", testQueue, len(msg), msg))
	if got := k1.line(); got != "STORED" {
		t.Fatalf("set on server 1: %q", got)
	}
	if got := c.stat(1, "total_items"); got != heldOn1+1 {
		t.Errorf("server 1 took %d items in all, want the %d held and the one set by hand: the producer still places there", got, heldOn1)
	}

	// The held items finish and are confirmed on server 1.
	close(g.release)
	waitFor(t, discoveryDeadline, "held items finished and confirmed on server 1", func() bool {
		return c.stat(1, "open_transactions") == 0 && c.stat(1, "items") == 1
	})
	// The loops that read from server 1 end once their confirm is
	// answered, a moment after the server counts the reads settled.
	waitFor(t, discoveryDeadline, "only this test's connection left on server 1 (the worker lets go of it)", func() bool { return c.conns(1) == "1" })
	if got := sim.Stats().Tokens[token(999_999)]; got != 0 {
		t.Fatalf("the message set on the removed server was delivered (%d)", got)
	}

	// Back in DNS: what waited there is delivered.
	c.publish(0, 1)
	waitFor(t, discoveryDeadline, "the waiting message delivered", func() bool { return sim.Stats().Tokens[token(999_999)] == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := sim.Stats()
	for _, tok := range append(tokens, later...) {
		if st.Tokens[tok] != 1 {
			t.Errorf("token %s delivered %d times, want once", tok, st.Tokens[tok])
		}
	}
	if code := httptestGet(t, w.Handler(), "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
}
