package worker_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
	"github.com/kpush/kpush/queued"
	"github.com/kpush/kpush/worker"
)

const testQueue = "push"

// retryConf is the queued config every test server gets: the worker's
// delay queue expiring into the work queue.
const retryConf = `queues {
  push_retry {
    expire_to_queue = "push"
  }
}
`

// testLogger writes to the test log only when -v or on failure would be
// too noisy; warnings and errors are enough to debug a failure.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(&tlogWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tlogWriter struct {
	t  testing.TB
	mu sync.Mutex
}

func (w *tlogWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// startQueued runs an in-process queued server on 127.0.0.1:0 with the
// retry delay queue configured (unless withRetry is false).
func startQueued(t testing.TB, withRetry bool) string {
	t.Helper()
	return startQueuedWith(t, withRetry, nil)
}

// startQueuedWith is startQueued with the config changed by mutate first.
func startQueuedWith(t testing.TB, withRetry bool, mutate func(*queued.Config)) string {
	t.Helper()
	cfg := queued.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.ExpirationTimerFrequency = 100 * time.Millisecond
	if withRetry {
		q := cfg.Defaults
		q.ExpireToQueue = testQueue
		cfg.Queues = map[string]queued.QueueConfig{testQueue + "_retry": q}
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := queued.NewServer(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

// startQueuedProc runs `kpush queued` on listen (127.0.0.1:0 for any port)
// with data in dir and returns the process and its address.
func startQueuedProc(t testing.TB, dir, listen string) (*testproc.Proc, string) {
	t.Helper()
	conf := filepath.Join(dir, "queued.conf")
	if err := os.WriteFile(conf, []byte(retryConf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testproc.Start(t, "queued", "--listen", listen, "--data-dir", filepath.Join(dir, "data"), "--config", conf)
	return p, p.Addr("queued")
}

func startSim(t testing.TB, cfg apnssim.Config) *apnssim.Server {
	t.Helper()
	if cfg.TLSDir == "" {
		cfg.TLSDir = t.TempDir()
	}
	cfg.Logger = testLogger(t)
	sim, err := apnssim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// writeAuthKey writes a fresh ES256 key as Apple's .p8 (PKCS#8 PEM).
func writeAuthKey(t testing.TB) string {
	t.Helper()
	path, err := apnssim.EnsureDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func apnsConfig(t testing.TB, sim *apnssim.Server) push.Config {
	return push.Config{
		Host:        sim.URL(),
		CAFile:      sim.CAFile(),
		AuthKeyFile: writeAuthKey(t),
		KeyID:       "ABC123DEFG",
		TeamID:      "DEF123GHIJ",
		Connections: 2,
		Logger:      testLogger(t),
	}
}

func newSender(t testing.TB, cfg push.Config) *push.Sender {
	t.Helper()
	s, err := push.NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// apnsArgs are the kpush worker flags pointing at sim.
func apnsArgs(t testing.TB, sim *apnssim.Server) []string {
	return []string{"--apns-host", sim.URL(), "--apns-ca", sim.CAFile(),
		"--auth-key", writeAuthKey(t), "--key-id", "ABC123DEFG", "--team-id", "DEF123GHIJ"}
}

func newProducer(t testing.TB, addrs ...string) *producer.Producer {
	t.Helper()
	// A generous timeout: on a loaded machine an fsync can take seconds,
	// and an at-least-once producer that gives up on a slow STORED resends
	// the item elsewhere, a duplicate the exactly-once tests would flag.
	p, err := producer.New(addrs, producer.WithAtLeastOnce(), producer.WithTimeout(30*time.Second), producer.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// token returns a distinct 64-hex-digit device token.
func token(i int) string { return fmt.Sprintf("%064x", 0xabc0000+i) }

// enqueue puts n messages of tokensPer tokens each on the cluster and
// returns every token, in order. Message i has ID "m<i>".
func enqueue(t testing.TB, p *producer.Producer, n, tokensPer int) []string {
	t.Helper()
	var all []string
	ctx := context.Background()
	for i := 0; i < n; i++ {
		msg := &push.Message{ID: "m" + strconv.Itoa(i), Topic: "com.example.app", Alert: &push.Alert{Text: "hello"}}
		for j := 0; j < tokensPer; j++ {
			tok := token(i*tokensPer + j)
			msg.Tokens = append(msg.Tokens, tok)
			all = append(all, tok)
		}
		if err := p.Enqueue(ctx, testQueue, msg); err != nil {
			t.Fatalf("enqueue message %d: %v", i, err)
		}
	}
	return all
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// runWorker runs w.Run in the background; stop cancels it and returns its
// error.
func runWorker(t testing.TB, w *worker.Worker) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(time.Minute):
				err = fmt.Errorf("worker did not stop within a minute")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// runUntilStopped runs w until it stops by itself (a fatal error) and
// returns Run's error; the test fails if it is still running after 30 s.
func runUntilStopped(t testing.TB, w *worker.Worker, what string) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- w.Run(t.Context()) }()
	select {
	case err := <-errc:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("worker did not stop %s", what)
		return nil
	}
}

// kestrel is a raw test client for reading stats and queues.
type kestrel struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dialKestrel(t testing.TB, addr string) *kestrel {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &kestrel{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (k *kestrel) cmd(line string) {
	k.t.Helper()
	_ = k.nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(k.nc, line+"\r\n"); err != nil {
		k.t.Fatal(err)
	}
}

func (k *kestrel) line() string {
	k.t.Helper()
	l, err := k.r.ReadString('\n')
	if err != nil {
		k.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// stats returns the server's stats as a map.
func (k *kestrel) stats() map[string]string {
	k.cmd("stats")
	m := map[string]string{}
	for {
		l := k.line()
		if l == "END" {
			return m
		}
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "STAT" {
			m[f[1]] = f[2]
		}
	}
}

func (k *kestrel) queueStat(queue, stat string) int {
	v, _ := strconv.Atoi(k.stats()["queue_"+queue+"_"+stat])
	return v
}

// drain takes every item off queue with plain gets.
func (k *kestrel) drain(queue string) [][]byte {
	var items [][]byte
	for {
		k.cmd("get " + queue)
		l := k.line()
		if l == "END" {
			return items
		}
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != "VALUE" {
			k.t.Fatalf("get %s: unexpected %q", queue, l)
		}
		n, _ := strconv.Atoi(f[3])
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(k.r, buf); err != nil {
			k.t.Fatal(err)
		}
		if end := k.line(); end != "END" {
			k.t.Fatalf("get %s: %q after the item", queue, end)
		}
		items = append(items, buf[:n])
	}
}
