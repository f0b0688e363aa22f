package journal

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/kpush/kpush/internal/fsync"
)

// batch is what the writer takes from the pending buffer in one go.
type batch struct {
	buf    []byte
	recs   int64
	adds   []uint64
	retry  []Record
	commit *Commit
	sync   bool
	seg    *segment
	off    int64
	// firstLive is the lowest live id when the batch was taken (nextID if
	// none). The batch holds every REMOVE that made ids below it dead, so
	// once the batch is durable, segments wholly below it may go.
	firstLive uint64
}

// run is the writer goroutine: the only code that writes, fsyncs, rolls
// or deletes segment files (compaction writes its own temp file).
func (j *Journal) run() {
	defer close(j.writerDone)
	var tick <-chan time.Time
	if j.opts.Sync == SyncInterval {
		t := time.NewTicker(j.opts.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-j.kick:
		case <-tick:
			j.setBusy(true)
			if j.dirty {
				if err := j.fsyncActive(); err != nil {
					j.log.Error("periodic fsync failed", "file", j.active.path, "err", err)
				}
			}
			j.setBusy(false)
			continue
		case <-j.stopC:
		case <-j.deadC:
			return
		}
		j.setBusy(true)
		for j.flushOnce() {
		}
		j.mu.Lock()
		closing, dead, empty := j.closing, j.dead, len(j.pending) == 0 && !j.syncReq
		if !closing && !dead {
			j.writerBusy = false
			j.cond.Broadcast() // appendBigLocked waits for an idle writer
		}
		j.mu.Unlock()
		if dead {
			return
		}
		if !closing {
			continue
		}
		if !empty {
			// Records re-queued after a failed write: one last attempt.
			j.flushOnce()
		}
		var err error
		if j.dirty {
			err = j.fsyncActive()
		}
		j.trimZeros()
		j.mu.Lock()
		if len(j.pending) > 0 {
			err = fmt.Errorf("close journal %s: %d bytes of records could not be written after a write error", j.name, len(j.pending))
		}
		// A commit still open here (a Sync that came after the last
		// batch, before Close) has nobody else to finish it: the fsync
		// above covers it.
		if c := j.pendingCommit; c != nil {
			j.pendingCommit = nil
			c.finish(err)
		}
		j.closeErr = err
		j.cond.Broadcast()
		j.mu.Unlock()
		return
	}
}

// setBusy marks the writer at work: no inline writes meanwhile.
func (j *Journal) setBusy(busy bool) {
	j.mu.Lock()
	j.writerBusy = busy
	j.mu.Unlock()
}

// flushOnce writes one batch. It returns false when there was nothing to
// do or the write failed (the failed records wait for the next kick, so a
// broken disk does not spin the writer). With nothing pending it does the
// maintenance inline writes asked for.
func (j *Journal) flushOnce() bool {
	j.mu.Lock()
	if j.dead {
		j.mu.Unlock()
		return false
	}
	if len(j.pending) == 0 && !j.syncReq {
		maintain := j.maintainReq
		j.maintainReq = false
		firstLive := j.nextID
		if id, ok := j.live.firstLive(); ok {
			firstLive = id
		}
		j.mu.Unlock()
		if maintain {
			// Everything is written (nothing pending): firstLive is a
			// snapshot whose REMOVEs are in the file.
			j.maintain(firstLive)
		}
		return false
	}
	j.maintainReq = false
	b := batch{
		buf: j.pending, recs: j.pendingRecs, adds: j.pendingAdds, retry: j.pendingRetry,
		commit: j.pendingCommit, sync: j.syncReq, seg: j.active, off: j.active.size,
	}
	if id, ok := j.live.firstLive(); ok {
		b.firstLive = id
	} else {
		b.firstLive = j.nextID
	}
	j.pending, j.spare = j.spare[:0], nil
	j.pendingRecs, j.pendingAdds, j.pendingRetry, j.pendingCommit, j.syncReq = 0, nil, nil, nil, false
	j.inflight = int64(len(b.buf))
	j.cond.Broadcast()
	j.mu.Unlock()

	var err error
	if len(b.buf) > 0 {
		if _, err = b.seg.f.WriteAt(b.buf, b.off); err != nil {
			err = diskErr("write journal", b.seg.path, err)
		} else {
			j.dirty = true
			if j.opts.Sync == SyncAlways {
				j.zeroAhead(b.seg, b.off+int64(len(b.buf)))
			}
		}
	}
	if err == nil && j.dirty && (j.opts.Sync == SyncAlways || b.sync) {
		err = j.fsyncActive()
	}
	if err != nil {
		j.failBatch(&b, err)
		return false
	}
	j.mu.Lock()
	b.seg.size = b.off + int64(len(b.buf))
	j.inflight = 0
	if n := len(b.adds); n > 0 {
		j.writtenNext = max(j.writtenNext, b.adds[n-1]+1)
	}
	j.st.Writes += b.recs
	if len(b.buf) > 0 {
		j.st.Batches++
	}
	if cap(b.buf) <= maxPending {
		j.spare = b.buf[:0]
	}
	j.cond.Broadcast()
	j.mu.Unlock()
	if b.commit != nil {
		b.commit.finish(nil)
	}
	if j.step("batch:written") {
		return false
	}
	j.maintain(b.firstLive)
	return true
}

