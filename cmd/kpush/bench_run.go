package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// runBenchOnce is one run with nconns connections (plus cfg.BigConns):
// prepare the queues, connect, run every connection's loop until the
// duration or the ops are spent, and sum up what the connections measured.
func runBenchOnce(ctx context.Context, cfg benchConfig, nconns int, log *slog.Logger) (benchResult, error) {
	if err := prepareBench(ctx, &cfg, nconns); err != nil {
		return benchResult{}, err
	}
	conns := make([]*benchConn, 0, nconns+cfg.BigConns)
	defer func() {
		for _, c := range conns {
			c.conn.Close()
		}
	}()
	for i := range nconns + cfg.BigConns {
		c, err := dialBench(ctx, &cfg, i%nconns, i >= nconns)
		if err != nil {
			return benchResult{}, err
		}
		conns = append(conns, c)
	}
	r := newBenchRun(ctx, &cfg, conns, nconns)
	defer r.cancel()
	elapsed := r.run(log)
	if cfg.Mode == "reliable" {
		// Confirm the last open read of every connection so a following
		// run starts from a clean queue.
		for i, c := range conns[:nconns] {
			if _, err := c.simple("get " + c.key + "/close"); err != nil {
				r.fail(i, fmt.Errorf("close: %w", err))
			}
		}
	}
	res := summarize(&cfg, conns, nconns, elapsed)
	if cfg.Rate > 0 && res.OpsPerSec < 0.95*cfg.Rate {
		// The latencies still count from the schedule, so they show it.
		log.Warn("bench fell behind the requested rate", "conns", nconns, "rate", cfg.Rate, "achieved", res.OpsPerSec)
	}
	return res, r.err()
}

// benchRun is one run in progress: the connections' loops, the first
// error, and the counters the progress lines read.
type benchRun struct {
	cfg    *benchConfig
	conns  []*benchConn // nconns main connections, then the big ones
	nconns int
	ctx    context.Context // ends the main connections' loops
	cancel context.CancelFunc

	// A batch is Pipeline requests (sent as one group); in setget mode an
	// even number, so a connection always follows its set with the get
	// that takes the item back out and the queue ends as it began.
	batchSize int
	// With --ops every connection has a fixed share (like memtier's
	// requests per client), so a get run's fill matches what each queue's
	// readers take.
	shares []int64
	// Open loop (--rate): connection i sends its k-th request at
	// start + (k + i/nconns) * interval.
	interval time.Duration
	start    time.Time
	// With --warmup nothing is recorded until the warmup is over, and the
	// run's elapsed time counts from then.
	measureStart atomic.Int64 // unix ns

	answered      atomic.Int64 // for the progress lines
	bigStop       chan struct{}
	mainWG, bigWG sync.WaitGroup
	errMu         sync.Mutex
	firstErr      error
}

func newBenchRun(ctx context.Context, cfg *benchConfig, conns []*benchConn, nconns int) *benchRun {
	r := &benchRun{cfg: cfg, conns: conns, nconns: nconns, batchSize: cfg.Pipeline, bigStop: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(ctx)
	if cfg.Ops == 0 {
		var cancelRun context.CancelFunc
		r.ctx, cancelRun = context.WithTimeout(r.ctx, cfg.Warmup+cfg.Duration)
		stop := r.cancel
		r.cancel = func() { cancelRun(); stop() }
	}
	if cfg.Mode == "setget" {
		r.batchSize += r.batchSize % 2
	}
	if cfg.Ops > 0 {
		r.shares = opShares(cfg.Ops, nconns, cfg.Mode == "setget")
	}
	if cfg.Rate > 0 {
		r.batchSize = 1
		r.interval = time.Duration(float64(time.Second) * float64(nconns) / cfg.Rate)
	}
	return r
}

// fail records the first error of the run and ends it.
func (r *benchRun) fail(i int, err error) {
	r.errMu.Lock()
	if r.firstErr == nil {
		r.firstErr = fmt.Errorf("connection %d: %w", i, err)
	}
	r.errMu.Unlock()
	r.cancel()
}

func (r *benchRun) err() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.firstErr
}

