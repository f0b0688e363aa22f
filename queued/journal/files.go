package journal

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/kpush/kpush/internal/fsync"
	"github.com/kpush/kpush/internal/queuename"
)

// File names, all inside the data directory:
//
//	<queue>.<seq:016x>.kj      a segment, replayed in seq order
//	<queue>.<seq:016x>.kj.tmp  a compaction in progress; deleted at open
//	<queue>.<seq:016x>.kj.broken  a copy of a segment taken before its torn tail was cut
//	<queue>.lock               flock(2)ed while a Journal has the queue open
//	kpush.pid                  flock(2)ed by the process serving the directory (LockDir); holds its PID
const (
	segExt   = ".kj"
	tmpExt   = ".tmp"
	lockExt  = ".lock"
	brokeExt = ".broken"
)

// segFileRE matches a segment's file name: a file base (a queue name, or
// its shortened form with '~'), the sequence number, the extension.
var segFileRE = regexp.MustCompile(`^([A-Za-z0-9_+~-]+)\.([0-9a-f]{16})\.kj$`)

// maxPlainBase is the longest queue name used as is in file names: with
// ".<16 hex>.kj.broken" it stays well under the usual 255-byte limit.
const maxPlainBase = 200

// nameExt holds the full queue name of a shortened file base.
const nameExt = ".name"

// fileBase is the prefix of a queue's file names: the name itself, or for
// names too long for the file system (queuename.MaxLen is 250) a prefix,
// '~' (never in a queue name) and a hash; <base>.name then holds the name.
func fileBase(name string) string {
	if len(name) <= maxPlainBase {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:maxPlainBase-17] + "~" + hex.EncodeToString(sum[:8])
}

// writeNameFile records the full queue name of a shortened base, via a
// temp file, fsync and rename, so it is never seen half-written.
func writeNameFile(dir, base, name string) error {
	path := filepath.Join(dir, base+nameExt)
	if b, err := os.ReadFile(path); err == nil && string(b) == name {
		return nil
	}
	if err := fsync.WriteFile(path, []byte(name), 0o644); err != nil {
		return fmt.Errorf("write queue name file: %w", err)
	}
	return nil
}

// nameOfBase maps a file base back to its queue name.
func nameOfBase(dir, base string) (string, bool) {
	if !strings.Contains(base, "~") {
		return base, queuename.Valid(base)
	}
	b, err := os.ReadFile(filepath.Join(dir, base+nameExt))
	if err != nil {
		return "", false
	}
	name := string(b)
	return name, queuename.Valid(name) && fileBase(name) == base
}

func segName(name string, seq uint64) string {
	return fmt.Sprintf("%s.%016x%s", name, seq, segExt)
}

// Names lists the queues that have journals in dir, sorted.
func Names(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list journals in %s: %w", dir, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range ents {
		m := segFileRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		name, ok := nameOfBase(dir, m[1])
		if !ok || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, name)
	}
	sort.Strings(out)
	return out, nil
}

type segFile struct {
	seq  uint64
	path string
}

// listSegments returns the segment files of one queue (by file base) in
// seq order.
func listSegments(dir, name string) ([]segFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list journal %s in %s: %w", name, dir, err)
	}
	var out []segFile
	for _, e := range ents {
		m := segFileRE.FindStringSubmatch(e.Name())
		if m == nil || m[1] != name {
			continue
		}
		seq, err := strconv.ParseUint(m[2], 16, 64)
		if err != nil {
			continue
		}
		out = append(out, segFile{seq, filepath.Join(dir, e.Name())})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].seq < out[b].seq })
	return out, nil
}

// removeTemps deletes leftovers of compactions interrupted by a crash.
func removeTemps(dir, name string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list journal %s in %s: %w", name, dir, err)
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, name+".") && strings.HasSuffix(n, segExt+tmpExt) && segFileRE.MatchString(strings.TrimSuffix(n, tmpExt)) {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return fmt.Errorf("remove stale compaction file %s: %w", n, err)
			}
		}
	}
	return nil
}

