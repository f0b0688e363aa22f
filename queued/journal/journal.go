package journal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kpush/kpush/internal/fsync"
	"github.com/kpush/kpush/internal/queuename"
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
	Batches             int64 // write(2)s of records since open (records per write)
	Yields              int64 // Waits that yielded the processor before writing
}

// Commit is the promise of one Append, Remove, Clear or Sync. Every call
// that lands in the same write batch shares one Commit.
type Commit struct {
	done chan struct{}
	err  error
	// lazy is set when the records wait in the pending buffer for a
	// later write (appends, and removes under SyncNever and
	// SyncInterval): Wait then writes them instead of waiting for it.
	lazy *Journal
}

// Wait blocks until the records are durable under the sync policy (in
// the kernel after a write(2), and fsynced under SyncAlways), and returns
// the write or fsync error if that failed. Commits that no one waits for
// are written within lazyDelay anyway.
func (c *Commit) Wait() error {
	if j := c.lazy; j != nil && !c.Done() {
		if j.opts.Sync != SyncAlways && j.yieldFirst() {
			// Let goroutines that are ready to run go first: under load
			// they are other connections about to add records, which
			// then share this write. (Under SyncAlways the writer's
			// group commit gathers them while an fsync is in flight.)
			calls := j.calls.Load()
			runtime.Gosched()
			j.yielded(j.calls.Load() != calls)
		}
		if !c.Done() {
			j.writeFor(c)
		}
	}
	<-c.done
	return c.err
}

// A yield before a write is not free when nothing else is ready to run
// (the runtime wakes an idle thread to look for work), so a journal yields
// only while yields pay: after a Wait during whose yield another caller
// added records, the next maxYieldCredit Waits yield too; with no credit
// left, one Wait in probeEvery tries.
const (
	maxYieldCredit = 16
	probeEvery     = 32
)

func (j *Journal) yieldFirst() bool {
	if j.yieldCredit.Load() > 0 {
		return true
	}
	return j.waits.Add(1)%probeEvery == 0
}

// yielded records the outcome of a yield: paid if other callers added
// records meanwhile. Concurrent updates may lose a step; the credit stays
// within [0, maxYieldCredit].
func (j *Journal) yielded(paid bool) {
	j.yields.Add(1)
	n := j.yieldCredit.Load()
	if paid {
		if n != maxYieldCredit { // a load leaves the cache line shared
			j.yieldCredit.Store(maxYieldCredit)
		}
	} else if n > 0 {
		j.yieldCredit.Store(n - 1)
	}
}

// Done reports whether the commit has finished (Wait would not block).
func (c *Commit) Done() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
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

	// Yields before writes (Commit.Wait): credit left, Waits counted for
	// probes, yields made, Append and Remove calls seen.
	yieldCredit          atomic.Int32
	waits, yields, calls atomic.Int64

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
	lazyArmed      bool // lazyTimer will write the pending records
	writerBusy     bool // the writer goroutine is at work (writing, fsyncing, rolling)
	inflight       int64
	allocEnd       int64 // preallocated end of the active file
	reserve        bool  // fallocate works here
	compacting     bool
	lastCompactChk time.Time
	rolledAt       time.Time // when roll last switched segments (maybeCompact)
	st             Stats
	closeErr       error

	// dirty: written since the last fsync. Set by inline writes under mu
	// while the writer is idle, otherwise by the writer (writerBusy keeps
	// the two apart).
	dirty bool

	lazyTimer *time.Timer

	// writer-goroutine-only state
	rollRetryAt time.Time // after a failed roll, when to try again
	zeroEnd     int64     // the active file holds zeros up to here (zeroAhead)
}

// Open opens or creates the journal of the named queue in dir and replays it.
func Open(dir, name string, opts Options) (*Journal, error) {
	if err := queuename.Check(name); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
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
	j.yieldCredit.Store(maxYieldCredit)
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
	noteSynced(path, int64(len(buf)))
	if j.step("segment:created") {
		return nil, errCrashed
	}
	if err := fsync.Dir(j.dir); err != nil {
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

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.st
	s.Items, s.Bytes = j.live.items, j.live.bytes
	s.Yields = j.yields.Load()
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
	if err := fsync.Dir(j.dir); err != nil {
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
