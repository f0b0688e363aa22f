package worker_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
	"github.com/kpush/kpush/worker"
)

// These tests run the real binary: `kpush queued` and `kpush worker`
// processes killed with SIGKILL or stopped with SIGTERM.

func workerArgs(t testing.TB, sim *apnssim.Server, servers []string, extra ...string) []string {
	args := []string{"worker", "--servers", strings.Join(servers, ","), "--queue", testQueue, "--summary-interval", "1s"}
	args = append(args, apnsArgs(t, sim)...)
	return append(args, extra...)
}

// checkAllDelivered asserts every token was accepted at least once and that
// duplicates stay within bound; it returns the number of duplicates.
func checkAllDelivered(t *testing.T, sim *apnssim.Server, tokens []string, bound int) int {
	t.Helper()
	st := sim.Stats()
	dups := 0
	for _, tok := range tokens {
		c := st.Tokens[tok]
		if c < 1 {
			t.Fatalf("token %s never delivered: lost", tok)
		}
		dups += int(c - 1)
	}
	if dups > bound {
		t.Errorf("%d duplicate deliveries, more than the bound %d", dups, bound)
	}
	return dups
}

func checkDrained(t *testing.T, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		k := dialKestrel(t, addr)
		waitFor(t, 10*time.Second, "queue drained on "+addr, func() bool {
			return k.queueStat(testQueue, "items") == 0 && k.queueStat(testQueue, "open_transactions") == 0
		})
	}
}

// TestWorkerKilledMidRun: SIGKILL the worker while it delivers, start a
// new one: every message is delivered at least once, and the duplicates
// are at most the items the dead worker held (its --concurrency).
func TestWorkerKilledMidRun(t *testing.T) {
	_, a := startQueuedProc(t, t.TempDir(), "127.0.0.1:0")
	_, b := startQueuedProc(t, t.TempDir(), "127.0.0.1:0")
	sim := startSim(t, apnssim.Config{Latency: time.Millisecond})
	prod := newProducer(t, a, b)
	const n, concurrency = 2000, 100
	tokens := enqueue(t, prod, n, 1)

	args := workerArgs(t, sim, []string{a, b}, "--concurrency", strconv.Itoa(concurrency))
	w1 := testproc.Start(t, args...)
	waitFor(t, time.Minute, "a quarter delivered", func() bool { return sim.Stats().Accepted >= n/4 })
	w1.Kill()
	killedAt := sim.Stats().Accepted
	if killedAt >= n {
		t.Fatalf("everything was delivered before the kill (%d); the test proves nothing", killedAt)
	}

	w2 := testproc.Start(t, args...)
	waitFor(t, time.Minute, "every token delivered", func() bool { return len(sim.Stats().Tokens) == n })
	if err := w2.Stop(30 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, w2.Output())
	}
	dups := checkAllDelivered(t, sim, tokens, concurrency)
	t.Logf("killed after %d deliveries; %d duplicates (bound %d)", killedAt, dups, concurrency)
	checkDrained(t, a, b)
}

