// Command workerbench measures `kpush worker` as users run it against the
// cost of a bare apns2 loop, in one run on one machine.
//
// It starts `kpush apns-sim` once, then for each concurrency and message
// shape, repeated -reps times:
//
//  1. the reference: a bare apns2 loop (this program re-run as a child
//     process: -concurrency goroutines sharing one apns2 client, the
//     library's defaults) sends -n pushes to the simulator;
//  2. a fresh `kpush queued` (--sync always) is filled with -n pushes'
//     worth of messages by `kpush enqueue`, then `kpush worker` (default
//     flags, --concurrency) drains it into the same simulator.
//
// Both phases are timed the same way, from outside: from the first push the
// simulator accepted to the last (its /sim/stats, polled), and CPU per push
// of every process from /proc/<pid>/stat over the same interval. It prints
// one table row per phase and the ratios worker/loop (rate, CPU per push of
// the sender and of the simulator), and appends JSON lines to -results.
//
//	go run ./bench/workerbench -kpush /tmp/kpush
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"

	"github.com/kpush/kpush/push"
)

const (
	topic   = "com.example.app"
	devKID  = "KPUSHSIM01"
	devTeam = "KPUSHDEV01"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "loop" {
		if err := loopMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "loop:", err)
			os.Exit(1)
		}
		return
	}
	if err := benchMain(); err != nil {
		fmt.Fprintln(os.Stderr, "workerbench:", err)
		os.Exit(1)
	}
}

// ---- the reference: a bare apns2 loop --------------------------------------

func loopMain(args []string) error {
	fs := flag.NewFlagSet("loop", flag.ExitOnError)
	host := fs.String("host", "", "simulator URL")
	ca := fs.String("ca", "", "CA file")
	key := fs.String("key", "", "auth key")
	n := fs.Int("n", 0, "pushes")
	conc := fs.Int("concurrency", 200, "goroutines")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the loop here")
	via := fs.String("via", "apns2", "apns2: a bare apns2 client; sender: kpush's push.Sender (connections from -connections)")
	conns := fs.Int("connections", 1, "push.Sender connections with -via sender")
	_ = fs.Parse(args)
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	authKey, err := token.AuthKeyFromFile(*key)
	if err != nil {
		return err
	}
	pool, err := caPool(*ca)
	if err != nil {
		return err
	}
	// apns2.NewTokenClient as it is, its dial trusting the simulator's CA.
	apns2.DialTLS = func(network, addr string, cfg *tls.Config) (net.Conn, error) {
		cfg = cfg.Clone()
		cfg.RootCAs = pool
		return (&tls.Dialer{NetDialer: &net.Dialer{Timeout: apns2.TLSDialTimeout, KeepAlive: apns2.TCPKeepAlive}, Config: cfg}).Dial(network, addr)
	}
	client := apns2.NewTokenClient(&token.Token{AuthKey: authKey, KeyID: devKID, TeamID: devTeam})
	client.Host = *host
	payload := []byte(`{"aps":{"alert":"hello"}}`)
	send := func(tok string) error {
		resp, err := client.Push(&apns2.Notification{DeviceToken: tok, Topic: topic, Payload: payload})
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d %s", resp.StatusCode, resp.Reason)
		}
		return err
	}
	if *via == "sender" {
		sender, err := push.NewSender(push.Config{Host: *host, CAFile: *ca, AuthKeyFile: *key, KeyID: devKID, TeamID: devTeam, Connections: *conns})
		if err != nil {
			return err
		}
		msg, err := push.ParseMessage([]byte(`{"tokens":["` + tokenHex(0) + `"],"topic":"` + topic + `","alert":"hello"}`))
		if err != nil {
			return err
		}
		send = func(tok string) error {
			if r := sender.Send(context.Background(), msg, tok); r.Class != push.Delivered {
				return fmt.Errorf("%v %d %s %v", r.Class, r.Status, r.Reason, r.Err)
			}
			return nil
		}
	}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(*n); i = next.Add(1) - 1 {
				if err := send(tokenHex(int(i))); err != nil {
					if failed.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "push failed:", err)
					}
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d pushes failed", f)
	}
	// Stay until the benchmark has read this process's CPU time: it
	// closes stdin then.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

