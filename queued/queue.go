package queued

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/kpush/kpush/queued/journal"
)

// Sentinel errors of queue operations, for errors.Is.
var (
	// ErrQueueFull: max_items or max_size reached and discard_old_when_full
	// is off. The client gets NOT_STORED.
	ErrQueueFull = errors.New("queue full")
	// ErrItemTooLarge: the item exceeds the queue's max_item_size.
	ErrItemTooLarge = errors.New("item too large")
	// ErrQueueUnavailable: the queue's journal could not be opened (for
	// example it is corrupt mid-file); the queue refuses every command.
	ErrQueueUnavailable = errors.New("queue unavailable")
	// ErrQueueDeleted: the queue was deleted while the command ran.
	ErrQueueDeleted = errors.New("queue deleted")
)

// openRead is an item handed out by an open read, waiting for close or
// abort.
type openRead struct {
	e        entry
	openedAt int64 // unix ms
}

// waiter is a blocked `get q/t=ms`. It sits in its queue's FIFO until an
// item arrives (one wake per item, oldest waiter first), it times out, or
// its connection goes away.
type waiter struct {
	ch     chan struct{} // capacity 1: a wake never blocks the waker
	queued bool          // in q.waiters; guarded by q.mu
}

// queue is one named FIFO. All of its state is guarded by mu; nothing slow
// happens under mu except the read-behind refill (a bounded sequential read
// of the journal). Journal commits are waited for outside mu, so many
// connections' sets on one queue are in the journal's group commit at once.
type queue struct {
	s          *Server
	name       string
	createTime int64 // unix seconds
	log        *slog.Logger
	ready      chan struct{} // closed once the journal is open and replayed

	mu          sync.Mutex
	cfg         QueueConfig
	j           *journal.Journal // nil: memory only
	unavailable error            // non-nil: the journal could not be opened
	deleted     bool
	gen         uint64 // bumped by flush and delete; in-flight puts of an older generation are void

	// The queue's items, in order: mem (the head, in memory), then behind
	// (only in the journal, read back by cursor), then pendingBehind
	// (appended while behind, not yet committed).
	mem                ring
	memBytes           int64
	behind             int64
	behindBytes        int64
	pendingBehind      int64
	pendingBehindBytes int64
	cursor             *journal.Cursor
	memHighID          uint64 // every item with a larger id is behind or pending
	nextID             uint64 // ids of a memory-only queue

	opens     map[*conn][]openRead // per connection, oldest first
	openCount int
	waiters   []*waiter

	children []*queue // fanout queues "name+child"

	totalItems   int64
	expiredItems int64
	discarded    int64
	transactions int64
	canceled     int64
	totalFlushes int64
	lastAge      int64 // ms the last item handed out waited in the queue
}

func nowMS() int64 { return time.Now().UnixMilli() }

func (q *queue) usable() error {
	if q.unavailable != nil {
		return q.unavailable
	}
	if q.deleted {
		return ErrQueueDeleted
	}
	return nil
}

// unusable returns why the queue refuses commands, or nil.
func (q *queue) unusable() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.usable()
}

// itemCount and byteCount include items in flight to read-behind.
func (q *queue) itemCount() int64 {
	return int64(q.mem.len()) + q.behind + q.pendingBehind
}

func (q *queue) byteCount() int64 {
	return q.memBytes + q.behindBytes + q.pendingBehindBytes
}

func (q *queue) readBehind() bool {
	return q.behind > 0 || q.pendingBehind > 0 || q.cursor != nil
}

// pendingPut is a put whose journal commit has not been waited for yet.
type pendingPut struct {
	q      *queue
	commit *journal.Commit // nil for a memory-only queue
	id     uint64
	size   int64
	behind bool
	gen    uint64
}

