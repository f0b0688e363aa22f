package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// strictLogger fails the test if the journal logs a warning or an error.
// The journal warns only when something went wrong (a failed fsync, a
// slow one, a segment it cannot roll or delete); in a test that breaks
// nothing, a warning is a check that fires on success. Tests that break
// something name the messages they expect in allow, or pass a logger of
// their own.
func strictLogger(t testing.TB, allow ...string) *slog.Logger {
	h := &strictHandler{allow: allow}
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, r := range h.bad {
			t.Errorf("journal logged %s in a test that broke nothing", r)
		}
	})
	return slog.New(h)
}

// strictHandler collects the records at Warn or above; strictLogger
// reports them when the test ends (a journal's goroutines may log after
// the test's last line, when t.Errorf would panic).
type strictHandler struct {
	allow []string
	mu    sync.Mutex
	bad   []string
}

func (h *strictHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *strictHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn || slices.Contains(h.allow, r.Message) {
		return nil
	}
	if r.Message == "slow fsync" {
		// A loaded machine can take that long: believe the warning
		// only if it is true.
		slow := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "took" {
				slow = a.Value.Duration() > slowSync
			}
			return true
		})
		if slow {
			return nil
		}
	}
	s := fmt.Sprintf("%s %q", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		s += " " + a.String()
		return true
	})
	h.mu.Lock()
	h.bad = append(h.bad, s)
	h.mu.Unlock()
	return nil
}

func (h *strictHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *strictHandler) WithGroup(string) slog.Handler      { return h }

func openT(t testing.TB, dir string, opts Options) *Journal {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = strictLogger(t)
	}
	j, err := Open(dir, "q", opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return j
}

func appendT(t testing.TB, j *Journal, data ...string) []uint64 {
	t.Helper()
	items := make([]Item, len(data))
	for i, d := range data {
		items[i] = Item{AddTime: int64(1000 + i), Expiry: int64(i), Data: []byte(d)}
	}
	c, err := j.Append(items)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("Append commit: %v", err)
	}
	ids := make([]uint64, len(items))
	for i := range items {
		ids[i] = items[i].ID
	}
	return ids
}

func removeT(t testing.TB, j *Journal, ids ...uint64) {
	t.Helper()
	c, err := j.Remove(ids...)
	if err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("Remove commit: %v", err)
	}
}

// readAll drains a fresh cursor and returns the live items' data.
func readAll(t testing.TB, j *Journal) []Item {
	t.Helper()
	c := j.Cursor(0)
	defer c.Close()
	var out []Item
	for {
		items, err := c.Next(7, 1<<20)
		if err != nil {
			t.Fatalf("Cursor.Next: %v", err)
		}
		if len(items) == 0 {
			return out
		}
		out = append(out, items...)
	}
}

func datas(items []Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = string(it.Data)
	}
	return out
}

func TestAppendRemoveReplay(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncNever, SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Sync: mode, SyncInterval: 5e6}
			j := openT(t, dir, opts)
			ids := appendT(t, j, "a", "bb", "ccc", "dddd")
			if want := []uint64{1, 2, 3, 4}; fmt.Sprint(ids) != fmt.Sprint(want) {
				t.Fatalf("ids = %v, want %v", ids, want)
			}
			removeT(t, j, 2)
			if got := datas(readAll(t, j)); fmt.Sprint(got) != "[a ccc dddd]" {
				t.Fatalf("live before reopen = %v", got)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j = openT(t, dir, opts)
			defer j.Close()
			items := readAll(t, j)
			if got := datas(items); fmt.Sprint(got) != "[a ccc dddd]" {
				t.Fatalf("live after reopen = %v", got)
			}
			if items[1].ID != 3 || items[1].AddTime != 1002 || items[1].Expiry != 2 {
				t.Fatalf("item fields lost: %+v", items[1])
			}
			st := j.Stats()
			if st.Items != 3 || st.Bytes != 8 {
				t.Fatalf("stats = %+v, want 3 items 8 bytes", st)
			}
			ids = appendT(t, j, "e")
			if ids[0] != 5 {
				t.Fatalf("id after reopen = %d, want 5", ids[0])
			}
			c, err := j.Clear()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Wait(); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, j); len(got) != 0 {
				t.Fatalf("after clear: %v", datas(got))
			}
		})
	}
}

