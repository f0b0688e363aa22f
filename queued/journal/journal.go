package journal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SyncMode says when a Commit counts as done.
type SyncMode int

const (
	// SyncAlways: Commit.Wait returns after the fsync covering the record.
	SyncAlways SyncMode = iota
	// SyncNever: after the write(2) to the OS; fsync only on roll and close.
	SyncNever
	// SyncInterval: after the write(2); a ticker fsyncs every SyncInterval
	// (idle ticks are skipped).
	SyncInterval
)

func (m SyncMode) String() string {
	switch m {
	case SyncAlways:
		return "always"
	case SyncNever:
		return "never"
	case SyncInterval:
		return "interval"
	}
	return fmt.Sprintf("SyncMode(%d)", int(m))
}

// DefaultSegmentSize is the segment size used when Options.SegmentSize is 0.
const DefaultSegmentSize = 16 << 20

// Options configure a Journal.
type Options struct {
	Sync         SyncMode
	SyncInterval time.Duration // SyncInterval only
	SegmentSize  int64         // 0 = DefaultSegmentSize
	Logger       *slog.Logger  // nil = slog.Default()

	// crashAt names a step (see step) at which the goroutine performing
	// it stops dead, as if the process had been killed there; crashNth
	// picks the occurrence (0 and 1 = the first). Tests only.
	crashAt  string
	crashNth int
}

// Item is one queue item as the journal stores it.
type Item struct {
	ID      uint64 // assigned by Append, increasing per journal
	AddTime int64  // unix ms
	Expiry  int64  // unix ms, 0 = never
	Data    []byte
}

// Stats are counters of one journal.
type Stats struct {
	Items, Bytes        int64 // live (not removed) items and their data bytes
	DiskBytes           int64 // bytes of all journal files on disk ("logsize")
	Rotations, Rewrites int64 // segments dropped / compactions done since open
	Writes, Syncs       int64 // records written / fsyncs done since open (group commit ratio)
}

// Commit is the promise of one Append, Remove, Clear or Sync. Every call
// that lands in the same write batch shares one Commit.
type Commit struct {
	done chan struct{}
	err  error
}

// Wait blocks until the records are durable under the sync policy, and
// returns the write or fsync error if that failed.
func (c *Commit) Wait() error {
	<-c.done
	return c.err
}

func (c *Commit) finish(err error) {
	c.err = err
	close(c.done)
}

func finished(err error) *Commit {
	c := &Commit{done: make(chan struct{})}
	c.finish(err)
	return c
}

type segment struct {
	seq       uint64
	path      string
	firstID   uint64 // every ADD in the file has an id >= firstID
	compacted bool
	size      int64    // bytes written; guarded by Journal.mu
	f         *os.File // open only while the segment is the active one
}

const (
	maxPending        = 8 << 20 // Append waits while this much is unwritten
	reserveSlack      = 1 << 20 // preallocation granularity
	slowSync          = time.Second
	compactCheckEvery = time.Second
	fallocKeepSize    = 1 // FALLOC_FL_KEEP_SIZE
)

// Journal is the on-disk journal of one queue. All methods are safe for
// concurrent use; see doc.go for the goroutine structure.
type Journal struct {
	dir, name string
	base      string // file name prefix: the name, or a shortened form (fileBase)
	opts      Options
	log       *slog.Logger
	lockFile  *os.File

	kick       chan struct{}
	stopC      chan struct{}
	writerDone chan struct{}
	deadC      chan struct{} // closed when a crash point fires (tests)
	deadOnce   sync.Once
	crashSeen  atomic.Int64
	bg         sync.WaitGroup

	mu             sync.Mutex
	cond           *sync.Cond // written progress and freed pending space
	closing        bool
	dead           bool
	segs           []*segment // replay order; the last one is active
	active         *segment
	nextSeq        uint64
	nextID         uint64 // id the next Append assigns
	writtenNext    uint64 // every ADD with a lower id has been written (or failed)
	live           *liveTable
	pending        []byte
	spare          []byte
	pendingRecs    int64
	pendingAdds    []uint64
	pendingRetry   []Record // REMOVE/CLEAR records of the batch, re-queued if it fails
	pendingCommit  *Commit
	syncReq        bool
	maintainReq    bool // inline writes happened: the writer should roll/drop/compact
	lazyArmed      bool // lazyTimer will write the pending removes
	writerBusy     bool // the writer goroutine is at work (writing, fsyncing, rolling)
	inflight       int64
	allocEnd       int64 // preallocated end of the active file
	reserve        bool  // fallocate works here
	compacting     bool
	lastCompactChk time.Time
	st             Stats
	closeErr       error

	// dirty: written since the last fsync. Set by inline writes under mu
	// while the writer is idle, otherwise by the writer (writerBusy keeps
	// the two apart).
	dirty bool

	lazyTimer *time.Timer

	// writer-goroutine-only state
	rollRetryAt time.Time // after a failed roll, when to try again
}

