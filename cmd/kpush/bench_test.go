package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
)

func TestLatencyHistQuantiles(t *testing.T) {
	// Against exact quantiles of a sorted sample: every answer within the
	// histogram's 1/64 relative error.
	rng := rand.New(rand.NewPCG(1, 2))
	var h latencyHist
	var vals []time.Duration
	for range 100000 {
		// Log-uniform from 1µs to 1s: every bucket group is exercised.
		d := time.Duration(math.Exp(rng.Float64()*math.Log(1e6)) * 1e3)
		vals = append(vals, d)
		h.record(d)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.001, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.quantile(q)
		if rel := math.Abs(float64(got-exact)) / float64(exact); rel > 1.0/64 {
			t.Errorf("q%.3f = %v, exact %v (off by %.2f%%)", q, got, exact, rel*100)
		}
	}
	if h.n != 100000 || time.Duration(h.max) != vals[len(vals)-1] {
		t.Errorf("n=%d max=%v", h.n, time.Duration(h.max))
	}
}

func TestLatencyHistBuckets(t *testing.T) {
	// Bucket indexes grow with the value, stay in range, and each bucket's
	// representative value maps back to it.
	prev := -1
	for _, v := range []uint64{0, 1, 63, 64, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64, math.MaxUint64} {
		i := histIndex(v)
		if i < prev || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d after %d (buckets %d)", v, i, prev, histBuckets)
		}
		if back := histIndex(histValue(i)); back != i {
			t.Errorf("histValue(%d) = %d lies in bucket %d", i, histValue(i), back)
		}
		prev = i
	}
	var a, b latencyHist
	a.record(time.Millisecond)
	b.record(3 * time.Millisecond)
	b.record(-time.Second) // clock step: counted as 0
	a.merge(&b)
	if a.n != 3 || a.quantile(1) != 3*time.Millisecond || a.quantile(0.1) != 0 {
		t.Errorf("merged: n=%d max=%v min=%v", a.n, a.quantile(1), a.quantile(0.1))
	}
	var empty latencyHist
	if empty.quantile(0.99) != 0 || empty.mean() != 0 {
		t.Errorf("empty histogram reports values")
	}
}

func TestBenchConfigErrors(t *testing.T) {
	ok := benchConfig{Addr: "127.0.0.1:1", Target: "kestrel", Mode: "set", Conns: []int{1}, Ops: 1,
		Size: 1, Queue: "q", Queues: 1, Pipeline: 1, Timeout: time.Second}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*benchConfig)
		want   string
	}{
		{"target", func(c *benchConfig) { c.Target = "redis" }, "--target"},
		{"mode", func(c *benchConfig) { c.Mode = "pop" }, "--mode"},
		{"reliable memcached", func(c *benchConfig) { c.Target, c.Mode = "memcached", "reliable" }, "needs --target kestrel"},
		{"no conns", func(c *benchConfig) { c.Conns = nil }, "--conns"},
		{"zero conns", func(c *benchConfig) { c.Conns = []int{10, 0} }, "--conns 0"},
		{"no end", func(c *benchConfig) { c.Ops, c.Duration = 0, 0 }, "--duration or --ops"},
		{"pipeline", func(c *benchConfig) { c.Pipeline = 0 }, "--pipeline"},
		{"queue name", func(c *benchConfig) { c.Queue = "a b" }, "--queue"},
		{"queues", func(c *benchConfig) { c.Queues = 0 }, "--queues"},
		{"negative rate", func(c *benchConfig) { c.Rate = -1 }, "--rate"},
		{"warmup with ops", func(c *benchConfig) { c.Warmup = time.Second }, "--warmup needs --duration"},
		{"rate with pipeline", func(c *benchConfig) { c.Rate, c.Pipeline = 100, 4 }, "do not go together"},
	}
	for _, tt := range tests {
		c := ok
		tt.mutate(&c)
		_, err := runBench(context.Background(), c, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
}

func TestBenchUnreachableServer(t *testing.T) {
	addr := testproc.ReserveAddr(t) // nothing listens there
	cfg := benchConfig{Addr: addr, Target: "kestrel", Mode: "set", Conns: []int{2}, Ops: 10,
		Size: 10, Queue: "q", Queues: 1, Pipeline: 1, Timeout: time.Second}
	_, err := runBench(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "connect to "+addr) {
		t.Errorf("err = %v, want a connect error naming %s", err, addr)
	}
}

// queueItems asks a queued server how many items a queue holds.
func queueItems(t *testing.T, addr, queue string) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	nc.Write([]byte("stats\r\n"))
	r := bufio.NewReader(nc)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		l = strings.TrimSpace(l)
		if l == "END" {
			return ""
		}
		if v, ok := strings.CutPrefix(l, "STAT queue_"+queue+"_items "); ok {
			return v
		}
	}
}

