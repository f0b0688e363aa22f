package worker

import (
	"sync"
	"testing"
)

func TestBudgetWindows(t *testing.T) {
	tests := []struct {
		name      string
		limit     int
		loops     int
		busyLoops int
		busy      bool
		want      int
	}{
		{"all busy: fair share", 1000, 4, 4, true, 250},
		{"half busy: double share", 1000, 4, 2, true, 500},
		{"one busy: everything", 1000, 4, 1, true, 1000},
		{"idle: a quarter of fair", 1000, 4, 1, false, 62},
		{"tiny idle: at least one", 8, 8, 0, false, 1},
		{"busy count not yet updated: never below fair", 1000, 4, 0, true, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBudget(tt.limit, tt.loops)
			b.busy.Store(int64(tt.busyLoops))
			if got := b.window(tt.busy); got != tt.want {
				t.Fatalf("window = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestBudgetNeverOvercommits(t *testing.T) {
	b := newBudget(100, 4)
	if got := b.reserve(1, 70); got != 70 {
		t.Fatalf("reserve(70) = %d", got)
	}
	if got := b.reserve(1, 70); got != 30 {
		t.Fatalf("second reserve(70) = %d, want the 30 left", got)
	}
	if got := b.reserve(1, 1); got != 0 {
		t.Fatalf("reserve when full = %d", got)
	}
	ch := b.released()
	b.release(10)
	select {
	case <-ch:
	default:
		t.Fatal("release did not wake waiters")
	}
	if got := b.reserve(20, 50); got != 0 {
		t.Fatalf("reserve(20, 50) with 10 free = %d, want 0", got)
	}
	if got := b.reserve(5, 50); got != 10 {
		t.Fatalf("reserve after release = %d, want 10", got)
	}

	// Concurrent reserves and releases keep used within [0, limit].
	b = newBudget(64, 8)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				n := b.reserve(1, g%5+1)
				if u := b.used.Load(); u > 64 || u < 0 {
					t.Errorf("used = %d", u)
					return
				}
				b.release(n)
			}
		}()
	}
	wg.Wait()
	if u := b.used.Load(); u != 0 {
		t.Fatalf("used = %d after every reservation was released", u)
	}
}

// TestWindowGrewSignalsIdleTransitions: a loop turning idle widens every
// busy loop's window, so loops parked at their old window must be woken;
// other transitions change no window upward and wake nobody.
func TestWindowGrewSignalsIdleTransitions(t *testing.T) {
	b := newBudget(40, 4)
	grew := b.windowGrew()
	b.setBusy(false, true)
	b.setBusy(true, true)
	select {
	case <-grew:
		t.Fatal("windowGrew fired without a loop turning idle")
	default:
	}
	b.setBusy(true, false)
	select {
	case <-grew:
	default:
		t.Fatal("windowGrew did not fire when a busy loop turned idle")
	}
	select {
	case <-b.windowGrew():
		t.Fatal("a fresh windowGrew channel is already closed")
	default:
	}
}

// A refused loop watches for other loops' refusals (to give back finished
// reads it holds), never for its own: waking on its own refusal made a
// refused fetch loop spin until capacity came back (millions of passes
// in TestConcurrencyOne).
func TestRefusedLoopIsNotWokenByItsOwnRefusal(t *testing.T) {
	b := newBudget(40, 4)
	held := b.starving()
	mine := b.wait(held)
	select {
	case <-held:
	default:
		t.Fatal("a refusal did not wake the loops watching starving")
	}
	select {
	case <-mine:
		t.Fatal("the refused loop would be woken by its own refusal")
	default:
	}
	b.wait(nil) // another loop refused
	select {
	case <-mine:
	default:
		t.Fatal("the refused loop was not woken by another loop's refusal")
	}

	// Another loop refused between this loop's starving and its wait:
	// that refusal is not missed.
	seen := b.starving()
	b.wait(nil)
	select {
	case <-b.wait(seen):
	default:
		t.Fatal("a refusal between starving and wait was missed")
	}
	if got := b.waiters.Load(); got != 4 {
		t.Fatalf("waiters = %d, want 4 (one per wait)", got)
	}
}
