package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kpush/kpush/discovery"
	"github.com/kpush/kpush/internal/queuename"
	"github.com/kpush/kpush/push"
)

// Producer enqueues items on a set of queued servers. It is safe for
// concurrent use; share one per process.
type Producer struct {
	opts    options
	log     *slog.Logger
	set     atomic.Pointer[serverSet] // the servers now; replaced whole when discovery changes them
	watcher *discovery.Watcher
	next    atomic.Uint64 // round-robin cursor for items without a routing key

	ctx    context.Context // cancelled by Close; ends the probes and discovery
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup // probe goroutines, discovery and abandoned requests
	setMu  sync.Mutex     // serializes setServers
}

// serverSet is the servers items are placed on, and their ketama ring. It
// is never changed once published: an enqueue works on the set it loaded.
type serverSet struct {
	servers []*server
	ring    *ring
}

// New returns a Producer for the given servers: host:port each, or DNS
// names that resolve to many (dns:NAME:PORT for every A/AAAA address,
// dns+srv:NAME for SRV records; see package discovery). Names are resolved
// now and every WithResolveInterval; a server that appears gets its share
// at once, one that disappears takes no new items. New does not connect:
// servers are assumed up until a request to one fails. A name that does
// not resolve at start is not an error: enqueues fail with ErrNoServers
// until it does.
func New(servers []string, opts ...Option) (*Producer, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	list, err := discovery.Parse(servers)
	if err != nil {
		return nil, fmt.Errorf("producer: %w: %w", ErrInvalidOption, err)
	}
	p := &Producer{opts: o, log: o.log}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.watcher = discovery.NewWatcher(list, discovery.Options{Resolver: o.resolver, Interval: o.resolveInterval, Logger: o.log})
	addrs, _ := p.watcher.Resolve(p.ctx) // failures are logged; Enqueue says so while there are no servers
	p.setServers(addrs)
	if list.Dynamic() {
		p.wg.Go(func() { p.watcher.Run(p.ctx, p.setServers) })
	}
	return p, nil
}

// setServers makes addrs the servers items are placed on. Servers kept
// keep their state (health, counters, connections); a removed server takes
// no new items from now on, its probe stops and its connections close as
// its requests in flight finish.
func (p *Producer) setServers(addrs []string) {
	p.setMu.Lock()
	defer p.setMu.Unlock()
	old := p.set.Load()
	byAddr := map[string]*server{}
	if old != nil {
		if slices.Equal(old.addrs(), addrs) {
			return
		}
		for _, s := range old.servers {
			byAddr[s.addr] = s
		}
	}
	next := &serverSet{ring: newRing(addrs)}
	for _, a := range addrs {
		s, ok := byAddr[a]
		if ok {
			delete(byAddr, a)
		} else {
			s = newServer(a, &p.opts)
		}
		next.servers = append(next.servers, s)
	}
	p.set.Store(next)
	for _, s := range byAddr {
		s.retire()
	}
}

func (set *serverSet) addrs() []string {
	addrs := make([]string, len(set.servers))
	for i, s := range set.servers {
		addrs[i] = s.addr
	}
	return addrs
}

// Close stops the background probes and closes idle connections. Enqueue
// calls after Close fail with ErrClosed.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	var errs []error
	for _, s := range p.set.Load().servers {
		if err := s.mc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close connections to %s: %w", s.addr, err))
		}
	}
	return errors.Join(errs...)
}

// Servers returns the addresses of the servers items go to now: fixed
// ones in the order given to New, then those found through DNS.
func (p *Producer) Servers() []string { return p.set.Load().addrs() }

// Stats returns the counters of each server in Servers, by address.
func (p *Producer) Stats() map[string]ServerStats {
	set := p.set.Load()
	m := make(map[string]ServerStats, len(set.servers))
	for _, s := range set.servers {
		m[s.addr] = s.stats()
	}
	return m
}

