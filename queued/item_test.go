package queued

import (
	"math/rand/v2"
	"testing"
)

// The ring behaves like a slice under every mix of operations, across
// growth, wrap-around and shrinking.
func TestRingMatchesSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var r ring
	var model []uint64
	next := uint64(1)
	for step := 0; step < 200000; step++ {
		switch op := rng.IntN(10); {
		case op < 4:
			r.pushBack(entry{id: next})
			model = append(model, next)
			next++
		case op < 5:
			r.pushFront(entry{id: next})
			model = append([]uint64{next}, model...)
			next++
		case op < 8 && len(model) > 0:
			if e := r.popFront(); e.id != model[0] {
				t.Fatalf("step %d: popFront %d, want %d", step, e.id, model[0])
			}
			model = model[1:]
		case op < 9 && len(model) > 0:
			i := rng.IntN(len(model))
			if e := r.removeAt(i); e.id != model[i] {
				t.Fatalf("step %d: removeAt(%d) %d, want %d", step, i, e.id, model[i])
			}
			model = append(model[:i], model[i+1:]...)
		case len(model) > 0 && rng.IntN(50) == 0: // rare, so the ring grows large
			k := rng.IntN(len(model) + 1)
			r.truncate(k)
			model = model[:k]
		}
		if r.len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", step, r.len(), len(model))
		}
		if len(model) > 0 && (r.front().id != model[0] || r.at(len(model)-1).id != model[len(model)-1]) {
			t.Fatalf("step %d: ends %d..%d, want %d..%d", step, r.front().id, r.at(len(model)-1).id, model[0], model[len(model)-1])
		}
	}
	for i, id := range model {
		if r.at(i).id != id {
			t.Fatalf("at(%d) = %d, want %d", i, r.at(i).id, id)
		}
	}
}

// A ring gives its memory back once a large backlog has drained, keeping
// the items left in order.
func TestRingShrinksAfterBacklog(t *testing.T) {
	const n = 20000
	var r ring
	for i := 1; i <= n; i++ {
		r.pushBack(entry{id: uint64(i)})
	}
	for i := 1; i <= n-10; i++ {
		if e := r.popFront(); e.id != uint64(i) {
			t.Fatalf("popFront %d, want %d", e.id, i)
		}
	}
	if len(r.buf) > 2048 {
		t.Errorf("%d entries left in a ring of %d slots", r.len(), len(r.buf))
	}
	for i := 0; i < 10; i++ {
		if id, want := r.at(i).id, uint64(n-9+i); id != want {
			t.Fatalf("at(%d) = %d, want %d", i, id, want)
		}
	}
}