func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{Sync: SyncAlways})
	defer j.Close()
	const writers, per = 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				c, err := j.Append([]Item{{Data: []byte(fmt.Sprintf("%d-%d", w, i))}})
				if err == nil {
					err = c.Wait()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := j.Stats()
	if st.Writes != writers*per {
		t.Fatalf("Writes = %d, want %d", st.Writes, writers*per)
	}
	if st.Syncs >= st.Writes {
		t.Fatalf("no group commit: %d fsyncs for %d records", st.Syncs, st.Writes)
	}
	t.Logf("%d records, %d fsyncs", st.Writes, st.Syncs)
	if got := readAll(t, j); len(got) != writers*per {
		t.Fatalf("cursor saw %d items, want %d", len(got), writers*per)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	defer j.Close()
	_, err := Open(dir, "q", Options{Logger: quietLogger()})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte("q.lock")) {
		t.Fatalf("error does not name the lock file: %v", err)
	}
}

func TestClearExceptKeepsOpenReads(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	ids := appendT(t, j, "a", "b", "c", "d", "e")
	c, err := j.ClearExcept(ids[1], ids[3], 999)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(datas(readAll(t, j))); got != "[b d]" {
		t.Fatalf("after ClearExcept: %s", got)
	}
	if st := j.Stats(); st.Writes != 6 {
		t.Fatalf("%d records written, want 6 (5 ADDs, 1 REMOVE around the kept ids)", st.Writes)
	}
	appendT(t, j, "f")
	j.Close()
	j = openT(t, dir, Options{})
	defer j.Close()
	if got := fmt.Sprint(datas(readAll(t, j))); got != "[b d f]" {
		t.Fatalf("after reopen: %s", got)
	}
	if st := j.Stats(); st.Items != 3 || st.Bytes != 3 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestCursorSeesIssuedAppends: an Append whose commit is not yet waited
// for (still in the write buffer) is visible to a cursor.
func TestCursorSeesIssuedAppends(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncNever} {
		j := openT(t, t.TempDir(), Options{Sync: mode})
		cur := j.Cursor(0)
		for i := 0; i < 20; i++ {
			items := []Item{{Data: []byte(fmt.Sprint(i))}}
			if _, err := j.Append(items); err != nil {
				t.Fatal(err)
			}
			got, err := cur.Next(10, 1<<20)
			if err != nil || len(got) != 1 || got[0].ID != items[0].ID {
				t.Fatalf("%v: Next after Append %d = %+v, %v", mode, i, got, err)
			}
		}
		if got, err := cur.Next(10, 1<<20); err != nil || len(got) != 0 {
			t.Fatalf("caught-up cursor returned %+v, %v", got, err)
		}
		cur.Close()
		if _, err := cur.Next(1, 1); !errors.Is(err, ErrClosed) {
			t.Fatalf("Next on a closed cursor: %v", err)
		}
		j.Close()
		if _, err := j.Cursor(0).Next(1, 1); !errors.Is(err, ErrClosed) {
			t.Fatalf("Next on a closed journal: %v", err)
		}
		if _, err := j.Append([]Item{{}}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Append on a closed journal: %v", err)
		}
		if _, err := j.Remove(1); !errors.Is(err, ErrClosed) {
			t.Fatalf("Remove on a closed journal: %v", err)
		}
	}
}

func TestBadOptions(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{Sync: SyncInterval},
		{Sync: SyncMode(9)},
		{SegmentSize: -1},
	} {
		if j, err := Open(dir, "q", o); err == nil {
			j.Close()
			t.Fatalf("Open with %+v succeeded", o)
		}
	}
}

