package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitCommit waits for c, failing the test if it has not finished within
// 10 s (a commit that nothing writes would hang forever).
func waitCommit(t *testing.T, c *Commit) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Commit.Wait did not return: nothing wrote the records")
		return nil
	}
}

// TestRemoveWaitWritesAtOnce: under SyncNever and SyncInterval a Remove
// waits in the buffer, and Wait on its Commit writes it right away (the
// caller is about to reply) instead of leaving it to the lazy write, with
// every remove pending by then in the same write. The lazy timer is kept
// from arming, so only Wait can have written them.
func TestRemoveWaitWritesAtOnce(t *testing.T) {
	for _, mode := range []SyncMode{SyncNever, SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Sync: mode, SyncInterval: time.Hour}
			j := openT(t, dir, opts)
			ids := appendT(t, j, "a", "b", "c")
			j.mu.Lock()
			j.lazyArmed = true
			j.mu.Unlock()
			c1, err := j.Remove(ids[0])
			if err != nil {
				t.Fatal(err)
			}
			c2, err := j.Remove(ids[1])
			if err != nil {
				t.Fatal(err)
			}
			if c1 != c2 {
				t.Fatal("two pending removes got different commits: they would not share a write")
			}
			if c1.Done() {
				t.Fatal("a remove was written before anyone waited for it")
			}
			if err := waitCommit(t, c2); err != nil {
				t.Fatal(err)
			}
			if st := j.Stats(); st.Writes != 5 {
				t.Fatalf("%d records written after the wait, want 5", st.Writes)
			}
			if err := waitCommit(t, c1); err != nil || !c1.Done() {
				t.Fatalf("the other remove's commit: done %v, err %v", c1.Done(), err)
			}
			if c3, err := j.Remove(ids[2]); err != nil || c3 == c1 {
				t.Fatalf("a remove after the write joined the finished commit (err %v)", err)
			}
			j.abandon()
			j = openT(t, dir, opts)
			defer j.Close()
			if got := datas(readAll(t, j)); fmt.Sprint(got) != "[c]" {
				t.Fatalf("after a crash: live %v, want [c]", got)
			}
		})
	}
}

// TestRemoveWaitWhileWriterBusy: when the writer goroutine is at work, a
// Wait on a pending remove cannot write inline; it hands the records to
// the writer, which writes them.
func TestRemoveWaitWhileWriterBusy(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{Sync: SyncNever})
	defer j.Close()
	ids := appendT(t, j, "a", "b")
	j.mu.Lock()
	j.lazyArmed = true
	j.mu.Unlock()
	c, err := j.Remove(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	j.writerBusy = true // as while it rolls a segment; it clears this itself when done
	j.mu.Unlock()
	if err := waitCommit(t, c); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Writes != 3 {
		t.Fatalf("%d records written, want 3", st.Writes)
	}
}

// TestRemoveSyncAlwaysWaitsForFsync: under SyncAlways a remove's Commit
// finishes after the fsync that covers it, and the synced-length hook
// (SyncedLogEnv) logs the whole segment as durable by then.
func TestRemoveSyncAlwaysWaitsForFsync(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(t.TempDir(), "synced.log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syncedLog = f
	defer func() { syncedLog = nil }()

	j := openT(t, dir, Options{Sync: SyncAlways})
	defer j.Close()
	ids := appendT(t, j, "a", "b")
	before := j.Stats().Syncs
	c, err := j.Remove(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := waitCommit(t, c); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Syncs <= before || st.Writes != 3 {
		t.Fatalf("after the remove's commit: %d records written, %d fsyncs (%d before)", st.Writes, st.Syncs, before)
	}
	seg := segFiles(t, dir)[0]
	j.mu.Lock()
	written := j.active.size // the file goes on with zeros (zeroAhead)
	j.mu.Unlock()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if want := fmt.Sprintf("%s %d", filepath.Base(seg), written); lines[len(lines)-1] != want {
		t.Fatalf("synced log ends %q, want %q (all of:\n%s)", lines[len(lines)-1], want, b)
	}
}
