package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
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