// put appends an item (its data now owned by the queue) and returns the
// pending commit; the caller waits for it outside the lock and then calls
// finishPut.
func (q *queue) put(data []byte, addTime, expiry int64) (pendingPut, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.usable(); err != nil {
		return pendingPut{}, err
	}
	size := int64(len(data))
	if q.cfg.MaxItemSize > 0 && size > q.cfg.MaxItemSize {
		return pendingPut{}, ErrItemTooLarge
	}
	if q.cfg.MaxAge > 0 {
		limit := addTime + q.cfg.MaxAge.Milliseconds()
		if expiry == 0 || expiry > limit {
			expiry = limit
		}
	}
	if !q.makeRoom(size) {
		return pendingPut{}, ErrQueueFull
	}
	p := pendingPut{q: q, size: size, gen: q.gen}
	if q.j == nil {
		q.nextID++
		p.id = q.nextID
	} else {
		items := []journal.Item{{AddTime: addTime, Expiry: expiry, Data: data}}
		c, err := q.j.Append(items)
		if err != nil {
			return pendingPut{}, err
		}
		p.commit, p.id = c, items[0].ID
	}
	q.totalItems++
	q.s.totalItems.Add(1)
	if q.j != nil && (q.readBehind() || q.wouldOverflow(size)) {
		// Over the memory bound: the item lives only in the journal from
		// the start; a cursor brings it back when the head drains.
		p.behind = true
		q.pendingBehind++
		q.pendingBehindBytes += size
		return p, nil
	}
	q.mem.pushBack(entry{id: p.id, addTime: addTime, expiry: expiry, data: data, state: itemReady})
	q.addMem(size, true)
	q.memHighID = p.id
	q.wakeOne()
	return p, nil
}

// makeRoom applies max_items and max_size to an item of size bytes,
// discarding the oldest items if discard_old_when_full allows.
func (q *queue) makeRoom(size int64) bool {
	full := func() bool {
		return (q.cfg.MaxItems > 0 && q.itemCount() >= q.cfg.MaxItems) ||
			(q.cfg.MaxSize > 0 && q.byteCount()+size > q.cfg.MaxSize)
	}
	if !full() {
		return true
	}
	if !q.cfg.DiscardOldWhenFull {
		return false
	}
	var ids []uint64
	for full() {
		if q.mem.len() == 0 {
			q.refill()
		}
		if q.mem.len() == 0 {
			break
		}
		e := q.popHead()
		ids = append(ids, e.id)
		q.discarded++
	}
	q.journalRemove(ids)
	return !full()
}

// finish settles p after its commit. A committed in-memory item needs
// nothing more (finishPut would only take the lock to find that out): the
// common case of a set costs one lock of its queue, not two.
func (p pendingPut) finish(err error) {
	if err == nil && !p.behind {
		return
	}
	p.q.finishPut(p, err)
}

// finishPut settles a put after its commit: a failed write takes the item
// back out (it was never acknowledged); a committed read-behind item becomes
// readable.
func (q *queue) finishPut(p pendingPut, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if p.gen != q.gen {
		return
	}
	if p.behind {
		q.pendingBehind--
		q.pendingBehindBytes -= p.size
		if err == nil {
			q.behind++
			q.behindBytes += p.size
			q.wakeOne()
		}
		return
	}
	if err != nil {
		for i := q.mem.len() - 1; i >= 0; i-- {
			if q.mem.at(i).id == p.id {
				q.mem.removeAt(i)
				q.addMem(p.size, false)
				break
			}
		}
	}
}

// itemOverhead is what an in-memory item costs beyond its data (its ring
// slot and allocation rounding); the memory bounds count it, so they bound
// the process's memory and not only the payload bytes.
const itemOverhead = 64

// memCost is what the in-memory head costs against max_memory_size.
func (q *queue) memCost() int64 { return q.memBytes + int64(q.mem.len())*itemOverhead }

// wouldOverflow reports whether one more item of size bytes in memory
// would pass a memory bound.
func (q *queue) wouldOverflow(size int64) bool {
	cost := size + itemOverhead
	return (q.cfg.MaxMemorySize > 0 && q.memCost()+cost > q.cfg.MaxMemorySize) ||
		(q.s.cfg.TotalMemorySize > 0 && q.s.memCost.Load()+cost > q.s.cfg.TotalMemorySize)
}

func (q *queue) overMemory() bool {
	if q.j == nil {
		return false
	}
	return (q.cfg.MaxMemorySize > 0 && q.memCost() > q.cfg.MaxMemorySize) ||
		(q.s.cfg.TotalMemorySize > 0 && q.s.memCost.Load() > q.s.cfg.TotalMemorySize)
}

