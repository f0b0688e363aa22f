// The calls that add records: Append, Remove, ClearExcept and Sync put
// them in the pending batch (reserving disk room for future removes first),
// then a waiting caller writes them (inline.go) or hands them to the writer
// (writer.go).

package journal

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
)

// Append journals items, assigning each its ID. The data is copied before
// Append returns; the records are written when the Commit is waited for
// (or lazyDelay later). An error means nothing was journaled.
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
	j.calls.Add(1)
	// Nothing is written yet, under any policy: the first Wait writes the
	// batch (writeFor), so a connection's pipelined sets, and the records
	// other connections add meanwhile, share one write (and under
	// SyncAlways one fsync) instead of one each.
	return j.lazyCommitLocked(), nil
}

// lazyCommitLocked is the commit of the pending records without waking
// the writer: the first Wait on it writes them (writeFor), and records
// nobody waits for are written by the lazy timer within lazyDelay.
func (j *Journal) lazyCommitLocked() *Commit {
	if j.pendingCommit == nil {
		j.pendingCommit = &Commit{done: make(chan struct{}), lazy: j}
	}
	j.armLazyLocked()
	return j.pendingCommit
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
	j.calls.Add(1)
	if j.inlineAllowedLocked() {
		// The remove waits in the buffer: for the next inline write, for
		// a Wait on its Commit (the caller is about to reply and needs it
		// in the kernel; several removes waiting by then share that
		// write), or for the lazy write lazyDelay from now (removes that
		// no one waits for: expiry, discards).
		return j.lazyCommitLocked(), nil
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

func (j *Journal) commitLocked() *Commit {
	if j.pendingCommit == nil {
		j.pendingCommit = &Commit{done: make(chan struct{})}
		if j.opts.Sync != SyncAlways {
			// The writer is kicked, but a Wait that finds it idle
			// by then writes the records itself.
			j.pendingCommit.lazy = j
		}
	}
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return j.pendingCommit
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
