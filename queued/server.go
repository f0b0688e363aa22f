package queued

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kpush/kpush/internal/queuename"
	"github.com/kpush/kpush/queued/journal"
)

// Version is the numeric version `version` answers ("VERSION 1.2.3") and
// `stats` reports: always major.minor.micro in digits, as memcached and
// Kestrel send it, because clients parse it as numbers (libmemcached, and
// so PHP's memcached extension, fail on anything else, and on a major
// version of 0). Build is the build
// itself ("devel", "v1.2.3", a pseudo-version), reported by `stats` as
// build. cmd/kpush sets both from the binary's build information.
var (
	Version = "1.0.0"
	Build   = "devel"
)

const (
	StatusUp        Status = iota // every command allowed
	StatusReadOnly                // sets refused
	StatusQuiescent               // every queue command refused
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("queued: server closed")

// Server is a queued daemon: a set of queues and the connections using them.
type Server struct {
	log     *slog.Logger
	started time.Time
	// unlockDir gives up the data directory (journal.LockDir).
	unlockDir func() error

	// cfg's server settings (listen addresses, data dir, limits) are fixed
	// by NewServer and read without a lock; Reload replaces Defaults,
	// Queues and MaxOpenTransactions under cfgMu, so those are read
	// through config() (a queue keeps its own copy, queue.cfg).
	cfgMu sync.RWMutex
	cfg   Config

	mu     sync.RWMutex
	queues map[string]*queue

	status atomic.Int32

	connMu   sync.Mutex
	conns    map[*conn]struct{}
	lns      []net.Listener
	addr     net.Addr
	closing  bool
	connWG   sync.WaitGroup
	done     chan struct{} // closed by Shutdown
	doneOnce sync.Once
	bgWG     sync.WaitGroup
	closed   bool // journals closed

	reloader func() (Config, error)

	// writeTimeout bounds how long a reply may wait for a client that does
	// not read; after it the connection is dropped.
	writeTimeout time.Duration

	memCost  atomic.Int64 // item data held in memory plus per-item overhead, all queues
	memLimit int64        // total_memory_size: the bound on memCost; 0 = none

	// reqBuf is what connections' read buffers hold beyond their resting
	// 4 KiB (large sets being received); reqBufLimit caps it.
	reqBuf      atomic.Int64
	reqBufLimit int64
	maxOpen     atomic.Int32 // max_open_transactions, changed by reload

	totalItems, currConns, totalConns           atomic.Int64
	cmdGet, cmdSet, cmdPeek, getHits, getMisses atomic.Int64
	bytesRead, bytesWritten                     atomic.Int64
	queueCreates, queueDeletes, queueExpires    atomic.Int64

	// onStage, when set (tests only), is called at points where another
	// connection's command could slip in, so a test can put one there:
	// queueFor creating a fanout child, at "parent-found" and at
	// "child-published" (see linkChild); a set, at "set-looked-up"
	// (between finding its queue and putting the item on it).
	onStage atomic.Pointer[func(stage string)]
}

// NewServer opens cfg.DataDir (creating it), restores the persisted status
// and replays every queue's journal. A queue whose journal is corrupt is
// logged and kept unavailable; the others work.
func NewServer(cfg Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if cfg.Queues == nil {
		cfg.Queues = map[string]QueueConfig{}
	}
	if cfg.MaxOpenTransactions <= 0 {
		cfg.MaxOpenTransactions = 1
	}
	if cfg.ExpirationTimerFrequency <= 0 {
		cfg.ExpirationTimerFrequency = time.Second
	}
	for name := range cfg.Queues {
		if err := queuename.Check(name); err != nil {
			return nil, fmt.Errorf("config: queues block %w", err)
		}
	}
	s := &Server{
		log:          log,
		started:      time.Now(),
		cfg:          cfg,
		queues:       map[string]*queue{},
		conns:        map[*conn]struct{}{},
		done:         make(chan struct{}),
		writeTimeout: 30 * time.Second,
	}
	s.maxOpen.Store(int32(cfg.MaxOpenTransactions))
	s.memLimit = cfg.TotalMemorySize
	s.reqBufLimit = requestBufferBudget(cfg)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", cfg.DataDir, err)
	}
	// One server per data directory: a second one stops here rather than
	// starting and failing every set on the queues' locks.
	unlock, err := journal.LockDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s.unlockDir = unlock
	if err := s.loadStatus(); err != nil {
		unlock()
		return nil, err
	}
	names, err := journal.Names(cfg.DataDir)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("list journals in %s: %w", cfg.DataDir, err)
	}
	start := time.Now()
	var items int64
	for _, name := range names {
		if !queuename.Valid(name) {
			log.Warn("ignoring journal with an invalid queue name", "name", name, "dir", cfg.DataDir)
			continue
		}
		items += s.queueFor(name, true).stats().Items
	}
	if len(names) > 0 {
		log.Info("queues restored", "queues", len(names), "items", items, "took", time.Since(start).Round(time.Millisecond), "dir", cfg.DataDir)
	}
	s.bgWG.Add(1)
	go s.sweepLoop()
	return s, nil
}

