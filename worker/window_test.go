package worker

import (
	"math/rand/v2"
	"sync"
	"testing"
)

func TestWindowConfirmsOnlyTheFinishedPrefix(t *testing.T) {
	tests := []struct {
		name    string
		open    int
		steps   [][]int // finishes, then takeConfirmable, per step
		confirm []int   // expected takeConfirmable result per step
	}{
		{"in order", 3, [][]int{{0}, {1}, {2}}, []int{1, 1, 1}},
		{"reverse order waits for the oldest", 3, [][]int{{2}, {1}, {0}}, []int{0, 0, 3}},
		{"gap in the middle", 4, [][]int{{0, 2}, {3}, {1}}, []int{1, 0, 3}},
		{"nothing finished", 2, [][]int{{}}, []int{0}},
		{"all at once", 5, [][]int{{4, 3, 2, 1, 0}}, []int{5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWindow()
			seqs := make([]uint64, tt.open)
			for i := range seqs {
				seqs[i] = w.add()
			}
			for i, step := range tt.steps {
				for _, j := range step {
					w.finish(seqs[j])
				}
				if got := w.takeConfirmable(); got != tt.confirm[i] {
					t.Fatalf("step %d: takeConfirmable = %d, want %d", i, got, tt.confirm[i])
				}
			}
		})
	}
}

func TestWindowCounts(t *testing.T) {
	w := newWindow()
	a, b, c := w.add(), w.add(), w.add()
	w.finish(b)
	if w.open() != 3 || w.working() != 2 {
		t.Fatalf("open=%d working=%d, want 3 and 2", w.open(), w.working())
	}
	signalled := func() bool {
		select {
		case <-w.notifyAt(1):
			return true
		default:
			return false
		}
	}
	if signalled() {
		t.Fatal("a finish behind an unfinished read signalled (nothing became confirmable)")
	}
	w.finish(a)
	if !signalled() {
		t.Fatal("finishing the oldest read did not signal")
	}
	if k := w.takeConfirmable(); k != 2 {
		t.Fatalf("confirmable = %d, want 2", k)
	}
	if w.open() != 1 || w.working() != 1 {
		t.Fatalf("after confirm open=%d working=%d, want 1 and 1", w.open(), w.working())
	}
	d := w.add()
	if d != c+1 {
		t.Fatalf("sequence numbers not consecutive across a confirm: %d after %d", d, c)
	}
	w.finish(d)
	w.finish(c)
	if k := w.takeConfirmable(); k != 2 || w.open() != 0 {
		t.Fatalf("confirmable = %d, open = %d; want 2 and 0", k, w.open())
	}
}

// TestWindowNotifiesPerBatch checks the fetch loop's wake-up rule: one
// signal once need reads are confirmable, or once every read finished, not
// one per finish, and none for an empty window.
func TestWindowNotifiesPerBatch(t *testing.T) {
	w := newWindow()
	var seqs []uint64
	for range 10 {
		seqs = append(seqs, w.add())
	}
	ch := w.notifyAt(4)
	pending := func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	for i := range 3 {
		w.finish(seqs[i])
		if pending() {
			t.Fatalf("signalled with %d of 4 confirmable", i+1)
		}
	}
	w.finish(seqs[3])
	if !pending() {
		t.Fatal("not signalled with 4 confirmable")
	}
	if k := w.takeConfirmable(); k != 4 {
		t.Fatalf("confirmable = %d, want 4", k)
	}
	ch = w.notifyAt(100) // more than the window holds: only "all finished" wakes
	for i := 9; i >= 5; i-- {
		w.finish(seqs[i])
		if pending() {
			t.Fatalf("signalled before every read finished (read %d)", i)
		}
	}
	w.finish(seqs[4])
	if !pending() {
		t.Fatal("not signalled when every read finished")
	}
	if !func() bool { w.notifyAt(6); return pending() }() {
		t.Fatal("notifyAt did not signal at once for a threshold already reached")
	}
	// An empty window has nothing to finish: a fetch loop holding nothing
	// that may not fetch (refused capacity, or deferring to loops that
	// were) must wait for its other wake-ups, not spin on this one.
	if k := w.takeConfirmable(); k != 6 {
		t.Fatalf("confirmable = %d, want 6", k)
	}
	if func() bool { w.notifyAt(1); return pending() }() {
		t.Fatal("notifyAt signalled on a window emptied by its confirm")
	}
	w = newWindow()
	if ch = w.notifyAt(1); pending() {
		t.Fatal("notifyAt signalled on a new, empty window")
	}
}

// TestWindowFinishTwicePanics: finishing a read twice, one already
// confirmed, or one the window never opened is a caller bug, and the
// window says so in its own panic (not an index out of range).
func TestWindowFinishTwicePanics(t *testing.T) {
	const want = "worker: window.finish of an unknown or finished read"
	for _, tt := range []struct {
		name string
		seq  func(w *window) uint64
	}{
		{"finished twice", func(w *window) uint64 { s := w.add(); w.finish(s); return s }},
		{"already confirmed", func(w *window) uint64 { s := w.add(); w.finish(s); w.take(1); w.add(); return s }},
		{"the next, not opened yet", func(w *window) uint64 { w.add(); return w.add() + 1 }},
		{"far beyond", func(w *window) uint64 { return w.add() + 100 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWindow()
			seq := tt.seq(w)
			defer func() {
				if got := recover(); got != want {
					t.Fatalf("finish(%d) panicked with %v, want %q", seq, got, want)
				}
			}()
			w.finish(seq)
		})
	}
}

// TestWindowConcurrentFinishes finishes reads from many goroutines in random
// order while a confirmer pops prefixes, and checks against a model that
// the confirmer never confirms a read before it finished and confirms each
// exactly once.
func TestWindowConcurrentFinishes(t *testing.T) {
	const n = 20000
	w := newWindow()
	seqs := make([]uint64, n)
	for i := range seqs {
		seqs[i] = w.add()
	}
	finished := make([]bool, n)
	var mu sync.Mutex
	order := rand.Perm(n)
	var wg sync.WaitGroup
	const workers = 8
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += workers {
				j := order[i]
				mu.Lock()
				finished[j] = true
				mu.Unlock()
				w.finish(seqs[j])
			}
		}()
	}
	confirmed := 0
	for confirmed < n {
		<-w.notifyAt(1)
		k := w.takeConfirmable()
		mu.Lock()
		for i := confirmed; i < confirmed+k; i++ {
			if !finished[i] {
				mu.Unlock()
				t.Fatalf("read %d confirmed before it finished", i)
			}
		}
		mu.Unlock()
		confirmed += k
	}
	wg.Wait()
	if k := w.takeConfirmable(); k != 0 || w.open() != 0 {
		t.Fatalf("after all confirmed: confirmable=%d open=%d", k, w.open())
	}
}
