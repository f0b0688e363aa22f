package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kpush/kpush/discovery"
	"github.com/kpush/kpush/internal/kestrel"
	"github.com/kpush/kpush/internal/queuename"
	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/push"
)

// Pusher sends one message to one device token. *push.Sender (APNs) and
// *push.FCMSender implement it.
type Pusher interface {
	Send(ctx context.Context, msg *push.Message, token string) push.Result
}

// Enqueuer appends one raw item to a queue on some server of the cluster
// and returns nil only once a server answered STORED. *producer.Producer
// implements it; the worker passes producer.Delay for the delay queue.
// Errors wrapping producer.ErrRejected or producer.ErrInvalidQueue are
// final; any other error is retried.
type Enqueuer interface {
	EnqueueRaw(ctx context.Context, queue string, data []byte, opts ...producer.EnqueueOption) error
}

// Sentinels for errors.Is on what Run returns.
var (
	// ErrBadCredentials: APNs or FCM rejected the credentials or
	// configuration (APNs 403 and friends, FCM 401/403/404 or a refused
	// access token). The worker stopped taking work and returned
	// everything it held to the servers.
	ErrBadCredentials = errors.New("the push service rejected the credentials or configuration")
	// ErrRetryQueueNotConfigured: a server has no `<queue>_retry` delay
	// queue expiring into `<queue>`, so retried messages would never come
	// back.
	ErrRetryQueueNotConfigured = errors.New("retry delay queue not configured on the server")
	// ErrBadConfig: a Config field is invalid.
	ErrBadConfig = errors.New("bad worker configuration")
	// ErrProtocol is wrapped by every error caused by a reply the consumer
	// did not expect: the server is not Kestrel-compatible, or the stream
	// is out of step. The connection is dropped (which returns its open
	// reads).
	ErrProtocol = kestrel.ErrProtocol
	// ErrMonitorUnsupported: the server answered ERROR to `monitor`, which
	// the worker needs (kpush queued and Kestrel 2.x have it; Kestrel 1.x
	// and memcached do not).
	ErrMonitorUnsupported = kestrel.ErrMonitorUnsupported
)

// maxItemSize bounds the VALUE the consumer keeps in memory: a push message
// is its payload (at most 5 KiB) plus ~70 bytes per token, so 16 MiB is a
// message to about 200,000 devices. A larger item is read past and handed
// on as an oversize item, to be dead-lettered, so it can neither exhaust
// memory nor come back forever as a poison pill.
const maxItemSize = 16 << 20