// Open opens or creates the journal of the named queue in dir and replays it.
func Open(dir, name string, opts Options) (*Journal, error) {
	if !ValidName(name) {
		return nil, fmt.Errorf("open journal %q: %w: want [A-Za-z0-9_-] with at most one '+'", name, ErrBadName)
	}
	switch opts.Sync {
	case SyncAlways, SyncNever:
	case SyncInterval:
		if opts.SyncInterval <= 0 {
			return nil, fmt.Errorf("open journal %s: SyncInterval mode needs a positive SyncInterval", name)
		}
	default:
		return nil, fmt.Errorf("open journal %s: unknown sync mode %d", name, int(opts.Sync))
	}
	if opts.SegmentSize < 0 {
		return nil, fmt.Errorf("open journal %s: negative SegmentSize %d", name, opts.SegmentSize)
	}
	if opts.SegmentSize == 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	base := fileBase(name)
	lock, err := lockQueue(dir, base)
	if err != nil {
		return nil, err
	}
	if base != name {
		if err := writeNameFile(dir, base, name); err != nil {
			lock.Close()
			return nil, err
		}
	}
	j := &Journal{
		dir: dir, name: name, base: base, opts: opts,
		log:        opts.Logger.With("queue", name),
		lockFile:   lock,
		kick:       make(chan struct{}, 1),
		stopC:      make(chan struct{}),
		writerDone: make(chan struct{}),
		deadC:      make(chan struct{}),
		live:       newLiveTable(),
		reserve:    true,
	}
	j.cond = sync.NewCond(&j.mu)
	if err := j.load(); err != nil {
		j.closeFiles()
		return nil, err
	}
	go j.run()
	return j, nil
}

// load replays the segment files and opens the active one for appending.
func (j *Journal) load() error {
	if err := removeTemps(j.dir, j.base); err != nil {
		return err
	}
	files, err := listSegments(j.dir, j.base)
	if err != nil {
		return err
	}
	res, err := replay(files, j.live, j.log, true)
	if err != nil {
		return err
	}
	j.nextSeq = 1
	if n := len(res.segs); n > 0 {
		j.nextSeq = res.segs[n-1].seq + 1
	}
	j.nextID = max(res.nextID, 1)
	j.writtenNext = j.nextID
	j.segs = res.segs
	if len(j.segs) == 0 {
		seg, err := j.createSegment(j.nextSeq, j.nextID, 0)
		if err != nil {
			return err
		}
		j.nextSeq++
		j.segs = []*segment{seg}
	} else {
		seg := j.segs[len(j.segs)-1]
		f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open journal segment %s: %w", seg.path, err)
		}
		seg.f = f
	}
	j.active = j.segs[len(j.segs)-1]
	j.allocEnd = j.active.size
	j.ensureReserveLocked()
	return nil
}

