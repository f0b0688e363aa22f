package worker

import "sync"

// window tracks the open reads of one connection in the order the server
// opened them. `confirm q n` settles the n oldest open reads, so an item can
// be confirmed only once it and every item opened before it have finished:
// finish marks an entry, takeConfirmable pops the finished prefix.
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
	changed  chan struct{}
}

func newWindow() *window {
	return &window{changed: make(chan struct{}, 1)}
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
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// takeConfirmable removes the finished prefix and returns its length: the
// count to send in `confirm`.
func (w *window) takeConfirmable() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := 0
	for k < len(w.done) && w.done[k] {
		k++
	}
	if k == 0 {
		return 0
	}
	w.done = w.done[k:]
	w.base += uint64(k)
	w.finished -= k
	if len(w.done) == 0 {
		w.done = w.done[:0:0] // let the old array go once drained
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

// changes is signalled (at most one pending signal) after every finish.
func (w *window) changes() <-chan struct{} { return w.changed }
