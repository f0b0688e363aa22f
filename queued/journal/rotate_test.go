package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func payload(i int) string { return fmt.Sprintf("item-%04d-%s", i, strings.Repeat("x", 60)) }

func TestRotationDropsDeadPrefix(t *testing.T) {
	dir := t.TempDir()
	const seg = 1024
	j := openT(t, dir, Options{SegmentSize: seg})
	defer j.Close()
	// A FIFO with a short backlog: disk must follow the backlog, not the
	// traffic.
	var backlog []uint64
	over := 0
	for i := 0; i < 400; i++ {
		backlog = append(backlog, appendT(t, j, payload(i))...)
		if len(backlog) > 5 {
			removeT(t, j, backlog[0])
			backlog = backlog[1:]
		}
		// Dead segments are dropped after the writer's next batch, and
		// not while a compaction runs in the background (slow on a loaded
		// machine): over the bound for a batch or two is fine, staying
		// there is not.
		j.mu.Lock()
		compacting := j.compacting
		j.mu.Unlock()
		if st := j.Stats(); st.DiskBytes > 5*seg && !compacting {
			if over++; over > 2 {
				t.Fatalf("after %d items disk = %d bytes, live = %d items", i, st.DiskBytes, st.Items)
			}
		} else {
			over = 0
		}
	}
	st := j.Stats()
	if st.Rotations <= 0 {
		t.Fatalf("no segment was dropped: %+v", st)
	}
	// The segment a roll leaves behind holds the few items in flight; they
	// die soon and it is dropped whole. Compacting it instead reads all of
	// it back to copy those few, at every roll of a busy queue.
	if st.Rewrites != 0 {
		t.Fatalf("a FIFO whose head moves was compacted %d times: %+v", st.Rewrites, st)
	}
	if got := len(segFiles(t, dir)); got > 4 {
		t.Fatalf("%d segment files left", got)
	}
	items := readAll(t, j)
	if len(items) != 5 || items[0].ID != backlog[0] {
		t.Fatalf("live = %v, want ids %v", datas(items), backlog)
	}
}

func TestEmptyQueueRotates(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 8192})
	defer j.Close()
	var ids []uint64
	for i := 0; i < 60; i++ {
		ids = append(ids, appendT(t, j, payload(i))...)
	}
	removeT(t, j, ids...)
	// The drained journal is rolled and the old file dropped right after
	// the batch holding the REMOVE, before the next commit completes.
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("segments after draining: %v", files)
	}
	fi, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 64 {
		t.Fatalf("drained journal still %d bytes", fi.Size())
	}
	ids = appendT(t, j, "next")
	if ids[0] != 61 {
		t.Fatalf("id after rotation = %d, want 61", ids[0])
	}
	j.Close()
	j2 := openT(t, dir, Options{})
	defer j2.Close()
	if got := datas(readAll(t, j2)); fmt.Sprint(got) != "[next]" {
		t.Fatalf("after reopen: %v", got)
	}
}

// waitFor polls cond (a state check, not a timed sleep) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCompactionStuckHead(t *testing.T) {
	dir := t.TempDir()
	const seg = 2048
	j := openT(t, dir, Options{SegmentSize: seg})
	head := appendT(t, j, "stuck-head")
	for i := 0; i < 300; i++ {
		ids := appendT(t, j, payload(i))
		removeT(t, j, ids...)
	}
	tail := appendT(t, j, "tail-1", "tail-2")
	waitFor(t, "a compaction", func() bool { return j.Stats().Rewrites > 0 })
	// Keep the writer busy so the compactor's dead segments are judged again.
	for i := 0; i < 50; i++ {
		ids := appendT(t, j, payload(i))
		removeT(t, j, ids...)
	}
	st := j.Stats()
	if st.DiskBytes > 4*seg {
		t.Fatalf("disk %d bytes for 3 live items after compaction: %+v", st.DiskBytes, st)
	}
	want := fmt.Sprint([]string{"stuck-head", "tail-1", "tail-2"})
	items := readAll(t, j)
	if got := fmt.Sprint(datas(items)); got != want {
		t.Fatalf("live = %s, want %s", got, want)
	}
	if items[0].ID != head[0] || items[2].ID != tail[1] {
		t.Fatalf("ids changed by compaction: %+v", items)
	}
	j.Close()
	j2 := openT(t, dir, Options{SegmentSize: seg})
	defer j2.Close()
	if got := fmt.Sprint(datas(readAll(t, j2))); got != want {
		t.Fatalf("after reopen live = %s, want %s", got, want)
	}
	if st := j2.Stats(); st.Items != 3 {
		t.Fatalf("stats after reopen: %+v", st)
	}
}

func TestCursorOrderAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 1024})
	defer j.Close()
	var want []string
	var removed []uint64
	for i := 0; i < 200; i++ {
		ids := appendT(t, j, payload(i))
		if i%3 == 0 {
			removed = append(removed, ids[0])
		} else {
			want = append(want, payload(i))
		}
	}
	removeT(t, j, removed...)
	if n := len(segFiles(t, dir)); n < 5 {
		t.Fatalf("only %d segments", n)
	}
	for _, batch := range []int{1, 3, 1000} {
		c := j.Cursor(0)
		var got []string
		var last uint64
		for {
			items, err := c.Next(batch, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) == 0 {
				break
			}
			if len(items) > batch {
				t.Fatalf("Next(%d) returned %d items", batch, len(items))
			}
			for _, it := range items {
				if it.ID <= last {
					t.Fatalf("id %d after %d", it.ID, last)
				}
				last = it.ID
				got = append(got, string(it.Data))
			}
		}
		c.Close()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("batch %d: cursor order wrong:\n got %v\nwant %v", batch, got, want)
		}
	}
	// maxBytes bounds a batch but never returns nothing when items exist.
	c := j.Cursor(0)
	items, err := c.Next(100, 1)
	if err != nil || len(items) != 1 {
		t.Fatalf("Next(100, 1) = %d items, %v", len(items), err)
	}
	c.Close()
}

// TestCursorThroughCompaction reads with a cursor while the segments it
// reads are compacted away under it.
func TestCursorThroughCompaction(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 2048})
	defer j.Close()
	var want []string
	for i := 0; i < 400; i++ {
		ids := appendT(t, j, payload(i))
		if i%40 == 0 {
			want = append(want, payload(i))
			continue
		}
		removeT(t, j, ids...)
	}
	c := j.Cursor(0)
	defer c.Close()
	first, err := c.Next(2, 1<<20)
	if err != nil || len(first) != 2 {
		t.Fatalf("first Next: %d items, %v", len(first), err)
	}
	got := datas(first)
	rewrites := j.Stats().Rewrites
	for i := 0; i < 200; i++ {
		ids := appendT(t, j, payload(1000+i))
		removeT(t, j, ids...)
	}
	waitFor(t, "a compaction after the cursor started", func() bool { return j.Stats().Rewrites > rewrites })
	for {
		items, err := c.Next(3, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) == 0 {
			break
		}
		got = append(got, datas(items)...)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("cursor through compaction:\n got %v\nwant %v", got, want)
	}
}