// run starts every connection's loop, reports progress once a second, and
// returns once the main connections are done (the big ones are stopped
// then) with the measured time.
func (r *benchRun) run(log *slog.Logger) time.Duration {
	r.start = time.Now()
	r.measureStart.Store(r.start.UnixNano())
	var measuring *atomic.Bool
	if r.cfg.Warmup > 0 {
		measuring = new(atomic.Bool)
		warm := time.AfterFunc(r.cfg.Warmup, func() {
			r.measureStart.Store(time.Now().UnixNano())
			measuring.Store(true)
		})
		defer warm.Stop()
	}
	for _, c := range r.conns {
		c.measuring = measuring
	}
	for i, c := range r.conns {
		big := i >= r.nconns
		wg := &r.mainWG
		if big {
			wg = &r.bigWG
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(i, c, big)
		}()
	}
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.progress(log)
	}()

	r.mainWG.Wait()
	elapsed := time.Since(time.Unix(0, r.measureStart.Load()))
	close(r.bigStop)
	r.bigWG.Wait()
	r.cancel()
	<-progressDone
	return elapsed
}

// loop sends connection i's batches until the run ends (a big connection:
// until the main ones are done), its --ops share is spent or it fails.
func (r *benchRun) loop(i int, c *benchConn, big bool) {
	kinds := make([]benchKind, 0, r.batchSize)
	left := int64(-1) // unlimited
	if r.shares != nil && !big {
		left = r.shares[i]
	}
	var scheduled time.Time
	if r.interval > 0 && !big {
		scheduled = r.start.Add(r.interval * time.Duration(i) / time.Duration(r.nconns))
	}
	var pace *time.Timer
	for {
		if big {
			select {
			case <-r.bigStop:
				return
			default:
			}
		} else if r.ctx.Err() != nil {
			return
		}
		n := 1
		if !big {
			n = r.batchSize
			if left >= 0 {
				n = int(min(int64(n), left))
				left -= int64(n)
			}
		}
		if n == 0 {
			return
		}
		kinds = kinds[:0]
		for range n {
			kinds = append(kinds, c.kindFor(big))
		}
		if !scheduled.IsZero() {
			if wait := time.Until(scheduled); wait > 0 {
				if pace == nil {
					pace = time.NewTimer(wait)
				} else {
					pace.Reset(wait)
				}
				select {
				case <-pace.C:
				case <-r.ctx.Done():
					return
				}
			}
		}
		err := c.batch(kinds, scheduled)
		if !scheduled.IsZero() {
			scheduled = scheduled.Add(r.interval)
		}
		if err != nil {
			if r.ctx.Err() == nil || big {
				r.fail(i, err)
			}
			return
		}
		if !big {
			r.answered.Add(int64(n))
		}
	}
}

// progress logs the requests answered, once a second, until the run ends.
func (r *benchRun) progress(log *slog.Logger) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-r.ctx.Done():
			return
		case now := <-tick.C:
			n := r.answered.Load()
			log.Info("bench progress", "conns", r.nconns, "elapsed", now.Sub(r.start).Round(time.Second).String(),
				"ops", n, "ops_per_sec", n-last)
			last = n
		}
	}
}

