// Open reads: items handed out by get/open or monitor, held per connection
// until close/confirm removes them or abort (or a dropped connection, or
// open_transaction_timeout) puts them back at the head.

package queued

import "github.com/kpush/kpush/queued/journal"

// openRead is an item handed out by an open read, waiting for close or
// abort.
type openRead struct {
	e        entry
	openedAt int64 // unix ms
}

// open records e as held by owner (a connection's id).
func (q *queue) open(owner uint64, e entry, now int64) {
	if q.opens == nil {
		q.opens = make(map[uint64][]openRead)
	}
	q.opens[owner] = append(q.opens[owner], openRead{e: e, openedAt: now})
	q.openCount++
	q.transactions++
}

// closeOpen confirms the n oldest open reads of owner: they are gone for
// good. It reports false, changing nothing, if owner holds fewer than n. It
// returns the commit of their REMOVE, which the reply must wait for (see
// doc.go, Durability).
func (q *queue) closeOpen(owner uint64, n int) (*journal.Commit, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	list := q.opens[owner]
	if len(list) < n {
		return nil, false
	}
	if n == 0 {
		return nil, true
	}
	var one [1]uint64
	ids := one[:]
	if n > 1 {
		ids = make([]uint64, n)
	}
	for i := 0; i < n; i++ {
		ids[i] = list[i].e.id
	}
	q.dropOpens(owner, list, n)
	if q.deleted {
		return nil, true
	}
	return q.journalRemove(ids), true
}

func (q *queue) dropOpens(owner uint64, list []openRead, n int) {
	clear(list[:n])
	list = list[n:]
	if len(list) == 0 {
		delete(q.opens, owner)
	} else {
		q.opens[owner] = list
	}
	q.openCount -= n
}

// abortOpen returns the oldest open read of owner (all of them if all) to
// the head of the queue. It reports how many.
func (q *queue) abortOpen(owner uint64, all bool) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	list := q.opens[owner]
	n := len(list)
	if n == 0 {
		return 0
	}
	if !all {
		n = 1
	}
	// Push back newest first so the oldest ends up at the head.
	for i := n - 1; i >= 0; i-- {
		q.unopen(list[i].e)
	}
	q.dropOpens(owner, list, n)
	return n
}

// unopen puts an open item back at the head.
func (q *queue) unopen(e entry) {
	q.canceled++
	if q.deleted || q.unavailable != nil {
		return
	}
	q.mem.pushFront(e)
	q.addMem(int64(len(e.data)), true)
	q.wakeOne()
}

// openCountOf returns how many reads owner holds open on this queue.
func (q *queue) openCountOf(owner uint64) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.opens[owner])
}

// timeoutOpens aborts open reads older than open_transaction_timeout.
func (q *queue) timeoutOpens(now int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cfg.OpenTransactionTimeout <= 0 || q.openCount == 0 {
		return
	}
	limit := now - q.cfg.OpenTransactionTimeout.Milliseconds()
	for owner, list := range q.opens {
		n := 0
		for n < len(list) && list[n].openedAt <= limit {
			n++
		}
		if n == 0 {
			continue
		}
		for i := n - 1; i >= 0; i-- {
			q.unopen(list[i].e)
		}
		q.dropOpens(owner, list, n)
		q.log.Info("open read timed out, returned to the queue", "queue", q.name, "items", n, "conn", owner)
	}
}