// createSegment writes a new segment file with its header and START
// record, preallocates room for the removes of live items, and fsyncs the
// file and the directory.
func (j *Journal) createSegment(seq, firstID uint64, flags uint64) (*segment, error) {
	path := filepath.Join(j.dir, segName(j.base, seq))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, diskErr("create journal segment", path, err)
	}
	buf := EncodeRecord(fileHeader(), &Record{Type: RecStart, ID: firstID, Flags: flags})
	fail := func(err error) (*segment, error) {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if _, err := f.WriteAt(buf, 0); err != nil {
		return fail(diskErr("write journal segment", path, err))
	}
	if err := f.Sync(); err != nil {
		return fail(diskErr("fsync journal segment", path, err))
	}
	if j.step("segment:created") {
		return nil, errCrashed
	}
	if err := syncDir(j.dir); err != nil {
		return fail(err)
	}
	return &segment{seq: seq, path: path, firstID: firstID, compacted: flags&startCompacted != 0, size: int64(len(buf)), f: f}, nil
}

// errCrashed is returned internally once a test crash point fired.
var errCrashed = errors.New("journal: simulated crash")

// step is a named point in a multi-step file operation. In tests,
// Options.crashAt makes the goroutine stop dead at that point.
func (j *Journal) step(name string) bool {
	if j.opts.crashAt == "" || j.opts.crashAt != name {
		return false
	}
	if j.crashSeen.Add(1) < int64(j.opts.crashNth) {
		return false
	}
	j.deadOnce.Do(func() {
		j.mu.Lock()
		j.dead = true
		j.mu.Unlock()
		close(j.deadC)
	})
	return true
}

