package worker

import "sync"

// window tracks the open reads of one connection in the order the server
// opened them. `confirm q n` settles the n oldest open reads, so an item can
// be confirmed only once it and every item opened before it have finished:
// finish marks an entry, confirmable is the length of the finished prefix
// and take pops it.
//
// A window belongs to one connection. When the connection drops, the server
// returns everything it held and the fetch loop starts a new window; late
// finishes on the old window only change the old window, which nobody
// confirms any more.
type window struct {
	mu       sync.Mutex
	base     uint64 // sequence number of done[0]
	done     []bool // done[i]: open read base+i has finished
	finished int    // entries of done that are true
	prefix   int    // done[:prefix] are all true: the confirmable reads
	need     int    // signal changed when prefix reaches need (see notifyAt)
	changed  chan struct{}
}

func newWindow() *window {
	return &window{changed: make(chan struct{}, 1), need: 1}
}

// add records a new open read, the newest, and returns its sequence number.
func (w *window) add() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = append(w.done, false)
	return w.base + uint64(len(w.done)) - 1
}

// finish marks open read seq finished. Finishing twice, or a sequence
// number already confirmed, is a caller bug and panics.
func (w *window) finish(seq uint64) {
	w.mu.Lock()
	i := seq - w.base
	if seq < w.base || i >= uint64(len(w.done)) || w.done[i] {
		w.mu.Unlock()
		panic("worker: window.finish of an unknown or finished read")
	}
	w.done[i] = true
	w.finished++
	for w.prefix < len(w.done) && w.done[w.prefix] {
		w.prefix++
	}
	wake := w.prefix >= w.need || w.finished == len(w.done)
	w.mu.Unlock()
	if wake {
		w.signal()
	}
}

func (w *window) signal() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// confirmable is the number of finished reads at the head of the window:
// the most one `confirm` may settle now.
func (w *window) confirmable() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.prefix
}

// take removes the k oldest reads, which must have finished (k <=
// confirmable()): they are being confirmed.
func (w *window) take(k int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if k > w.prefix {
		panic("worker: window.take of unfinished reads")
	}
	w.done = w.done[k:]
	w.base += uint64(k)
	w.finished -= k
	w.prefix -= k
	if len(w.done) == 0 {
		w.done = w.done[:0:0] // let the old array go once drained
	}
}

// takeConfirmable removes the finished prefix and returns its length: the
// count to send in `confirm`.
func (w *window) takeConfirmable() int {
	k := w.confirmable()
	if k > 0 {
		w.take(k)
	}
	return k
}

// open is the number of reads held open on the connection: working or
// finished but not yet confirmed.
func (w *window) open() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.done)
}

// working is the number of open reads not yet finished.
func (w *window) working() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.done) - w.finished
}

// notifyAt returns the channel that is signalled (at most one pending
// signal) once at least need reads are confirmable, or every read has
// finished; at once if that holds already. It replaces the previous
// threshold: the fetch loop, its only reader, sets it before each wait, so
// it wakes once per batch worth a round trip instead of once per finish.
func (w *window) notifyAt(need int) <-chan struct{} {
	w.mu.Lock()
	w.need = max(1, need)
	now := w.prefix >= w.need || (len(w.done) > 0 && w.finished == len(w.done))
	w.mu.Unlock()
	if now {
		w.signal()
	}
	return w.changed
}