// requestBufferBudget is how many bytes all connections together may hold
// in read buffers beyond 4 KiB each: half of total_memory_size, and never
// less than four sets of the absolute maximum size.
func requestBufferBudget(cfg Config) int64 {
	return max(cfg.TotalMemorySize/2, 4*AbsoluteMaxItemSize+4*MaxLineLength)
}

// config returns the current configuration.
func (s *Server) config() Config {
	s.cfgMu.RLock()
	defer s.cfgMu.RUnlock()
	return s.cfg
}

// queueFor returns the named queue (already validated), creating it — and,
// for "parent+child", its parent — when create is set.
func (s *Server) queueFor(name string, create bool) *queue {
	s.mu.RLock()
	q := s.queues[name]
	s.mu.RUnlock()
	if q != nil {
		<-q.ready
		return q
	}
	if !create {
		return nil
	}
	parentName, isChild := queuename.Parent(name)
	if isChild {
		s.queueFor(parentName, true)
		s.testHook("parent-found")
	}
	s.mu.Lock()
	if q = s.queues[name]; q != nil {
		s.mu.Unlock()
		<-q.ready
		return q
	}
	// The journal is opened (files created, directory fsynced, replayed)
	// outside the server lock: commands on other queues go on meanwhile,
	// and commands on this one wait for ready.
	cfg := s.config()
	q = &queue{s: s, name: name, cfg: cfg.QueueConfig(name), created: time.Now(), log: s.log, ready: make(chan struct{})}
	if !isChild {
		// Fanout children outlive a deleted (or expired) parent, as in
		// Kestrel: the parent created again takes them back.
		for cname, c := range s.queues {
			if p, ok := queuename.Parent(cname); ok && p == name {
				q.children = append(q.children, c)
			}
		}
		slices.SortFunc(q.children, func(a, b *queue) int { return strings.Compare(a.name, b.name) })
	}
	s.queues[name] = q
	s.mu.Unlock()
	s.openJournal(q, cfg.DataDir)
	close(q.ready)
	if q.unavailable != nil && !errors.Is(q.unavailable, journal.ErrCorrupt) {
		// A transient failure (disk full, permissions): refuse this command
		// but try again on the next one instead of remembering the queue.
		s.mu.Lock()
		if s.queues[name] == q {
			delete(s.queues, name)
		}
		s.mu.Unlock()
		return q
	}
	s.queueCreates.Add(1)
	if isChild {
		s.testHook("child-published")
		s.linkChild(q, parentName)
	}
	return q
}

// linkChild adds a new fanout child to its parent. The parent is looked up
// again rather than taken from before the child's journal was opened: it
// may have been deleted and created again since, and the new one's scan
// for children (under s.mu) may or may not have found this child. With no
// parent now, the next one created takes the child in that scan.
func (s *Server) linkChild(q *queue, parentName string) {
	s.mu.RLock()
	parent := s.queues[parentName]
	s.mu.RUnlock()
	if parent == nil {
		return
	}
	<-parent.ready
	parent.mu.Lock()
	if !slices.Contains(parent.children, q) {
		parent.children = append(parent.children, q)
	}
	parent.mu.Unlock()
}

func (s *Server) testHook(stage string) {
	if f := s.onStage.Load(); f != nil {
		(*f)(stage)
	}
}