func TestConcurrentAppendRemoveCursor(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 4096, Sync: SyncInterval, SyncInterval: time.Millisecond})
	defer j.Close()
	const producers, per = 8, 100
	ids := make(chan uint64, producers*per)
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				items := []Item{{Data: []byte(fmt.Sprintf("p%d-%d", p, i))}}
				c, err := j.Append(items)
				if err != nil {
					t.Error(err)
					return
				}
				if err := c.Wait(); err != nil {
					t.Error(err)
					return
				}
				ids <- items[0].ID
			}
		}(p)
	}
	// A consumer removes what producers report, a reader follows the cursor.
	removed := make(map[uint64]bool)
	var rmu sync.Mutex
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		n := 0
		for id := range ids {
			n++
			if n%2 == 0 {
				continue
			}
			c, err := j.Remove(id)
			if err != nil {
				t.Error(err)
				return
			}
			if err := c.Wait(); err != nil {
				t.Error(err)
			}
			rmu.Lock()
			removed[id] = true
			rmu.Unlock()
		}
	}()
	seen := map[uint64]bool{}
	cur := j.Cursor(0)
	var last uint64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for len(seen) < producers*per/4 {
			items, err := cur.Next(10, 1<<20)
			if err != nil {
				t.Error(err)
				return
			}
			for _, it := range items {
				if it.ID <= last {
					t.Errorf("cursor went back: %d after %d", it.ID, last)
				}
				last = it.ID
				seen[it.ID] = true
			}
			if len(items) == 0 && t.Failed() {
				return
			}
		}
	}()
	wg.Wait()
	close(ids)
	<-consumerDone
	<-readerDone
	cur.Close()
	st := j.Stats()
	if st.Items != producers*per-int64(len(removed)) {
		t.Fatalf("Items = %d, want %d", st.Items, producers*per-len(removed))
	}
	live := readAll(t, j)
	gotIDs := make([]uint64, len(live))
	for i, it := range live {
		if removed[it.ID] {
			t.Fatalf("removed id %d still live", it.ID)
		}
		gotIDs[i] = it.ID
	}
	if !sort.SliceIsSorted(gotIDs, func(a, b int) bool { return gotIDs[a] < gotIDs[b] }) || len(live) != int(st.Items) {
		t.Fatalf("final cursor: %d items, sorted=%v", len(live), sort.SliceIsSorted(gotIDs, func(a, b int) bool { return gotIDs[a] < gotIDs[b] }))
	}
}

// TestCompactionWithOneRolledSegment: a single rolled segment pinned by one
// live item is compacted too, without waiting for another roll: once
// compactCheckEvery has passed since the roll and the last look, the next
// batch looks again. "exact" makes the rolled segment exactly SegmentSize
// bytes (a 40-byte START and header, 40-byte ADDs), the least that is
// compacted.
func TestCompactionWithOneRolledSegment(t *testing.T) {
	for _, tc := range []struct {
		name string
		seg  int64
		data func(i int) string
	}{
		{"large", 16 << 10, payload},
		{"exact", 40 + 10*40, func(i int) string { return fmt.Sprintf("item-%02d", i)[:7] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j := openT(t, dir, Options{SegmentSize: tc.seg})
			defer j.Close()
			head := appendT(t, j, tc.data(0))
			var rest []uint64
			for i := 1; len(segFiles(t, dir)) < 2; i++ {
				rest = append(rest, appendT(t, j, tc.data(i))...)
			}
			if fi, err := os.Stat(segFiles(t, dir)[0]); err != nil || (tc.name == "exact" && fi.Size() != tc.seg) {
				t.Fatalf("rolled segment of %d bytes (%v), want a roll at exactly SegmentSize %d", fi.Size(), err, tc.seg)
			}
			agePastCompactCheck(t, j)
			removeT(t, j, rest...)
			// The batch of the removes looks, and compacts in the background.
			waitFor(t, "a compaction", func() bool { return j.Stats().Rewrites > 0 })
			if n := len(segFiles(t, dir)); n != 2 {
				t.Fatalf("%d segments after the compaction, want 2", n)
			}
			if st := j.Stats(); st.DiskBytes >= tc.seg+int64(len(rest))*removeReserve {
				t.Fatalf("disk %d bytes for one live item after compaction: %+v", st.DiskBytes, st)
			}
			j.Close()
			j2 := openT(t, dir, Options{SegmentSize: tc.seg})
			defer j2.Close()
			items := readAll(t, j2)
			if len(items) != 1 || items[0].ID != head[0] || string(items[0].Data) != tc.data(0) {
				t.Fatalf("after compaction and reopen: %+v", items)
			}
			// Replay knows the file is compacted: as small as it gets, it
			// is not rewritten again.
			agePastCompactCheck(t, j2)
			syncAndSettle(t, j2)
			j2.mu.Lock()
			compacting := j2.compacting
			j2.mu.Unlock()
			if compacting || j2.Stats().Rewrites != 0 {
				t.Fatalf("the compacted file was compacted again after reopen: %+v", j2.Stats())
			}
		})
	}
}