// failBatch undoes a batch whose write or fsync failed: the file is cut
// back to the last good offset, its ADDs are forgotten (their Append
// reported the error) and its REMOVE/CLEAR records go back to the front of
// the queue, since the items are already gone from memory.
func (j *Journal) failBatch(b *batch, err error) {
	j.log.Error("journal write failed", "file", b.seg.path, "offset", b.off, "bytes", len(b.buf), "err", err)
	if terr := b.seg.f.Truncate(b.off); terr != nil {
		j.log.Error("cannot truncate journal after failed write", "file", b.seg.path, "offset", b.off, "err", terr)
	}
	j.dirty = true
	j.zeroEnd = b.off
	j.mu.Lock()
	j.inflight = 0
	j.allocEnd = b.off
	for _, id := range b.adds {
		j.live.remove(id)
	}
	if n := len(b.adds); n > 0 {
		j.writtenNext = max(j.writtenNext, b.adds[n-1]+1)
	}
	if len(b.retry) > 0 {
		var front []byte
		for i := range b.retry {
			front = EncodeRecord(front, &b.retry[i])
		}
		j.pending = append(front, j.pending...)
		j.pendingRetry = append(b.retry, j.pendingRetry...)
		j.pendingRecs += int64(len(b.retry))
	}
	j.ensureReserveLocked()
	j.cond.Broadcast()
	j.mu.Unlock()
	if b.commit != nil {
		b.commit.finish(err)
	}
}

// Under SyncAlways the writer keeps a run of zeros written ahead of its
// records in the active file. An fdatasync of records written over blocks
// that already hold data, inside the file's size, flushes the data alone;
// one that must also record a new file size and newly written extents
// commits the file system's journal as well and costs more
// (docs/benchmarks.md). With zeros ahead, that commit comes once per run
// instead of once per batch. The run grows with the segment, from
// minZeroRun to maxZeroRun, so a quiet queue writes few more zeros than
// records. Replay and dumps take a tail of zeros for the end of the
// segment (docs/journal.md); a roll and Close trim it.
const (
	minZeroRun = 16 << 10
	maxZeroRun = 1 << 20
)

var zeroRun [maxZeroRun]byte

// zeroAhead writes zeros after end, the end of the records just written,
// when end has passed the zeros written before. It is an optimisation: a
// failed write (a full disk) only leaves fewer zeros.
func (j *Journal) zeroAhead(seg *segment, end int64) {
	if end <= j.zeroEnd {
		return
	}
	to := min(end+min(max(end, minZeroRun), maxZeroRun), j.opts.SegmentSize)
	if to <= end {
		return // the segment rolls after this batch
	}
	n, err := seg.f.WriteAt(zeroRun[:to-end], end)
	j.zeroEnd = end + int64(n)
	if err != nil {
		j.log.Debug("cannot write zeros ahead of the journal's records", "file", seg.path, "err", err)
	}
}

// trimZeros cuts the zeros after the active file's last record when the
// journal closes: a cleanly closed file ends with its last record.
func (j *Journal) trimZeros() {
	j.mu.Lock()
	seg, size := j.active, j.active.size
	j.mu.Unlock()
	if j.zeroEnd <= size {
		return
	}
	if err := seg.f.Truncate(size); err != nil {
		j.log.Warn("cannot trim the zeros after the journal's last record (harmless: the next open trims them)", "file", seg.path, "err", err)
	}
}

func (j *Journal) fsyncActive() error {
	seg := j.active
	var written int64
	if syncedLog != nil {
		// Bytes in the file now: the writer's batch (inflight) is written
		// before its fsync and counted in seg.size only after.
		j.mu.Lock()
		written = seg.size + j.inflight
		j.mu.Unlock()
	}
	start := time.Now()
	err := fdatasync(seg.f)
	took := time.Since(start)
	if took > slowSync {
		j.log.Warn("slow fsync", "file", seg.path, "took", took)
	}
	if err != nil {
		return diskErr("fsync journal", seg.path, err)
	}
	j.dirty = false
	noteSynced(seg.path, written)
	j.mu.Lock()
	j.st.Syncs++
	j.mu.Unlock()
	return nil
}