// TestInlineWritesSurviveCrash: under SyncNever and SyncInterval an
// Append is written by the caller (no writer hand-off) and a Remove rides
// in the next write or, alone, in the lazy write at most lazyDelay later.
// Whatever a finished Commit covers must be in the file after a crash
// without Close (abandon), in order, with the writer goroutine never
// having run a batch.
func TestInlineWritesSurviveCrash(t *testing.T) {
	for _, mode := range []SyncMode{SyncNever, SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Sync: mode, SyncInterval: time.Hour}
			j := openT(t, dir, opts)
			ids := appendT(t, j, "a", "b", "c")
			// The remove is not waited for by its caller; here it is,
			// and nothing else is written after it: the lazy write must
			// carry it.
			removeT(t, j, ids[0])
			// This remove rides in the next append's write.
			if _, err := j.Remove(ids[1]); err != nil {
				t.Fatal(err)
			}
			appendT(t, j, "d")
			if st := j.Stats(); st.Writes != 6 || st.Syncs != 0 {
				t.Fatalf("stats %+v: want 6 records written, no fsync", st)
			}
			j.abandon()
			j = openT(t, dir, opts)
			defer j.Close()
			if got := datas(readAll(t, j)); fmt.Sprint(got) != "[c d]" {
				t.Fatalf("after crash: live %v, want [c d]", got)
			}
		})
	}
}

// TestBigAppendWrittenFromItem: an item of bigRecord bytes or more is
// written straight from its data (head, data, padding in one pwritev),
// carrying any lazy removes before it; after a crash without Close the
// record replays with its data and CRC intact, in every sync mode.
func TestBigAppendWrittenFromItem(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), bigRecord/16*3)
	big = append(big, "odd"...) // not a multiple of the frame alignment
	for _, mode := range []SyncMode{SyncAlways, SyncNever, SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Sync: mode, SyncInterval: time.Hour}
			j := openT(t, dir, opts)
			ids := appendT(t, j, "small")
			c, err := j.Remove(ids[0])
			if err != nil {
				t.Fatal(err)
			}
			if mode == SyncAlways {
				// Its own batch and fsync, before the count below.
				if err := c.Wait(); err != nil {
					t.Fatal(err)
				}
			}
			before := j.Stats()
			appendT(t, j, string(big))
			// The big ADD is counted, and fsynced only under SyncAlways.
			if st := j.Stats(); st.Writes != 3 || (mode == SyncAlways) != (st.Syncs > before.Syncs) {
				t.Fatalf("after the big append: %d records written (want 3), %d fsyncs, %d before", st.Writes, st.Syncs, before.Syncs)
			}
			// Written from the item: no buffer of the journal grew to hold it.
			j.mu.Lock()
			pending, spare := cap(j.pending), cap(j.spare)
			j.mu.Unlock()
			if pending >= len(big) || spare >= len(big) {
				t.Fatalf("the big item was copied into the pending buffer (capacity %d, spare %d)", pending, spare)
			}
			appendT(t, j, "after")
			j.abandon()
			j = openT(t, dir, opts)
			defer j.Close()
			items := readAll(t, j)
			if len(items) != 2 || !bytes.Equal(items[0].Data, big) || string(items[1].Data) != "after" {
				t.Fatalf("after crash: %d items, want the big one (%d bytes) then \"after\"", len(items), len(big))
			}
			if items[0].ID != 2 || items[0].AddTime != 1000 {
				t.Fatalf("big item fields: id %d addTime %d", items[0].ID, items[0].AddTime)
			}
		})
	}
}