// summarize merges the connections' counts and histograms into the run's
// result.
func summarize(cfg *benchConfig, conns []*benchConn, nconns int, elapsed time.Duration) benchResult {
	res := benchResult{Target: cfg.Target, Mode: cfg.Mode, Conns: nconns, Size: cfg.Size,
		Pipeline: cfg.Pipeline, Rate: cfg.Rate, Elapsed: elapsed.Seconds()}
	var hists [numKinds]latencyHist
	var ops [numKinds]int64
	for _, c := range conns {
		for k := range numKinds {
			hists[k].merge(&c.hist[k])
			ops[k] += c.ops[k]
		}
		res.Hits += c.hits
		res.Misses += c.misses
		res.Rejected += c.rejected
		res.Errors += c.errors
	}
	res.Ops = ops[kindSet] + ops[kindGet]
	res.OpsPerSec = float64(res.Ops) / elapsed.Seconds()
	var all latencyHist
	used := 0
	for k := range numKinds {
		if ops[k] == 0 {
			continue
		}
		res.Kinds = append(res.Kinds, kindStat(kindNames[k], &hists[k], elapsed))
		if k == kindSet || k == kindGet {
			all.merge(&hists[k])
			used++
		}
	}
	if used > 1 {
		res.Kinds = append(res.Kinds, kindStat("all", &all, elapsed))
	}
	return res
}

// prepare flushes and fills the queues (kestrel) or sets each key
// (memcached) before the clock starts.
func prepareBench(ctx context.Context, cfg *benchConfig, conns int) error {
	if cfg.Target == "memcached" {
		for i := range conns {
			c, err := dialBench(ctx, cfg, i, false)
			if err != nil {
				return err
			}
			err = c.fill(1)
			c.conn.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	if cfg.BigConns > 0 && cfg.Flush {
		if err := flushBenchQueue(ctx, cfg, 0, true); err != nil {
			return err
		}
	}
	queues := min(cfg.Queues, conns)
	// By default a get run gets exactly the items its connections will
	// take: each queue receives the shares of the connections reading it.
	perQueue := make([]int64, queues)
	if cfg.Fill >= 0 {
		for q := range queues {
			perQueue[q] = cfg.Fill / int64(queues)
			if int64(q) < cfg.Fill%int64(queues) {
				perQueue[q]++
			}
		}
	} else if cfg.Ops > 0 {
		for i, share := range opShares(cfg.Ops, conns, cfg.Mode == "setget") {
			perQueue[i%queues] += share
		}
	}
	if cfg.Flush {
		for q := range queues {
			if err := flushBenchQueue(ctx, cfg, q, false); err != nil {
				return err
			}
		}
	}
	if cfg.Mode == "get" || cfg.Mode == "reliable" {
		return fillQueues(ctx, cfg, perQueue)
	}
	return nil
}

// flushBenchQueue empties the queue of connection i (the big queue if big).
func flushBenchQueue(ctx context.Context, cfg *benchConfig, i int, big bool) error {
	c, err := dialBench(ctx, cfg, i, big)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	if reply, err := c.simple("flush " + c.key); err != nil || reply != "END" {
		return fmt.Errorf("flush %s: reply %q, %v", c.key, reply, err)
	}
	return nil
}

// opShares splits ops requests over n connections as evenly as possible;
// with pairs, in whole set+get pairs (an odd last request goes to the
// first connection).
func opShares(ops int64, n int, pairs bool) []int64 {
	shares := make([]int64, n)
	unit := int64(1)
	if pairs {
		unit = 2
	}
	units := ops / unit
	for i := range shares {
		shares[i] = units / int64(n) * unit
		if int64(i) < units%int64(n) {
			shares[i] += unit
		}
	}
	shares[0] += ops - units*unit
	return shares
}

// fillQueues puts perQueue[q] items on queue q through several
// connections per queue at once: a server that commits each connection's
// sets one after another still shares fsyncs across connections, so the
// fill does not take one fsync per item.
func fillQueues(ctx context.Context, cfg *benchConfig, perQueue []int64) error {
	const fillConns = 16
	queues := len(perQueue)
	per := max(1, fillConns/queues)
	k := queues * per
	var wg sync.WaitGroup
	errs := make([]error, k)
	for j := range k {
		q, n := j%queues, perQueue[j%queues]
		share := n / int64(per)
		if int64(j/queues) < n%int64(per) {
			share++
		}
		if share == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialBench(ctx, cfg, q, false)
			if err != nil {
				errs[j] = err
				return
			}
			defer c.conn.Close()
			errs[j] = c.fill(share)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
