package journal

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// TestReplayDoesNotLoadData replays a 40 MB backlog and checks the heap
// grew by a small fraction of it: Open keeps sizes, never data.
func TestReplayDoesNotLoadData(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{Sync: SyncNever})
	data := make([]byte, 4096)
	const n = 10000
	for b := 0; b < n/500; b++ {
		items := make([]Item, 500)
		for i := range items {
			items[i].Data = data
		}
		if _, err := j.Append(items); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	j = openT(t, dir, Options{})
	defer j.Close()
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if st := j.Stats(); st.Items != n || st.Bytes != n*4096 {
		t.Fatalf("stats after replay: %+v", st)
	}
	if grew > 4<<20 {
		t.Fatalf("replaying %d MB grew the heap by %d KB", n*4096>>20, grew>>10)
	}
	t.Logf("replay of %d MB: heap +%d KB", n*4096>>20, grew>>10)
}

func TestDelete(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 512})
	for i := 0; i < 20; i++ {
		appendT(t, j, payload(i))
	}
	other, err := Open(dir, "q2", Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := j.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append([]Item{{Data: []byte("x")}}); err == nil {
		t.Fatal("append after Delete succeeded")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "q2.lock" && e.Name() != "q2.0000000000000001.kj" {
			t.Fatalf("file left after Delete: %s", e.Name())
		}
	}
	j2 := openT(t, dir, Options{})
	defer j2.Close()
	if st := j2.Stats(); st.Items != 0 {
		t.Fatalf("deleted queue came back: %+v", st)
	}
	if ids := appendT(t, j2, "fresh"); ids[0] != 1 {
		t.Fatalf("recreated queue starts at id %d", ids[0])
	}
}

func TestSyncInterval(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{Sync: SyncInterval, SyncInterval: 2e6})
	defer j.Close()
	for i := 0; i < 50; i++ {
		appendT(t, j, payload(i)) // acknowledged after write(2), before fsync
	}
	waitFor(t, "the interval fsync", func() bool { return j.Stats().Syncs > 0 })
	if st := j.Stats(); st.Syncs >= st.Writes {
		t.Fatalf("interval mode fsynced per write: %+v", st)
	}
	// Idle, nothing is left to sync: the ticks cost no fsync. (Watching
	// for something not to happen takes time: twenty intervals.)
	time.Sleep(20 * 2 * time.Millisecond)
	s1 := j.Stats().Syncs
	time.Sleep(20 * 2 * time.Millisecond)
	if s2 := j.Stats().Syncs; s2 != s1 {
		t.Fatalf("an idle journal fsynced %d times in twenty intervals", s2-s1)
	}
}

// TestSyncWithNothingNewCostsNoFsync: Sync when everything is already
// fsynced writes and fsyncs nothing.
func TestSyncWithNothingNewCostsNoFsync(t *testing.T) {
	j := openT(t, t.TempDir(), Options{})
	defer j.Close()
	appendT(t, j, "a") // sync always: fsynced before the commit is answered
	before := j.Stats()
	for i := 0; i < 3; i++ {
		if err := j.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if after := j.Stats(); after.Syncs != before.Syncs || after.Writes != before.Writes {
		t.Fatalf("Sync with nothing new: %+v, was %+v", after, before)
	}
}

func TestSyncNeverSyncsOnClose(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{Sync: SyncNever})
	appendT(t, j, "a", "b")
	if st := j.Stats(); st.Syncs != 0 {
		t.Fatalf("SyncNever fsynced on append: %+v", st)
	}
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Syncs != 1 {
		t.Fatalf("Sync did not fsync: %+v", st)
	}
	j.Close()
}