// openJournal opens and replays q's journal; on failure q stays
// unavailable and says why.
func (s *Server) openJournal(q *queue, dir string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.cfg.Journal {
		return
	}
	j, err := journal.Open(dir, q.name, journalOptions(q.cfg, s.log))
	if err != nil {
		q.unavailable = unavailableError(q.name, err)
		s.log.Error("queue unavailable", "queue", q.name, "err", err)
		return
	}
	q.j = j
	q.replay()
}

// UnavailableError says why a queue refuses every command: its journal
// could not be opened. It wraps ErrQueueUnavailable and the journal's error.
type UnavailableError struct {
	Queue string
	Err   error
}

func (e *UnavailableError) Error() string {
	var ce *journal.CorruptError
	if errors.As(e.Err, &ce) {
		return fmt.Sprintf("queue %s unavailable: journal corrupt at %s:%d", e.Queue, ce.File, ce.Offset)
	}
	return fmt.Sprintf("queue %s unavailable: %v", e.Queue, e.Err)
}

func (e *UnavailableError) Unwrap() []error { return []error{ErrQueueUnavailable, e.Err} }

func unavailableError(name string, err error) error { return &UnavailableError{Queue: name, Err: err} }

// deleteQueue drops a queue and its journal files. The server lock is held
// until the files are gone, so a set that recreates the queue right away
// opens a fresh journal, never the one being deleted.
func (s *Server) deleteQueue(name string) error {
	_, err := s.deleteQueueIf(name, nil)
	return err
}

// deleteQueueIf is deleteQueue when ok (nil: always) holds for the queue,
// judged under its lock; it reports whether the queue was deleted.
func (s *Server) deleteQueueIf(name string, ok func(*queue) bool) (bool, error) {
	s.mu.Lock()
	q := s.queues[name]
	if q == nil {
		s.mu.Unlock()
		return false, nil
	}
	<-q.ready
	q.mu.Lock()
	if ok != nil && !ok(q) {
		q.mu.Unlock()
		s.mu.Unlock()
		return false, nil
	}
	q.deleted = true
	q.dropAll()
	q.wakeAll()
	var err error
	if q.j != nil {
		if derr := q.j.Delete(); derr != nil {
			err = fmt.Errorf("delete journal of queue %s: %w", name, derr)
		}
	}
	q.mu.Unlock()
	delete(s.queues, name)
	s.mu.Unlock()
	s.queueDeletes.Add(1)
	if p, ok := queuename.Parent(name); ok {
		if parent := s.queueFor(p, false); parent != nil {
			parent.mu.Lock()
			for i, c := range parent.children {
				if c == q {
					parent.children = append(parent.children[:i], parent.children[i+1:]...)
					break
				}
			}
			parent.mu.Unlock()
		}
	}
	return true, err
}

// SetReloader gives `reload` a way to re-read the configuration (cmd/kpush
// passes one that reloads the config file). Without one, reload re-applies
// the current settings.
func (s *Server) SetReloader(f func() (Config, error)) {
	s.cfgMu.Lock()
	s.reloader = f
	s.cfgMu.Unlock()
}

// Reload re-reads queue settings (only: listeners and the data directory
// stay) and applies them to every open queue.
func (s *Server) Reload() error {
	s.cfgMu.RLock()
	f := s.reloader
	s.cfgMu.RUnlock()
	if f != nil {
		cfg, err := f()
		if err != nil {
			return err
		}
		s.cfgMu.Lock()
		s.cfg.Defaults = cfg.Defaults
		s.cfg.Queues = cfg.Queues
		if s.cfg.Queues == nil {
			s.cfg.Queues = map[string]QueueConfig{}
		}
		s.cfg.MaxOpenTransactions = max(cfg.MaxOpenTransactions, 1)
		s.maxOpen.Store(int32(s.cfg.MaxOpenTransactions))
		s.cfgMu.Unlock()
	}
	cfg := s.config()
	for _, q := range s.queueList() {
		q.mu.Lock()
		q.cfg = cfg.QueueConfig(q.name)
		q.mu.Unlock()
	}
	s.log.Info("reloaded config")
	return nil
}

