package producer

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kpush/kpush/discovery"
)

// outcome is what one set on one server came to.
type outcome int

const (
	outcomeStored      outcome = iota // STORED
	outcomeFull                       // NOT_STORED: the queue is full there
	outcomeNotSent                    // certainly not stored: connect or write failed
	outcomeServerError                // SERVER_ERROR: the server is alive but could not store it
	outcomeStale                      // the pooled connection was dead before the write: redial
	outcomeUnknown                    // written, but no answer: maybe stored
	outcomeRejected                   // CLIENT_ERROR or ERROR: the request is malformed for any server
	outcomeTooLarge                   // SERVER_ERROR about the item's size: this server refuses this item
	outcomeCancelled                  // the caller's ctx ended while the request was in flight
)

// server is one queued server and its health. healthy is read on every
// enqueue without a lock; the rest of the state changes rarely.
type server struct {
	addr string
	mc   *memcache.Client

	healthy   atomic.Bool
	inflight  atomic.Int64
	backoff   atomic.Int64 // nanoseconds before the next probe once down
	stored    atomic.Uint64
	notStored atomic.Uint64
	failed    atomic.Uint64
	unknown   atomic.Uint64
	rejected  atomic.Uint64

	// retired is set once discovery removed the server: it takes no new
	// items, and connections coming back from requests are closed.
	retired atomic.Bool
	gone    chan struct{} // closed on retire; ends the probe

	mu        sync.Mutex
	lastErr   string
	downSince time.Time
}

// newServer returns the server at addr, a host:port checked by
// discovery.Parse.
func newServer(addr string, o *options) *server {
	mc := memcache.NewFromSelector(oneServer{addr: unresolvedAddr(addr)})
	mc.Timeout = o.timeout
	mc.MaxIdleConns = o.maxIdleConns
	// Names found by SRV resolve where the SRV records did, and stay
	// reachable at their last addresses while the DNS is down.
	d := &discovery.Dialer{Resolver: o.resolver}
	mc.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return &checkedConn{Conn: c}, nil
	}
	s := &server{addr: addr, mc: mc, gone: make(chan struct{})}
	s.healthy.Store(true)
	s.backoff.Store(int64(o.retryBackoff))
	return s
}

// retire is called once, when discovery removed s from the servers.
func (s *server) retire() {
	s.retired.Store(true)
	close(s.gone)
	_ = s.mc.Close()
}

// unresolvedAddr is a host:port that is resolved at each dial, not once:
// a name that does not resolve yet (a container still starting) makes the
// server look down until it does, instead of failing New, and a changed
// DNS record is followed on reconnect.
type unresolvedAddr string

func (a unresolvedAddr) Network() string { return "tcp" }
func (a unresolvedAddr) String() string  { return string(a) }

// oneServer is a gomemcache ServerSelector for exactly one server: the
// Producer places items itself, one client per server.
type oneServer struct{ addr unresolvedAddr }

func (s oneServer) PickServer(string) (net.Addr, error) { return s.addr, nil }
func (s oneServer) Each(f func(net.Addr) error) error   { return f(s.addr) }

// set stores item on this server. A pooled connection found closed before
// anything was written is retried on another connection (a restarted
// server leaves up to maxIdle of them).
func (s *server) set(item *memcache.Item, maxIdle int) (outcome, error) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for try := 0; ; try++ {
		err := s.mc.Set(item)
		if s.retired.Load() {
			_ = s.mc.Close() // the connection just returned to the pool is not needed
		}
		oc := classify(err)
		if oc == outcomeStale {
			if try < maxIdle {
				continue
			}
			oc = outcomeNotSent
		}
		switch oc {
		case outcomeStored:
			s.stored.Add(1)
		case outcomeFull:
			s.notStored.Add(1)
		case outcomeNotSent, outcomeServerError:
			s.failed.Add(1)
		case outcomeUnknown:
			s.unknown.Add(1)
		case outcomeRejected, outcomeTooLarge:
			s.rejected.Add(1)
		}
		return oc, err
	}
}

// classify maps a gomemcache Set error to an outcome. What matters is
// whether the request may have reached the server: a failed connect or
// write cannot have stored anything (the server needs the whole data block
// and its CRLF), a failed read after a complete write may have.
func classify(err error) outcome {
	if err == nil {
		return outcomeStored
	}
	if errors.Is(err, memcache.ErrNotStored) {
		return outcomeFull
	}
	if errors.Is(err, errUnsolicitedData) {
		// A server that talks before being asked (queued's "SERVER_ERROR
		// too many connections" on accept) is not taking requests.
		return outcomeNotSent
	}
	var stale *staleConnError
	if errors.As(err, &stale) {
		return outcomeStale
	}
	var cte *memcache.ConnectTimeoutError
	if errors.As(err, &cte) {
		return outcomeNotSent
	}
	var op *net.OpError
	if errors.As(err, &op) {
		switch op.Op {
		case "dial", "write":
			return outcomeNotSent
		}
		return outcomeUnknown
	}
	if errors.Is(err, memcache.ErrMalformedKey) {
		return outcomeRejected
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return outcomeUnknown
	}
	// gomemcache reports any other reply as `unexpected response line
	// from "set": "<line>"`.
	msg := err.Error()
	switch {
	case strings.Contains(msg, `"SERVER_ERROR`) && isSizeRefusal(msg):
		return outcomeTooLarge
	case strings.Contains(msg, `"SERVER_ERROR too many connections`):
		// Sent on accept, before the request was read: the server is
		// turning connections away, which is down as far as we can use it.
		return outcomeNotSent
	case strings.Contains(msg, `"SERVER_ERROR`):
		return outcomeServerError
	case strings.Contains(msg, `"CLIENT_ERROR`), strings.Contains(msg, `"ERROR`):
		return outcomeRejected
	}
	return outcomeUnknown
}