// ValidateQueueName checks a queue name the way queued does: 1 to 250
// bytes of [A-Za-z0-9_-], with at most one '+' (the fanout separator)
// between two non-empty parts. The error wraps ErrInvalidQueue.
func ValidateQueueName(name string) error { return queuename.Check(name) }

// Enqueue validates msg, encodes it and stores it on one server. It returns
// nil only after a server answered STORED. An invalid message is refused
// before anything is sent (the error wraps push.ErrInvalidMessage and holds
// a *push.ValidationError). EnqueuedAt is set to now when zero, in the
// stored copy only.
func (p *Producer) Enqueue(ctx context.Context, queue string, msg *push.Message, opts ...EnqueueOption) error {
	data, err := encodeMessage(msg)
	if err != nil {
		return &EnqueueError{Queue: queue, Err: err}
	}
	return p.EnqueueRaw(ctx, queue, data, opts...)
}

func encodeMessage(msg *push.Message) ([]byte, error) {
	if msg == nil {
		return nil, fmt.Errorf("%w: nil message", push.ErrInvalidMessage)
	}
	if err := msg.Validate(); err != nil {
		return nil, err
	}
	m := *msg
	if m.EnqueuedAt == 0 {
		m.EnqueuedAt = time.Now().UnixMilli()
	}
	data, err := m.Encode()
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %v", push.ErrInvalidMessage, err)
	}
	return data, nil
}

// EnqueueRaw stores an already encoded item, as Enqueue does. The worker
// uses it to re-queue messages (failed, invalid-token and delay queues)
// without decoding them.
//
// Placement: without a RoutingKey, items go round-robin over the healthy
// servers (see WithLeastLoaded for load-aware placement). With one, they
// go to the key's server on the ketama ring. A server that fails to
// connect or fails the write is marked down and the item tries the next
// one; NOT_STORED (queue full), SERVER_ERROR and a refusal of the item's
// size also move to the next one, without marking the server down (it
// answered). If the request was written but no answer came, the item fails
// with ErrOutcomeUnknown naming the server (unless WithAtLeastOnce).
//
// When ctx is done while a request is in flight, EnqueueRaw returns at once
// with ErrOutcomeUnknown wrapping ctx's error (the request may still be
// stored; it completes in the background within WithTimeout).
func (p *Producer) EnqueueRaw(ctx context.Context, queue string, data []byte, opts ...EnqueueOption) error {
	if err := ValidateQueueName(queue); err != nil {
		return &EnqueueError{Queue: queue, Err: err}
	}
	var eo enqueueOptions
	for _, opt := range opts {
		opt(&eo)
	}
	exptime, err := eo.exptime(time.Now())
	if err != nil {
		return &EnqueueError{Queue: queue, Err: err}
	}
	return p.enqueue(ctx, queue, &eo, &memcache.Item{Key: queue, Value: data, Expiration: exptime})
}