func TestBenchAgainstQueued(t *testing.T) {
	p := testproc.Start(t, "queued", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--sync", "never")
	addr := p.Addr("queued")
	quiet := slog.New(slog.DiscardHandler)

	tests := []struct {
		name      string
		mode      string
		conns     []int
		queues    int
		ops       int64
		pipeline  int
		wantHits  int64
		wantItems string // left in each queue afterwards
	}{
		{"set", "set", []int{2}, 1, 200, 1, 0, "200"},
		{"get", "get", []int{2}, 1, 200, 1, 200, "0"},
		{"setget", "setget", []int{2}, 1, 200, 1, 100, "0"},
		{"reliable", "reliable", []int{2}, 1, 200, 1, 200, "0"},
		{"pipelined set", "set", []int{1, 3}, 1, 90, 4, 0, "90"}, // each run flushes first
		{"get over 3 queues", "get", []int{6}, 3, 300, 1, 300, "0"},
		{"set over 3 queues", "set", []int{3}, 3, 300, 2, 0, "100"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := benchConfig{Addr: addr, Target: "kestrel", Mode: tt.mode, Conns: tt.conns, Ops: tt.ops,
				Size: 64, Queue: fmt.Sprintf("bench%d", i), Queues: tt.queues, Fill: -1, Pipeline: tt.pipeline,
				Flush: true, Timeout: 10 * time.Second}
			res, err := runBench(context.Background(), cfg, quiet)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != len(tt.conns) {
				t.Fatalf("%d results for %d connection counts", len(res), len(tt.conns))
			}
			for i, r := range res {
				if r.Conns != tt.conns[i] || r.Ops != tt.ops || r.Errors != 0 || r.Rejected != 0 || r.Hits != tt.wantHits {
					t.Errorf("result %+v: want %d ops, %d hits, no errors", r, tt.ops, tt.wantHits)
				}
				if r.Hits+r.Misses != countKind(r, "get") {
					t.Errorf("hits+misses %d != gets %d", r.Hits+r.Misses, countKind(r, "get"))
				}
			}
			for q := range tt.queues {
				name := cfg.queueName(q)
				if got := queueItems(t, addr, name); got != tt.wantItems {
					t.Errorf("queue %s holds %s items, want %s", name, got, tt.wantItems)
				}
			}
		})
	}
}

func countKind(r benchResult, kind string) int64 {
	for _, k := range r.Kinds {
		if k.Kind == kind {
			return k.Ops
		}
	}
	return 0
}

