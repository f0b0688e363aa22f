package journal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	fsizeChildEnv = "KPUSH_JOURNAL_FSIZE_CHILD"
	fsizeCaseEnv  = "KPUSH_JOURNAL_FSIZE_CASE"
)

// TestWriteFailureFileSizeLimit makes writes fail for real: a re-executed
// copy of this test binary lowers RLIMIT_FSIZE (ignoring SIGXFSZ), so the
// kernel answers EFBIG once a segment would grow past the limit. Appends
// must fail with ErrDiskFull, lose nothing already acknowledged, and
// succeed again once the limit is raised.
//
// Cases: the writer goroutine's batches (always), the callers' inline
// writes (never), and big items written straight from their data (never
// and always), whose pwritev may also be cut short.
func TestWriteFailureFileSizeLimit(t *testing.T) {
	if dir := os.Getenv(fsizeChildEnv); dir != "" {
		fsizeChild(t, dir, os.Getenv(fsizeCaseEnv))
		return
	}
	for _, tc := range []string{"always", "never", "never-big", "always-big"} {
		t.Run(tc, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestWriteFailureFileSizeLimit$", "-test.v", "-test.count=1", "-test.timeout=2m")
			cmd.Env = append(os.Environ(), fsizeChildEnv+"="+dir, fsizeCaseEnv+"="+tc)
			// Dies with this test (a mutation run's timeout kills the
			// parent only).
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "fsize-child: ok") {
				t.Fatalf("child failed: %v\n%s", err, out)
			}
			t.Logf("%s", grepLine(string(out), "fsize-child"))
		})
	}
}

func grepLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func fsizeChild(t *testing.T, dir, tc string) {
	signal.Ignore(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limit := uint64(64 << 10)
	opts := Options{SegmentSize: 1 << 30, Logger: strictLogger(t, "journal write failed")}
	if strings.HasPrefix(tc, "never") {
		opts.Sync = SyncNever
	}
	payload := payload
	if strings.HasSuffix(tc, "-big") {
		limit = 1 << 20
		payload = func(i int) string { return strings.Repeat(fmt.Sprintf("%08d", i), bigRecord/8+1000) }
	}
	j := openT(t, dir, opts)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]string{}
	var failed int
	var firstErr error
	for i := 0; i < 2000 && failed < 5; i++ {
		items := []Item{{Data: []byte(payload(i))}}
		c, err := j.Append(items)
		if err == nil {
			err = c.Wait()
		}
		if err != nil {
			if !errors.Is(err, ErrDiskFull) {
				t.Fatalf("append %d: err = %v, want ErrDiskFull", i, err)
			}
			if firstErr == nil {
				firstErr = err
			}
			failed++
			continue
		}
		acked[items[0].ID] = string(items[0].Data)
	}
	if failed == 0 {
		t.Fatalf("no write failed under RLIMIT_FSIZE=%d", limit)
	}
	// Space returns: the journal works again without reopening.
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	ids := appendT(t, j, "after-space-returned")
	acked[ids[0]] = "after-space-returned"
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	j2 := openT(t, dir, Options{})
	defer j2.Close()
	got := readAll(t, j2)
	if len(got) != len(acked) {
		t.Fatalf("reopen: %d items, want %d acknowledged", len(got), len(acked))
	}
	for _, it := range got {
		if acked[it.ID] != string(it.Data) {
			t.Fatalf("item %d = %q, want %q", it.ID, it.Data, acked[it.ID])
		}
	}
	fmt.Printf("fsize-child: ok acked=%d failed=%d first error: %v\n", len(acked), failed, firstErr)
}