// Append journals items, assigning each its ID. The data is copied before
// Append returns. An error means nothing was journaled.
func (j *Journal) Append(items []Item) (*Commit, error) {
	if len(items) == 0 {
		return finished(nil), nil
	}
	size := 0
	for i := range items {
		if len(items[i].Data) > MaxItemSize {
			return nil, fmt.Errorf("append to journal %s: %w: %d bytes (max %d)", j.name, ErrTooLarge, len(items[i].Data), MaxItemSize)
		}
		size += addFrameSize(len(items[i].Data))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for !j.closing && len(j.pending) >= maxPending {
		j.cond.Wait()
	}
	if j.closing {
		return nil, fmt.Errorf("append to journal %s: %w", j.name, ErrClosed)
	}
	if err := j.reserveLocked(int64(size), int64(len(items))); err != nil {
		return nil, err
	}
	if len(items) == 1 && len(items[0].Data) >= bigRecord {
		if c, ok := j.appendBigLocked(&items[0]); ok {
			return c, nil
		}
	}
	for i := range items {
		it := &items[i]
		it.ID = j.nextID
		j.nextID++
		j.pending = EncodeRecord(j.pending, &Record{Type: RecAdd, ID: it.ID, AddTime: it.AddTime, Expiry: it.Expiry, Data: it.Data})
		j.live.add(it.ID, len(it.Data))
		j.pendingAdds = append(j.pendingAdds, it.ID)
	}
	j.pendingRecs += int64(len(items))
	if j.writeInlineLocked() {
		return doneCommit, nil
	}
	return j.commitLocked(), nil
}

// Remove journals that the items are gone for good. Ids that are not live
// (already removed, never added) are ignored. Removes never need new disk
// space: room for them was reserved when the items were appended.
func (j *Journal) Remove(ids ...uint64) (*Commit, error) {
	// One id (a get, a close) is the common case: no copy, no sort.
	var one [1]uint64
	sorted := one[:0]
	if len(ids) == 1 {
		sorted = append(sorted, ids[0])
	} else {
		sorted = slices.Clone(ids)
		slices.Sort(sorted)
		sorted = slices.Compact(sorted)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closing {
		return nil, fmt.Errorf("remove from journal %s: %w", j.name, ErrClosed)
	}
	gone := sorted[:0]
	for _, id := range sorted {
		if _, ok := j.live.remove(id); ok {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return finished(nil), nil
	}
	rec := Record{Type: RecRemove, Ranges: rangesOf(gone)}
	j.pending = EncodeRecord(j.pending, &rec)
	j.pendingRetry = append(j.pendingRetry, rec)
	j.pendingRecs++
	if j.inlineAllowedLocked() {
		// Nobody waits for a remove (see package queued, Durability):
		// it rides in the next inline write, at the latest lazyDelay
		// from now, instead of costing a write(2) of its own.
		if j.pendingCommit == nil {
			j.pendingCommit = &Commit{done: make(chan struct{})}
		}
		if !j.lazyArmed {
			j.lazyArmed = true
			if j.lazyTimer == nil {
				j.lazyTimer = time.AfterFunc(lazyDelay, j.lazyWrite)
			} else {
				j.lazyTimer.Reset(lazyDelay)
			}
		}
		return j.pendingCommit, nil
	}
	return j.commitLocked(), nil
}

// Clear journals that every item is removed (flush).
func (j *Journal) Clear() (*Commit, error) { return j.ClearExcept() }

// ClearExcept journals that every item is removed except the given ids,
// which stay live: Kestrel's flush empties a queue but leaves its open
// reads open, and an open read that is aborted later must still be in the
// journal.
func (j *Journal) ClearExcept(keep ...uint64) (*Commit, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closing {
		return nil, fmt.Errorf("clear journal %s: %w", j.name, ErrClosed)
	}
	upTo := j.nextID - 1
	var kept []uint64
	for _, id := range keep {
		if _, ok := j.live.size(id); ok {
			kept = append(kept, id)
		}
	}
	if j.live.items == int64(len(kept)) {
		return finished(nil), nil
	}
	rec := Record{Type: RecClear, ID: upTo}
	if len(kept) == 0 {
		j.live.reset()
	} else {
		// REMOVE everything around the kept ids; ranges may span ids that
		// are already dead, which replay ignores.
		slices.Sort(kept)
		kept = slices.Compact(kept)
		rec = Record{Type: RecRemove}
		lo := uint64(0)
		for _, k := range kept {
			if k > lo {
				rec.Ranges = append(rec.Ranges, IDRange{lo, k - 1})
			}
			lo = k + 1
		}
		if lo <= upTo {
			rec.Ranges = append(rec.Ranges, IDRange{lo, upTo})
		}
		for _, rg := range rec.Ranges {
			j.live.removeRange(rg.First, rg.Last)
		}
	}
	j.pending = EncodeRecord(j.pending, &rec)
	j.pendingRetry = append(j.pendingRetry, rec)
	j.pendingRecs++
	if j.writeInlineLocked() {
		return doneCommit, nil
	}
	return j.commitLocked(), nil
}

// Sync writes everything pending and fsyncs it, whatever the sync mode.
func (j *Journal) Sync() error {
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		return fmt.Errorf("sync journal %s: %w", j.name, ErrClosed)
	}
	j.syncReq = true
	c := j.commitLocked()
	j.mu.Unlock()
	return c.Wait()
}

// bigRecord is the data size from which an ADD is written straight from
// the item's memory (appendBigLocked).
const bigRecord = 64 << 10

// appendBigLocked writes the ADD of a big item straight from its data, with
// one pwritev of the pending records, the ADD's head, the data and the
// padding, when the writer is idle and nobody waits on it: the data is
// neither copied into the pending buffer (a growing 8 MiB buffer, zeroed,
// copied, dropped) nor written by another goroutine. Writeback of the
// record starts at once (sync_file_range), so neither this journal's next
// fsync nor another file's (ext4 commits in data=ordered order) finds
// megabytes to flush. Under SyncAlways the writer then fsyncs, as for any
// batch. It reports false, changing nothing, when the record must go the
// ordinary way.
func (j *Journal) appendBigLocked(it *Item) (*Commit, bool) {
	// A busy writer is typically rolling the segment (a drained queue
	// rolls after each big item): wait for it rather than copy the data.
	for j.writerBusy && !j.closing && !j.dead {
		j.cond.Wait()
	}
	if j.closing || j.dead || j.syncReq || (j.opts.Sync == SyncAlways && j.pendingCommit != nil) {
		return nil, false
	}
	mark := len(j.pending)
	id := j.nextID
	var total int
	j.pending, total = encodeAddHead(j.pending, id, it.AddTime, it.Expiry, it.Data)
	headLen := len(j.pending) - mark
	pad := zeroPad[:total-headLen-len(it.Data)]
	seg := j.active
	off := seg.size
	want := len(j.pending) + len(it.Data) + len(pad)
	n, err := unix.Pwritev(int(seg.f.Fd()), [][]byte{j.pending, it.Data, pad}, off)
	if err != nil || n != want {
		// The writer will write the whole batch again at off.
		j.pending = j.pending[:mark]
		return nil, false
	}
	it.ID = id
	j.nextID++
	j.live.add(id, len(it.Data))
	j.pendingAdds = append(j.pendingAdds, id)
	j.pendingRecs++
	j.finishInlineLocked(seg, off, int64(want))
	_ = unix.SyncFileRange(int(seg.f.Fd()), off, int64(want), unix.SYNC_FILE_RANGE_WRITE)
	if j.opts.Sync == SyncAlways {
		j.syncReq = true
		return j.commitLocked(), true
	}
	return doneCommit, true
}

var zeroPad [frameAlign]byte

// doneCommit is the Commit of records written inline: already finished.
var doneCommit = finished(nil)

// writeInlineLocked writes the pending records (those of the caller only)
// to the active file right here, with one pwrite under mu, instead of
// handing them to the writer goroutine: under SyncNever and SyncInterval a
// commit needs only the write(2), and the hand-off (waking the writer,
// parking the caller until the writer finishes) cost more than the write.
// It applies only when the writer is idle and nobody waits on it, so the
// file is never written by two goroutines and batches stay in order;
// otherwise the records join the writer's next batch (group commit, and
// every SyncAlways commit, whose fsync the writer owns). A failed write
// leaves the records pending for the writer, which retries at the same
// offset and, failing again, undoes them (failBatch).
func (j *Journal) writeInlineLocked() bool {
	if !j.inlineAllowedLocked() || len(j.pending) == 0 {
		return false
	}
	seg := j.active
	off := seg.size
	if _, err := seg.f.WriteAt(j.pending, off); err != nil {
		return false
	}
	j.finishInlineLocked(seg, off, int64(len(j.pending)))
	return true
}

// finishInlineLocked accounts for n bytes of pending records written at off
// by the caller and finishes whatever commit waited for them.
func (j *Journal) finishInlineLocked(seg *segment, off, n int64) {
	seg.size = off + n
	j.dirty = true
	if n := len(j.pendingAdds); n > 0 {
		j.writtenNext = max(j.writtenNext, j.pendingAdds[n-1]+1)
	}
	j.st.Writes += j.pendingRecs
	if cap(j.pending) > maxPending {
		j.pending = nil // do not keep a huge item's buffer
	} else {
		j.pending = j.pending[:0]
	}
	j.pendingAdds = j.pendingAdds[:0]
	j.pendingRetry, j.pendingRecs = nil, 0
	if c := j.pendingCommit; c != nil {
		// Records that were waiting (lazy removes, or a batch the writer
		// was kicked for but had not taken yet) are written now.
		j.pendingCommit = nil
		c.finish(nil)
	}
	j.cond.Broadcast()
	if j.needsMaintenanceLocked() {
		j.maintainReq = true
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
}

// inlineAllowedLocked: records may be written by the caller (see
// writeInlineLocked).
func (j *Journal) inlineAllowedLocked() bool {
	return j.opts.Sync != SyncAlways && !j.writerBusy && !j.closing && !j.dead && !j.syncReq
}

// lazyDelay bounds how long a remove waits for the next inline write.
const lazyDelay = time.Millisecond

// lazyWrite writes removes that no inline write carried within lazyDelay.
func (j *Journal) lazyWrite() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lazyArmed = false
	if len(j.pending) == 0 || j.closing || j.dead {
		return
	}
	if !j.writeInlineLocked() {
		j.commitLocked() // the writer is busy or the write failed: hand over
	}
}

// needsMaintenanceLocked tells whether the writer has a roll, a segment
// deletion or a compaction check to do (what it does after every batch).
func (j *Journal) needsMaintenanceLocked() bool {
	size := j.active.size
	if size >= j.opts.SegmentSize || (j.live.items == 0 && size >= min(j.opts.SegmentSize/2, 1<<20)) {
		return true
	}
	if len(j.segs) < 2 {
		return false
	}
	first := j.nextID
	if id, ok := j.live.firstLive(); ok {
		first = id
	}
	return first >= j.segs[1].firstID || time.Since(j.lastCompactChk) >= compactCheckEvery
}

func (j *Journal) commitLocked() *Commit {
	if j.pendingCommit == nil {
		j.pendingCommit = &Commit{done: make(chan struct{})}
	}
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return j.pendingCommit
}

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.st
	s.Items, s.Bytes = j.live.items, j.live.bytes
	for _, seg := range j.segs {
		s.DiskBytes += seg.size
	}
	return s
}

// Close finishes pending writes, fsyncs, closes the files and releases
// the lock. Closing twice is harmless.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		<-j.writerDone
		return nil
	}
	j.closing = true
	if j.lazyTimer != nil {
		j.lazyTimer.Stop() // the writer writes what is pending now
	}
	j.cond.Broadcast()
	j.mu.Unlock()
	close(j.stopC)
	<-j.writerDone
	j.bg.Wait()
	j.mu.Lock()
	err := j.closeErr
	j.mu.Unlock()
	j.closeFiles()
	return err
}

