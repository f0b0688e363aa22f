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

// queue is one named FIFO. All of its state is guarded by mu; nothing slow
// happens under mu except the read-behind refill (a bounded sequential read
// of the journal). Journal commits are waited for outside mu, so many
// connections' sets on one queue are in the journal's group commit at once.
type queue struct {
	s       *Server
	name    string
	created time.Time
	log     *slog.Logger
	ready   chan struct{} // closed once the journal is open and replayed

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

	opens     map[uint64][]openRead // per owner (a connection's id), oldest first
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

	// Refused moves of expired items (see warnMoveRefused).
	moveWarned   time.Time
	moveRefusals int
}

func nowMS() int64 { return time.Now().UnixMilli() }

// unusable returns why the queue refuses commands (its journal could not
// be opened, or it was deleted), or nil.
func (q *queue) unusable() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.unusableLocked()
}

// unusableLocked is unusable with q.mu held.
func (q *queue) unusableLocked() error {
	if q.unavailable != nil {
		return q.unavailable
	}
	if q.deleted {
		return ErrQueueDeleted
	}
	return nil
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
	if err := q.unusableLocked(); err != nil {
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
	q.mem.pushBack(entry{id: p.id, addTime: addTime, expiry: expiry, data: data})
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
		(q.s.memLimit > 0 && q.s.memCost.Load()+cost > q.s.memLimit)
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

// flush empties the queue (open reads stay open).
func (q *queue) flush() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.unusableLocked(); err != nil {
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
	q.closeCursor()
	q.gen++
}

// Journal options for a queue's sync policy.
func journalOptions(cfg QueueConfig, log *slog.Logger) journal.Options {
	// max_journal_size is the journal's segment size: past it the journal
	// rolls to a new file, and old files go once their items are gone.
	return journal.Options{Logger: log, Sync: cfg.Sync.Mode, SyncInterval: cfg.Sync.Interval, SegmentSize: cfg.MaxJournalSize}
}