func TestBenchCommandJSONAndFairness(t *testing.T) {
	p := testproc.Start(t, "queued", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--sync", "never")
	addr := p.Addr("queued")
	out, stderr, err := testproc.Run(t, nil, "bench", "--addr", addr, "--mode", "set", "--conns", "2",
		"--ops", "100", "--size", "10", "--big-conns", "1", "--big-size", "65536", "--json")
	if err != nil {
		t.Fatalf("kpush bench: %v\n%s", err, stderr)
	}
	var doc struct {
		Runs []benchResult `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if len(doc.Runs) != 1 || doc.Runs[0].Ops != 100 || countKind(doc.Runs[0], "set") != 100 {
		t.Fatalf("runs = %+v", doc.Runs)
	}
	// The big writer ran beside the small ones and was reported apart.
	if countKind(doc.Runs[0], "bigset") < 1 {
		t.Errorf("no big sets reported: %+v", doc.Runs[0].Kinds)
	}
	if got := queueItems(t, addr, "bench"); got != "100" {
		t.Errorf("queue bench holds %s items, want 100", got)
	}

	table, _, err := testproc.Run(t, nil, "bench", "--addr", addr, "--mode", "setget", "--conns", "1,2",
		"--ops", "20", "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if !strings.HasPrefix(lines[0], "target    mode      conns    size kind") {
		t.Errorf("table header changed: %q", lines[0])
	}
	var rows int
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "kestrel   setget") {
			rows++
		}
	}
	if rows != 6 { // set, get, all for each of the two runs
		t.Errorf("want 6 table rows, got:\n%s", table)
	}
}

// startFloorServer serves the memcache requests kpush bench sends with no
// storage and no journal: a set is read and answered STORED, a get returns
// the connection's last set. It is the round-trip floor of this machine's
// loopback and of the bench client itself.
func startFloorServer(b testing.TB) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFloor(nc)
		}
	}()
	return ln.Addr().String()
}

func serveFloor(nc net.Conn) {
	defer nc.Close()
	r := bufio.NewReaderSize(nc, 64<<10)
	w := bufio.NewWriterSize(nc, 64<<10)
	var last []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		f := strings.Fields(string(line))
		switch {
		case len(f) == 5 && f[0] == "set":
			n, err := strconv.Atoi(f[4])
			if err != nil {
				return
			}
			last = make([]byte, n+2)
			if _, err := io.ReadFull(r, last); err != nil {
				return
			}
			w.WriteString("STORED\r\n")
		case len(f) == 2 && f[0] == "get" && last != nil:
			fmt.Fprintf(w, "VALUE %s 0 %d\r\n", f[1], len(last)-2)
			w.Write(last)
			w.WriteString("END\r\n")
		default:
			w.WriteString("END\r\n")
		}
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}

// BenchmarkSetGetFlood runs the set/get flood against a real queued
// (--sync never, then --sync always) and, in the same run, against the
// floor server; it reports queued's rate and its ratio to the floor, which
// is comparable across machines where absolute rates are not.
func BenchmarkSetGetFlood(b *testing.B) {
	quiet := slog.New(slog.DiscardHandler)
	for _, sync := range []string{"never", "always"} {
		for _, conns := range []int{1, 10, 50} {
			b.Run(fmt.Sprintf("sync=%s/conns=%d", sync, conns), func(b *testing.B) {
				floorAddr := startFloorServer(b)
				p := testproc.Start(b, "queued", "--listen", "127.0.0.1:0", "--data-dir", b.TempDir(), "--sync", sync)
				ops := int64(max(b.N, 2*conns))
				cfg := benchConfig{Target: "kestrel", Mode: "setget", Conns: []int{conns}, Ops: ops, Size: 100,
					Queue: "flood", Queues: 1, Fill: -1, Pipeline: 1, Timeout: 30 * time.Second}

				b.StopTimer()
				cfg.Addr, cfg.Flush = floorAddr, false
				floor, err := runBench(context.Background(), cfg, quiet)
				if err != nil {
					b.Fatal(err)
				}
				cfg.Addr, cfg.Flush = p.Addr("queued"), true
				b.StartTimer()
				res, err := runBench(context.Background(), cfg, quiet)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if res[0].Errors != 0 || res[0].Hits != ops/2 {
					b.Fatalf("queued run: %+v", res[0])
				}
				b.ReportMetric(res[0].OpsPerSec, "req/s")
				b.ReportMetric(res[0].OpsPerSec/floor[0].OpsPerSec, "ratio_to_floor")
				b.ReportMetric(res[0].Kinds[len(res[0].Kinds)-1].P99US, "p99_us")
			})
		}
	}
}

func TestOpShares(t *testing.T) {
	tests := []struct {
		ops   int64
		n     int
		pairs bool
		want  []int64
	}{
		{10, 3, false, []int64{4, 3, 3}},
		{10, 3, true, []int64{4, 4, 2}},
		{11, 3, true, []int64{5, 4, 2}}, // the odd request goes to the first
		{2, 4, false, []int64{1, 1, 0, 0}},
		{0, 2, true, []int64{0, 0}},
	}
	for _, tt := range tests {
		if got := opShares(tt.ops, tt.n, tt.pairs); !slices.Equal(got, tt.want) {
			t.Errorf("opShares(%d, %d, %v) = %v, want %v", tt.ops, tt.n, tt.pairs, got, tt.want)
		}
	}
}

func TestBenchOpenLoopRate(t *testing.T) {
	p := testproc.Start(t, "queued", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--sync", "never")
	// 200 requests at 2000/s over 4 connections are scheduled over 100 ms:
	// the run cannot end sooner, whatever the server's speed.
	cfg := benchConfig{Addr: p.Addr("queued"), Target: "kestrel", Mode: "setget", Conns: []int{4}, Ops: 200,
		Size: 10, Queue: "paced", Queues: 1, Fill: -1, Pipeline: 1, Rate: 2000, Flush: true, Timeout: 10 * time.Second}
	res, err := runBench(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.Ops != 200 || r.Hits != 100 || r.Errors != 0 || r.Rate != 2000 {
		t.Fatalf("result %+v", r)
	}
	// The last request of each connection is scheduled 49 intervals of
	// 2 ms after the start (plus the stagger).
	if r.Elapsed < 0.098 {
		t.Errorf("elapsed %.3fs: requests were sent ahead of the schedule", r.Elapsed)
	}
	if got := queueItems(t, p.Addr("queued"), "paced"); got != "0" {
		t.Errorf("paced holds %s items", got)
	}
}

func TestBenchWarmupRecordsNothing(t *testing.T) {
	// Replies that arrive while the warmup runs are read but not counted.
	cfg := benchConfig{Addr: startFloorServer(t), Target: "kestrel", Mode: "setget", Size: 5,
		Queue: "w", Queues: 1, Pipeline: 1, Timeout: 10 * time.Second}
	c, err := dialBench(context.Background(), &cfg, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	c.measuring = new(atomic.Bool)
	if err := c.batch([]benchKind{kindSet, kindGet}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if c.ops[kindSet]+c.ops[kindGet] != 0 || c.hits != 0 || c.hist[kindGet].n != 0 {
		t.Fatalf("warmup requests were counted: ops %v hits %d", c.ops, c.hits)
	}
	c.measuring.Store(true)
	if err := c.batch([]benchKind{kindSet, kindGet}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if c.ops[kindSet] != 1 || c.ops[kindGet] != 1 || c.hits != 1 || c.hist[kindGet].n != 1 {
		t.Fatalf("measured requests: ops %v hits %d", c.ops, c.hits)
	}
}