func (j *Journal) closeFiles() {
	for _, s := range j.segs {
		if s.f != nil {
			s.f.Close()
			s.f = nil
		}
	}
	if j.lockFile != nil {
		j.lockFile.Close()
		j.lockFile = nil
	}
}

// Delete closes the journal and removes all of its files.
func (j *Journal) Delete() error {
	cerr := j.Close()
	matches, err := filepath.Glob(filepath.Join(j.dir, j.base+".*"))
	if err != nil {
		return fmt.Errorf("delete journal %s: %w", j.name, err)
	}
	for _, m := range matches {
		base := filepath.Base(m)
		if base == j.base+lockExt || base == j.base+nameExt {
			continue
		}
		if segFileRE.MatchString(base) || segFileRE.MatchString(trimAny(base, tmpExt, brokeExt)) {
			if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("delete journal file %s: %w", m, err)
			}
		}
	}
	os.Remove(filepath.Join(j.dir, j.base+nameExt))
	os.Remove(filepath.Join(j.dir, j.base+lockExt))
	if err := syncDir(j.dir); err != nil {
		return err
	}
	if cerr != nil && !errors.Is(cerr, ErrClosed) {
		return cerr
	}
	return nil
}

func trimAny(s string, suffixes ...string) string {
	for _, x := range suffixes {
		if len(s) > len(x) && s[len(s)-len(x):] == x {
			return s[:len(s)-len(x)]
		}
	}
	return s
}