// TestLockDir: one holder per data directory; the second is told who holds
// it; once released, the directory can be taken again.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	release, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(dir)
	var locked *DirLockedError
	if !errors.As(err, &locked) || !errors.Is(err, ErrLocked) || locked.PID != os.Getpid() || locked.Dir != dir {
		t.Fatalf("second LockDir: %v, want a DirLockedError naming pid %d", err, os.Getpid())
	}
	if want := fmt.Sprintf("data directory %s is in use by another process (pid %d)", dir, os.Getpid()); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if names, err := Names(dir); err != nil || len(names) != 0 {
		t.Errorf("the lock file shows as queues %v (%v)", names, err)
	}
	// A holder that has not written its pid yet is "another process".
	if err := os.Truncate(filepath.Join(dir, dirLockName), 0); err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(dir)
	if want := fmt.Sprintf("data directory %s is in use by another process", dir); err == nil || err.Error() != want {
		t.Errorf("LockDir with an empty lock file: %v, want %q", err, want)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	release, err = LockDir(dir)
	if err != nil {
		t.Fatalf("LockDir after release: %v", err)
	}
	release()
}

// TestBigItemFirstOfSeveral: an Append of several items whose first is big
// journals all of them (only a lone big item is written from its memory).
func TestBigItemFirstOfSeveral(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{})
	big := strings.Repeat("b", bigRecord)
	appendT(t, j, big, "small")
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, dir, Options{})
	defer j.Close()
	got := datas(readAll(t, j))
	if len(got) != 2 || got[0] != big || got[1] != "small" {
		t.Fatalf("after reopen: %d items, want the big one and \"small\"", len(got))
	}
}

// TestCursorLimits: Next returns at most maxItems items and stops once
// they reach maxBytes (exactly maxBytes included), but returns one item
// even if it alone is bigger.
func TestCursorLimits(t *testing.T) {
	j := openT(t, t.TempDir(), Options{})
	defer j.Close()
	appendT(t, j, "0123456789", "0123456789", "0123456789", "0123456789")
	for _, tc := range []struct {
		maxItems int
		maxBytes int64
		want     int
	}{{10, 20, 2}, {10, 21, 3}, {10, 5, 1}, {2, 1000, 2}, {0, 1000, 1}} {
		c := j.Cursor(0)
		items, err := c.Next(tc.maxItems, tc.maxBytes)
		c.Close()
		if err != nil || len(items) != tc.want {
			t.Errorf("Next(%d, %d) = %d items, %v; want %d", tc.maxItems, tc.maxBytes, len(items), err, tc.want)
		}
	}
}

// TestCursorNextWithin: NextWithin stops before the item that would pass
// the budget (data plus perItem each), leaves it for the next call, and
// returns nothing when the first item does not fit; dead items between are
// passed over.
func TestCursorNextWithin(t *testing.T) {
	j := openT(t, t.TempDir(), Options{})
	defer j.Close()
	ids := appendT(t, j, "0", "1", "2", "3", "4")
	removeT(t, j, ids[3])
	c := j.Cursor(0)
	defer c.Close()
	for _, tc := range []struct {
		maxItems int
		maxCost  int64
		want     string
	}{
		{10, 2 * (1 + 5), "[0 1]"}, // a third would cost 18
		{10, 5, "[]"},              // the first costs 6: nothing, and it stays unread
		{1, 100, "[2]"},
		{10, 100, "[4]"}, // 3 is dead
		{10, 100, "[]"},  // caught up
	} {
		items, err := c.NextWithin(tc.maxItems, tc.maxCost, 5)
		if got := fmt.Sprint(datas(items)); err != nil || got != tc.want {
			t.Fatalf("NextWithin(%d, %d, 5) = %s, %v; want %s", tc.maxItems, tc.maxCost, got, err, tc.want)
		}
	}
}