// TestQueuedKilledMidRun: SIGKILL one queued server mid-run: the worker
// keeps delivering from the other, reconnects when it is back, and every
// message is delivered at least once.
func TestQueuedKilledMidRun(t *testing.T) {
	dirA := t.TempDir()
	// a is restarted on the same address: reserved, so nobody takes the
	// port while its server is down.
	qa, a := startQueuedProc(t, dirA, testproc.ReserveAddr(t))
	_, b := startQueuedProc(t, t.TempDir(), "127.0.0.1:0")
	sim := startSim(t, apnssim.Config{Latency: 5 * time.Millisecond})
	prod := newProducer(t, a, b)
	const n, concurrency = 2000, 16
	tokens := enqueue(t, prod, n, 1)

	w, err := worker.New(worker.Config{
		Servers: []string{a, b}, Queue: testQueue, Concurrency: concurrency,
		ReconnectMax: 200 * time.Millisecond, Logger: testLogger(t),
	}, newSender(t, apnsConfig(t, sim)), prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	waitFor(t, time.Minute, "some delivered", func() bool { return sim.Stats().Accepted >= n/8 })
	qa.Kill()
	killedAt := sim.Stats().Accepted
	waitFor(t, time.Minute, "delivery going on from the other server", func() bool { return sim.Stats().Accepted >= killedAt+100 })
	if sim.Stats().Accepted >= n {
		t.Fatal("everything delivered while a server was down: its items were not on it")
	}

	startQueuedProc(t, dirA, a) // same address and journal
	waitFor(t, time.Minute, "every token delivered", func() bool { return len(sim.Stats().Tokens) == n })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := w.Stats(); s.Held != 0 || s.InFlight != 0 {
		t.Errorf("after the run: %d reads held, %d items in flight; the lost connection's were not accounted for", s.Held, s.InFlight)
	}
	// The killed server's open reads come back at restart: the worker's
	// own in-flight pushes (taken, being pushed, pushed but not yet
	// confirmed, or confirmed without the END back), at most all it may
	// hold, --concurrency. A read whose confirm queued acknowledged never
	// comes back: END is sent only once the removal is in the journal.
	dups := checkAllDelivered(t, sim, tokens, concurrency)
	t.Logf("server killed after %d deliveries; %d duplicates", killedAt, dups)
	checkDrained(t, a, b)
}

// TestShutdownUnderLoad: SIGTERM while pushes are in flight. With a long
// enough --shutdown-timeout the worker finishes them, confirms them and
// exits 0; with a short one it gives the rest back. Either way every
// message is delivered or back on a server, with nothing left open.
func TestShutdownUnderLoad(t *testing.T) {
	tests := []struct {
		name      string
		latency   time.Duration
		timeout   time.Duration
		delivered int64 // SIGTERM once this many were delivered
		noOverlap bool  // in-flight pushes all finish: nothing delivered is also still queued
	}{
		{"in-flight finish", 300 * time.Millisecond, 20 * time.Second, 100, true},
		{"timeout gives back", 3 * time.Second, 300 * time.Millisecond, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, a := startQueuedProc(t, t.TempDir(), "127.0.0.1:0")
			_, b := startQueuedProc(t, t.TempDir(), "127.0.0.1:0")
			sim := startSim(t, apnssim.Config{Latency: tt.latency})
			prod := newProducer(t, a, b)
			const n = 1000
			tokens := enqueue(t, prod, n, 1)
			p := testproc.Start(t, workerArgs(t, sim, []string{a, b}, "--concurrency", "100",
				"--shutdown-timeout", tt.timeout.String(), "--admin-listen", "127.0.0.1:0")...)
			admin := "http://" + p.Addr("worker-admin") + "/metrics"
			waitFor(t, 30*time.Second, "pushes in flight", func() bool {
				return sim.Stats().Accepted >= tt.delivered && metricValue(t, admin, "kpush_worker_in_flight") > 0
			})
			start := time.Now()
			if err := p.Stop(tt.timeout + 20*time.Second); err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, p.Output())
			}
			if took := time.Since(start); took > tt.timeout+5*time.Second {
				t.Errorf("shutdown took %v with --shutdown-timeout %v", took, tt.timeout)
			}

			delivered := sim.Stats().Tokens
			queuedTok := map[string]bool{}
			for _, addr := range []string{a, b} {
				k := dialKestrel(t, addr)
				if open := k.queueStat(testQueue, "open_transactions"); open != 0 {
					t.Errorf("%s: %d reads still open after the worker exited", addr, open)
				}
				for _, raw := range k.drain(testQueue) {
					var m push.Message
					if err := json.Unmarshal(raw, &m); err != nil {
						t.Fatalf("queued item %q: %v", raw, err)
					}
					for _, tok := range m.Tokens {
						queuedTok[tok] = true
					}
				}
			}
			if len(queuedTok) == 0 {
				t.Fatal("nothing left on the servers: the worker finished everything before SIGTERM, the test proves nothing")
			}
			overlap := 0
			for _, tok := range tokens {
				if delivered[tok] == 0 && !queuedTok[tok] {
					t.Fatalf("token %s neither delivered nor back on a server: lost", tok)
				}
				if delivered[tok] > 0 && queuedTok[tok] {
					overlap++
				}
			}
			if tt.noOverlap && overlap != 0 {
				t.Errorf("%d tokens both delivered and given back: in-flight items were not finished and confirmed", overlap)
			}
			t.Logf("delivered %d, given back %d, both %d", len(delivered), len(queuedTok), overlap)
		})
	}
}

// metricValue scrapes one unlabelled series from a /metrics URL; -1 when
// absent.
func metricValue(t testing.TB, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			return f
		}
	}
	return -1
}

// TestBadCredentialsExitsNonZero: `kpush worker` with credentials APNs
// refuses logs the reason at ERROR, gives every item back and exits 1.
func TestBadCredentialsExitsNonZero(t *testing.T) {
	_, a := startQueuedProc(t, t.TempDir(), "127.0.0.1:0")
	sim := startSim(t, apnssim.Config{Topics: []string{"com.example.other"}})
	prod := newProducer(t, a)
	const n = 20
	enqueue(t, prod, n, 1)
	p := testproc.Start(t, workerArgs(t, sim, []string{a})...)
	err := p.Wait(30 * time.Second)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("exit: %v, want exit status 1\n%s", err, p.Output())
	}
	out := p.Output()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "TopicDisallowed") {
		t.Errorf("no ERROR line naming TopicDisallowed in:\n%s", out)
	}
	k := dialKestrel(t, a)
	if items, open := k.queueStat(testQueue, "items"), k.queueStat(testQueue, "open_transactions"); items != n || open != 0 {
		t.Errorf("after exit: %d items, %d open; want %d and 0", items, open, n)
	}
}

// TestWorkerCommandErrors: bad flags fail at once with a message naming
// what to fix, exit status 1.
func TestWorkerCommandErrors(t *testing.T) {
	key := writeAuthKey(t)
	creds := []string{"--auth-key", key, "--key-id", "ABC123DEFG", "--team-id", "DEF123GHIJ"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no servers", append([]string{"worker", "--servers", ""}, creds...), "--servers"},
		{"server not host:port", append([]string{"worker", "--servers", "127.0.0.1:1:2"}, creds...), "not host:port"},
		{"dns name without port", append([]string{"worker", "--servers", "dns:queued"}, creds...), "want dns:NAME:PORT"},
		{"bad resolve interval", append([]string{"worker", "--servers", "dns:queued:22133", "--resolve-interval", "-1s"}, creds...), "--resolve-interval"},
		{"server twice", append([]string{"worker", "--servers", "127.0.0.1:1,127.0.0.1:1"}, creds...), "listed twice"},
		{"bad queue", append([]string{"worker", "--servers", "127.0.0.1:1", "--queue", "a b"}, creds...), "queue name"},
		{"no credentials", []string{"worker", "--servers", "127.0.0.1:1"}, "credentials"},
		{"missing key file", []string{"worker", "--servers", "127.0.0.1:1", "--auth-key", "/nonexistent.p8", "--key-id", "ABC123DEFG", "--team-id", "DEF123GHIJ"}, "/nonexistent.p8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := testproc.Run(t, nil, tt.args...)
			if err == nil || !strings.Contains(err.Error(), "exit status 1") {
				t.Fatalf("exit: %v, want status 1", err)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q does not mention %q", stderr, tt.want)
			}
		})
	}
}