// TestCompactionAfterReopen: a rolled segment replayed at open (not
// written by compaction) is compacted once it is mostly dead.
func TestCompactionAfterReopen(t *testing.T) {
	dir := t.TempDir()
	const seg = 8 << 10
	j := openT(t, dir, Options{SegmentSize: seg})
	head := appendT(t, j, payload(0))
	var rest []uint64
	for i := 1; len(segFiles(t, dir)) < 2; i++ {
		rest = append(rest, appendT(t, j, payload(i))...)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, dir, Options{SegmentSize: seg})
	defer j.Close()
	agePastCompactCheck(t, j)
	removeT(t, j, rest...)
	waitFor(t, "a compaction of the replayed segment", func() bool { return j.Stats().Rewrites > 0 })
	if items := readAll(t, j); len(items) != 1 || items[0].ID != head[0] {
		t.Fatalf("after compaction: %+v", items)
	}
}

// TestNoCompactionWhileMostlyLive: rolled segments of which more than half
// is live are left alone; rewriting them would copy most of the file to
// reclaim little.
func TestNoCompactionWhileMostlyLive(t *testing.T) {
	dir := t.TempDir()
	const seg = 4096
	j := openT(t, dir, Options{SegmentSize: seg})
	defer j.Close()
	var ids []uint64
	for i := 0; len(segFiles(t, dir)) < 3; i++ {
		ids = append(ids, appendT(t, j, payload(i))...)
	}
	// A third of the items go: two thirds of the rolled bytes stay live.
	var gone []uint64
	for i, id := range ids {
		if i%3 == 1 {
			gone = append(gone, id)
		}
	}
	agePastCompactCheck(t, j)
	removeT(t, j, gone...)
	// The removes' batch looked; a compaction it started is marked at once.
	syncAndSettle(t, j)
	j.mu.Lock()
	compacting := j.compacting
	j.mu.Unlock()
	if compacting || j.Stats().Rewrites != 0 {
		t.Fatalf("segments two-thirds live were compacted: %+v", j.Stats())
	}
}

// agePastCompactCheck makes the writer's last compaction check look
// compactCheckEvery old, as if the next batch came a while later. A
// batch's check runs after its commit is answered, so the writer must be
// idle first: then every check of the batches so far is over.
func agePastCompactCheck(t *testing.T, j *Journal) {
	t.Helper()
	syncAndSettle(t, j)
	j.mu.Lock()
	j.lastCompactChk = time.Now().Add(-compactCheckEvery)
	j.rolledAt = j.lastCompactChk
	j.mu.Unlock()
}

// syncAndSettle writes and fsyncs everything, then waits for the writer
// to finish what it does after the batch (roll, drop, compaction check).
func syncAndSettle(t *testing.T, j *Journal) {
	t.Helper()
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the writer idle", func() bool {
		j.mu.Lock()
		defer j.mu.Unlock()
		return !j.writerBusy
	})
}