// TestFullDiskRemovesStillFit fills a small tmpfs and checks that new
// appends are refused with ErrDiskFull while removing every journaled
// item still succeeds (the space for the removes was reserved). It needs
// root to mount the tmpfs; elsewhere it is skipped, except in CI (CI=true,
// as .ci/run runs as root), where a skip would hide that it never ran.
func TestFullDiskRemovesStillFit(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs (CI must run as root with CAP_SYS_ADMIN to fill a real disk): %v", err)
		}
		t.Skipf("cannot mount a tmpfs here (needs root): %v; TestWriteFailureFileSizeLimit covers write failures", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	dir := filepath.Join(mnt, "data")
	// Rolls fail (the new segment's room for removes cannot be
	// preallocated) and say so; nothing else may warn.
	j := openT(t, dir, Options{SegmentSize: 64 << 10, Logger: strictLogger(t, "cannot roll journal segment; appending to the current one")})
	defer j.Close()
	var ids []uint64
	var fullErr error
	for i := 0; i < 100000; i++ {
		items := []Item{{Data: []byte(payload(i))}}
		c, err := j.Append(items)
		if err == nil {
			err = c.Wait()
		}
		if err != nil {
			fullErr = err
			break
		}
		ids = append(ids, items[0].ID)
	}
	if !errors.Is(fullErr, ErrDiskFull) {
		t.Fatalf("filling the disk: err = %v, want ErrDiskFull", fullErr)
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(mnt, &fs); err != nil {
		t.Fatal(err)
	}
	// Near the end the preallocation takes exactly what is needed
	// instead of its usual 1 MiB step (more than this disk): appends are
	// refused only once the disk is all but full.
	if free := int64(fs.Bavail) * fs.Bsize; free >= 64<<10 {
		t.Fatalf("appends refused with %d bytes free: %v", free, fullErr)
	}
	// Take whatever is left, so nothing but the reservation remains.
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := filler.Write(chunk); err != nil {
			break
		}
	}
	filler.Close()
	// Room already preallocated may take a few more; then appends are
	// refused up front.
	for i := 0; ; i++ {
		items := []Item{{Data: []byte(payload(i))}}
		c, err := j.Append(items)
		if err == nil {
			if err = c.Wait(); err != nil {
				t.Fatalf("an accepted append failed to write: %v", err)
			}
			ids = append(ids, items[0].ID)
			continue
		}
		if !errors.Is(err, ErrDiskFull) {
			t.Fatalf("append on a full disk: err = %v, want ErrDiskFull", err)
		}
		break
	}
	// Remove one by one, in the worst order for range merging.
	for i := 0; i < len(ids); i += 2 {
		removeT(t, j, ids[i])
	}
	for i := 1; i < len(ids); i += 2 {
		removeT(t, j, ids[i])
	}
	if st := j.Stats(); st.Items != 0 {
		t.Fatalf("items left: %+v", st)
	}
	t.Logf("%d items journaled before the disk filled: %v", len(ids), fullErr)
}

// TestFailedRemovesAreRetried: items confirmed (removed, cleared) while
// every journal write fails are already gone from memory, so their
// REMOVE/CLEAR records must be written once the disk takes writes again
// and nothing confirmed may come back when the journal is reopened. The
// test sets RLIMIT_FSIZE to the end of the segment, so the kernel refuses
// every write past it (EFBIG; Go ignores SIGXFSZ), removes included, and
// raises it again later. It runs in this process (no test here runs in
// parallel), so coverage and mutation testing see the writer's failure
// path.
//
// Cases: the sync mode (always: the writer's batches; never: inline
// writes and the lazy remove write), and how the records get out once
// space returns: the next append carries them, Close's last attempt
// writes them, or they are written before a crash (no Close).
func TestFailedRemovesAreRetried(t *testing.T) {
	for _, tc := range []string{"always/append", "always/close", "always/crash", "never/append", "never/close", "never/crash"} {
		t.Run(tc, func(t *testing.T) { testFailedRemoves(t, t.TempDir(), tc) })
	}
}

