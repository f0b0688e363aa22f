// Inline writes: under SyncNever and SyncInterval, and for big items, a
// caller writes pending records itself while the writer goroutine is idle.

package journal

import (
	"time"

	"golang.org/x/sys/unix"
)

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

// writeInlineLocked writes the pending records (of every caller) to the
// active file right here, with one pwrite under mu, instead of handing
// them to the writer goroutine: under SyncNever and SyncInterval a commit
// needs only the write(2), and the hand-off (waking the writer, parking
// the caller until the writer finishes) cost more than the write. The
// caller is a Wait (writeFor), the lazy timer or ClearExcept. It applies
// only when the writer is idle and nobody waits on it, so the file is
// never written by two goroutines and batches stay in order; otherwise
// the records join the writer's next batch (group commit, and every
// SyncAlways commit, whose fsync the writer owns). A failed write leaves
// the records pending for the writer, which retries at the same offset
// and, failing again, undoes them (failBatch).
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
	j.st.Batches++
	if cap(j.pending) > maxPending {
		j.pending = nil // do not keep a huge item's buffer
	} else {
		j.pending = j.pending[:0]
	}
	j.pendingAdds = j.pendingAdds[:0]
	clear(j.pendingRetry) // keep the array, not the ranges it points to
	j.pendingRetry, j.pendingRecs = j.pendingRetry[:0], 0
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

// lazyDelay bounds how long a record nobody waits for stays unwritten.
const lazyDelay = time.Millisecond

// armLazyLocked makes sure lazyWrite runs within lazyDelay.
func (j *Journal) armLazyLocked() {
	if j.lazyArmed {
		return
	}
	j.lazyArmed = true
	if j.lazyTimer == nil {
		j.lazyTimer = time.AfterFunc(lazyDelay, j.lazyWrite)
	} else {
		j.lazyTimer.Reset(lazyDelay)
	}
}

// lazyWrite writes records that no Wait wrote within lazyDelay (removes of
// expired or discarded items, noreply sets); under SyncAlways it hands
// them to the writer.
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

// writeFor writes the pending records c stands for now, for a caller about
// to wait on c (Commit.Wait of a lazy commit): inline if the writer is
// idle, otherwise by kicking the writer. Whatever else is pending (other
// connections' appends and removes) goes in the same write. If c is no
// longer the pending commit, its records are written or in the writer's
// batch already, and c finishes without help.
func (j *Journal) writeFor(c *Commit) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.pendingCommit != c || j.closing || j.dead {
		return
	}
	if !j.writeInlineLocked() {
		j.commitLocked()
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