// TestDrainedEmptySegmentStays: a drained queue's segment is rolled once it
// holds enough, but a fresh segment holding only its START is never rolled
// into another, however small SegmentSize is.
func TestDrainedEmptySegmentStays(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 64})
	defer j.Close()
	removeT(t, j, appendT(t, j, "x")...)
	// Rolls and drops settle: the drained segments are dropped, leaving
	// only the fresh active one (how many syncs that takes depends on
	// when the writer runs its maintenance).
	waitFor(t, "the drained segments dropped", func() bool {
		syncAndSettle(t, j)
		return len(segFiles(t, dir)) == 1
	})
	first := segFiles(t, dir)
	last := first[len(first)-1]
	if fi, err := os.Stat(last); err != nil || fi.Size() != int64(fileHeaderSize+frameHeaderSize+padded(1+startFixedSize)) {
		t.Fatalf("the drained queue's active segment %s is not a fresh one (%v)", last, err)
	}
	for i := 0; i < 5; i++ {
		syncAndSettle(t, j)
	}
	if again := segFiles(t, dir); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("an empty segment was rolled: %v, then %v", first, again)
	}
}

// TestRollFsyncsOldSegmentFirst: under SyncNever, where batches are not
// fsynced, a roll fsyncs the whole old segment before it creates the next
// one, so only the last segment can have a torn tail after a power cut.
// The synced-length hook (SyncedLogEnv) shows the order.
func TestRollFsyncsOldSegmentFirst(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(t.TempDir(), "synced.log")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syncedLog = f
	defer func() { syncedLog = nil }()

	j := openT(t, dir, Options{Sync: SyncNever, SegmentSize: 1024})
	defer j.Close()
	for i := 0; len(segFiles(t, dir)) < 4; i++ {
		if i == 200 {
			t.Fatalf("no roll after %d appends: %v", i, segFiles(t, dir))
		}
		appendT(t, j, payload(i))
		// Not Sync: that would fsync the batch, and the roll find
		// nothing to fsync.
		settleInline(t, j)
	}
	segs := segFiles(t, dir)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	at := func(line string) int {
		for i, l := range lines {
			if l == line {
				return i
			}
		}
		return -1
	}
	for i, seg := range segs[:len(segs)-1] {
		fi, err := os.Stat(seg)
		if err != nil {
			t.Fatal(err)
		}
		whole := at(fmt.Sprintf("%s %d", filepath.Base(seg), fi.Size()))
		next := -1
		for k, l := range lines {
			if strings.HasPrefix(l, filepath.Base(segs[i+1])+" ") {
				next = k
				break
			}
		}
		if whole < 0 || next < 0 || whole > next {
			t.Fatalf("%s (%d bytes) is not logged as wholly synced before %s was created (lines %d, %d):\n%s", seg, fi.Size(), segs[i+1], whole, next, b)
		}
	}
}

// TestDrainedSegmentRollsAtHalf: a drained queue's segment is rolled as
// soon as it holds half of SegmentSize, exactly half included, so its
// dead records can go.
//
// Under SyncNever the caller writes the records (inline) and asks the
// writer for the roll; nothing is Synced, as that would run the writer's
// own maintenance and hide a missing request.
func TestDrainedSegmentRollsAtHalf(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncNever} {
		t.Run(mode.String(), func(t *testing.T) { testDrainedSegmentRollsAtHalf(t, mode) })
	}
}

func testDrainedSegmentRollsAtHalf(t *testing.T, mode SyncMode) {
	dir := t.TempDir()
	fresh := int64(fileHeaderSize + frameHeaderSize + padded(1+startFixedSize))
	add := int64(frameHeaderSize + padded(1+addFixedSize+1))
	remove := int64(frameHeaderSize + padded(1+16))
	j := openT(t, dir, Options{Sync: mode, SegmentSize: 2 * (fresh + add + remove)})
	defer j.Close()
	first := segFiles(t, dir)
	removeT(t, j, appendT(t, j, "x")...)
	if mode == SyncAlways {
		syncAndSettle(t, j)
	} else {
		settleInline(t, j)
	}
	after := segFiles(t, dir)
	if len(after) != 1 || after[0] == first[0] {
		t.Fatalf("segments %v after draining a segment of exactly half SegmentSize, want one new one (was %v)", after, first)
	}
	if fi, err := os.Stat(after[0]); err != nil || fi.Size() != fresh {
		t.Fatalf("the new segment %s is not a fresh one (%v)", after[0], err)
	}
}