func (p *Producer) enqueue(ctx context.Context, queue string, eo *enqueueOptions, item *memcache.Item) error {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return &EnqueueError{Queue: queue, Err: ErrClosed}
	}
	set := p.set.Load()
	var buf [8]int
	order := p.candidates(set, eo, buf[:0])
	var (
		attempts    []*AttemptError
		sawFull     bool
		tooLarge    bool
		unknownFrom *server
	)
	for _, i := range order {
		s := set.servers[i]
		if !s.healthy.Load() {
			continue
		}
		if err := ctx.Err(); err != nil {
			if unknownFrom != nil {
				break
			}
			return &EnqueueError{Queue: queue, Err: err, Attempts: attempts}
		}
		oc, err := p.attempt(ctx, s, item)
		switch oc {
		case outcomeCancelled:
			// The caller gave up while the request was in flight: it may
			// still be stored. Never retried elsewhere.
			return &EnqueueError{Queue: queue, Server: s.addr, Err: fmt.Errorf("%w: %w", ErrOutcomeUnknown, err), Attempts: attempts}
		case outcomeStored:
			if s.backoff.Load() != int64(p.opts.retryBackoff) {
				s.backoff.Store(int64(p.opts.retryBackoff))
			}
			return nil
		case outcomeFull:
			sawFull = true
			attempts = append(attempts, &AttemptError{Server: s.addr, Err: ErrQueueFull})
		case outcomeNotSent:
			p.markDown(s, err)
			attempts = append(attempts, &AttemptError{Server: s.addr, Err: fmt.Errorf("not stored: %s", serverReply(err))})
		case outcomeServerError:
			// The server answered, so it is up: a read-only or quiescent
			// server, a queue whose journal failed. Only this item moves.
			s.noteError(err)
			attempts = append(attempts, &AttemptError{Server: s.addr, Err: fmt.Errorf("not stored: %s", serverReply(err))})
		case outcomeUnknown:
			p.markDown(s, err)
			a := &AttemptError{Server: s.addr, Err: fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)}
			attempts = append(attempts, a)
			if !p.opts.atLeastOnce {
				return &EnqueueError{Queue: queue, Server: s.addr, Err: a.Err, Attempts: attempts}
			}
			unknownFrom = s
		case outcomeTooLarge:
			// Servers may differ in max_item_size: try the others.
			tooLarge = true
			s.noteError(err)
			attempts = append(attempts, &AttemptError{Server: s.addr, Err: fmt.Errorf("%w: %s", ErrRejected, serverReply(err))})
		case outcomeRejected:
			s.noteError(err)
			a := &AttemptError{Server: s.addr, Err: fmt.Errorf("%w: %s", ErrRejected, serverReply(err))}
			attempts = append(attempts, a)
			return &EnqueueError{Queue: queue, Server: s.addr, Err: a.Err, Attempts: attempts}
		}
	}
	switch {
	case unknownFrom != nil:
		return &EnqueueError{Queue: queue, Err: fmt.Errorf("%w (first on %s), and no other server stored it", ErrOutcomeUnknown, unknownFrom.addr), Attempts: attempts}
	case sawFull:
		return &EnqueueError{Queue: queue, Err: ErrQueueFull, Attempts: attempts}
	case tooLarge:
		return &EnqueueError{Queue: queue, Err: fmt.Errorf("%w: item of %d bytes is too large", ErrRejected, len(item.Value)), Attempts: attempts}
	case len(set.servers) == 0:
		return &EnqueueError{Queue: queue, Err: fmt.Errorf("%w: none found yet: %v", ErrNoServers, p.watcher.Err())}
	case len(attempts) == 0:
		return &EnqueueError{Queue: queue, Err: fmt.Errorf("%w: all %d servers are down (probing in the background)", ErrNoServers, len(set.servers)), Attempts: set.downAttempts()}
	}
	return &EnqueueError{Queue: queue, Err: ErrNoServers, Attempts: attempts}
}

// attempt sends item to s. gomemcache cannot abandon a request, so when
// ctx can be cancelled the request runs on its own goroutine and attempt
// returns outcomeCancelled as soon as ctx is done; the request finishes in
// the background (within WithTimeout), counted in Stats, and marks the
// server down if it fails. A ctx that cannot be cancelled costs nothing
// extra.
func (p *Producer) attempt(ctx context.Context, s *server, item *memcache.Item) (outcome, error) {
	if ctx.Done() == nil {
		return s.set(item, p.opts.maxIdleConns)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return outcomeNotSent, ErrClosed
	}
	p.wg.Add(1)
	p.mu.Unlock()
	type result struct {
		oc  outcome
		err error
	}
	done := make(chan result, 1)
	var abandoned atomic.Bool
	go func() {
		defer p.wg.Done()
		oc, err := s.set(item, p.opts.maxIdleConns)
		done <- result{oc, err}
		if abandoned.Load() && (oc == outcomeNotSent || oc == outcomeUnknown) {
			p.markDown(s, err)
		}
	}()
	select {
	case r := <-done:
		return r.oc, r.err
	case <-ctx.Done():
		abandoned.Store(true)
		select {
		case r := <-done: // finished just now after all
			return r.oc, r.err
		default:
		}
		return outcomeCancelled, ctx.Err()
	}
}