func tokenHex(i int) string { return fmt.Sprintf("%064x", i) }

func caPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", path)
	}
	return pool, nil
}

// ---- the benchmark ----------------------------------------------------------

type config struct {
	kpush          string
	concurrency    []int
	shapes         []int // tokens per message
	n              int
	reps           int
	results        string
	profileDir     string
	variants       []variant
	messageIDs     bool
	enqueueConns   int
	profileSeconds int
	plotResults    string
	started        time.Time
	load           string // load average at the start
}

func benchMain() error {
	var cfg config
	conc := flag.String("concurrency", "200,1000", "worker --concurrency values (and the loop's goroutines)")
	shapes := flag.String("tokens", "1,1000", "tokens per message, one run each")
	flag.StringVar(&cfg.kpush, "kpush", "", "kpush binary (default: go build ./cmd/kpush)")
	flag.IntVar(&cfg.n, "n", 40000, "pushes per phase")
	flag.IntVar(&cfg.reps, "reps", 3, "repetitions of every configuration")
	flag.StringVar(&cfg.results, "results", "", "append JSON lines to this file")
	flag.StringVar(&cfg.profileDir, "profile", "", "save a CPU profile of each worker run here (adds --admin-listen)")
	var variants variantFlag
	flag.Var(&variants, "variant", "a worker to measure, label[;bin=PATH][;queued=PATH][;env=A=1 B=2][;args=--flag v] (repeatable; default: the -kpush binary as is)")
	flag.BoolVar(&cfg.messageIDs, "ids", false, "give every message an id (the worker then sends apns-id)")
	flag.IntVar(&cfg.enqueueConns, "enqueue-concurrency", 64, "kpush enqueue --concurrency for the fill")
	flag.IntVar(&cfg.profileSeconds, "profile-seconds", 2, "length of each worker profile")
	flag.StringVar(&cfg.plotResults, "plot-results", "", "append the medians to this file in bench/results format (bench \"e2e\", x = concurrency, y = pushes/s; see bench/README.md)")
	flag.Parse()
	cfg.started = time.Now().UTC()
	cfg.load = loadAverage()
	var err error
	if cfg.concurrency, err = ints(*conc); err != nil {
		return err
	}
	if cfg.shapes, err = ints(*shapes); err != nil {
		return err
	}
	cfg.variants = variants
	work, err := os.MkdirTemp("", "workerbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if cfg.kpush == "" {
		cfg.kpush = filepath.Join(work, "kpush")
		log.Printf("building kpush")
		if out, err := exec.Command("go", "build", "-o", cfg.kpush, "./cmd/kpush").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return err
		}
	}
	if len(cfg.variants) == 0 {
		cfg.variants = []variant{{label: "worker"}}
	}
	for i := range cfg.variants {
		if cfg.variants[i].bin == "" {
			cfg.variants[i].bin = cfg.kpush
		}
	}
	b := &bench{cfg: cfg, work: work}
	defer b.stopAll()
	return b.run()
}

// variant is one way of running the worker: a binary, environment and
// extra flags.
type variant struct {
	label, bin string
	queued     string // the kpush binary that runs queued (default: -kpush)
	env, args  []string
	loopArgs   []string // not a worker: the loop with these flags
}

type variantFlag []variant

func (v *variantFlag) String() string { return fmt.Sprint(len(*v)) }

