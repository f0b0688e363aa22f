package push

import (
	"sync"
	"testing"
)

// TestBadTokenWindowConcurrent records from many goroutines at once (every
// push does) and checks that the count of bad answers still matches the
// ring and the verdict follows it.
func TestBadTokenWindowConcurrent(t *testing.T) {
	var w badTokenWindow
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 1000 {
				w.record((g+i)%4 == 0)
			}
		})
	}
	wg.Wait()
	bad := 0
	for i := range w.ring {
		if w.ring[i].Load() {
			bad++
		}
	}
	if int64(bad) != w.bad.Load() {
		t.Fatalf("bad count %d, ring holds %d", w.bad.Load(), bad)
	}
	// Of the last 100 answers, 80 bad is the threshold.
	for range 100 {
		w.record(false)
	}
	for i := range 79 {
		if w.record(true) {
			t.Fatalf("verdict with %d of the last 100 answers bad", i+1)
		}
	}
	if !w.record(true) {
		t.Fatal("no verdict with 80 of the last 100 answers bad")
	}
}