// addMem accounts one item of size bytes entering (in) or leaving mem.
func (q *queue) addMem(size int64, in bool) {
	if !in {
		size = -size
	}
	q.memBytes += size
	if in {
		q.s.memCost.Add(size + itemOverhead)
	} else {
		q.s.memCost.Add(size - itemOverhead)
	}
}

// refill reads the next items behind the in-memory head back from the
// journal. Called with mu held when mem is empty.
func (q *queue) refill() {
	if q.j == nil || q.behind == 0 {
		return
	}
	if q.cursor == nil {
		q.cursor = q.j.Cursor(q.memHighID)
	}
	maxItems := q.behind
	if maxItems > 4096 {
		maxItems = 4096
	}
	// Refill at most half the memory bound, so refills stay well inside it
	// (the cursor always returns at least one item).
	maxBytes := q.cfg.MaxMemorySize / 2
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	items, err := q.cursor.Next(int(maxItems), maxBytes)
	if err != nil {
		q.log.Error("read-behind refill failed", "queue", q.name, "err", err)
		return
	}
	for _, it := range items {
		q.mem.pushBack(entry{id: it.ID, addTime: it.AddTime, expiry: it.Expiry, data: it.Data, state: itemReady})
		q.addMem(int64(len(it.Data)), true)
		q.memHighID = it.ID
		q.behind--
		q.behindBytes -= int64(len(it.Data))
	}
	if len(items) == 0 {
		q.log.Warn("read-behind cursor caught up with items still counted behind", "queue", q.name, "behind", q.behind)
		q.behind, q.behindBytes = 0, 0
	}
	if q.behind <= 0 {
		q.behind, q.behindBytes = 0, 0
		if q.pendingBehind == 0 {
			_ = q.cursor.Close()
			q.cursor = nil
		}
	}
}

// popHead removes the head item from memory (the caller refilled first).
func (q *queue) popHead() entry {
	e := q.mem.popFront()
	q.addMem(int64(len(e.data)), false)
	return e
}

func (q *queue) journalRemove(ids []uint64) *journal.Commit {
	if q.j == nil || len(ids) == 0 {
		return nil
	}
	c, err := q.j.Remove(ids...)
	if err != nil {
		q.log.Error("journal remove failed", "queue", q.name, "err", err)
		return nil
	}
	return c
}

// takeMode is what a read does with the head item.
type takeMode uint8

const (
	takeRemove takeMode = iota // plain get: remove for good
	takeOpen                   // get/open or monitor: hold for the connection
	takePeek                   // get/peek: copy, leave in place
)

// take hands out the head item. Expired (or too old) items met at the head
// are taken out and returned in expired for the caller to move or drop
// outside the lock. If the queue is empty and w is non-nil, w is queued to
// be woken by the next item (at the front of the waiters if front).
func (q *queue) take(c *conn, mode takeMode, w *waiter, front bool) (e entry, ok bool, expired []entry, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.usable(); err != nil {
		return entry{}, false, nil, err
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
			return entry{}, false, expired, nil
		}
		h := q.mem.front()
		if q.isExpired(h, now) {
			expired = append(expired, q.popHead())
			q.expiredItems++
			q.s.queueExpires.Add(1)
			continue
		}
		break
	}
	switch mode {
	case takePeek:
		return *q.mem.front(), true, expired, nil
	case takeRemove:
		e = q.popHead()
		e.state = itemGone
		q.lastAge = now - e.addTime
		q.journalRemove([]uint64{e.id})
		return e, true, expired, nil
	default:
		e = q.popHead()
		q.open(c, e, now)
		q.lastAge = now - e.addTime
		return e, true, expired, nil
	}
}

func (q *queue) isExpired(e *entry, now int64) bool {
	if e.expiry != 0 && e.expiry <= now {
		return true
	}
	return q.cfg.MaxQueueAge > 0 && now-e.addTime >= q.cfg.MaxQueueAge.Milliseconds()
}

// open records e as held by c: itemReady → itemOpen.
func (q *queue) open(c *conn, e entry, now int64) {
	e.state = itemOpen
	if q.opens == nil {
		q.opens = make(map[*conn][]openRead)
	}
	q.opens[c] = append(q.opens[c], openRead{e: e, openedAt: now})
	q.openCount++
	q.transactions++
}