// lockQueue takes an exclusive, non-blocking flock on <name>.lock.
func lockQueue(dir, name string) (*os.File, error) {
	path := filepath.Join(dir, name+lockExt)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by another process (is another kpush queued running on this data dir?)", ErrLocked, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// dirLockName is the file LockDir locks. Its name is no queue's file name
// (a queue's lock ends in .lock, its segments in .kj).
const dirLockName = "kpush.pid"

// DirLockedError: another process serves the data directory. PID is the
// holder's process id as it wrote it, 0 when unknown.
type DirLockedError struct {
	Dir string
	PID int
}

func (e *DirLockedError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = fmt.Sprintf("another process (pid %d)", e.PID)
	}
	return fmt.Sprintf("data directory %s is in use by %s", e.Dir, holder)
}

func (e *DirLockedError) Unwrap() error { return ErrLocked }

// LockDir takes the data directory dir for this process: an exclusive,
// non-blocking flock(2) on dir/kpush.pid, which then holds this process's
// PID. A second server on the same directory fails here, at its start,
// with a *DirLockedError naming the holder, instead of failing every write
// later. release gives the directory up (the lock also ends with the
// process).
func LockDir(dir string) (release func() error, err error) {
	path := filepath.Join(dir, dirLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := io.ReadAll(io.LimitReader(f, 32))
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return nil, &DirLockedError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close, nil
}

// copyFile copies src to dst and fsyncs dst.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// frameReader reads frames from a file region through a reusable window.
type frameReader struct {
	ra     io.ReaderAt
	off    int64 // file offset of the next frame
	limit  int64 // end of the readable region
	buf    []byte
	bufOff int64
	n      int
}

const readWindow = 256 << 10

func (r *frameReader) window(need int) ([]byte, error) {
	start := r.off - r.bufOff
	if r.n > 0 && start >= 0 && start+int64(need) <= int64(r.n) {
		return r.buf[start:r.n], nil
	}
	want := int64(max(need, readWindow))
	if avail := r.limit - r.off; want > avail {
		want = avail
	}
	if int64(cap(r.buf)) < want {
		r.buf = make([]byte, want)
	}
	n, err := r.ra.ReadAt(r.buf[:want], r.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	r.bufOff, r.n = r.off, n
	return r.buf[:n], nil
}

// next decodes the frame at r.off. It returns io.EOF exactly at the limit,
// and a decoding error (with the frame's offset) otherwise.
func (r *frameReader) next() (Record, int64, error) {
	off := r.off
	if off >= r.limit {
		return Record{}, off, io.EOF
	}
	b, err := r.window(frameHeaderSize)
	if err != nil {
		return Record{}, off, err
	}
	if len(b) >= frameHeaderSize {
		n := int(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
		if n > 0 && n <= maxPayload {
			total := frameHeaderSize + padded(n)
			if len(b) < total && off+int64(total) <= r.limit {
				if b, err = r.window(total); err != nil {
					return Record{}, off, err
				}
			}
		}
	}
	rec, size, err := DecodeRecord(b)
	if err != nil {
		return Record{}, off, err
	}
	r.off += int64(size)
	return rec, off, nil
}

// zeroTail reports whether the file holds only zeros from off to size:
// the zeros a writer keeps ahead of its records (zeroAhead), not a record.
func zeroTail(f io.ReaderAt, off, size int64) (bool, error) {
	buf := make([]byte, min(size-off, readWindow))
	for off < size {
		b := buf[:min(int64(len(buf)), size-off)]
		if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		if !allZero(b) {
			return false, nil
		}
		off += int64(len(b))
	}
	return true, nil
}

// validFrameAfter reports the offset of the first whole, valid frame at
// or after from (8-aligned), or -1. It tells a torn tail (nothing valid
// follows) from corruption in the middle (valid data follows).
func validFrameAfter(f io.ReaderAt, from, size int64) (int64, error) {
	if from >= size {
		return -1, nil
	}
	tail := make([]byte, size-from)
	if _, err := f.ReadAt(tail, from); err != nil && !errors.Is(err, io.EOF) {
		return -1, err
	}
	for i := 0; i+frameHeaderSize <= len(tail); i += frameAlign {
		if _, _, err := DecodeRecord(tail[i:]); err == nil {
			return from + int64(i), nil
		}
	}
	return -1, nil
}