// downAttempts describes why each server is down, for an error.
func (set *serverSet) downAttempts() []*AttemptError {
	var out []*AttemptError
	for _, s := range set.servers {
		st := s.stats()
		if !st.Healthy {
			out = append(out, &AttemptError{Server: s.addr, Err: fmt.Errorf("down since %s: %s", st.DownSince.Format(time.RFC3339), st.LastError)})
		}
	}
	return out
}

// candidates returns the servers an item tries, in order. With a routing
// key it is the key's ketama order (all servers; down ones are skipped at
// send time). Without, it is the healthy servers rotated by a shared
// cursor (exactly even shares), and with WithLeastLoaded the first two
// swapped when the first is clearly backed up compared with the second.
func (p *Producer) candidates(set *serverSet, eo *enqueueOptions, dst []int) []int {
	if eo.hasKey {
		return set.ring.order(eo.routingKey, dst)
	}
	// Rotate over the healthy servers only, so a down server's share is
	// spread evenly over the others rather than falling to its neighbour.
	var buf [16]int
	healthy := buf[:0]
	for i, s := range set.servers {
		if s.healthy.Load() {
			healthy = append(healthy, i)
		}
	}
	if len(healthy) == 0 {
		return dst
	}
	start := int(p.next.Add(1) % uint64(len(healthy)))
	dst = append(dst, healthy[start:]...)
	dst = append(dst, healthy[:start]...)
	if p.opts.leastLoaded && len(dst) >= 2 && backedUp(set.servers[dst[0]].inflight.Load(), set.servers[dst[1]].inflight.Load()) {
		dst[0], dst[1] = dst[1], dst[0]
	}
	return dst
}

// EnqueueBatch enqueues msgs on queue and returns how many were stored.
// Invalid messages are refused without being sent; the others are sent
// (several at once, see WithBatchConcurrency; one by one, in order, with a
// RoutingKey). If any item was not stored the error is a *BatchError
// listing exactly those items by index; every other item was stored.
func (p *Producer) EnqueueBatch(ctx context.Context, queue string, msgs []*push.Message, opts ...EnqueueOption) (int, error) {
	if err := ValidateQueueName(queue); err != nil {
		return 0, &EnqueueError{Queue: queue, Err: err}
	}
	var eo enqueueOptions
	for _, opt := range opts {
		opt(&eo)
	}
	exptime, err := eo.exptime(time.Now())
	if err != nil {
		return 0, &EnqueueError{Queue: queue, Err: err}
	}
	errs := make([]error, len(msgs))
	items := make([]*memcache.Item, len(msgs))
	for i, m := range msgs {
		data, err := encodeMessage(m)
		if err != nil {
			errs[i] = &EnqueueError{Queue: queue, Err: err}
			continue
		}
		items[i] = &memcache.Item{Key: queue, Value: data, Expiration: exptime}
	}

	workers := p.opts.batchConcurrency
	if eo.hasKey {
		workers = 1
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, len(msgs)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(items) {
					return
				}
				if items[i] != nil {
					errs[i] = p.enqueue(ctx, queue, &eo, items[i])
				}
			}
		})
	}
	wg.Wait()

	be := &BatchError{Total: len(msgs)}
	for i, err := range errs {
		if err != nil {
			be.Failed = append(be.Failed, ItemError{Index: i, Err: err})
		}
	}
	stored := len(msgs) - len(be.Failed)
	if len(be.Failed) > 0 {
		return stored, be
	}
	return stored, nil
}

// backedUp reports whether a server with a requests in flight is clearly
// slower than one with b: at least twice as many and four more. Small,
// random differences between equally fast servers do not count, so their
// shares stay even; a server that is slow but within the timeout piles up
// requests and is passed over until it catches up.
func backedUp(a, b int64) bool { return a >= 2*b+4 }
