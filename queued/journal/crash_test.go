package journal

import (
	"fmt"
	"testing"
	"time"
)

// TestCrashAtEveryStep stops the journal dead at each step of rolling,
// dropping and compacting segments (as SIGKILL would: what reached the OS
// stays, nothing else happens), reopens it from disk and checks that every
// acknowledged item is there exactly once and no acknowledged removal
// came back.
func TestCrashAtEveryStep(t *testing.T) {
	steps := []string{
		"batch:written",
		"roll:old-synced",
		"segment:created",
		"roll:created",
		"delete:before",
		"compact:written",
		"compact:synced",
		"compact:renamed",
		"compact:dir-synced",
		"compact:deleted-one",
	}
	for _, tc := range crashCases(steps) {
		step, nth := tc.step, tc.nth
		t.Run(fmt.Sprintf("%s#%d", step, nth), func(t *testing.T) {
			dir := t.TempDir()
			const seg = 1024
			j0 := openT(t, dir, Options{SegmentSize: seg})
			j0.Close()
			j := openT(t, dir, Options{SegmentSize: seg, crashAt: step, crashNth: nth})

			acked := map[uint64]string{} // live and acknowledged
			uncertain := map[uint64]string{}
			dead := false
			wait := func(c *Commit) bool {
				select {
				case <-c.done:
					return c.err == nil
				case <-j.deadC:
					return false
				}
			}
			add := func(data string) uint64 {
				items := []Item{{Data: []byte(data)}}
				c, err := j.Append(items)
				if err != nil {
					dead = true
					return 0
				}
				if !wait(c) {
					uncertain[items[0].ID] = data
					dead = true
					return 0
				}
				acked[items[0].ID] = data
				return items[0].ID
			}
			remove := func(id uint64) {
				c, err := j.Remove(id)
				if err != nil {
					dead = true
					return
				}
				data := acked[id]
				delete(acked, id)
				if !wait(c) {
					uncertain[id] = data
					dead = true
				}
			}
			head := add("head")
			var kept []uint64
			for i := 0; i < 150 && !dead; i++ {
				id := add(payload(i))
				switch {
				case dead:
				case i%10 == 0:
					kept = append(kept, id)
				default:
					remove(id)
				}
			}
			// Drain what pinned the old segments: they can now be dropped.
			for _, id := range append([]uint64{head}, kept...) {
				if !dead {
					remove(id)
				}
			}
			for i := 0; i < 60 && !dead; i++ {
				if id := add(payload(1000 + i)); !dead {
					remove(id)
				}
			}
			select {
			case <-j.deadC:
			case <-time.After(10 * time.Second):
				t.Fatalf("step %s was never reached", step)
			}
			j.abandon()

			j2 := openT(t, dir, Options{SegmentSize: seg, Logger: quietLogger()}) // repairs what the crash left
			defer j2.Close()
			got := map[uint64]string{}
			var last uint64
			for _, it := range readAll(t, j2) {
				if it.ID <= last {
					t.Fatalf("id %d after %d: duplicate or out of order", it.ID, last)
				}
				last = it.ID
				got[it.ID] = string(it.Data)
			}
			for id, data := range acked {
				if got[id] != data {
					t.Errorf("acknowledged item %d (%q) lost", id, data)
				}
			}
			for id, data := range got {
				if _, ok := acked[id]; ok {
					continue
				}
				if u, ok := uncertain[id]; !ok || u != data {
					t.Errorf("item %d (%q) came back though its removal was acknowledged", id, data)
				}
			}
			if st := j2.Stats(); st.Items != int64(len(got)) {
				t.Errorf("Stats.Items = %d, cursor saw %d", st.Items, len(got))
			}
			t.Logf("%s: %d acknowledged live, %d after reopen", step, len(acked), len(got))
		})
	}
}

type crashCase struct {
	step string
	nth  int
}

// crashCases crashes at the first and at a later occurrence of each step,
// when the journal holds more history.
func crashCases(steps []string) []crashCase {
	var out []crashCase
	for _, s := range steps {
		out = append(out, crashCase{s, 1}, crashCase{s, 3})
	}
	return out
}

// TestCrashHook: the crash points TestCrashAtEveryStep relies on stop the
// journal at the named step's nth occurrence, not before, and no other
// step stops it.
func TestCrashHook(t *testing.T) {
	j := openT(t, t.TempDir(), Options{crashAt: "batch:written", crashNth: 2})
	defer j.abandon()
	appendT(t, j, "first")
	if j.isDead() {
		t.Fatal("dead after the first batch; crashNth is 2")
	}
	c, err := j.Append([]Item{{Data: []byte("second")}})
	if err != nil {
		t.Fatal(err)
	}
	c.Wait() // written, then the writer stops dead at batch:written
	waitFor(t, "the crash at the second batch:written", j.isDead)
}
