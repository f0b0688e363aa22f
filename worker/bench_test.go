package worker_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
	"github.com/kpush/kpush/worker"
)

// latencyPusher wraps the real sender and records enqueue-to-delivery
// latency of every delivered push.
type latencyPusher struct {
	worker.Pusher
	mu      sync.Mutex
	lat     []time.Duration
	reasons map[string]int // failures by reason or error
}

func (l *latencyPusher) Send(ctx context.Context, msg *push.Message, tok string) push.Result {
	res := l.Pusher.Send(ctx, msg, tok)
	if res.Class != push.Delivered && l.reasons != nil {
		l.mu.Lock()
		l.reasons[fmt.Sprintf("%s %d %s %v", res.Class, res.Status, res.Reason, res.Err)]++
		l.mu.Unlock()
	}
	if res.Class == push.Delivered && msg.EnqueuedAt > 0 {
		d := time.Since(time.UnixMicro(msg.EnqueuedAt * 1000))
		l.mu.Lock()
		l.lat = append(l.lat, d)
		l.mu.Unlock()
	}
	return res
}

func (l *latencyPusher) percentile(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lat) == 0 {
		return 0
	}
	s := slices.Clone(l.lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkEndToEnd measures notifications per second through the whole
// pipeline in one process: producers → two queued servers (journaled,
// fsync always, group commit) → worker → APNs simulator over HTTP/2 TLS.
// The producers enqueue while the worker delivers. Reference: the same
// sender pushing the same number of notifications straight to the
// simulator with the same concurrency, measured in the same run;
// e2e/direct is the share of raw APNs throughput the queue pipeline keeps.
//
// Sub-benchmark "pipeline" enqueues while the worker delivers (the
// producers' rate can be the limit); "drain" fills the queues first and
// times only the worker emptying them.
//
//	go test -run '^$' -bench EndToEnd -benchtime 20000x ./worker
func BenchmarkEndToEnd(b *testing.B) {
	b.Run("pipeline", func(b *testing.B) { benchEndToEnd(b, false) })
	b.Run("drain", func(b *testing.B) { benchEndToEnd(b, true) })
}

func benchEndToEnd(b *testing.B, prefill bool) {
	const concurrency, producers = 1000, 128
	a, c := startQueued(b, true), startQueued(b, true)
	sim := startSim(b, apnssim.Config{})
	sender := newSender(b, apnsConfig(b, sim))
	n := b.N

	// Reference: direct pushes at the same concurrency.
	msg := &push.Message{ID: "ref", Topic: "com.example.app", Alert: &push.Alert{Text: "hello"}}
	self := os.Getpid()
	directCPU := cpuTime(b, self)
	direct := func() float64 {
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < concurrency; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					if r := sender.Send(context.Background(), msg, token(1_000_000+int(i))); r.Class != push.Delivered {
						b.Errorf("direct push: %v %s %v", r.Class, r.Reason, r.Err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return float64(n) / time.Since(start).Seconds()
	}()
	directCPU = cpuTime(b, self) - directCPU
	base := sim.Stats().Accepted

	prod := newProducer(b, a, c)
	lp := &latencyPusher{Pusher: sender, reasons: map[string]int{}}
	w, err := worker.New(worker.Config{Servers: []string{a, c}, Queue: testQueue, Concurrency: concurrency, SummaryInterval: -1, Logger: testLogger(b)}, lp, prod)
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	cpu0 := cpuTime(b, self)
	var stop func() error
	if !prefill {
		b.ResetTimer()
		stop = runWorker(b, w)
	}
	for g := 0; g < producers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				m := &push.Message{ID: "b" + strconv.Itoa(int(i)), Tokens: []string{token(int(i))}, Topic: "com.example.app", Alert: &push.Alert{Text: "hello"}}
				if err := prod.Enqueue(context.Background(), testQueue, m); err != nil {
					b.Errorf("enqueue: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	enqueued := time.Since(start)
	if prefill {
		b.ResetTimer()
		start = time.Now()
		cpu0 = cpuTime(b, self)
		stop = runWorker(b, w)
	}
	// Poll the worker's atomic counter: the simulator's Stats copies a
	// map of every token, too costly to poll during the measurement.
	waitFor(b, 10*time.Minute, "every notification delivered", func() bool {
		if el := time.Since(start); el > 30*time.Second && el%(10*time.Second) < 10*time.Millisecond {
			// Straight to stderr: a benchmark's log shows only at its end.
			lp.mu.Lock()
			fmt.Fprintf(os.Stderr, "after %v: %+v; failures %v\n", el, w.Stats(), lp.reasons)
			lp.mu.Unlock()
			for _, addr := range []string{a, c} {
				st := dialKestrel(b, addr).stats()
				fmt.Fprintf(os.Stderr, "%s\n", fmt.Sprintf("%s: push items=%s open=%s total=%s; push_retry items=%s; push_failed items=%s",
					addr, st["queue_push_items"], st["queue_push_open_transactions"], st["queue_push_total_items"],
					st["queue_push_retry_items"], st["queue_push_failed_items"]))
			}
		}
		return w.Stats().Delivered >= uint64(n)
	})
	el := time.Since(start)
	cpu := cpuTime(b, self) - cpu0
	b.StopTimer()
	if err := stop(); err != nil {
		b.Fatal(err)
	}
	if got := sim.Stats().Accepted - base; got < int64(n) {
		b.Fatalf("simulator accepted %d, want %d", got, n)
	}
	if s := w.Stats(); s.Retries+s.Requeued > 0 {
		b.Logf("transient failures during the run: %d retries, %d re-queued: %v", s.Retries, s.Requeued, lp.reasons)
	}
	rate := float64(n) / el.Seconds()
	b.ReportMetric(rate, "notif/s")
	b.ReportMetric(float64(n)/enqueued.Seconds(), "enqueued/s")
	b.ReportMetric(direct, "direct-notif/s")
	b.ReportMetric(rate/direct, "e2e/direct")
	b.ReportMetric(float64(lp.percentile(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lp.percentile(0.99).Microseconds())/1000, "p99-ms")
	// CPU per notification does not depend on what else the machine
	// runs; 2 cores divided by it is the rate this pipeline could reach
	// with both cores to itself. The direct pushes' CPU is the reference.
	b.ReportMetric(cpu.Seconds()*10000/float64(n), "cpu-s/10k")
	b.ReportMetric(directCPU.Seconds()*10000/float64(n), "direct-cpu-s/10k")
	b.ReportMetric(2*float64(n)/cpu.Seconds(), "notif/s-on-2-idle-cores")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIdleLatency measures enqueue-to-delivery latency when the queue
// is idle: one message at a time, each enqueued after the previous one was
// delivered, so every one arrives while the worker waits in monitor.
//
//	go test -run '^$' -bench IdleLatency -benchtime 200x ./worker
func BenchmarkIdleLatency(b *testing.B) {
	a := startQueued(b, true)
	sim := startSim(b, apnssim.Config{})
	sender := newSender(b, apnsConfig(b, sim))
	prod := newProducer(b, a)
	lp := &latencyPusher{Pusher: sender}
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, SummaryInterval: -1, Logger: testLogger(b)}, lp, prod)
	if err != nil {
		b.Fatal(err)
	}
	stop := runWorker(b, w)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := &push.Message{ID: "i" + strconv.Itoa(i), Tokens: []string{token(i)}, Topic: "com.example.app", Alert: &push.Alert{Text: "hello"}, EnqueuedAt: time.Now().UnixMilli()}
		if err := prod.Enqueue(context.Background(), testQueue, m); err != nil {
			b.Fatal(err)
		}
		waitFor(b, 10*time.Second, "delivery", func() bool { return w.Stats().Delivered >= uint64(i+1) })
	}
	b.StopTimer()
	if err := stop(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(lp.percentile(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lp.percentile(0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkEndToEndProcesses is BenchmarkEndToEnd/pipeline with every
// component a separate process as in production: two `kpush queued`
// (fsync always), `kpush worker --concurrency 1000`, and the simulator
// (in the benchmark process, with the producers). Delivery is read from
// the worker's /metrics.
//
//	go test -run '^$' -bench EndToEndProcesses -benchtime 20000x ./worker
func BenchmarkEndToEndProcesses(b *testing.B) {
	const producers = 128
	qa, a := startQueuedProc(b, b.TempDir(), "127.0.0.1:0")
	qc, c := startQueuedProc(b, b.TempDir(), "127.0.0.1:0")
	sim := startSim(b, apnssim.Config{})
	prod := newProducer(b, a, c)
	n := b.N
	p := testproc.Start(b, workerArgs(b, sim, []string{a, c}, "--concurrency", "1000", "--admin-listen", "127.0.0.1:0", "--pprof")...)
	metrics := "http://" + p.Addr("worker-admin") + "/metrics"
	pids := map[string]int{"queued": qa.PID(), "queued2": qc.PID(), "worker": p.PID(), "producers+sim": os.Getpid()}
	cpu0 := map[string]time.Duration{}
	for name, pid := range pids {
		cpu0[name] = cpuTime(b, pid)
	}
	// KPUSH_WORKER_PROFILE=file saves a 5 s CPU profile of the worker
	// process taken during the run.
	profDone := make(chan struct{})
	if path := os.Getenv("KPUSH_WORKER_PROFILE"); path != "" {
		go func() {
			defer close(profDone)
			resp, err := http.Get(strings.TrimSuffix(metrics, "/metrics") + "/debug/pprof/profile?seconds=5")
			if err != nil {
				b.Errorf("profile: %v", err)
				return
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				b.Errorf("profile: %v", err)
			}
		}()
	} else {
		close(profDone)
	}
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < producers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				m := &push.Message{ID: "p" + strconv.Itoa(int(i)), Tokens: []string{token(int(i))}, Topic: "com.example.app", Alert: &push.Alert{Text: "hello"}}
				if err := prod.Enqueue(context.Background(), testQueue, m); err != nil {
					b.Errorf("enqueue: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	enqueued := time.Since(start)
	deadline := time.Now().Add(10 * time.Minute)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for metricValue(b, metrics, "kpush_worker_delivered_total") < float64(n) {
		if time.Now().After(deadline) {
			b.Fatal("not everything delivered within 10 minutes")
		}
		<-tick.C
	}
	el := time.Since(start)
	b.StopTimer()
	// Where the time goes: CPU seconds each process used per 10,000
	// notifications (the two queued servers are summed).
	used := map[string]time.Duration{}
	for name, pid := range pids {
		used[strings.TrimSuffix(name, "2")] += cpuTime(b, pid) - cpu0[name]
	}
	for name, d := range used {
		b.ReportMetric(d.Seconds()*10000/float64(n), "cpu-s/10k-"+name)
	}
	<-profDone
	if err := p.Stop(time.Minute); err != nil {
		b.Fatal(err)
	}
	if got := sim.Stats().Accepted; got < int64(n) {
		b.Fatalf("simulator accepted %d, want %d", got, n)
	}
	b.ReportMetric(float64(n)/el.Seconds(), "notif/s")
	b.ReportMetric(float64(n)/enqueued.Seconds(), "enqueued/s")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the user+system CPU time a process has used so far, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s).
func cpuTime(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatalf("cpu time of %d: %v", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	rest := string(raw[strings.LastIndexByte(string(raw), ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
