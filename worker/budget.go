package worker

import (
	"sync"
	"sync/atomic"
)

// budget shares the worker's allowance of open reads (Concurrency) among
// its fetch loops, fairly but without idling capacity:
//
//   - a busy loop (its last monitor returned items) may hold
//     Concurrency / busy loops, never less than its fair share
//     Concurrency / all loops;
//   - an idle loop (its queue was empty) asks for a quarter of its fair
//     share, enough to notice new items, and lends the rest;
//   - every monitor request is reserved from the allowance first, so the
//     reads held plus the reads requested never exceed Concurrency,
//     whatever the loops' windows say at a given moment.
//
// When an idle loop becomes busy the others' windows shrink at once; they
// stop fetching until their reads finish, and the capacity they free goes
// to whoever asks for it, which is then only the newcomer.
//
// An idle loop holding nothing defers to loops that were refused: it does
// not reserve while any wait, so with a budget so small that one idle
// monitor holds all of it, an empty server's loops cannot win every
// release and starve a server that has items.
type budget struct {
	limit   int64
	fairN   atomic.Int64 // Concurrency / fetch loops; changes as servers come and go
	used    atomic.Int64 // open reads held + monitor requests outstanding
	busy    atomic.Int64 // loops whose last monitor returned items
	waiters atomic.Int64 // loops waiting because a reservation failed

	mu      sync.Mutex
	freed   chan struct{} // closed and replaced whenever used drops
	widened chan struct{} // closed and replaced whenever a loop turns idle
	refused chan struct{} // closed and replaced whenever a loop starts waiting
}

func newBudget(limit, loops int) *budget {
	b := &budget{limit: int64(limit), freed: make(chan struct{}), widened: make(chan struct{}), refused: make(chan struct{})}
	b.fairN.Store(int64(max(1, limit/max(1, loops))))
	return b
}

// fair is a loop's fair share: Concurrency / fetch loops.
func (b *budget) fair() int { return int(b.fairN.Load()) }

// setLoops changes the number of fetch loops the allowance is shared by
// (servers found or removed). With fewer loops the windows widen at once;
// with more they shrink, and the loops already holding more than their
// new share stop fetching until their reads finish.
func (b *budget) setLoops(loops int) {
	fair := int64(max(1, int(b.limit)/max(1, loops)))
	if old := b.fairN.Swap(fair); fair > old {
		b.mu.Lock()
		close(b.widened)
		b.widened = make(chan struct{})
		b.mu.Unlock()
	}
}

// window is how many open reads a loop may hold.
func (b *budget) window(busy bool) int {
	fair := b.fair()
	if !busy {
		return max(1, fair/4)
	}
	return max(fair, int(b.limit/max(1, b.busy.Load())))
}

// reserve takes between lo and hi from the allowance and returns how many
// it got: 0 when fewer than lo are free (a smaller batch is not worth a
// round trip).
func (b *budget) reserve(lo, hi int) int {
	for {
		used := b.used.Load()
		grant := min(int64(hi), b.limit-used)
		if grant <= 0 || grant < int64(lo) {
			return 0
		}
		if b.used.CompareAndSwap(used, used+grant) {
			return int(grant)
		}
	}
}

// release gives n back (confirmed reads, unfilled requests, reads returned
// with a dropped connection) and wakes loops waiting for capacity.
func (b *budget) release(n int) {
	if n <= 0 {
		return
	}
	b.used.Add(-int64(n))
	b.mu.Lock()
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// released is closed at the next release; take it before reserve so a
// release between the two is not missed.
func (b *budget) released() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.freed
}

// windowGrew is closed the next time a loop turns idle or the fair share
// grows, which widens the window of every busy loop; take it before deciding not to fetch, so a
// loop that stopped at its old window is not left waiting on its own
// (perhaps stuck) items.
func (b *budget) windowGrew() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.widened
}

// wait registers a loop refused by reserve (undo with waiters.Add(-1)) and
// wakes the loops that hold finished reads back for a batch, so they
// confirm them and give the capacity back now. seen is what the refused
// loop took from starving before (or nil); wait returns what it watches
// instead: seen, closed already, if another loop was refused since it was
// taken, or else the channel the next refusal closes, so that a loop is
// not woken by its own refusal (which made a refused loop spin until
// capacity came back).
func (b *budget) wait(seen <-chan struct{}) <-chan struct{} {
	b.waiters.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	stale := seen != (<-chan struct{})(b.refused) // nil, or closed by another refusal
	close(b.refused)
	b.refused = make(chan struct{})
	if stale {
		return seen
	}
	return b.refused
}

// starving is closed the next time a loop is refused capacity; take it
// before deciding to hold finished reads.
func (b *budget) starving() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refused
}

// setBusy records a loop's change between busy and idle.
func (b *budget) setBusy(was, now bool) {
	switch {
	case now && !was:
		b.busy.Add(1)
	case was && !now:
		b.busy.Add(-1)
		b.mu.Lock()
		close(b.widened)
		b.widened = make(chan struct{})
		b.mu.Unlock()
	}
}