// reserveLocked makes sure the active file has room preallocated for
// size more bytes plus a REMOVE of every live item and the n new ones.
func (j *Journal) reserveLocked(size, n int64) error {
	if !j.reserve {
		return nil
	}
	end := j.active.size + j.inflight + int64(len(j.pending)) + size
	need := end + (j.live.items+n)*removeReserve
	if need <= j.allocEnd {
		return nil
	}
	grow := need - j.allocEnd + reserveSlack
	err := fallocate(j.active.f, j.allocEnd, grow)
	if err != nil && isNoSpace(err) {
		// Nearly full: take exactly what is needed.
		grow = need - j.allocEnd
		err = fallocate(j.active.f, j.allocEnd, grow)
	}
	if err != nil {
		if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
			j.reserve = false
			j.log.Warn("file system cannot preallocate; removes are not guaranteed room on a full disk", "file", j.active.path)
			return nil
		}
		return diskErr("append to journal: preallocate", j.active.path, err)
	}
	j.allocEnd += grow
	return nil
}

// ensureReserveLocked tops up the preallocation of the active file after
// a roll or a truncation; failure is logged, not fatal.
func (j *Journal) ensureReserveLocked() {
	if err := j.reserveLocked(0, 0); err != nil {
		j.log.Warn("cannot preallocate room for removes", "file", j.active.path, "err", err)
	}
}

func fallocate(f *os.File, off, n int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), fallocKeepSize, off, n)
		if err != syscall.EINTR {
			return err
		}
	}
}