func testFailedRemoves(t *testing.T, dir, tc string) {
	mode, after, _ := strings.Cut(tc, "/")
	opts := Options{SegmentSize: 1 << 30, Logger: strictLogger(t, "journal write failed")}
	if mode == "never" {
		opts.Sync = SyncNever
	}
	j := openT(t, dir, opts)
	var data []string
	for i := 0; i < 20; i++ {
		data = append(data, fmt.Sprintf("item-%02d", i))
	}
	ids := appendT(t, j, data...)
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	end := j.active.size
	j.mu.Unlock()
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(end), Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	restored := false
	defer func() {
		if !restored {
			syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
		}
	}()
	// Confirm 0-14 while no write can succeed: one at a time, a batch,
	// and a flush that keeps 15-19 (open reads).
	failed := 0
	wait := func(what string, c *Commit, err error) {
		if err == nil {
			err = c.Wait()
		}
		if err == nil {
			t.Fatalf("%s succeeded with every write past offset %d refused", what, end)
		}
		if !errors.Is(err, ErrDiskFull) {
			t.Fatalf("%s: err = %v, want ErrDiskFull", what, err)
		}
		failed++
	}
	for _, id := range ids[:5] {
		c, err := j.Remove(id)
		wait(fmt.Sprintf("remove %d", id), c, err)
	}
	c, err := j.Remove(ids[5:10]...)
	wait("remove 5-9", c, err)
	c, err = j.ClearExcept(ids[15:]...)
	wait("flush keeping 15-19", c, err)
	if st := j.Stats(); st.Items != 5 {
		t.Fatalf("live items after the confirms: %d, want 5", st.Items)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	restored = true
	var want []string
	for i := 15; i < 20; i++ {
		want = append(want, data[i])
	}
	switch after {
	case "append":
		appendT(t, j, "after")
		want = append(want, "after")
		if err := j.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	case "close":
		if err := j.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	case "crash":
		// An acknowledged append after the failures; then die without
		// Close (what reached the OS stays, as after SIGKILL).
		appendT(t, j, "after")
		want = append(want, "after")
		if err := j.Sync(); err != nil {
			t.Fatal(err)
		}
		j.abandon()
	}
	j2 := openT(t, dir, Options{})
	defer j2.Close()
	if got := datas(readAll(t, j2)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reopened: %d items %v\nwant %d items %v (items confirmed while writes failed came back)", len(got), got, len(want), want)
	}
	t.Logf("%d confirms failed, none came back", failed)
}

// TestCompactionWriteFailure: a compaction whose file cannot be written
// (RLIMIT_FSIZE below its size, set in this process; no test here runs in
// parallel) gives up without touching the segments, leaves no temp file,
// and succeeds on a later check once writes work again.
func TestCompactionWriteFailure(t *testing.T) {
	dir := t.TempDir()
	const seg = 16 << 10
	var logs lockedLog
	j := openT(t, dir, Options{SegmentSize: seg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer j.Close()
	head := appendT(t, j, payload(0))
	var rest []uint64
	for i := 1; len(segFiles(t, dir)) < 2; i++ {
		rest = append(rest, appendT(t, j, payload(i))...)
	}
	// No look at compaction until the limit is in place.
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	j.lastCompactChk = time.Now().Add(time.Hour)
	j.mu.Unlock()
	removeT(t, j, rest...)
	before := segFiles(t, dir)

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	// Less than header, START and the head's ADD: the compaction file
	// cannot be written. The segments need no write for the check (Sync
	// only fsyncs).
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: 64, Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	restored := false
	defer func() {
		if !restored {
			syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
		}
	}()
	agePastCompactCheck(t, j)
	if err := j.Sync(); err != nil { // this batch looks, and compacts in the background
		t.Fatal(err)
	}
	waitFor(t, "the compaction to fail", func() bool { return strings.Contains(logs.String(), "journal compaction failed") })
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	restored = true
	if st := j.Stats(); st.Rewrites != 0 {
		t.Fatalf("a failed compaction counted: %+v", st)
	}
	if got := segFiles(t, dir); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("segments after a failed compaction: %v, want %v", got, before)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*"+tmpExt)); len(tmps) != 0 {
		t.Fatalf("temp files left: %v", tmps)
	}
	// A later check compacts.
	agePastCompactCheck(t, j)
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a compaction once writes work", func() bool { return j.Stats().Rewrites == 1 })
	j.Close()
	j2 := openT(t, dir, Options{SegmentSize: seg})
	defer j2.Close()
	if items := readAll(t, j2); len(items) != 1 || items[0].ID != head[0] || string(items[0].Data) != payload(0) {
		t.Fatalf("after the failed and the good compaction: %+v", items)
	}
}

// lockedLog collects log output written from several goroutines.
type lockedLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestPreallocationCoversRemoves: after every Append the active segment
// has disk blocks for what it holds plus a REMOVE of every live item
// (removeReserve each), so confirming items never needs new space; and
// no more than one preallocation step (reserveSlack) beyond that.
func TestPreallocationCoversRemoves(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{SegmentSize: 64 << 20})
	defer j.Close()
	items := make([]Item, 2000)
	for round := 0; round < 20; round++ { // past two preallocation steps
		c, err := j.Append(items)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
		j.mu.Lock()
		path, need := j.active.path, j.active.size+j.live.items*removeReserve
		j.mu.Unlock()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		alloc := fi.Sys().(*syscall.Stat_t).Blocks * 512
		if alloc < need || alloc > need+reserveSlack+64<<10 {
			t.Fatalf("round %d: %s has %d bytes allocated, want %d (its records and their removes) to %d more", round, path, alloc, need, reserveSlack)
		}
	}
	if len(segFiles(t, dir)) != 1 {
		t.Fatalf("rolled: %v", segFiles(t, dir))
	}
}

// TestDeleteReportsFailedClose: Delete removes the files of a journal
// whose last records could not be written, and says so.
func TestDeleteReportsFailedClose(t *testing.T) {
	dir := t.TempDir()
	j := openT(t, dir, Options{Logger: strictLogger(t, "journal write failed")})
	ids := appendT(t, j, "a", "b")
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	end := j.active.size
	j.mu.Unlock()
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(end), Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
	c, err := j.Remove(ids[0])
	if err == nil {
		err = c.Wait()
	}
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("remove with writes refused: %v, want ErrDiskFull", err)
	}
	if err := j.Delete(); err == nil || !strings.Contains(err.Error(), "could not be written") {
		t.Fatalf("Delete after a failed Close: %v, want the Close's error", err)
	}
	if segs := segFiles(t, dir); len(segs) != 0 {
		t.Fatalf("Delete left %v", segs)
	}
}
