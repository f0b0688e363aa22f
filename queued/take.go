// Taking the head item (get, get/open, get/peek, monitor) and the FIFO of
// readers waiting for one.

package queued

import "github.com/kpush/kpush/queued/journal"

// takeMode is what a read does with the head item.
type takeMode uint8

// take hands out the head item. Expired (or too old) items met at the head
// are taken out and returned in expired for the caller to move or drop
// outside the lock. If the queue is empty and w is non-nil, w is queued to
// be woken by the next item (at the front of the waiters if front). A
// plain get (takeRemove) also returns the commit of the item's REMOVE,
// which its reply must wait for.
func (q *queue) take(owner uint64, mode takeMode, w *waiter, front bool) (e entry, ok bool, expired []entry, removed *journal.Commit, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.unusableLocked(); err != nil {
		return entry{}, false, nil, nil, err
	}
	now := nowMS()
	for {
		if q.mem.len() == 0 {
			q.refill()
		}
		if q.mem.len() == 0 {
			if w != nil && !w.queued {
				w.queued = true
				if front {
					q.waiters = append([]*waiter{w}, q.waiters...)
				} else {
					q.waiters = append(q.waiters, w)
				}
			}
			return entry{}, false, expired, nil, nil
		}
		h := q.mem.front()
		if q.isExpired(h, now) {
			expired = append(expired, q.popHead())
			q.expiredItems++
			continue
		}
		break
	}
	switch mode {
	case takePeek:
		return *q.mem.front(), true, expired, nil, nil
	case takeRemove:
		e = q.popHead()
		q.lastAge = now - e.addTime
		return e, true, expired, q.journalRemove([]uint64{e.id}), nil
	default:
		e = q.popHead()
		q.open(owner, e, now)
		q.lastAge = now - e.addTime
		return e, true, expired, nil, nil
	}
}

// waiter is a blocked `get q/t=ms`. It sits in its queue's FIFO until an
// item arrives (one wake per item, oldest waiter first), it times out, or
// its connection goes away.
type waiter struct {
	ch     chan struct{} // capacity 1: a wake never blocks the waker
	queued bool          // in q.waiters; guarded by q.mu
}

// wakeOne wakes the oldest waiter; called once per item made available.
func (q *queue) wakeOne() {
	if len(q.waiters) == 0 {
		return
	}
	w := q.waiters[0]
	q.waiters[0] = nil
	q.waiters = q.waiters[1:]
	w.queued = false
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// cancelWait takes w out of the waiters. If it was already woken, the wake
// is handed on so the item it announced is not left unannounced.
func (q *queue) cancelWait(w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.queued {
		for i, x := range q.waiters {
			if x == w {
				q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
				break
			}
		}
		w.queued = false
		return
	}
	select {
	case <-w.ch:
		if q.mem.len() > 0 || q.behind > 0 {
			q.wakeOne()
		}
	default:
	}
}

// wakeAll releases every waiter (shutdown, delete, flush).
func (q *queue) wakeAll() {
	for len(q.waiters) > 0 {
		q.wakeOne()
	}
}

const (
	takeRemove takeMode = iota // plain get: remove for good
	takeOpen                   // get/open or monitor: hold for the connection
	takePeek                   // get/peek: copy, leave in place
)
