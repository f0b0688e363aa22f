package journal

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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
			cmd := exec.Command(os.Args[0], "-test.run=^TestWriteFailureFileSizeLimit$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), fsizeChildEnv+"="+dir, fsizeCaseEnv+"="+tc)
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
	opts := Options{SegmentSize: 1 << 30}
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
// root to mount the tmpfs.
func TestFullDiskRemovesStillFit(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root): %v; TestWriteFailureFileSizeLimit covers write failures", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	dir := filepath.Join(mnt, "data")
	j := openT(t, dir, Options{SegmentSize: 64 << 10})
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