// settleInline waits for the writer to take the request for maintenance
// (roll, drop, compaction check) that inline writes leave and to finish
// it, without a Sync, which would run that maintenance anyway.
func settleInline(t *testing.T, j *Journal) {
	t.Helper()
	waitFor(t, "the writer's maintenance", func() bool {
		j.mu.Lock()
		defer j.mu.Unlock()
		return !j.maintainReq && !j.writerBusy && len(j.pending) == 0
	})
}

// TestInlineWritesRollAndDrop: under SyncNever, where callers write their
// records themselves, a full segment is still rolled and segments that
// only dead items pin are still dropped.
func TestInlineWritesRollAndDrop(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{Sync: SyncNever, SegmentSize: 1024})
	defer j.Close()
	var ids []uint64
	for i := 0; i < 60; i++ {
		ids = append(ids, appendT(t, j, payload(i))...)
		settleInline(t, j)
	}
	if n := len(segFiles(t, dir)); n < 4 {
		t.Fatalf("%d segments after 60 items of %d bytes in segments of 1024", n, len(payload(0)))
	}
	removeT(t, j, ids[:58]...)
	settleInline(t, j)
	if st, segs := j.Stats(), segFiles(t, dir); st.Rotations == 0 || len(segs) > 2 {
		t.Fatalf("dead segments kept: %+v, files %v", st, segs)
	}
	if got := datas(readAll(t, j)); fmt.Sprint(got) != fmt.Sprint([]string{payload(58), payload(59)}) {
		t.Fatalf("live: %v", got)
	}
}

// TestInlineDropAtSegmentBoundary: under SyncNever a segment filled to
// exactly SegmentSize is rolled, and with exactly two segments the first
// is dropped once the first live item is the first of the second.
func TestInlineDropAtSegmentBoundary(t *testing.T) {
	dir := t.TempDir()
	fresh := int64(fileHeaderSize + frameHeaderSize + padded(1+startFixedSize))
	add := int64(frameHeaderSize + padded(1+addFixedSize+1))
	j := openT(t, dir, Options{Sync: SyncNever, SegmentSize: fresh + 2*add})
	defer j.Close()
	a := appendT(t, j, "a")
	b := appendT(t, j, "b")
	settleInline(t, j)
	segs := segFiles(t, dir)
	if len(segs) != 2 {
		t.Fatalf("a segment of exactly SegmentSize was not rolled: %v", segs)
	}
	appendT(t, j, "c")
	j.mu.Lock()
	second := j.segs[1].firstID
	j.mu.Unlock()
	removeT(t, j, a[0], b[0])
	settleInline(t, j)
	if second != b[0]+1 {
		t.Fatalf("the second segment starts at %d, want %d", second, b[0]+1)
	}
	if _, err := os.Stat(segs[0]); !errors.Is(err, os.ErrNotExist) || j.Stats().Rotations != 1 {
		t.Fatalf("the dead first segment was kept: %v, %+v", err, j.Stats())
	}
}

// TestUnwaitedAppendIsCommitted: under SyncAlways an append does not wake
// the writer (the first Wait on its commit does), so one nobody waits for
// must still be written and fsynced, by the lazy timer, and its commit
// finish on its own.
func TestUnwaitedAppendIsCommitted(t *testing.T) {
	j := openT(t, t.TempDir(), Options{Sync: SyncAlways})
	defer j.Close()
	before := j.Stats().Syncs
	c, err := j.Append([]Item{{AddTime: 1, Data: []byte("nobody waits")}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the unwaited append committed", func() bool { return c.Done() })
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := j.Stats().Syncs - before; got != 1 {
		t.Errorf("%d fsyncs for one unwaited append, want 1", got)
	}
}