// Config configures a Worker. Zero fields take the defaults listed.
type Config struct {
	// Servers are the queued (Kestrel) servers: host:port each, or DNS
	// names that resolve to many (dns:NAME:PORT, dns+srv:NAME; see package
	// discovery). The worker reads from every one of them; names are
	// resolved again every ResolveInterval, and a server that disappears
	// from them is let go: its loops fetch no more, finish and confirm
	// what they hold, and close.
	Servers []string
	// ResolveInterval is the time between resolutions of DNS names in
	// Servers; default discovery.DefaultInterval (10 s).
	ResolveInterval time.Duration
	// Resolver looks up DNS names in Servers and the servers' host names
	// when connecting; default net.DefaultResolver.
	Resolver *net.Resolver
	// Queue is the work queue. Outcomes go to Queue+"_invalid_tokens",
	// Queue+"_failed" and the delay queue Queue+"_retry".
	Queue string
	// Concurrency is the most pushes in flight at once (the pool's
	// size) and also the most queue items held open across all servers;
	// default 1000.
	Concurrency int
	// LoopsPerServer is the number of fetch connections per server;
	// default 2, so one can confirm while another waits in monitor.
	LoopsPerServer int
	// MonitorSeconds is how long one `monitor` waits for items; default 1.
	// Confirms of a connection are sent between monitors, so this bounds
	// how long a finished item stays unconfirmed on an idle queue.
	MonitorSeconds int
	// ShutdownTimeout bounds the graceful shutdown after the context of
	// Run is cancelled: in-flight pushes get this long to finish; whatever
	// is left goes back to the servers. Default 30 s.
	ShutdownTimeout time.Duration
	// Attempts is the number of in-process attempts per token before a
	// transient failure is re-queued through the delay queue; default 3.
	Attempts int
	// RetryBase and RetryMax shape the in-process backoff between those
	// attempts (full jitter); defaults 100 ms and 2 s.
	RetryBase, RetryMax time.Duration
	// MaxRequeues is how many times a message may go through the delay
	// queue (push.Message.Attempt) before it is dead-lettered to
	// Queue+"_failed"; default 10.
	MaxRequeues int
	// MinRequeueDelay is the least delay of a re-queued message (a
	// Kestrel exptime has whole seconds); default 1 s. The delay is
	// otherwise push.Result.RetryAfter.
	MinRequeueDelay time.Duration
	// AllowMissingRetryQueue turns the start-up check of the delay queue
	// into a warning: without the delay queue, messages to retry are put
	// straight back onto Queue (no delay; MaxRequeues still bounds them).
	AllowMissingRetryQueue bool
	// ReconnectMin and ReconnectMax bound the backoff between attempts to
	// reach a server that is down; defaults 100 ms and 5 s.
	ReconnectMin, ReconnectMax time.Duration
	// IOTimeout bounds one network read or write to a queued server beyond
	// the monitor wait; default 10 s.
	IOTimeout time.Duration
	// AdminListen, when set, serves /metrics and /healthz there.
	AdminListen string
	// Pprof adds Go profiles at /debug/pprof/ to the admin endpoints.
	Pprof bool
	// SummaryInterval is the period of the one-line summary in the log;
	// default 10 s, negative disables it.
	SummaryInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// FCM delivers the messages' fcm_tokens (a *push.FCMSender); nil
	// means this worker has no FCM credentials and dead-letters such
	// tokens to Queue+"_failed" (ReasonNoFCMCredentials).
	FCM Pusher
}

// Validate reports what is wrong with c (an error wrapping ErrBadConfig),
// without changing it, so a command can check its flags before it opens
// anything.
func (c Config) Validate() error { return c.setDefaults() }