// maintain runs after each successful batch: roll a full (or drained)
// segment, drop dead segments, and start a compaction if the old segments
// are mostly dead.
func (j *Journal) maintain(firstLive uint64) {
	j.mu.Lock()
	seg := j.active
	full := seg.size >= j.opts.SegmentSize
	drained := j.live.items == 0 && len(j.pending) == 0 && seg.size >= min(j.opts.SegmentSize/2, 1<<20) && len(j.segs) >= 1 && seg.size > int64(fileHeaderSize+frameHeaderSize+padded(1+startFixedSize))
	j.mu.Unlock()
	rolled := false
	if (full || drained) && time.Now().After(j.rollRetryAt) {
		if err := j.roll(); err != nil {
			if errors.Is(err, errCrashed) {
				return
			}
			// Typically a full disk: retry later, not after every batch.
			j.rollRetryAt = time.Now().Add(time.Second)
			j.log.Warn("cannot roll journal segment; appending to the current one", "file", seg.path, "err", err)
		} else {
			rolled = true
		}
	}
	if !j.deletePrefix(firstLive) {
		return
	}
	j.maybeCompact(rolled)
}

// roll starts a new active segment. The old one is fsynced first, so only
// the last segment can ever have a torn tail.
func (j *Journal) roll() error {
	if j.dirty {
		if err := j.fsyncActive(); err != nil {
			return err
		}
	}
	if j.step("roll:old-synced") {
		return errCrashed
	}
	j.mu.Lock()
	seq, first := j.nextSeq, j.writtenNext
	j.mu.Unlock()
	seg, err := j.createSegment(seq, first, 0)
	if err != nil {
		return err
	}
	if j.step("roll:created") {
		return errCrashed
	}
	j.mu.Lock()
	old, oldAlloc := j.active, j.allocEnd
	j.active, j.allocEnd = seg, seg.size
	if err := j.reserveLocked(0, 0); err != nil {
		// No room for the removes of the live items in a new file: stay
		// on the old one, whose reservation still holds.
		j.active, j.allocEnd = old, oldAlloc
		j.mu.Unlock()
		seg.f.Close()
		os.Remove(seg.path)
		if derr := fsync.Dir(j.dir); derr != nil {
			j.log.Warn("fsync dir after abandoning a new segment failed", "err", derr)
		}
		return err
	}
	// Give back the old file's unused preallocation and its zeros
	// (zeroAhead) before the lock shows it closed: a cursor reads a
	// closed segment to the end of its file.
	if err := old.f.Truncate(old.size); err != nil {
		j.log.Warn("cannot trim preallocation of rolled segment", "file", old.path, "err", err,
			"fix", "none needed: readers stop at its zeros and the next start trims it; check the disk if this repeats")
	}
	j.zeroEnd = 0
	j.nextSeq = seq + 1
	j.segs = append(j.segs, seg)
	j.rolledAt = time.Now()
	j.mu.Unlock()
	old.f.Close()
	old.f = nil
	return nil
}

// deletePrefix removes leading segments none of whose items are live as
// of firstLive (a snapshot whose REMOVEs are written). Only a prefix is
// safe: a later segment may hold the REMOVEs of an earlier one's items.
// It returns false if a crash point fired.
func (j *Journal) deletePrefix(firstLive uint64) bool {
	j.mu.Lock()
	if j.compacting {
		j.mu.Unlock()
		return true
	}
	var dead []*segment
	for len(j.segs) > 1 && firstLive >= j.segs[1].firstID {
		dead = append(dead, j.segs[0])
		j.segs = j.segs[1:]
	}
	j.mu.Unlock()
	if len(dead) == 0 {
		return true
	}
	if j.dirty {
		if err := j.fsyncActive(); err != nil {
			j.log.Error("fsync before dropping segments failed; keeping them", "err", err)
			j.mu.Lock()
			j.segs = append(dead, j.segs...)
			j.mu.Unlock()
			return true
		}
	}
	for i, s := range dead {
		if j.step("delete:before") {
			return false
		}
		if err := os.Remove(s.path); err != nil {
			j.log.Error("cannot delete dead journal segment", "file", s.path, "err", err)
			j.mu.Lock()
			j.segs = append(dead[i:], j.segs...)
			j.mu.Unlock()
			return true
		}
		// Deletions must reach the disk in order: dropping a later file
		// first could resurrect items whose REMOVEs it held.
		if err := fsync.Dir(j.dir); err != nil {
			j.log.Error("fsync dir after deleting segment failed", "err", err)
		}
		j.mu.Lock()
		j.st.Rotations++
		j.mu.Unlock()
	}
	return true
}

// fdatasync flushes the file's data and the metadata needed to read it
// back (its size), like etcd's wal on Linux; timestamps are not forced.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