// TestCursorClosesFiles: a cursor that reads through several segments
// keeps at most one of them open, and none after Close; the journal's
// Close closes all of its files.
func TestCursorClosesFiles(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 512})
	defer j.Close()
	for i := 0; i < 40; i++ {
		appendT(t, j, payload(i))
	}
	syncAndSettle(t, j) // the last roll done: the journal's own files stay as they are
	open := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		n := 0
		for _, e := range ents {
			if p, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(p, dir+"/") {
				n++
			}
		}
		return n
	}
	before := open()
	if segs := segFiles(t, dir); len(segs) < 4 {
		t.Fatalf("want several segments, got %v", segs)
	}
	c := j.Cursor(0)
	for {
		items, err := c.Next(3, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) == 0 {
			break
		}
		if n := open(); n > before+1 {
			t.Fatalf("%d files of the journal open while reading, %d before", n, before)
		}
	}
	c.Close()
	if n := open(); n != before {
		t.Fatalf("%d files of the journal open after the cursor's Close, %d before", n, before)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if n := open(); n != 0 {
		t.Fatalf("%d files of the journal open after its Close", n)
	}
}

// TestInlineCommits: under SyncNever and SyncInterval an Append is not
// written when it is made; the first Wait writes every pending record,
// other callers' included, with one write(2) of its own (the writer idle),
// and finishes their Commits; a Remove no one waits for is written by the
// lazy write, with no other call.
func TestInlineCommits(t *testing.T) {
	for _, mode := range []SyncMode{SyncNever, SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			j := openT(t, t.TempDir(), Options{Sync: mode, SyncInterval: time.Hour})
			defer j.Close()
			settleInline(t, j)
			release := holdLazyTimer(t, j)
			var commits []*Commit
			var ids []uint64
			for _, d := range []string{"a", "b", "c"} {
				items := []Item{{Data: []byte(d)}}
				c, err := j.Append(items)
				if err != nil {
					t.Fatal(err)
				}
				commits = append(commits, c)
				ids = append(ids, items[0].ID)
			}
			if st := j.Stats(); st.Writes != 0 || commits[0].Done() {
				t.Fatalf("stats %+v, first commit done %v: appends written before anyone waited", st, commits[0].Done())
			}
			if err := commits[2].Wait(); err != nil {
				t.Fatal(err)
			}
			if st := j.Stats(); st.Writes != 3 || st.Batches != 1 || st.Syncs != 0 {
				t.Fatalf("stats %+v after one Wait: want 3 records in 1 write, no fsync", st)
			}
			for i, c := range commits {
				if !c.Done() {
					t.Fatalf("commit of append %d not finished by the write that carried it", i)
				}
			}
			release()
			if _, err := j.Remove(ids[0]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the lazy write of the remove", func() bool { return j.Stats().Writes == 4 })
			if st := j.Stats(); st.Batches != 2 {
				t.Fatalf("stats %+v: want the remove in a write of its own", st)
			}
		})
	}
}

// holdLazyTimer keeps the lazy timer from writing (as if it were armed),
// once any armed timer has fired, so that only a Wait writes; the
// returned func lets the next record arm it again.
func holdLazyTimer(t *testing.T, j *Journal) (release func()) {
	t.Helper()
	waitFor(t, "the lazy timer idle", func() bool {
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.lazyArmed {
			return false
		}
		j.lazyArmed = true
		return true
	})
	return func() {
		j.mu.Lock()
		j.lazyArmed = false
		j.mu.Unlock()
	}
}

// TestWaitYieldsToOtherAppenders: a Wait yields the processor before it
// writes, so appenders that are ready to run add their records first and
// share the write (the point of the yield under load). With one P and no
// yield, each appender would run to its own write: as many writes as
// records.
func TestWaitYieldsToOtherAppenders(t *testing.T) {
	for _, mode := range []SyncMode{SyncNever, SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			j := openT(t, t.TempDir(), Options{Sync: mode, SyncInterval: time.Hour})
			defer j.Close()
			appendT(t, j, "first")
			settleInline(t, j)
			holdLazyTimer(t, j)
			before := j.Stats()
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			const appenders = 8
			appendRound(t, j, appenders)
			st := j.Stats()
			w, b := st.Writes-before.Writes, st.Batches-before.Batches
			t.Logf("%d records in %d writes", w, b)
			if w != appenders || b >= appenders {
				t.Fatalf("%d records in %d writes, want %d records sharing fewer writes: each Wait wrote before the others appended", w, b, appenders)
			}
		})
	}
}

