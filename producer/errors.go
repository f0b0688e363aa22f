package producer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kpush/kpush/internal/queuename"
)

// Sentinels for errors.Is. Every error Enqueue returns wraps one of
// ErrQueueFull, ErrNoServers, ErrOutcomeUnknown, ErrRejected,
// ErrInvalidQueue, ErrInvalidOption, ErrClosed, push.ErrInvalidMessage or
// a context error; a context error that ended a request in flight comes
// with ErrOutcomeUnknown.
var (
	// ErrQueueFull: a server said NOT_STORED (the queue is at its
	// max_items or max_size) and no other server took the item. It is
	// back-pressure: nothing was stored; slow down and retry later, or
	// drain the queue.
	ErrQueueFull = errors.New("queue full (NOT_STORED) and no other server took the item")
	// ErrNoServers: no server could take the item: all are down, were
	// unreachable when tried, or answered SERVER_ERROR. Nothing was stored.
	ErrNoServers = errors.New("no queued server could take the item")
	// ErrOutcomeUnknown: the request was written to a server but no answer
	// came back (timeout or lost connection), or the caller's ctx ended
	// while it was in flight. The item may or may not have been stored;
	// retrying may store it twice (at-least-once).
	ErrOutcomeUnknown = errors.New("outcome unknown: request sent but no answer (the item may have been stored)")
	// ErrRejected: the item itself was refused: larger than every
	// server's max_item_size (each server is tried), or a CLIENT_ERROR or
	// ERROR that every server would answer the same way (not tried
	// elsewhere). Nothing was stored; do not retry the same item.
	ErrRejected = errors.New("item rejected by the server")
	// ErrInvalidQueue: the queue name is not one queued accepts.
	ErrInvalidQueue = queuename.ErrInvalid
	// ErrInvalidOption: a bad option value (New or an EnqueueOption).
	ErrInvalidOption = errors.New("invalid option")
	// ErrClosed: the Producer was closed.
	ErrClosed = errors.New("producer closed")
)

// EnqueueError is the error of an Enqueue that stored nothing (or, with
// ErrOutcomeUnknown, may have stored something). Server is the server whose
// answer decided the outcome, empty when no single server did (then
// Attempts lists every server tried).
type EnqueueError struct {
	Queue    string
	Server   string
	Err      error           // wraps one of the package's sentinels
	Attempts []*AttemptError // every failed attempt, in order
}

func (e *EnqueueError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "enqueue to queue %q", e.Queue)
	if e.Server != "" {
		fmt.Fprintf(&b, " on %s", e.Server)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if e.Server == "" && len(e.Attempts) > 0 {
		b.WriteString(" [")
		for i, a := range e.Attempts {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(a.Error())
		}
		b.WriteString("]")
	}
	return b.String()
}

// Unwrap exposes the cause, so errors.Is(err, ErrQueueFull) and friends work.
func (e *EnqueueError) Unwrap() error { return e.Err }

// AttemptError is one server's failure while placing an item.
type AttemptError struct {
	Server string
	Err    error
}

func (e *AttemptError) Error() string { return e.Server + ": " + e.Err.Error() }

func (e *AttemptError) Unwrap() error { return e.Err }

// BatchError is returned by EnqueueBatch when some items were not stored.
// Failed lists them by their index in the batch; every other item was
// stored.
type BatchError struct {
	Failed []ItemError
	Total  int
}

// ItemError is the error of one item of a batch.
type ItemError struct {
	Index int
	Err   error
}

func (e *BatchError) Error() string {
	first := e.Failed[0]
	if len(e.Failed) == 1 {
		return fmt.Sprintf("batch: 1 of %d items not stored: item %d: %v", e.Total, first.Index, first.Err)
	}
	return fmt.Sprintf("batch: %d of %d items not stored; first, item %d: %v", len(e.Failed), e.Total, first.Index, first.Err)
}

// Unwrap returns every item's error, so errors.Is(err, ErrQueueFull) is
// true when any item hit a full queue.
func (e *BatchError) Unwrap() []error {
	errs := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		errs[i] = f.Err
	}
	return errs
}
