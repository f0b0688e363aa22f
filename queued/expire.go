// Expiry: expired items met at the head, the periodic sweep, and moving
// expired items to expire_to_queue.

package queued

import (
	"cmp"
	"time"

	"github.com/kpush/kpush/internal/queuename"
)

func (q *queue) isExpired(e *entry, now int64) bool {
	return e.expiry != 0 && e.expiry <= now
}

// sweepExpired removes expired items at the head, at most max (0 = all),
// and returns them; now is the time in unix ms.
func (q *queue) sweepExpired(max int, now int64) []entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.unusableLocked() != nil {
		return nil
	}
	var out []entry
	for max <= 0 || len(out) < max {
		if q.mem.len() == 0 {
			q.refill()
		}
		if q.mem.len() == 0 || !q.isExpired(q.mem.front(), now) {
			break
		}
		out = append(out, q.popHead())
		q.expiredItems++
	}
	if q.cfg.ExpireToQueue != "" && (max <= 0 || len(out) < max) {
		out = q.sweepBehindHead(now, max, out)
	}
	return out
}

// sweepBehindHead also takes expired items from the rest of the in-memory
// ring, keeping the order of the others. Only delay queues (those with
// expire_to_queue) pay for the scan: their items carry different delays,
// and one long delay at the head must not hold back the short ones behind
// it. Items in read-behind are reached when they come into memory.
func (q *queue) sweepBehindHead(now int64, max int, out []entry) []entry {
	kept := 0
	n := q.mem.len()
	for i := 0; i < n; i++ {
		e := q.mem.at(i)
		if (max <= 0 || len(out) < max) && q.isExpired(e, now) {
			out = append(out, *e)
			q.addMem(int64(len(e.data)), false)
			q.expiredItems++
			continue
		}
		if kept != i {
			*q.mem.at(kept) = *e
		}
		kept++
	}
	q.mem.truncate(kept)
	return out
}

// sweepLoop periodically drops or moves expired items at the heads of the
// queues, aborts open reads past open_transaction_timeout and deletes
// queues past max_queue_age.
func (s *Server) sweepLoop() {
	defer s.bgWG.Done()
	t := time.NewTicker(s.cfg.ExpirationTimerFrequency)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.sweep(time.Now())
	}
}

func (s *Server) sweep(now time.Time) {
	for _, q := range s.queueList() {
		q.timeoutOpens(now.UnixMilli())
		q.mu.Lock()
		maxSweep, maxAge := q.cfg.MaxExpireSweep, q.cfg.MaxQueueAge
		q.mu.Unlock()
		if exp := q.sweepExpired(maxSweep, now.UnixMilli()); len(exp) > 0 {
			s.expire(q, exp)
		}
		if maxAge > 0 {
			s.expireQueue(q, now)
		}
	}
}

// expireQueue deletes q, journal and all, when it has a max_queue_age, has
// existed that long and holds nothing: no items, no open reads, no
// blocked readers (Kestrel's queue expiry, counted in queue_expires and
// queue_deletes). The check and the deletion hold q's lock together, so a
// set that comes in between finds the queue deleted and creates it afresh.
func (s *Server) expireQueue(q *queue, now time.Time) {
	idle := func(q *queue) bool {
		age := q.cfg.MaxQueueAge
		return age > 0 && now.Sub(q.created) >= age &&
			q.itemCount() == 0 && q.openCount == 0 && len(q.waiters) == 0
	}
	q.mu.Lock()
	ok, age := idle(q), q.cfg.MaxQueueAge
	q.mu.Unlock()
	if !ok {
		return // without taking the server's lock
	}
	expired, err := s.deleteQueueIf(q.name, idle)
	if err != nil {
		s.log.Warn("expired queue's journal files not all removed", "queue", q.name, "err", err,
			"fix", "remove the queue's files from the data directory (they would bring it back at restart), or send delete once the cause is fixed")
	}
	if expired {
		s.queueExpires.Add(1)
		s.log.Info("queue expired: empty past max_queue_age", "queue", q.name, "max_queue_age", age)
	}
}

// expire finishes items taken out of q because they expired: moved to the
// queue's expire_to_queue (committed there before they are removed here, so
// a crash can duplicate but never lose them), or removed. An item the
// target refuses (full, too big for it, its journal failing) is put back at
// q's head, still expired, and the next sweep or read tries again: a move
// never loses an item. It returns how many items it finished.
func (s *Server) expire(q *queue, items []entry) int {
	q.mu.Lock()
	target := q.cfg.ExpireToQueue
	q.mu.Unlock()
	if target != "" && target != q.name && queuename.Valid(target) {
		tq := s.queueFor(target, true)
		now := nowMS()
		var moved, kept []entry
		var firstErr error
		for _, e := range items {
			p, err := tq.put(e.data, now, 0)
			if err == nil && p.commit != nil {
				err = p.commit.Wait()
				tq.finishPut(p, err)
			}
			if err != nil {
				kept = append(kept, e)
				firstErr = cmp.Or(firstErr, err)
				continue
			}
			moved = append(moved, e)
		}
		if len(kept) > 0 {
			q.unexpire(kept)
			s.warnMoveRefused(q, target, len(kept), firstErr)
		} else if len(moved) > 0 {
			q.mu.Lock()
			q.moveWarned = time.Time{} // the next refusal is news again
			q.mu.Unlock()
		}
		items = moved
	}
	ids := make([]uint64, len(items))
	for i, e := range items {
		ids[i] = e.id
	}
	q.mu.Lock()
	c := q.journalRemove(ids)
	q.mu.Unlock()
	if c != nil {
		_ = c.Wait()
	}
	return len(items)
}

// moveWarnEvery bounds how often one queue warns of refused moves.
const moveWarnEvery = time.Minute

// warnMoveRefused logs a refused move of expired items, at most once per
// moveWarnEvery for a queue until a move succeeds: a kept item is tried
// again at every sweep and at every read that meets it, so a target that
// keeps refusing would otherwise log at the rate of reads.
func (s *Server) warnMoveRefused(q *queue, target string, kept int, err error) {
	now := time.Now()
	q.mu.Lock()
	q.moveRefusals++
	if !q.moveWarned.IsZero() && now.Sub(q.moveWarned) < moveWarnEvery {
		q.mu.Unlock()
		return
	}
	refusals := q.moveRefusals
	q.moveWarned, q.moveRefusals = now, 0
	q.mu.Unlock()
	s.log.Warn("could not move expired items", "queue", q.name, "to", target, "items", kept, "err", err,
		"refused_moves", refusals, "kept", "in the queue, moved at a later sweep or read once the target takes them",
		"fix", "make room in "+target+" (read it, or raise its max_items, max_size or max_item_size)",
		"next_warning", "after "+moveWarnEvery.String()+" if moves are still refused")
}

// unexpire puts expired items whose move failed back at the head, in their
// order, as an aborted open read is put back (see unopen), and takes them
// out of the expiry counts.
func (q *queue) unexpire(items []entry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted || q.unavailable != nil {
		return
	}
	for i := len(items) - 1; i >= 0; i-- {
		q.mem.pushFront(items[i])
		q.addMem(int64(len(items[i].data)), true)
	}
	q.expiredItems -= int64(len(items))
}
