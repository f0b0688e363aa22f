package producer

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/kpush/kpush/discovery"
)

// Defaults of the options.
const (
	DefaultTimeout          = time.Second
	DefaultMaxIdleConns     = 32
	DefaultRetryBackoff     = 50 * time.Millisecond
	DefaultMaxRetryBackoff  = 5 * time.Second
	DefaultBatchConcurrency = 16
	DefaultResolveInterval  = discovery.DefaultInterval
)

type options struct {
	timeout          time.Duration
	maxIdleConns     int
	retryBackoff     time.Duration
	maxRetryBackoff  time.Duration
	batchConcurrency int
	atLeastOnce      bool
	leastLoaded      bool
	resolver         *net.Resolver
	resolveInterval  time.Duration
	log              *slog.Logger
}

func defaultOptions() options {
	return options{
		timeout:          DefaultTimeout,
		maxIdleConns:     DefaultMaxIdleConns,
		retryBackoff:     DefaultRetryBackoff,
		maxRetryBackoff:  DefaultMaxRetryBackoff,
		batchConcurrency: DefaultBatchConcurrency,
		resolveInterval:  DefaultResolveInterval,
		log:              slog.Default(),
	}
}

func (o *options) check() error {
	switch {
	case o.timeout <= 0:
		return fmt.Errorf("%w: timeout %v must be positive", ErrInvalidOption, o.timeout)
	case o.maxIdleConns < 1:
		return fmt.Errorf("%w: max idle connections %d must be at least 1", ErrInvalidOption, o.maxIdleConns)
	case o.retryBackoff <= 0:
		return fmt.Errorf("%w: retry backoff %v must be positive", ErrInvalidOption, o.retryBackoff)
	case o.maxRetryBackoff < o.retryBackoff:
		return fmt.Errorf("%w: max retry backoff %v is below the initial backoff %v", ErrInvalidOption, o.maxRetryBackoff, o.retryBackoff)
	case o.batchConcurrency < 1:
		return fmt.Errorf("%w: batch concurrency %d must be at least 1", ErrInvalidOption, o.batchConcurrency)
	case o.resolveInterval <= 0:
		return fmt.Errorf("%w: resolve interval %v must be positive", ErrInvalidOption, o.resolveInterval)
	case o.log == nil:
		return fmt.Errorf("%w: nil logger", ErrInvalidOption)
	}
	return nil
}

// Option configures a Producer.
type Option func(*options)

// WithTimeout bounds connecting to a server and each request's write and
// read. A server that does not answer within it is marked down (and probed
// in the background) and the item goes to another server, unless the
// request was already written: then the outcome is unknown (see
// ErrOutcomeUnknown). Default DefaultTimeout. Keep it well above the
// servers' fsync time under load.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithMaxIdleConns sets how many idle connections are kept per server. Set
// it to at least the number of goroutines enqueueing at once, or
// connections are dialled and closed per request. Default
// DefaultMaxIdleConns.
func WithMaxIdleConns(n int) Option { return func(o *options) { o.maxIdleConns = n } }

// WithRetryBackoff sets how a down server is probed: the first probe after
// initial, then doubling (with jitter) up to max. Default
// DefaultRetryBackoff and DefaultMaxRetryBackoff.
func WithRetryBackoff(initial, max time.Duration) Option {
	return func(o *options) { o.retryBackoff, o.maxRetryBackoff = initial, max }
}

// WithBatchConcurrency sets how many items of one EnqueueBatch are in
// flight at once (batches with a routing key are sent one by one to keep
// their order). Default DefaultBatchConcurrency.
func WithBatchConcurrency(n int) Option { return func(o *options) { o.batchConcurrency = n } }

// WithAtLeastOnce makes Enqueue retry an item on another server when a
// server took the request but never answered. The item may then be stored
// twice: consumers must tolerate duplicates. Without it (the default) such
// an item fails with ErrOutcomeUnknown and the caller decides.
func WithAtLeastOnce() Option { return func(o *options) { o.atLeastOnce = true } }

// WithLeastLoaded makes placement load-aware: of the next two servers in
// the rotation, the second is used when the first has clearly more
// requests in flight (at least twice as many, and four more). A server
// that is slow but answers within the timeout then gets fewer items. The
// price is that shares are no longer exactly even under concurrency (a few
// percent apart). Default off: strict round-robin, and a slow server is
// only passed over once it exceeds WithTimeout.
func WithLeastLoaded() Option { return func(o *options) { o.leastLoaded = true } }

// WithResolveInterval sets how often DNS server names (dns:, dns+srv:)
// are resolved again. Default DefaultResolveInterval.
func WithResolveInterval(d time.Duration) Option { return func(o *options) { o.resolveInterval = d } }

// WithResolver sets the resolver for DNS server names and for connecting
// to the servers they resolve to (see discovery.NewResolver for one that
// asks a given DNS server). Default net.DefaultResolver.
func WithResolver(r *net.Resolver) Option { return func(o *options) { o.resolver = r } }

// WithLogger sets the logger for server state changes (down, up). Default
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

type enqueueOptions struct {
	routingKey string
	hasKey     bool
	delay      time.Duration
	hasDelay   bool
	expiry     time.Time
	hasExpiry  bool
}

// EnqueueOption configures one Enqueue call.
type EnqueueOption func(*enqueueOptions)

// RoutingKey pins the item to one server chosen by consistent hashing of
// key (ketama), so items with the same key (a user id, say) go to the same
// server and, enqueued one after another, stay in order. Adding a server
// moves only about 1/N of the keys. While that server is down the items go
// to the next server on the ring, the same one for every item of the key.
func RoutingKey(key string) EnqueueOption {
	return func(o *enqueueOptions) { o.routingKey, o.hasKey = key, true }
}

// Delay sets the item's Kestrel expiry to d from now (rounded up to whole
// seconds, at least one). On a queue that expires into another
// (expire_to_queue), this is a delay queue: the item appears in the target
// queue after d. On an ordinary queue the item is dropped after d.
func Delay(d time.Duration) EnqueueOption {
	return func(o *enqueueOptions) { o.delay, o.hasDelay = d, true }
}

// Expiry sets the item's Kestrel expiry to the absolute time t (whole
// seconds). It must not be combined with Delay.
func Expiry(t time.Time) EnqueueOption {
	return func(o *enqueueOptions) { o.expiry, o.hasExpiry = t, true }
}

// kestrelRelativeLimit: memcache exptime values below it are seconds from
// now, larger ones are absolute unix times.
const kestrelRelativeLimit = 1_000_000

// exptime returns the memcache exptime field for the options.
func (o *enqueueOptions) exptime(now time.Time) (int32, error) {
	switch {
	case o.hasDelay && o.hasExpiry:
		return 0, fmt.Errorf("%w: Delay and Expiry together", ErrInvalidOption)
	case o.hasDelay:
		secs := int64((o.delay + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		if secs >= kestrelRelativeLimit {
			secs = now.Unix() + secs
		}
		if secs > 1<<31-1 {
			return 0, fmt.Errorf("%w: Delay %v is too far in the future", ErrInvalidOption, o.delay)
		}
		return int32(secs), nil
	case o.hasExpiry:
		secs := o.expiry.Unix()
		if secs < kestrelRelativeLimit || secs > 1<<31-1 {
			return 0, fmt.Errorf("%w: Expiry %v is not a representable unix time", ErrInvalidOption, o.expiry)
		}
		return int32(secs), nil
	}
	return 0, nil
}