// isSizeRefusal reports whether a SERVER_ERROR is about the item's size
// (queued: "item larger than max_item_size"; memcached: "object too large
// for cache"). The server is fine; only this item is refused, so it must
// not be marked down.
func isSizeRefusal(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "max_item_size") || strings.Contains(msg, "too large") || strings.Contains(msg, "larger than")
}

// serverReply extracts the server's reply line from a gomemcache error,
// for messages; it returns the error text when there is none.
func serverReply(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, `: "`); i >= 0 && strings.HasPrefix(msg, "memcache: unexpected response line") {
		return strings.TrimSuffix(strings.TrimSuffix(msg[i+3:], `"`), `\r\n`)
	}
	return msg
}

func (s *server) stats() ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ServerStats{
		Healthy:   s.healthy.Load(),
		Stored:    s.stored.Load(),
		NotStored: s.notStored.Load(),
		Failed:    s.failed.Load(),
		Unknown:   s.unknown.Load(),
		Rejected:  s.rejected.Load(),
		InFlight:  s.inflight.Load(),
		LastError: s.lastErr,
		DownSince: s.downSince,
	}
}

// ServerStats are one server's counters since New.
type ServerStats struct {
	Healthy   bool      // taking items now (false while down and being probed)
	Stored    uint64    // STORED answers
	NotStored uint64    // NOT_STORED answers: queue full there
	Failed    uint64    // attempts that certainly stored nothing: connect or write failed, SERVER_ERROR
	Unknown   uint64    // attempts with no answer after the request was written: maybe stored
	Rejected  uint64    // refusals of the item itself: CLIENT_ERROR, ERROR, too large
	InFlight  int64     // requests waiting for an answer now
	LastError string    // the last failure, if any
	DownSince time.Time // when it was last marked down (zero if never)
}

// noteError records a failure that leaves s in rotation, for Stats.
func (s *server) noteError(err error) {
	s.mu.Lock()
	s.lastErr = serverReply(err)
	s.mu.Unlock()
}

// markDown takes s out of rotation and starts probing it, unless it is
// already down.
func (p *Producer) markDown(s *server, cause error) {
	s.mu.Lock()
	s.lastErr = cause.Error()
	if !s.healthy.Load() {
		s.mu.Unlock()
		return
	}
	s.healthy.Store(false)
	s.downSince = time.Now()
	s.mu.Unlock()
	// Idle connections to a server that failed are suspect; the probe
	// dials afresh.
	_ = s.mc.Close()

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.log.Warn("queued server down, probing in the background", "server", s.addr, "err", cause)
	p.wg.Add(1)
	go p.probe(s)
}

// probe owns s while it is down: it sends `version` after a jittered,
// doubling backoff until the server answers, then puts it back in
// rotation. The backoff it reached is kept, so a server that flaps is
// probed ever less often; a successful store resets it.
func (p *Producer) probe(s *server) {
	defer p.wg.Done()
	backoff := time.Duration(s.backoff.Load())
	for {
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-p.ctx.Done():
			t.Stop()
			return
		case <-s.gone:
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, p.opts.maxRetryBackoff)
		s.backoff.Store(int64(backoff))
		_ = s.mc.Close()
		err := s.mc.Ping()
		if err == nil {
			s.mu.Lock()
			since := s.downSince
			s.healthy.Store(true)
			s.mu.Unlock()
			p.log.Info("queued server up again", "server", s.addr, "down_for", time.Since(since).Round(time.Millisecond))
			return
		}
		s.mu.Lock()
		s.lastErr = err.Error()
		s.mu.Unlock()
		p.log.Debug("queued server still down", "server", s.addr, "err", err, "next_probe_in", backoff)
	}
}

var errUnsolicitedData = errors.New("server sent data before the request")

// staleConnError says a pooled connection was found closed by the server
// before anything was written on it: the request certainly did not arrive.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string {
	return "pooled connection already closed by the server: " + e.err.Error()
}

func (e *staleConnError) Unwrap() error { return e.err }

// checkedConn checks, before the first write of each request, that the
// server has not closed the connection while it sat in gomemcache's idle
// pool. gomemcache calls SetDeadline at the start of every request, which
// arms the check. A connection is used by one goroutine at a time.
type checkedConn struct {
	net.Conn
	armed bool
}

func (c *checkedConn) SetDeadline(t time.Time) error {
	c.armed = true
	return c.Conn.SetDeadline(t)
}

func (c *checkedConn) Write(b []byte) (int, error) {
	if c.armed {
		c.armed = false
		if sc, ok := c.Conn.(syscall.Conn); ok {
			if err := peerClosed(sc); err != nil {
				return 0, &staleConnError{err: err}
			}
		}
	}
	return c.Conn.Write(b)
}