// Addr returns the address of the protocol listener (nil before Serve).
func (s *Server) Addr() net.Addr {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return s.addr
}

// Serve accepts connections on ln until Shutdown; it logs "listening" once
// ready and returns ErrServerClosed after a shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.connMu.Lock()
	if s.closing {
		s.connMu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns = append(s.lns, ln)
	if s.addr == nil {
		s.addr = ln.Addr()
	}
	s.connMu.Unlock()
	s.log.Info("listening", "service", "queued", "addr", ln.Addr().String())
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return ErrServerClosed
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				delay = min(max(delay*2, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "err", err, "in", delay)
				select {
				case <-time.After(delay):
				case <-s.done:
					return ErrServerClosed
				}
				continue
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		delay = 0
		s.startConn(nc)
	}
}

// AdminHandler, when set (by http.go), serves the admin HTTP endpoints
// ListenAndServe exposes on cfg.AdminListen.
var AdminHandler func(*Server) http.Handler

// ListenAndServe listens on cfg.Listen (and cfg.AdminListen if set), serves
// until ctx is done, then shuts down gracefully.
func (s *Server) ListenAndServe(ctx context.Context) error {
	cfg := s.config()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		s.closeJournals()
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	var admin *http.Server
	errc := make(chan error, 2)
	if cfg.AdminListen != "" && AdminHandler != nil {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			ln.Close()
			s.closeJournals()
			return fmt.Errorf("listen on admin address %s: %w", cfg.AdminListen, err)
		}
		admin = &http.Server{Handler: AdminHandler(s), ReadHeaderTimeout: 10 * time.Second}
		s.log.Info("listening", "service", "admin", "addr", aln.Addr().String())
		go func() {
			if err := admin.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin http: %w", err)
			}
		}()
	}
	go func() { errc <- s.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if admin != nil {
		_ = admin.Shutdown(sctx)
	}
	err = s.Shutdown(sctx)
	if serveErr != nil && !errors.Is(serveErr, ErrServerClosed) {
		return serveErr
	}
	return err
}

// Shutdown stops accepting, closes every connection (their open reads go
// back to the heads of their queues and blocked gets are woken), then syncs
// and closes the journals. It returns early with ctx's error if
// connections do not finish in time.
func (s *Server) Shutdown(ctx context.Context) error {
	s.doneOnce.Do(func() { close(s.done) })
	// Connections finish the batch they are running (a blocked get sees
	// done and answers END), then see done instead of reading more: a past
	// read deadline interrupts the reads they are blocked in.
	s.connMu.Lock()
	s.closing = true
	for _, ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	}
	s.connMu.Unlock()
	finished := make(chan struct{})
	go func() {
		s.connWG.Wait()
		s.bgWG.Wait()
		close(finished)
	}()
	grace := time.NewTimer(2 * time.Second)
	defer grace.Stop()
	select {
	case <-finished:
	case <-grace.C:
		// Stuck writing to clients that do not read: cut them off.
		s.connMu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.connMu.Unlock()
		select {
		case <-finished:
		case <-ctx.Done():
			return fmt.Errorf("shutdown: connections still busy: %w", ctx.Err())
		}
	case <-ctx.Done():
		return fmt.Errorf("shutdown: connections still busy: %w", ctx.Err())
	}
	return s.closeJournals()
}

func (s *Server) closeJournals() error {
	s.doneOnce.Do(func() { close(s.done) })
	s.connMu.Lock()
	if s.closed {
		s.connMu.Unlock()
		return nil
	}
	s.closed = true
	s.connMu.Unlock()
	var errs []error
	for _, q := range s.queueList() {
		q.mu.Lock()
		if q.j != nil {
			q.closeCursor()
			if err := q.j.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("sync journal of queue %s: %w", q.name, err))
			}
			if err := q.j.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close journal of queue %s: %w", q.name, err))
			}
			q.unavailable = unavailableError(q.name, errors.New("server shut down"))
		}
		q.mu.Unlock()
	}
	s.log.Info("journals closed", "queues", len(s.queueList()))
	if err := s.unlockDir(); err != nil {
		errs = append(errs, fmt.Errorf("unlock data dir: %w", err))
	}
	return errors.Join(errs...)
}
