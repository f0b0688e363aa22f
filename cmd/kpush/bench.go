package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
)

// benchConfig describes one `kpush bench` invocation; each entry of Conns
// is a separate run.
type benchConfig struct {
	Addr     string
	Target   string // "kestrel" (queued or Kestrel) or "memcached"
	Mode     string // set, get, setget or reliable
	Conns    []int
	Duration time.Duration // per run; ignored when Ops > 0
	Ops      int64         // total requests per run across all connections
	Size     int           // payload bytes of each set
	Queue    string        // queue name (kestrel) or key prefix (memcached)
	Queues   int           // spread connections over this many queues
	Fill     int64         // items put in before a get/reliable run
	Pipeline int           // requests written before reading replies; 1 = off
	Rate     float64       // open loop: total requests/s to send on schedule; 0 = closed loop
	Warmup   time.Duration // with Duration: run this long first without recording
	BigConns int           // extra connections alternating a set of BigSize bytes and a get on <Queue>_big, timed apart
	BigSize  int
	Flush    bool          // flush the queues before each kestrel run
	Timeout  time.Duration // longest wait for one batch of replies
}

var benchModes = map[string]bool{"set": true, "get": true, "setget": true, "reliable": true}

// benchKind tells the requests of a run apart in the results.
type benchKind int

const (
	kindSet benchKind = iota
	kindGet
	kindBigSet
	kindBigGet
	numKinds
)

var kindNames = [numKinds]string{"set", "get", "bigset", "bigget"}

// benchResult is the outcome of one run, as printed and as --json.
type benchResult struct {
	Target    string          `json:"target"`
	Mode      string          `json:"mode"`
	Conns     int             `json:"conns"`
	Size      int             `json:"size"`
	Pipeline  int             `json:"pipeline"`
	Rate      float64         `json:"target_rate,omitempty"` // --rate
	Elapsed   float64         `json:"elapsed_s"`
	Ops       int64           `json:"ops"` // requests answered, big sets excluded
	OpsPerSec float64         `json:"ops_per_sec"`
	Hits      int64           `json:"hits"`
	Misses    int64           `json:"misses"`
	Rejected  int64           `json:"rejected"` // NOT_STORED
	Errors    int64           `json:"errors"`   // ERROR, CLIENT_ERROR, SERVER_ERROR, bad replies
	Kinds     []benchKindStat `json:"kinds"`
}

// benchKindStat summarises the latencies of one kind of request, in
// microseconds.
type benchKindStat struct {
	Kind      string  `json:"kind"`
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	MeanUS    float64 `json:"mean_us"`
	P50US     float64 `json:"p50_us"`
	P99US     float64 `json:"p99_us"`
	P999US    float64 `json:"p999_us"`
	MaxUS     float64 `json:"max_us"`
}

var (
	benchCfg     benchConfig
	benchServers []string
	benchJSON    bool
	benchQuiet   bool
)