func (v *variantFlag) Set(s string) error {
	parts := strings.Split(s, ";")
	x := variant{label: parts[0]}
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(p, "=")
		switch k {
		case "bin":
			x.bin = val
		case "queued":
			x.queued = val
		case "env":
			x.env = strings.Fields(val)
		case "args":
			x.args = strings.Fields(val)
		case "loop":
			x.loopArgs = append([]string{}, strings.Fields(val)...)
		default:
			return fmt.Errorf("variant %q: unknown part %q (want bin=, queued=, env=, args= or loop=)", s, k)
		}
	}
	*v = append(*v, x)
	return nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad number %q in %q", f, s)
		}
		out = append(out, v)
	}
	return out, nil
}

type bench struct {
	cfg    config
	work   string
	procs  []*proc
	sim    *proc
	simURL string
	ca     string
	key    string
	stats  *http.Client
}

type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	addrs map[string]string
	done  chan struct{}
}

var listenLine = regexp.MustCompile(`msg=listening\b.*?\bservice=(\S+).*?\baddr=(\S+)`)

func (b *bench) start(name string, env []string, args ...string) (*proc, error) {
	p := &proc{name: name, addrs: map[string]string{}, done: make(chan struct{})}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	p.stdin = stdin
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	b.procs = append(b.procs, p)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			if m := listenLine.FindStringSubmatch(line); m != nil {
				p.addrs[strings.Trim(m[1], `"`)] = strings.Trim(m[2], `"`)
			}
			p.mu.Unlock()
		}
	}()
	go func() { _ = p.cmd.Wait(); pw.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) addr(service string) (string, error) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		a, ok := p.addrs[service]
		p.mu.Unlock()
		if ok {
			return a, nil
		}
		select {
		case <-p.done:
			return "", fmt.Errorf("%s exited before listening:\n%s", p.name, p.output())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("%s did not listen within a minute", p.name)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stop sends SIGTERM and waits (SIGKILL after 30 s).
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (b *bench) stopAll() {
	for _, p := range b.procs {
		p.stop()
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// syscalls is the number of read and write system calls pid made so far,
// from /proc/<pid>/io.
func syscalls(pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		if k == "syscr" || k == "syscw" {
			x, _ := strconv.ParseInt(v, 10, 64)
			n += x
		}
	}
	return n
}

// cpu is the user+system time of pid so far, from /proc/<pid>/stat.
func cpu(pid int) time.Duration {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	rest := string(raw[bytes.LastIndexByte(raw, ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func (b *bench) run() error {
	k := b.cfg.kpush
	tlsDir := filepath.Join(b.work, "tls")
	sim, err := b.start("apns-sim", nil, k, "apns-sim", "--listen", "127.0.0.1:0", "--tls-dir", tlsDir)
	if err != nil {
		return err
	}
	addr, err := sim.addr("apns-sim")
	if err != nil {
		return err
	}
	b.sim, b.simURL = sim, "https://"+addr
	b.ca, b.key = filepath.Join(tlsDir, "ca.pem"), filepath.Join(tlsDir, "dev-key.p8")
	pool, err := caPool(b.ca)
	if err != nil {
		return err
	}
	b.stats = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}

	// Warm-up: the simulator learns every token once (its per-token map
	// then stops growing) and the page cache holds the binaries.
	if _, err := b.phase("warmup", 1000, 1, nil); err != nil {
		return err
	}
	var rows []result
	for rep := 1; rep <= b.cfg.reps; rep++ {
		for _, c := range b.cfg.concurrency {
			for _, t := range b.cfg.shapes {
				ref, err := b.phase("loop", c, t, nil)
				if err != nil {
					return err
				}
				ref.Rep = rep
				fmt.Printf("%-10s c=%-5d tokens/msg=%-5d rate=%8.0f/s  sender %6.1f µs/push  sim %5.1f µs/push  queued %5.1f µs/push  syscalls/push sender %.2f sim %.2f\n",
					"loop", c, t, ref.Rate, ref.SenderCPU, ref.SimCPU, 0.0, ref.SenderSyscalls, ref.SimSyscalls)
				rows = append(rows, ref)
				for _, v := range b.cfg.variants {
					var wr result
					var err error
					if v.loopArgs != nil {
						wr, err = b.phase(v.label, c, t, v.loopArgs)
					} else {
						wr, err = b.workerPhase(v, c, t, rep)
					}
					if err != nil {
						return err
					}
					wr.Rep = rep
					wr.RateVsLoop = wr.Rate / ref.Rate
					wr.SenderCPUVsLoop = wr.SenderCPU / ref.SenderCPU
					wr.SimCPUVsLoop = wr.SimCPU / ref.SimCPU
					fmt.Printf("%-10s c=%-5d tokens/msg=%-5d rate=%8.0f/s  sender %6.1f µs/push  sim %5.1f µs/push  queued %5.1f µs/push  syscalls/push sender %.2f sim %.2f queued %.2f  vs loop: rate %.2f  sender cpu %.2f  sim cpu %.2f\n",
						v.label, c, t, wr.Rate, wr.SenderCPU, wr.SimCPU, wr.QueuedCPU, wr.SenderSyscalls, wr.SimSyscalls, wr.QueuedSyscalls, wr.RateVsLoop, wr.SenderCPUVsLoop, wr.SimCPUVsLoop)
					rows = append(rows, wr)
				}
			}
		}
	}
	b.summary(rows)
	if b.cfg.plotResults != "" {
		if err := b.writePlotResults(rows); err != nil {
			return err
		}
	}
	if b.cfg.results != "" {
		f, err := os.OpenFile(b.cfg.results, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		enc := json.NewEncoder(f)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	}
	return nil
}

type result struct {
	Bench           string  `json:"bench"`
	Sender          string  `json:"sender"` // loop or worker
	Concurrency     int     `json:"concurrency"`
	TokensPerMsg    int     `json:"tokens_per_message"`
	Pushes          int     `json:"pushes"`
	Rep             int     `json:"rep"`
	Seconds         float64 `json:"seconds"`
	Rate            float64 `json:"pushes_per_sec"`
	SenderCPU       float64 `json:"sender_cpu_us_per_push"`
	SimCPU          float64 `json:"sim_cpu_us_per_push"`
	QueuedCPU       float64 `json:"queued_cpu_us_per_push,omitempty"`
	SenderSyscalls  float64 `json:"sender_syscalls_per_push"`
	SimSyscalls     float64 `json:"sim_syscalls_per_push"`
	QueuedSyscalls  float64 `json:"queued_syscalls_per_push,omitempty"`
	RateVsLoop      float64 `json:"rate_vs_loop,omitempty"`
	SenderCPUVsLoop float64 `json:"sender_cpu_vs_loop,omitempty"`
	SimCPUVsLoop    float64 `json:"sim_cpu_vs_loop,omitempty"`
	Time            string  `json:"time"`
}

func (b *bench) accepted() (int64, error) {
	resp, err := b.stats.Get(b.simURL + "/sim/stats?tokens=0")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Accepted int64            `json:"accepted"`
		Rejected map[string]int64 `json:"rejected"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, err
	}
	if len(st.Rejected) > 0 {
		return 0, fmt.Errorf("simulator rejected pushes: %v", st.Rejected)
	}
	return st.Accepted, nil
}

// measure waits for the simulator to accept n more pushes than base and
// times the interval from the first to the last, with the CPU every pid
// used in it.
func (b *bench) measure(base int64, n int, pids map[string]int, alive *proc) (time.Duration, usage, error) {
	const poll = 2 * time.Millisecond
	deadline := time.Now().Add(10 * time.Minute)
	var start time.Time
	cpu0 := map[string]time.Duration{}
	sys0 := map[string]int64{}
	for {
		got, err := b.accepted()
		if err != nil {
			return 0, usage{}, err
		}
		now := time.Now()
		if start.IsZero() && got > base {
			start = now
			for name, pid := range pids {
				cpu0[name] = cpu(pid)
				sys0[name] = syscalls(pid)
			}
		}
		if got >= base+int64(n) {
			used := usage{cpu: map[string]time.Duration{}, sys: map[string]int64{}}
			for name, pid := range pids {
				used.cpu[name] = cpu(pid) - cpu0[name]
				used.sys[name] = syscalls(pid) - sys0[name]
			}
			return now.Sub(start), used, nil
		}
		if now.After(deadline) {
			return 0, usage{}, fmt.Errorf("only %d of %d pushes accepted after 10 minutes", got-base, n)
		}
		select {
		case <-alive.done:
			if got, _ := b.accepted(); got < base+int64(n) {
				return 0, usage{}, fmt.Errorf("%s exited after %d of %d pushes:\n%s", alive.name, got-base, n, alive.output())
			}
		case <-time.After(poll):
		}
	}
}

// phase runs the bare apns2 loop.
func (b *bench) phase(name string, c, tokens int, extra []string) (result, error) {
	n := b.cfg.n
	base, err := b.accepted()
	if err != nil {
		return result{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	args := append([]string{self, "loop", "-host", b.simURL, "-ca", b.ca, "-key", b.key, "-n", strconv.Itoa(n), "-concurrency", strconv.Itoa(c)}, extra...)
	if b.cfg.profileDir != "" && name != "warmup" {
		args = append(args, "-cpuprofile", filepath.Join(b.cfg.profileDir, fmt.Sprintf("%s-c%d.pprof", name, c)))
	}
	p, err := b.start(name, nil, args...)
	if err != nil {
		return result{}, err
	}
	el, used, err := b.measure(base, n, map[string]int{"sender": p.pid(), "sim": b.sim.pid()}, p)
	p.stdin.Close()
	<-p.done
	if err != nil {
		return result{}, err
	}
	if p.cmd.ProcessState.ExitCode() != 0 {
		return result{}, fmt.Errorf("loop failed:\n%s", p.output())
	}
	return b.result(name, c, tokens, el, used), nil
}

type usage struct {
	cpu map[string]time.Duration
	sys map[string]int64 // read and write system calls
}

func (b *bench) result(sender string, c, tokens int, el time.Duration, used usage) result {
	n := float64(b.cfg.n)
	us := func(name string) float64 { return float64(used.cpu[name].Microseconds()) / n }
	per := func(name string) float64 { return float64(used.sys[name]) / n }
	return result{
		Bench: "worker-vs-apns2-loop", Sender: sender, Concurrency: c, TokensPerMsg: tokens, Pushes: b.cfg.n,
		Seconds: el.Seconds(), Rate: n / el.Seconds(),
		SenderCPU: us("sender"), SimCPU: us("sim"), QueuedCPU: us("queued"),
		SenderSyscalls: per("sender"), SimSyscalls: per("sim"), QueuedSyscalls: per("queued"),
		Time: time.Now().UTC().Format(time.RFC3339),
	}
}

// messages writes the fill file: n pushes as n/tokens messages.
func (b *bench) messages(tokens int) (string, error) {
	path := filepath.Join(b.work, fmt.Sprintf("messages-%d.jsonl", tokens))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	var buf bytes.Buffer
	type msg struct {
		ID     string   `json:"id,omitempty"`
		Tokens []string `json:"tokens"`
		Topic  string   `json:"topic"`
		Alert  string   `json:"alert"`
	}
	for i := 0; i < b.cfg.n; i += tokens {
		m := msg{Topic: topic, Alert: "hello"}
		if b.cfg.messageIDs {
			m.ID = "m" + strconv.Itoa(i)
		}
		for j := i; j < min(i+tokens, b.cfg.n); j++ {
			m.Tokens = append(m.Tokens, tokenHex(j))
		}
		line, _ := json.Marshal(m)
		buf.Write(line)
		buf.WriteByte('\n')
	}
	return path, os.WriteFile(path, buf.Bytes(), 0o644)
}

func (b *bench) workerPhase(v variant, c, tokens, rep int) (result, error) {
	k := b.cfg.kpush
	dir := filepath.Join(b.work, fmt.Sprintf("queued-%d-%d-%d", c, tokens, rep))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	conf := filepath.Join(dir, "queued.conf")
	if err := os.WriteFile(conf, []byte("queues {\n  push_retry {\n    expire_to_queue = \"push\"\n  }\n}\n"), 0o644); err != nil {
		return result{}, err
	}
	qbin := k
	if v.queued != "" {
		qbin = v.queued
	}
	q, err := b.start("queued", nil, qbin, "queued", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--config", conf, "--sync", "always")
	if err != nil {
		return result{}, err
	}
	defer func() { q.stop(); os.RemoveAll(dir) }()
	qaddr, err := q.addr("queued")
	if err != nil {
		return result{}, err
	}
	file, err := b.messages(tokens)
	if err != nil {
		return result{}, err
	}
	out, err := exec.Command(k, "enqueue", "--servers", qaddr, "--file", file, "--concurrency", strconv.Itoa(b.cfg.enqueueConns)).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("enqueue: %v\n%s", err, out)
	}
	base, err := b.accepted()
	if err != nil {
		return result{}, err
	}
	args := []string{v.bin, "worker", "--servers", qaddr, "--apns-host", b.simURL, "--apns-ca", b.ca,
		"--auth-key", b.key, "--key-id", devKID, "--team-id", devTeam, "--concurrency", strconv.Itoa(c)}
	if b.cfg.profileDir != "" {
		args = append(args, "--admin-listen", "127.0.0.1:0", "--pprof")
	}
	args = append(args, v.args...)
	w, err := b.start(v.label, v.env, args...)
	if err != nil {
		return result{}, err
	}
	defer w.stop()
	var profDone chan error
	if b.cfg.profileDir != "" {
		admin, err := w.addr("worker-admin")
		if err != nil {
			return result{}, err
		}
		profDone = make(chan error, 1)
		go func() {
			profDone <- saveProfile("http://"+admin+"/debug/pprof/profile?seconds="+strconv.Itoa(b.cfg.profileSeconds),
				filepath.Join(b.cfg.profileDir, fmt.Sprintf("%s-c%d-t%d-r%d.pprof", v.label, c, tokens, rep)))
		}()
	}
	el, used, err := b.measure(base, b.cfg.n, map[string]int{"sender": w.pid(), "sim": b.sim.pid(), "queued": q.pid()}, w)
	if err != nil {
		return result{}, err
	}
	if b.cfg.profileDir != "" {
		// The worker's log (with GODEBUG=gctrace=1 in -variant env, its
		// collections) goes beside the profiles.
		defer func() {
			w.stop()
			_ = os.WriteFile(filepath.Join(b.cfg.profileDir, fmt.Sprintf("%s-c%d-t%d-r%d.log", v.label, c, tokens, rep)), []byte(w.output()), 0o644)
		}()
	}
	if profDone != nil {
		if err := <-profDone; err != nil {
			log.Printf("profile: %v", err)
		}
		admin, _ := w.addr("worker-admin")
		if err := saveProfile("http://"+admin+"/debug/pprof/allocs", filepath.Join(b.cfg.profileDir, fmt.Sprintf("%s-c%d-t%d-r%d.allocs", v.label, c, tokens, rep))); err != nil {
			log.Printf("allocs profile: %v", err)
		}
	}
	return b.result(v.label, c, tokens, el, used), nil
}

func saveProfile(url, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// ---- the summary --------------------------------------------------------------

type key struct {
	sender      string
	concurrency int
	tokens      int
}

// medians groups rows by sender, concurrency and shape, in the order they
// first ran.
func medians(rows []result) ([]key, map[key]result) {
	var order []key
	groups := map[key][]result{}
	for _, r := range rows {
		k := key{r.Sender, r.Concurrency, r.TokensPerMsg}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := map[key]result{}
	for k, rs := range groups {
		m := rs[0]
		med := func(f func(result) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			sort.Float64s(v)
			if len(v)%2 == 1 {
				return v[len(v)/2]
			}
			return (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		m.Rep = len(rs)
		m.Rate = med(func(r result) float64 { return r.Rate })
		m.Seconds = med(func(r result) float64 { return r.Seconds })
		m.SenderCPU = med(func(r result) float64 { return r.SenderCPU })
		m.SimCPU = med(func(r result) float64 { return r.SimCPU })
		m.QueuedCPU = med(func(r result) float64 { return r.QueuedCPU })
		m.SenderSyscalls = med(func(r result) float64 { return r.SenderSyscalls })
		m.SimSyscalls = med(func(r result) float64 { return r.SimSyscalls })
		m.QueuedSyscalls = med(func(r result) float64 { return r.QueuedSyscalls })
		// Ratios pair each run with the loop run just before it, then
		// take the median: a slower minute moves both sides.
		m.RateVsLoop = med(func(r result) float64 { return r.RateVsLoop })
		m.SenderCPUVsLoop = med(func(r result) float64 { return r.SenderCPUVsLoop })
		m.SimCPUVsLoop = med(func(r result) float64 { return r.SimCPUVsLoop })
		out[k] = m
	}
	return order, out
}

// summary prints the medians of every configuration as a markdown table.
func (b *bench) summary(rows []result) {
	order, med := medians(rows)
	fmt.Printf("\nmedians of %d runs each (load average at the start %s; %d pushes per run)\n\n", b.cfg.reps, b.cfg.load, b.cfg.n)
	fmt.Println("| sender | --concurrency | tokens/msg | pushes/s | sender CPU µs/push | sim CPU µs/push | queued CPU µs/push | rate vs loop | sender CPU vs loop | sim CPU vs loop |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, k := range order {
		m := med[k]
		ratios := "| | | "
		if m.Sender != "loop" {
			ratios = fmt.Sprintf("| %.2f | %.2f | %.2f ", m.RateVsLoop, m.SenderCPUVsLoop, m.SimCPUVsLoop)
		}
		fmt.Printf("| %s | %d | %d | %.0f | %.1f | %.1f | %.1f %s|\n", k.sender, k.concurrency, k.tokens, m.Rate, m.SenderCPU, m.SimCPU, m.QueuedCPU, ratios)
	}
}

// writePlotResults appends the medians in the bench/results format: one
// series per sender and message shape, x the concurrency, y pushes/s.
func (b *bench) writePlotResults(rows []result) error {
	f, err := os.OpenFile(b.cfg.plotResults, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	order, med := medians(rows)
	machine := fmt.Sprintf("%d CPUs, %s, load average %s at the start", runtime.NumCPU(), kernel(), b.cfg.load)
	enc := json.NewEncoder(f)
	enc.SetEscapeHTML(false)
	for _, k := range order {
		series := k.sender // a -variant's label
		switch k.sender {
		case "loop":
			series = "bare apns2 loop -> kpush apns-sim"
		case "worker":
			series = "kpush worker -> kpush apns-sim (queued --sync always)"
		}
		rec := struct {
			Bench   string  `json:"bench"`
			Series  string  `json:"series"`
			X       float64 `json:"x"`
			Y       float64 `json:"y"`
			Run     string  `json:"run"`
			Machine string  `json:"machine"`
			Command string  `json:"command"`
		}{"e2e", fmt.Sprintf("%s, %d token(s)/msg", series, k.tokens), float64(k.concurrency), math.Round(med[k].Rate),
			b.cfg.started.Format("20060102T150405Z"), machine, "go run ./bench/workerbench " + strings.Join(os.Args[1:], " ")}
		if err := enc.Encode(rec); err != nil {
			return err
		}
	}
	return f.Close()
}

func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(raw))[0]
}

func kernel() string {
	raw, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "Linux"
	}
	return "Linux " + strings.TrimSpace(string(raw))
}