func (c *Config) setDefaults() error {
	if _, err := discovery.Parse(c.Servers); err != nil {
		return fmt.Errorf("%w: --servers: %w", ErrBadConfig, err)
	}
	if c.Queue == "" {
		return fmt.Errorf("%w: no queue name", ErrBadConfig)
	}
	if err := queuename.Check(c.Queue); err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	// The outcome queues are named after the work queue, so they must be
	// valid names too, and plain ones: for a work queue "parent+child"
	// they would be fanout children of parent, each getting a copy of
	// every item set on it.
	if _, fanout := queuename.Parent(c.Queue); fanout {
		return fmt.Errorf("%w: queue name %q: a fanout queue (parent+child) cannot be the work queue; use a plain name", ErrBadConfig, c.Queue)
	}
	if err := queuename.Check(c.Queue + "_invalid_tokens"); err != nil {
		return fmt.Errorf("%w: queue name %q too long for its outcome queue: %w", ErrBadConfig, c.Queue, err)
	}
	if c.Concurrency < 0 || c.LoopsPerServer < 0 || c.MonitorSeconds < 0 || c.Attempts < 0 || c.MaxRequeues < 0 {
		return fmt.Errorf("%w: negative concurrency, loops, monitor seconds or attempts", ErrBadConfig)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	defInt(&c.Concurrency, 1000)
	defInt(&c.LoopsPerServer, 2)
	defInt(&c.MonitorSeconds, 1)
	defInt(&c.Attempts, 3)
	defInt(&c.MaxRequeues, 10)
	def(&c.ShutdownTimeout, 30*time.Second)
	def(&c.RetryBase, 100*time.Millisecond)
	def(&c.RetryMax, 2*time.Second)
	def(&c.MinRequeueDelay, time.Second)
	def(&c.ReconnectMin, 100*time.Millisecond)
	def(&c.ReconnectMax, 5*time.Second)
	def(&c.IOTimeout, 10*time.Second)
	def(&c.ResolveInterval, discovery.DefaultInterval)
	if c.SummaryInterval == 0 {
		c.SummaryInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Worker consumes push messages from the queued servers and delivers them.
// Create it with New and run it with Run, once.
type Worker struct {
	cfg Config
	// apns and fcm send each platform's tokens; nil without that
	// platform's credentials.
	apns, fcm *platform
	enq       Enqueuer
	log       *slog.Logger
	pool      *pool
	m         *metrics
	budget    *budget // open reads allowed, shared by the fetch loops
	// servers finds the servers to read from (Config.Servers).
	servers *discovery.Watcher
	live    atomic.Int64 // servers read from now
	// dialer connects to the servers, on Config.Resolver; it remembers
	// their addresses so a DNS outage does not cut the worker off.
	dialer *discovery.Dialer

	// sendCtx is cancelled on a hard stop: shutdown timeout or fatal
	// error. Every push and enqueue uses it.
	sendCtx    context.Context
	cancelSend context.CancelFunc
	// fetchStop is closed when fetching must stop (graceful shutdown or
	// fatal error).
	fetchStop     chan struct{}
	stopFetchOnce sync.Once

	fatalMu  sync.Mutex
	fatalErr error

	ran atomic.Bool

	// noDelayQueue is set when a server lacks the <queue>_retry delay
	// queue and AllowMissingRetryQueue let the worker start anyway:
	// retries then go straight back onto the work queue, since an item
	// parked with an expiry in a queue that expires into nothing would be
	// dropped when it expires.
	noDelayQueue atomic.Bool
}

// New checks cfg and returns a Worker that pushes APNs tokens through
// apns, FCM tokens through cfg.FCM, and writes outcome records and
// retries through enq. Either pusher may be nil (that platform's tokens
// are dead-lettered), not both.
func New(cfg Config, apns Pusher, enq Enqueuer) (*Worker, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if (apns == nil && cfg.FCM == nil) || enq == nil {
		return nil, fmt.Errorf("%w: a Pusher (APNs, FCM or both) and an Enqueuer are required", ErrBadConfig)
	}
	list, _ := discovery.Parse(cfg.Servers) // checked by setDefaults
	w := &Worker{
		cfg:       cfg,
		enq:       enq,
		log:       cfg.Logger,
		budget:    newBudget(cfg.Concurrency, len(cfg.Servers)*cfg.LoopsPerServer),
		servers:   discovery.NewWatcher(list, discovery.Options{Resolver: cfg.Resolver, Interval: cfg.ResolveInterval, Logger: cfg.Logger}),
		dialer:    &discovery.Dialer{Resolver: cfg.Resolver},
		fetchStop: make(chan struct{}),
	}
	w.pool = newPool(cfg.Concurrency)
	w.sendCtx, w.cancelSend = context.WithCancel(context.Background())
	w.m = newMetrics(w, apns, cfg.FCM)
	if apns != nil {
		w.apns = w.m.apns
	}
	if cfg.FCM != nil {
		w.fcm = w.m.fcm
	}
	return w, nil
}

// Handler serves /metrics (Prometheus, the worker's own registry) and
// /healthz (200 while the worker runs normally, 503 after a fatal error).
func (w *Worker) Handler() http.Handler { return w.m.handler() }

// Stats returns the counters since start.
func (w *Worker) Stats() Stats { return w.m.stats() }

// Run consumes until ctx is cancelled, then shuts down gracefully: it stops
// fetching, lets in-flight pushes finish within ShutdownTimeout, confirms
// what finished and returns the rest to the servers. It returns nil after
// a graceful shutdown, or the fatal error (wrapping ErrBadCredentials,
// ErrRetryQueueNotConfigured or ErrMonitorUnsupported) that made it stop
// early.
func (w *Worker) Run(ctx context.Context) error {
	if w.ran.Swap(true) {
		return errors.New("worker: Run called twice")
	}
	defer w.cancelSend()

	if w.cfg.AdminListen != "" {
		ln, err := net.Listen("tcp", w.cfg.AdminListen)
		if err != nil {
			return fmt.Errorf("admin listener --admin-listen %s: %w", w.cfg.AdminListen, err)
		}
		srv := &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 5 * time.Second}
		w.log.Info("listening", "service", "worker-admin", "addr", ln.Addr().String())
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}

	w.log.Info("worker starting", "servers", strings.Join(w.cfg.Servers, ","), "queue", w.cfg.Queue,
		"concurrency", w.cfg.Concurrency, "loops_per_server", w.cfg.LoopsPerServer)

	w.pool.start()
	loopsDone := make(chan struct{})
	go w.manageLoops(loopsDone)

	summaryDone := make(chan struct{})
	summaryStop := make(chan struct{})
	go func() { defer close(summaryDone); w.summaryLoop(summaryStop) }()

	select {
	case <-ctx.Done():
		w.log.Info("shutting down: stopped fetching, finishing in-flight pushes", "timeout", w.cfg.ShutdownTimeout, "in_flight", w.m.inFlight.Load())
		w.stopFetching()
		timer := time.NewTimer(w.cfg.ShutdownTimeout)
		select {
		case <-loopsDone:
			timer.Stop()
		case <-timer.C:
			w.log.Warn("shutdown timeout: returning unfinished items to the servers", "in_flight", w.m.inFlight.Load())
			w.cancelSend()
			<-loopsDone
		}
	case <-loopsDone: // only after a fatal error
	}
	w.cancelSend()
	w.pool.stop()
	close(summaryStop)
	<-summaryDone
	if w.cfg.SummaryInterval > 0 {
		w.logSummary()
	}

	if err := w.fatal(); err != nil {
		return err
	}
	w.log.Info("worker stopped", "delivered", w.m.stats().Delivered)
	return nil
}

func (w *Worker) stopFetching() {
	w.stopFetchOnce.Do(func() { close(w.fetchStop) })
}

// manageLoops runs LoopsPerServer fetch loops for every server found,
// starts loops for servers that appear and stops those of servers that
// disappear (they finish and confirm what they hold). Once fetching stops
// it stops every loop, waits for them and closes done.
func (w *Worker) manageLoops(done chan<- struct{}) {
	defer close(done)
	var loops sync.WaitGroup
	live := map[string]chan struct{}{} // server -> closed to stop its loops
	apply := func(addrs []string) {
		for _, addr := range addrs {
			if live[addr] != nil {
				continue
			}
			stop := make(chan struct{})
			live[addr] = stop
			for i := range w.cfg.LoopsPerServer {
				loops.Go(func() { w.fetchLoop(addr, i, stop) })
			}
		}
		for addr, stop := range live {
			if !slices.Contains(addrs, addr) {
				w.log.Info("server gone from --servers: fetching no more from it, finishing what it gave", "server", addr)
				close(stop)
				delete(live, addr)
				w.m.serverGone(addr)
			}
		}
		w.live.Store(int64(len(live)))
		w.budget.setLoops(len(live) * w.cfg.LoopsPerServer)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs, _ := w.servers.Resolve(ctx) // failures are logged and counted
	apply(addrs)
	var resolver sync.WaitGroup
	updates := make(chan []string)
	if w.servers.Dynamic() {
		resolver.Go(func() {
			w.servers.Run(ctx, func(addrs []string) {
				select {
				case updates <- addrs:
				case <-ctx.Done():
				}
			})
		})
	}
	for {
		select {
		case addrs := <-updates:
			apply(addrs)
			continue
		case <-w.fetchStop:
		}
		break
	}
	cancel()
	resolver.Wait()
	for _, stop := range live {
		close(stop)
	}
	loops.Wait()
}

// fetching reports whether the worker as a whole still fetches.
func (w *Worker) fetching() bool { return !stopped(w.fetchStop) }

// stopped reports whether stop is closed.
func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// fail records a fatal error, stops fetching and aborts everything in
// flight: the fetch loops close their connections, so the servers return
// every item the worker held.
func (w *Worker) fail(err error) {
	w.fatalMu.Lock()
	first := w.fatalErr == nil
	if first {
		w.fatalErr = err
	}
	w.fatalMu.Unlock()
	if !first {
		return
	}
	w.m.healthy.Store(false)
	w.log.Error("WORKER STOPPING: returning every held item to the servers", "err", err)
	w.stopFetching()
	w.cancelSend()
}

func (w *Worker) fatal() error {
	w.fatalMu.Lock()
	defer w.fatalMu.Unlock()
	return w.fatalErr
}

// fetchLoop owns one connection to addr at a time: it dials, consumes
// until an error, drops the connection (the server returns what it held)
// and dials again with backoff, until stop is closed (fetching stops, or
// the server was removed).
func (w *Worker) fetchLoop(addr string, idx int, stop <-chan struct{}) {
	log := w.log.With("server", addr, "loop", idx)
	backoff := w.cfg.ReconnectMin
	down := false
	for !stopped(stop) {
		dialCtx, cancel := context.WithTimeout(w.sendCtx, w.cfg.IOTimeout)
		c, err := kestrel.Dial(dialCtx, addr, kestrel.Options{Timeout: w.cfg.IOTimeout, MaxItemSize: maxItemSize, Dialer: w.dialer})
		cancel()
		if err == nil {
			err = w.checkRetryQueue(c)
			if errors.Is(err, ErrRetryQueueNotConfigured) {
				c.Close()
				w.fail(err)
				return
			}
		}
		if err != nil {
			if c != nil {
				c.Close()
			}
			if !down && idx == 0 {
				log.Warn("queued server unreachable; retrying with backoff", "err", err)
			}
			down = true
			if !stopped(stop) {
				w.m.serverUp(addr, false)
			}
			if !w.sleep(backoff, stop) {
				return
			}
			backoff = min(2*backoff, w.cfg.ReconnectMax)
			continue
		}
		if down && idx == 0 {
			log.Info("queued server reachable again")
		}
		down = false
		w.m.serverUp(addr, true)
		start := time.Now()
		err = w.consume(c, stop)
		c.Close()
		if errors.Is(err, ErrMonitorUnsupported) {
			w.fail(err)
			return
		}
		if err != nil && !stopped(stop) {
			// A connection that worked for a while starts a fresh
			// backoff; one that fails at once (a server answering
			// SERVER_ERROR while quiescent, say) keeps backing off and
			// is logged once, not on every attempt.
			if time.Since(start) > w.cfg.ReconnectMax {
				backoff = w.cfg.ReconnectMin
			}
			if backoff == w.cfg.ReconnectMin {
				log.Warn("connection to queued server lost; its open reads go back to the queue", "err", err)
			} else {
				log.Debug("connection to queued server lost again", "err", err, "backoff", backoff)
			}
			w.m.serverUp(addr, false)
			if !w.sleep(backoff, stop) {
				return
			}
			backoff = min(2*backoff, w.cfg.ReconnectMax)
		}
	}
}

// sleep waits d (with jitter) unless stop is closed first; it reports
// whether fetching goes on.
func (w *Worker) sleep(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d/2 + rand.N(d/2+1))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// checkRetryQueue verifies that the server expires Queue_retry into Queue.
func (w *Worker) checkRetryQueue(c *kestrel.Conn) error {
	retry := w.cfg.Queue + "_retry"
	// A queue comes into being the first time a command names it: a peek
	// makes the server create it, taking nothing, so dump_config lists
	// its effective settings.
	c.Get(retry, "/peek")
	if err := c.Flush(); err != nil {
		return err
	}
	if _, _, err := c.ReadValue(false); err != nil {
		return err
	}
	lines, err := c.DumpConfig()
	switch {
	case errors.Is(err, ErrProtocol):
		// The server cannot tell; it is not one the worker can use
		// safely for delays without checking.
		err = fmt.Errorf("%w: server %s does not answer dump_config, so its %s delay queue cannot be checked (%v); start the worker with --allow-missing-retry-queue if it is configured",
			ErrRetryQueueNotConfigured, c.Addr(), retry, err)
	case err != nil:
		return err
	default:
		target, _ := kestrel.ExpireTarget(lines, retry)
		if target == w.cfg.Queue {
			return nil
		}
		err = fmt.Errorf("%w: server %s: queue %s expires into %q, not %q; add to its config file:  queues { %s { expire_to_queue = \"%s\" } }  and run `reload` (or start the worker with --allow-missing-retry-queue)",
			ErrRetryQueueNotConfigured, c.Addr(), retry, target, w.cfg.Queue, retry, w.cfg.Queue)
	}
	if w.cfg.AllowMissingRetryQueue {
		if !w.noDelayQueue.Swap(true) {
			w.log.Warn("retry delay queue not configured: transient failures go straight back onto the work queue, without delay", "server", c.Addr(), "queue", w.cfg.Queue, "err", err)
		}
		return nil
	}
	return err
}

// consume runs the fetch protocol on one connection until it fails or
// stop is closed and every item of the connection finished. See doc.go.
func (w *Worker) consume(c *kestrel.Conn, stop <-chan struct{}) error {
	// A hard stop closes the connection at once, even inside a monitor.
	unhook := context.AfterFunc(w.sendCtx, func() { c.Close() })
	defer unhook()

	win := newWindow()
	busy := false
	defer func() {
		// Whatever is still open when the connection goes is the
		// server's again.
		open := win.open()
		w.m.held.Add(-int64(open))
		w.budget.release(open)
		w.budget.setBusy(busy, false)
	}()
	q := w.cfg.Queue
	var err error
	for {
		if w.sendCtx.Err() != nil {
			return nil
		}
		released := w.budget.released()
		grew := w.budget.windowGrew()
		starving := w.budget.starving()
		k := win.confirmable()
		open := win.open()
		size := w.budget.window(busy)
		minBatch := max(1, size/4)
		// Finished reads count as free: their confirm goes out in the
		// same write as the monitor that refills their slots.
		free := size - open + k
		working := win.working()
		fetching := !stopped(stop)
		waiters := w.budget.waiters.Load() > 0
		wantFetch := fetching && (free >= minBatch || (free > 0 && working == 0))
		req, denied, deferred := 0, false, false
		if wantFetch && !busy && working == 0 && waiters {
			// Idle, holding nothing, and others were refused: let
			// them have the capacity first (budget.go).
			wantFetch, deferred = false, true
		}
		// A confirm alone is a round trip for the queue server and for
		// this loop: finished reads wait for the next monitor, unless
		// nothing else will come (all finished, or no more fetching) or
		// another loop is waiting for the capacity they hold.
		confirm := k > 0 && (wantFetch || working == 0 || !fetching || waiters)
		if confirm {
			// The server settles the confirm before the monitor that
			// follows it on this connection, so its reads leave the
			// budget now and the monitor may reuse them.
			win.take(k)
			w.m.held.Add(-int64(k))
			w.budget.release(k)
			c.Confirm(q, k)
		}
		if wantFetch {
			// Fewer than a batch is worth a round trip only if this
			// loop holds nothing.
			lo := minBatch
			if working == 0 {
				lo = 1
			}
			// One monitor asks for at most a fair share: reserved
			// reads that have not arrived yet block other loops, and a
			// monitor on a slow trickle can take a whole second to fill.
			fair := w.budget.fair()
			req = w.budget.reserve(min(lo, fair), min(free, fair))
			wantFetch, denied = req > 0, req == 0
		}
		if wantFetch {
			c.Monitor(q, w.cfg.MonitorSeconds, req)
		}
		if confirm || wantFetch {
			if err = c.Flush(); err != nil {
				w.budget.release(req)
				return err
			}
		}
		if confirm {
			if err = c.ReadConfirm(q, k); err != nil {
				w.budget.release(req)
				return err
			}
		}
		if wantFetch {
			n, err := c.ReadMonitor(q, w.cfg.MonitorSeconds, func(data []byte, oversize int64) {
				w.m.held.Add(1)
				w.dispatch(win, win.add(), data, oversize)
			})
			w.budget.release(req - n) // the items received stay reserved
			w.budget.setBusy(busy, n > 0)
			busy = n > 0
			if err != nil {
				return err
			}
			continue
		}
		if confirm {
			continue // capacity came back: look again
		}
		if !fetching && working == 0 {
			return nil
		}
		var fetchStop, capacity, widened, wanted <-chan struct{}
		if fetching {
			fetchStop, widened = stop, grew
		}
		if denied || deferred {
			capacity = released
		}
		// Wake once enough reads are confirmable to refill a batch (or
		// all finished); at every finish while others wait for capacity
		// or fetching has stopped.
		need := minBatch - (size - open)
		if !fetching || waiters {
			need = 1
		} else {
			wanted = starving
		}
		if denied {
			wanted = w.budget.wait(wanted)
		}
		select {
		case <-win.notifyAt(need):
		case <-fetchStop:
		case <-capacity:
		case <-widened:
		case <-wanted:
		case <-w.sendCtx.Done():
		}
		if denied {
			w.budget.waiters.Add(-1)
		}
	}
}