var benchCmd = &cobra.Command{
	Use:   "bench",
	Short: "Load-test queued, Kestrel or memcached over the memcache text protocol",
	Long: `bench opens N TCP connections to a server and floods it with requests,
reporting throughput and latency percentiles (p50, p99, p99.9) per request
kind. Modes:

  set       every connection sends sets
  get       every connection sends gets (after --fill items are put in)
  setget    every connection alternates a set and a get (the set/get flood)
  reliable  get q/close/open in a loop (after --fill items), as a worker does

With --target memcached the same loop shapes run against memcached: each
connection sets and gets its own key.  --conns 1,10,50,200 runs once per
count. Progress goes to stderr once a second; the table (or --json) to
stdout. The output format is documented in docs/benchmarks.md.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		servers, err := serverAddrs(benchServers)
		if err != nil {
			return err
		}
		if len(servers) > 1 {
			return errors.New("--servers: bench loads one server at a time; give one host:port")
		}
		benchCfg.Addr = servers[0]
		ctx, cancel := signalContext()
		defer cancel()
		log := slog.Default()
		if benchQuiet {
			log = slog.New(slog.DiscardHandler)
		}
		results, err := runBench(ctx, benchCfg, log)
		if len(results) > 0 {
			if benchJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(map[string]any{"runs": results}); jerr != nil {
					return jerr
				}
			} else {
				writeBenchTable(cmd.OutOrStdout(), results)
			}
		}
		return err
	},
}

func init() {
	f := benchCmd.Flags()
	addServersFlag(f, &benchServers, "the server to load (one)")
	f.StringVar(&benchCfg.Target, "target", "kestrel", "server kind: kestrel (queued or Kestrel) or memcached")
	f.StringVar(&benchCfg.Mode, "mode", "setget", "set, get, setget or reliable")
	f.IntSliceVar(&benchCfg.Conns, "conns", []int{10}, "connections; a list (1,10,50,200) runs once per count")
	f.DurationVar(&benchCfg.Duration, "duration", 10*time.Second, "length of each run (ignored with --ops)")
	f.Int64Var(&benchCfg.Ops, "ops", 0, "total requests per run across all connections (0: run for --duration)")
	f.IntVar(&benchCfg.Size, "size", 100, "payload bytes per set")
	f.StringVar(&benchCfg.Queue, "queue", "bench", "queue name (memcached: key prefix)")
	f.IntVar(&benchCfg.Queues, "queues", 1, "spread connections round-robin over this many queues (<queue>_<i>)")
	f.Int64Var(&benchCfg.Fill, "fill", -1, "items to put in before a get or reliable run (-1: --ops, or none)")
	f.IntVar(&benchCfg.Pipeline, "pipeline", 1, "requests per connection written before reading the replies (1: no pipelining)")
	f.DurationVar(&benchCfg.Warmup, "warmup", 0, "run this long before measuring (with --duration; not counted in it)")
	f.Float64Var(&benchCfg.Rate, "rate", 0, "open loop: send this many requests/s in total on a fixed schedule, latency counted from each request's scheduled time (0: closed loop, as fast as replies come)")
	f.IntVar(&benchCfg.BigConns, "big-conns", 0, "extra connections alternating a --big-size set and a get on <queue>_big, timed apart (fairness test)")
	f.IntVar(&benchCfg.BigSize, "big-size", 8<<20, "payload bytes of each big set")
	f.BoolVar(&benchCfg.Flush, "flush", true, "flush the queues before each run (kestrel target)")
	f.DurationVar(&benchCfg.Timeout, "timeout", 30*time.Second, "give up on a server that answers nothing for this long")
	f.BoolVar(&benchJSON, "json", false, "print the results as JSON")
	f.BoolVar(&benchQuiet, "quiet", false, "no progress lines on stderr")
	aliasFlags(benchCmd, map[string]string{"addr": "servers"})
	rootCmd.AddCommand(benchCmd)
}

func (cfg *benchConfig) validate() error {
	switch {
	case cfg.Target != "kestrel" && cfg.Target != "memcached":
		return fmt.Errorf("--target %q: want kestrel or memcached", cfg.Target)
	case !benchModes[cfg.Mode]:
		return fmt.Errorf("--mode %q: want set, get, setget or reliable", cfg.Mode)
	case cfg.Target == "memcached" && cfg.Mode == "reliable":
		return errors.New("--mode reliable needs --target kestrel: memcached has no open reads")
	case len(cfg.Conns) == 0:
		return errors.New("--conns: give at least one connection count")
	case cfg.Ops < 0:
		return fmt.Errorf("--ops %d: want 0 or more", cfg.Ops)
	case cfg.Ops == 0 && cfg.Duration <= 0:
		return errors.New("give --duration or --ops")
	case cfg.Size < 0 || cfg.BigSize < 0:
		return errors.New("--size and --big-size must not be negative")
	case cfg.Queues < 1:
		return fmt.Errorf("--queues %d: want 1 or more", cfg.Queues)
	case cfg.Pipeline < 1:
		return fmt.Errorf("--pipeline %d: want 1 or more", cfg.Pipeline)
	case cfg.Warmup < 0 || cfg.Warmup > 0 && cfg.Ops > 0:
		return errors.New("--warmup needs --duration (not --ops) and must not be negative")
	case cfg.Rate < 0:
		return fmt.Errorf("--rate %g: want 0 (closed loop) or more", cfg.Rate)
	case cfg.Rate > 0 && cfg.Pipeline > 1:
		return errors.New("--rate and --pipeline do not go together: an open-loop run sends each request at its own time")
	case cfg.BigConns < 0:
		return fmt.Errorf("--big-conns %d: want 0 or more", cfg.BigConns)
	case cfg.Timeout <= 0:
		return errors.New("--timeout must be positive")
	case cfg.Queue == "" || strings.ContainsAny(cfg.Queue, " \r\n\t/"):
		return fmt.Errorf("--queue %q: want a name without spaces or '/'", cfg.Queue)
	}
	for _, n := range cfg.Conns {
		if n < 1 {
			return fmt.Errorf("--conns %d: want 1 or more", n)
		}
	}
	return nil
}

// runBench runs one benchmark per connection count and returns the results
// of the runs that finished; a cancelled ctx ends the current run early and
// its partial result is still returned.
func runBench(ctx context.Context, cfg benchConfig, log *slog.Logger) ([]benchResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var results []benchResult
	for _, conns := range cfg.Conns {
		if ctx.Err() != nil {
			break
		}
		r, err := runBenchOnce(ctx, cfg, conns, log)
		if err != nil {
			return results, fmt.Errorf("bench %s %s with %d connections: %w", cfg.Target, cfg.Mode, conns, err)
		}
		results = append(results, r)
	}
	return results, nil
}

func (cfg *benchConfig) queueName(i int) string {
	if cfg.Queues == 1 {
		return cfg.Queue
	}
	return cfg.Queue + "_" + strconv.Itoa(i%cfg.Queues)
}

// benchConn is one client connection; it is owned by one goroutine.
type benchConn struct {
	cfg                            *benchConfig
	conn                           net.Conn
	r                              *bufio.Reader
	w                              *bufio.Writer
	key                            string // queue (kestrel) or key (memcached)
	setHdr                         []byte // "set <key> 0 0 <n>\r\n"
	payload                        []byte
	getReq                         []byte
	next                           benchKind // alternating loops: 0 for a set next, 1 for a get
	hist                           [numKinds]latencyHist
	ops                            [numKinds]int64
	hits, misses, rejected, errors int64
	measuring                      *atomic.Bool // nil: always; else record only while true (after --warmup)
}

func dialBench(ctx context.Context, cfg *benchConfig, i int, big bool) (*benchConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	key := cfg.queueName(i)
	switch {
	case big:
		key = cfg.Queue + "_big"
	case cfg.Target == "memcached":
		key = fmt.Sprintf("%s_%d", cfg.Queue, i)
	}
	size := cfg.Size
	if big {
		size = cfg.BigSize
	}
	payload := bytes.Repeat([]byte{'x'}, size+2)
	payload[size], payload[size+1] = '\r', '\n'
	getReq := "get " + key + "\r\n"
	if cfg.Mode == "reliable" && !big {
		getReq = "get " + key + "/close/open\r\n"
	}
	bufSize := 64 << 10
	return &benchConn{
		cfg:     cfg,
		conn:    conn,
		r:       bufio.NewReaderSize(conn, bufSize),
		w:       bufio.NewWriterSize(conn, bufSize),
		key:     key,
		setHdr:  fmt.Appendf(nil, "set %s 0 0 %d\r\n", key, size),
		payload: payload,
		getReq:  []byte(getReq),
	}, nil
}

// kindFor returns the kind of the connection's next request.
func (c *benchConn) kindFor(big bool) benchKind {
	if big {
		k := kindBigSet + c.next
		c.next = 1 - c.next
		return k
	}
	switch c.cfg.Mode {
	case "set":
		return kindSet
	case "get", "reliable":
		return kindGet
	}
	k := c.next
	c.next = 1 - c.next
	return k
}

// batch sends the requests of kinds, Pipeline at a time: each group is
// written and flushed at once, then its replies are read, each reply's
// latency counted from the flush, or from scheduled if that is earlier
// (open loop: a request sent late because the server was slow is charged
// for the wait, so slow replies are not hidden by sending less;
// "coordinated omission").
func (c *benchConn) batch(kinds []benchKind, scheduled time.Time) error {
	for len(kinds) > 0 {
		n := min(len(kinds), c.cfg.Pipeline)
		if err := c.group(kinds[:n], scheduled); err != nil {
			return err
		}
		kinds = kinds[n:]
	}
	return nil
}

func (c *benchConn) group(kinds []benchKind, scheduled time.Time) error {
	for _, k := range kinds {
		if k == kindGet || k == kindBigGet {
			c.w.Write(c.getReq)
		} else {
			c.w.Write(c.setHdr)
			c.w.Write(c.payload)
		}
	}
	if err := c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout)); err != nil {
		return err
	}
	start := time.Now()
	if !scheduled.IsZero() && scheduled.Before(start) {
		start = scheduled
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	for _, k := range kinds {
		out, err := c.readReply(k)
		if err != nil {
			return err
		}
		if c.measuring == nil || c.measuring.Load() {
			c.hist[k].record(time.Since(start))
			c.ops[k]++
			c.count(k, out)
		}
	}
	return nil
}

// replyOutcome is what a reply said, for the counters.
type replyOutcome int

const (
	outStored   replyOutcome = iota // STORED, or a get of a big item
	outRejected                     // NOT_STORED
	outError                        // ERROR, CLIENT_ERROR, SERVER_ERROR, anything unexpected
	outHit                          // a get that returned an item
	outMiss                         // a get that found nothing
)

func (c *benchConn) count(k benchKind, out replyOutcome) {
	switch out {
	case outRejected:
		c.rejected++
	case outError:
		c.errors++
	case outHit:
		if k == kindGet {
			c.hits++
		}
	case outMiss:
		if k == kindGet {
			c.misses++
		}
	}
}

func (c *benchConn) readLine() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("reply line longer than %d bytes", c.r.Size())
		}
		return nil, fmt.Errorf("read reply: %w", err)
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// readReply reads the reply to one request of kind k; an error means the
// connection can no longer be read in step with its requests.
func (c *benchConn) readReply(k benchKind) (replyOutcome, error) {
	line, err := c.readLine()
	if err != nil {
		return outError, err
	}
	if k == kindSet || k == kindBigSet {
		switch string(line) {
		case "STORED":
			return outStored, nil
		case "NOT_STORED":
			return outRejected, nil
		}
		return outError, nil
	}
	if string(line) == "END" {
		return outMiss, nil
	}
	fields := bytes.Fields(line)
	if len(fields) != 4 || string(fields[0]) != "VALUE" {
		return outError, nil
	}
	n, err := strconv.Atoi(string(fields[3]))
	if err != nil || n < 0 {
		return outError, fmt.Errorf("bad VALUE line %q", line)
	}
	if _, err := c.r.Discard(n + 2); err != nil {
		return outError, fmt.Errorf("read value: %w", err)
	}
	end, err := c.readLine()
	if err != nil {
		return outError, err
	}
	if string(end) != "END" {
		return outError, fmt.Errorf("want END after a value, got %q", end)
	}
	return outHit, nil
}

// simple sends one request outside the measurement and returns its reply
// line (for flush, fill and the last close).
func (c *benchConn) simple(req string) (string, error) {
	if err := c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout)); err != nil {
		return "", err
	}
	if _, err := c.w.WriteString(req); err != nil {
		return "", err
	}
	if err := c.w.Flush(); err != nil {
		return "", fmt.Errorf("send: %w", err)
	}
	line, err := c.readLine()
	return string(line), err
}

// fill puts n items on the connection's queue (or its key), pipelined,
// unmeasured.
func (c *benchConn) fill(n int64) error {
	const depth = 64
	for n > 0 {
		b := min(n, depth)
		for range b {
			c.w.Write(c.setHdr)
			c.w.Write(c.payload)
		}
		if err := c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout)); err != nil {
			return err
		}
		if err := c.w.Flush(); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
		for range b {
			line, err := c.readLine()
			if err != nil {
				return fmt.Errorf("fill: %w", err)
			}
			if string(line) != "STORED" {
				return fmt.Errorf("fill: set %s: server replied %q", c.key, line)
			}
		}
		n -= b
	}
	return nil
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
		c, err := dialBench(ctx, cfg, 0, true)
		if err != nil {
			return err
		}
		reply, err := c.simple("flush " + c.key + "\r\n")
		c.conn.Close()
		if err != nil || reply != "END" {
			return fmt.Errorf("flush %s: reply %q, %v", c.key, reply, err)
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
			c, err := dialBench(ctx, cfg, q, false)
			if err != nil {
				return err
			}
			reply, err := c.simple("flush " + c.key + "\r\n")
			c.conn.Close()
			if err != nil || reply != "END" {
				return fmt.Errorf("flush %s: reply %q, %v", c.key, reply, err)
			}
		}
	}
	if cfg.Mode == "get" || cfg.Mode == "reliable" {
		return fillQueues(ctx, cfg, perQueue)
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

func runBenchOnce(ctx context.Context, cfg benchConfig, nconns int, log *slog.Logger) (benchResult, error) {
	if err := prepareBench(ctx, &cfg, nconns); err != nil {
		return benchResult{}, err
	}
	total := nconns + cfg.BigConns
	conns := make([]*benchConn, 0, total)
	defer func() {
		for _, c := range conns {
			c.conn.Close()
		}
	}()
	for i := range total {
		c, err := dialBench(ctx, &cfg, i%nconns, i >= nconns)
		if err != nil {
			return benchResult{}, err
		}
		conns = append(conns, c)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Ops == 0 {
		var stopTimer context.CancelFunc
		runCtx, stopTimer = context.WithTimeout(runCtx, cfg.Warmup+cfg.Duration)
		defer stopTimer()
	}
	var (
		answered atomic.Int64 // for progress lines
		bigStop  = make(chan struct{})
		mainWG   sync.WaitGroup
		bigWG    sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(i int, err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = fmt.Errorf("connection %d: %w", i, err)
		}
		errMu.Unlock()
		cancel()
	}
	// A batch is Pipeline requests (sent as one group); in setget mode an
	// even number, so a connection always follows its set with the get
	// that takes the item back out and the queue ends as it began.
	batchSize := cfg.Pipeline
	if cfg.Mode == "setget" {
		batchSize += batchSize % 2
	}
	// With --ops every connection has a fixed share (like memtier's
	// requests per client), so a get run's fill matches what each queue's
	// readers take.
	var shares []int64
	if cfg.Ops > 0 {
		shares = opShares(cfg.Ops, nconns, cfg.Mode == "setget")
	}

	// Open loop: connection i sends its k-th request at
	// start + (k + i/nconns) * interval.
	var interval time.Duration
	if cfg.Rate > 0 {
		batchSize = 1
		interval = time.Duration(float64(time.Second) * float64(nconns) / cfg.Rate)
	}

	// With --warmup, nothing is recorded until the warmup is over, and the
	// run's elapsed time counts from then.
	var measuring *atomic.Bool
	var measureStart atomic.Int64 // unix ns
	start := time.Now()
	measureStart.Store(start.UnixNano())
	if cfg.Warmup > 0 {
		measuring = new(atomic.Bool)
		warm := time.AfterFunc(cfg.Warmup, func() {
			measureStart.Store(time.Now().UnixNano())
			measuring.Store(true)
		})
		defer warm.Stop()
	}
	for _, c := range conns {
		c.measuring = measuring
	}
	for i, c := range conns {
		big := i >= nconns
		wg := &mainWG
		if big {
			wg = &bigWG
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			kinds := make([]benchKind, 0, batchSize)
			left := int64(-1) // unlimited
			if shares != nil && !big {
				left = shares[i]
			}
			var scheduled time.Time
			if interval > 0 && !big {
				scheduled = start.Add(interval * time.Duration(i) / time.Duration(nconns))
			}
			var pace *time.Timer
			for {
				if big {
					select {
					case <-bigStop:
						return
					default:
					}
				} else if runCtx.Err() != nil {
					return
				}
				n := 1
				if !big {
					n = batchSize
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
						case <-runCtx.Done():
							return
						}
					}
				}
				err := c.batch(kinds, scheduled)
				if !scheduled.IsZero() {
					scheduled = scheduled.Add(interval)
				}
				if err != nil {
					if runCtx.Err() == nil || big {
						fail(i, err)
					}
					return
				}
				if !big {
					answered.Add(int64(n))
				}
			}
		}()
	}

	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var last int64
		for {
			select {
			case <-runCtx.Done():
				return
			case now := <-tick.C:
				n := answered.Load()
				log.Info("bench progress", "conns", nconns, "elapsed", now.Sub(start).Round(time.Second).String(),
					"ops", n, "ops_per_sec", n-last)
				last = n
			}
		}
	}()

	mainWG.Wait()
	elapsed := time.Since(time.Unix(0, measureStart.Load()))
	close(bigStop)
	bigWG.Wait()
	cancel()
	<-progressDone

	if cfg.Mode == "reliable" {
		// Confirm the last open read of every connection so a following
		// run starts from a clean queue.
		for i, c := range conns[:nconns] {
			if _, err := c.simple("get " + c.key + "/close\r\n"); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("connection %d: close: %w", i, err)
			}
		}
	}

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
	if cfg.Rate > 0 && res.OpsPerSec < 0.95*cfg.Rate {
		// The latencies still count from the schedule, so they show it.
		log.Warn("bench fell behind the requested rate", "conns", nconns, "rate", cfg.Rate, "achieved", res.OpsPerSec)
	}
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
	return res, firstErr
}

func kindStat(name string, h *latencyHist, elapsed time.Duration) benchKindStat {
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return benchKindStat{
		Kind:      name,
		Ops:       int64(h.n),
		OpsPerSec: float64(h.n) / elapsed.Seconds(),
		MeanUS:    us(h.mean()),
		P50US:     us(h.quantile(0.50)),
		P99US:     us(h.quantile(0.99)),
		P999US:    us(h.quantile(0.999)),
		MaxUS:     us(time.Duration(h.max)),
	}
}

// writeBenchTable prints the fixed-format table documented in
// docs/benchmarks.md: one row per run and request kind.
func writeBenchTable(w io.Writer, results []benchResult) {
	fmt.Fprintf(w, "%-9s %-8s %6s %7s %-6s %10s %11s %9s %9s %9s %9s %8s %8s\n",
		"target", "mode", "conns", "size", "kind", "ops", "ops/s", "p50_us", "p99_us", "p99.9_us", "max_us", "rejected", "errors")
	for _, r := range results {
		for _, k := range r.Kinds {
			fmt.Fprintf(w, "%-9s %-8s %6d %7d %-6s %10d %11.0f %9.1f %9.1f %9.1f %9.1f %8d %8d\n",
				r.Target, r.Mode, r.Conns, r.Size, k.Kind, k.Ops, k.OpsPerSec, k.P50US, k.P99US, k.P999US, k.MaxUS, r.Rejected, r.Errors)
		}
		if r.Mode == "get" || r.Mode == "setget" || r.Mode == "reliable" {
			fmt.Fprintf(w, "# %s %s conns=%d: %d hits, %d misses in %.2fs\n", r.Target, r.Mode, r.Conns, r.Hits, r.Misses, r.Elapsed)
		}
	}
}