// closeOpen confirms the n oldest open reads of c: itemOpen → itemGone.
// It reports false, changing nothing, if c holds fewer than n. The remove
// is not waited for (see doc.go, Durability).
func (q *queue) closeOpen(c *conn, n int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	list := q.opens[c]
	if len(list) < n {
		return false
	}
	if n == 0 {
		return true
	}
	var one [1]uint64
	ids := one[:]
	if n > 1 {
		ids = make([]uint64, n)
	}
	for i := 0; i < n; i++ {
		ids[i] = list[i].e.id
	}
	q.dropOpens(c, list, n)
	if !q.deleted {
		q.journalRemove(ids)
	}
	return true
}

func (q *queue) dropOpens(c *conn, list []openRead, n int) {
	clear(list[:n])
	list = list[n:]
	if len(list) == 0 {
		delete(q.opens, c)
	} else {
		q.opens[c] = list
	}
	q.openCount -= n
}

// abortOpen returns the oldest open read of c (all of them if all) to the
// head of the queue: itemOpen → itemReady. It reports how many.
func (q *queue) abortOpen(c *conn, all bool) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	list := q.opens[c]
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
	q.dropOpens(c, list, n)
	return n
}

// unopen puts an open item back at the head: itemOpen → itemReady.
func (q *queue) unopen(e entry) {
	q.canceled++
	if q.deleted || q.unavailable != nil {
		return
	}
	e.state = itemReady
	q.mem.pushFront(e)
	q.addMem(int64(len(e.data)), true)
	q.wakeOne()
}

// openCountOf returns how many reads c holds open on this queue.
func (q *queue) openCountOf(c *conn) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.opens[c])
}

// timeoutOpens aborts open reads older than open_transaction_timeout.
func (q *queue) timeoutOpens(now int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cfg.OpenTransactionTimeout <= 0 || q.openCount == 0 {
		return
	}
	limit := now - q.cfg.OpenTransactionTimeout.Milliseconds()
	for c, list := range q.opens {
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
		q.dropOpens(c, list, n)
		q.log.Info("open read timed out, returned to the queue", "queue", q.name, "items", n, "conn", c.id)
	}
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

// sweepExpired removes expired items at the head, at most max (0 = all),
// and returns them.
func (q *queue) sweepExpired(max int) []entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.usable() != nil {
		return nil
	}
	now := nowMS()
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
		q.s.queueExpires.Add(1)
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
			q.s.queueExpires.Add(1)
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

// flush empties the queue (open reads stay open).
func (q *queue) flush() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.usable(); err != nil {
		return err
	}
	var c *journal.Commit
	if q.j != nil {
		var err error
		// Open reads stay open, so they must stay live in the journal too:
		// one aborted after the flush goes back to the queue, and a crash
		// after that must not lose it.
		var openIDs []uint64
		for _, list := range q.opens {
			for _, o := range list {
				openIDs = append(openIDs, o.e.id)
			}
		}
		if c, err = q.j.ClearExcept(openIDs...); err != nil {
			return err
		}
	}
	q.dropAll()
	q.totalFlushes++
	if c != nil {
		q.mu.Unlock()
		err := c.Wait()
		q.mu.Lock()
		return err
	}
	return nil
}

// dropAll forgets every item; the caller has cleared or deleted the journal.
func (q *queue) dropAll() {
	q.s.memCost.Add(-q.memCost())
	q.memBytes = 0
	q.mem.clear()
	q.behind, q.behindBytes = 0, 0
	q.pendingBehind, q.pendingBehindBytes = 0, 0
	if q.cursor != nil {
		_ = q.cursor.Close()
		q.cursor = nil
	}
	q.gen++
}

// Journal options for a queue's sync policy.
func journalOptions(cfg QueueConfig, log *slog.Logger) journal.Options {
	// max_journal_size is the journal's segment size: past it the journal
	// rolls to a new file, and old files go once their items are gone.
	o := journal.Options{Logger: log, SegmentSize: cfg.MaxJournalSize}
	switch cfg.Sync.Mode {
	case SyncNever:
		o.Sync = journal.SyncNever
	case SyncInterval:
		o.Sync = journal.SyncInterval
		o.SyncInterval = cfg.Sync.Interval
	default:
		o.Sync = journal.SyncAlways
	}
	return o
}
