package journal

import (
	"math"
	"math/rand"
	"testing"
)

// TestLiveTableMatchesMap drives the table and a plain map with the same
// random operations (dense runs, scattered survivors, ranges) and compares.
func TestLiveTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	tab := newLiveTable()
	ref := map[uint64]int{}
	var next uint64 = 1
	check := func(step int) {
		var bytes int64
		for _, s := range ref {
			bytes += int64(s)
		}
		if tab.items != int64(len(ref)) || tab.bytes != bytes {
			t.Fatalf("step %d: table %d items %d bytes, want %d, %d", step, tab.items, tab.bytes, len(ref), bytes)
		}
		var first uint64
		for id := range ref {
			if first == 0 || id < first {
				first = id
			}
		}
		got, ok := tab.firstLive()
		if ok != (len(ref) > 0) || (ok && got != first) {
			t.Fatalf("step %d: firstLive = %d %v, want %d", step, got, ok, first)
		}
		// frameBytesBelow, exactly and stopping early, at chunk edges
		// and anywhere.
		k := uint64(rng.Int63n(int64(next>>chunkBits) + 1))
		for _, limit := range []uint64{k << chunkBits, k<<chunkBits + 1, k<<chunkBits - 1, uint64(rng.Int63n(int64(next) + 1))} {
			var exact int64
			for id, s := range ref {
				if id < limit {
					exact += int64(addFrameSize(s))
				}
			}
			if got := tab.frameBytesBelow(limit, math.MaxInt64); got != exact {
				t.Fatalf("step %d: frameBytesBelow(%d) = %d, want %d", step, limit, got, exact)
			}
			stop := exact / 2
			got := tab.frameBytesBelow(limit, stop)
			if (got <= stop && got != exact) || got > exact {
				t.Fatalf("step %d: frameBytesBelow(%d, stop %d) = %d, want %d or a sum past the stop", step, limit, stop, got, exact)
			}
		}
	}
	for step := 0; step < 3000; step++ {
		switch op := rng.Intn(10); {
		case op < 5:
			for n := rng.Intn(300); n > 0; n-- {
				size := rng.Intn(100)
				tab.add(next, size)
				ref[next] = size
				next++
			}
		case op < 8:
			for n := rng.Intn(300); n > 0; n-- {
				id := uint64(rng.Int63n(int64(next))) + 1
				size, ok := tab.remove(id)
				want, wok := ref[id]
				if ok != wok || (ok && size != want) {
					t.Fatalf("remove(%d) = %d %v, want %d %v", id, size, ok, want, wok)
				}
				delete(ref, id)
			}
		case op < 9:
			lo := uint64(rng.Int63n(int64(next)))
			hi := lo + uint64(rng.Intn(5000))
			want := 0
			for id := range ref {
				if id >= lo && id <= hi {
					delete(ref, id)
					want++
				}
			}
			if got := tab.removeRange(lo, hi); got != want {
				t.Fatalf("removeRange(%d,%d) = %d, want %d", lo, hi, got, want)
			}
		default:
			after := uint64(rng.Int63n(int64(next)))
			want := false
			for id := range ref {
				if id > after {
					want = true
					break
				}
			}
			if got := tab.anyLiveAfter(after); got != want {
				t.Fatalf("anyLiveAfter(%d) = %v, want %v", after, got, want)
			}
		}
		if step%50 == 0 {
			for id, s := range ref {
				if got, ok := tab.size(id); !ok || got != s {
					t.Fatalf("size(%d) = %d %v, want %d", id, got, ok, s)
				}
			}
			check(step)
		}
	}
	check(-1)
}

// TestLiveTableScatteredSurvivors: one live id per chunk must not cost a
// dense 16 KiB array each.
func TestLiveTableScatteredSurvivors(t *testing.T) {
	tab := newLiveTable()
	for id := uint64(1); id <= 100*chunkLen; id++ {
		tab.add(id, 10)
	}
	for id := uint64(1); id <= 100*chunkLen; id++ {
		if id%chunkLen != 7 {
			tab.remove(id)
		}
	}
	for k, c := range tab.chunks {
		if c.dense != nil || len(c.sparse) != 1 {
			t.Fatalf("chunk %d: dense=%v sparse=%d", k, c.dense != nil, len(c.sparse))
		}
	}
	if tab.items != 100 {
		t.Fatalf("items = %d", tab.items)
	}
}