// appendRound starts n goroutines that each append one record and wait
// for it, as n connections sending a set each, and waits for all of them.
func appendRound(t *testing.T, j *Journal, n int) {
	t.Helper()
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			c, err := j.Append([]Item{{Data: []byte("x")}})
			if err == nil {
				err = c.Wait()
			}
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestWaitStopsYieldingAlone: with one caller a yield never pays (nobody
// else adds records meanwhile), so after the credit is spent only one Wait in
// probeEvery yields; when several callers come back, a probe's yield pays
// and writes are shared again.
func TestWaitStopsYieldingAlone(t *testing.T) {
	j := openT(t, t.TempDir(), Options{Sync: SyncNever})
	defer j.Close()
	const alone = 320
	for i := 0; i < alone; i++ {
		appendT(t, j, "x")
	}
	st := j.Stats()
	if max := int64(maxYieldCredit + alone/probeEvery); st.Yields > max {
		t.Fatalf("one caller, %d Waits: %d yields, want at most %d", alone, st.Yields, max)
	}
	if st.Batches != alone {
		t.Fatalf("one caller: %d writes for %d records", st.Batches, alone)
	}

	// Rounds of callers that each append once and wait, as connections
	// sending a request each; one P makes the order certain.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	// 7 callers a round: a probe (every 32nd Wait) falls on a different one
	// each round, not always on the last, whose yield cannot pay.
	const appenders, rounds = 7, 40
	for r := 0; r < rounds; r++ {
		appendRound(t, j, appenders)
	}
	after := j.Stats()
	w, b := after.Writes-st.Writes, after.Batches-st.Batches
	t.Logf("%d rounds of %d callers: %d records in %d writes, %d yields", rounds, appenders, w, b, after.Yields-st.Yields)
	if w != appenders*rounds || b > w/3 {
		t.Fatalf("%d records in %d writes, want them sharing (at most %d writes)", w, b, w/3)
	}
}

// TestCursorSegmentGone: a segment file deleted under a running journal
// (by hand) makes Next fail naming it, after a few looks for a compacted
// stand-in, instead of looping.
func TestCursorSegmentGone(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 512})
	defer j.Close()
	for i := 0; i < 20; i++ {
		appendT(t, j, payload(i))
	}
	segs := segFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("want several segments, got %v", segs)
	}
	if err := os.Remove(segs[0]); err != nil {
		t.Fatal(err)
	}
	c := j.Cursor(0)
	defer c.Close()
	if _, err := c.Next(10, 1<<20); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), segs[0]) {
		t.Fatalf("Next with %s gone: %v, want an error naming it", segs[0], err)
	}
}

// TestWriteBuffersKept: the buffer a batch was encoded in is kept for the
// next one, by the writer (SyncAlways) and by an inline write (SyncNever),
// instead of being allocated again for every batch; an item of exactly
// bigRecord bytes is written from its memory, never copied into it.
func TestWriteBuffersKept(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncNever} {
		t.Run(mode.String(), func(t *testing.T) {
			j := openT(t, t.TempDir(), Options{Sync: mode})
			defer j.Close()
			appendT(t, j, "a")
			if mode == SyncAlways {
				syncAndSettle(t, j)
			} else {
				settleInline(t, j)
			}
			j.mu.Lock()
			kept := max(cap(j.pending), cap(j.spare))
			j.mu.Unlock()
			if kept == 0 {
				t.Fatal("the written batch's buffer was dropped")
			}
			appendT(t, j, strings.Repeat("b", bigRecord))
			j.mu.Lock()
			grown := max(cap(j.pending), cap(j.spare))
			j.mu.Unlock()
			if grown >= bigRecord {
				t.Fatalf("an item of exactly bigRecord bytes was copied into the pending buffer (capacity %d)", grown)
			}
		})
	}
}
