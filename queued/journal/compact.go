package journal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kpush/kpush/internal/fsync"
)

// maybeCompact starts a background rewrite when the segments before the
// active one are mostly dead but pinned by a few live items (a stuck
// head), so disk use follows what is live. Called by the writer.
func (j *Journal) maybeCompact(rolled bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.compacting || j.closing || len(j.segs) < 2 {
		return
	}
	if !rolled && time.Since(j.lastCompactChk) < compactCheckEvery {
		return
	}
	j.lastCompactChk = time.Now()
	prefix := j.segs[:len(j.segs)-1]
	if len(prefix) == 1 && j.lastCompactChk.Sub(j.rolledAt) < compactCheckEvery {
		// The segment a roll just left behind: while the queue moves (a
		// flood keeps a few items in flight across every roll) its last
		// live items die soon and it is dropped whole, where a compaction
		// would read all of it to copy those few. A head still stuck
		// at a later look is compacted then.
		return
	}
	var fileBytes int64
	for _, s := range prefix {
		fileBytes += s.size
	}
	if fileBytes < j.opts.SegmentSize {
		return
	}
	if len(prefix) == 1 && prefix[0].compacted {
		return // already as small as it gets
	}
	// Live bytes below the active segment, counting frame overhead.
	limit := j.active.firstID
	liveBytes := j.live.frameBytesBelow(limit, fileBytes)
	if liveBytes*2 >= fileBytes {
		return
	}
	j.compacting = true
	segs := append([]*segment(nil), prefix...)
	j.bg.Add(1)
	go j.compact(segs)
}

// compact rewrites segs (a prefix of the journal, none of them active)
// into one file holding only their live ADDs:
//
//  1. write <last>.kj.tmp: header, START{first id of segs[0], compacted},
//     the live ADDs in id order; fsync it
//  2. Sync the journal, so every REMOVE that made an item look dead to
//     step 1 is durable
//  3. rename the temp file over the last segment of segs; fsync the dir
//  4. delete the other segments of segs, oldest first; fsync the dir
//
// A crash before 3 leaves a temp file, deleted at open. A crash after 3
// leaves a compacted file whose START says it supersedes every older
// segment; Open deletes those. Nothing is lost or replayed twice.
func (j *Journal) compact(segs []*segment) {
	defer j.bg.Done()
	start := time.Now()
	err := j.rewrite(segs)
	j.mu.Lock()
	j.compacting = false
	j.mu.Unlock()
	switch {
	case errors.Is(err, errCrashed), errors.Is(err, ErrClosed):
		// Close (or a test's crash) stopped it: nothing failed.
	case err != nil:
		j.log.Warn("journal compaction failed; will retry later", "err", err)
	default:
		j.log.Info("journal compacted", "segments", len(segs), "took", time.Since(start))
	}
}

func (j *Journal) rewrite(segs []*segment) error {
	last := segs[len(segs)-1]
	tmp := last.path + tmpExt
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return diskErr("create compaction file", tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			if !j.isDead() {
				os.Remove(tmp)
			}
		}
	}()
	w := bufio.NewWriterSize(f, 256<<10)
	hdr := EncodeRecord(fileHeader(), &Record{Type: RecStart, ID: segs[0].firstID, Flags: startCompacted})
	w.Write(hdr)
	size := int64(len(hdr))
	var enc []byte
	for _, s := range segs {
		if j.isClosing() {
			return ErrClosed
		}
		n, err := j.copyLive(s, w, &enc)
		if err != nil {
			return err
		}
		size += n
	}
	if err := w.Flush(); err != nil {
		return diskErr("write compaction file", tmp, err)
	}
	if j.step("compact:written") {
		return errCrashed
	}
	if err := f.Sync(); err != nil {
		return diskErr("fsync compaction file", tmp, err)
	}
	if j.step("compact:synced") {
		return errCrashed
	}
	if err := j.Sync(); err != nil {
		return err
	}
	if err := os.Rename(tmp, last.path); err != nil {
		return fmt.Errorf("rename compaction file %s: %w", tmp, err)
	}
	ok = true
	f.Close()
	if j.step("compact:renamed") {
		return errCrashed
	}
	if err := fsync.Dir(j.dir); err != nil {
		return err
	}
	noteSynced(last.path, size)
	if j.step("compact:dir-synced") {
		return errCrashed
	}
	j.mu.Lock()
	ns := &segment{seq: last.seq, path: last.path, firstID: segs[0].firstID, compacted: true, size: size}
	rest := j.segs[len(segs):]
	j.segs = append([]*segment{ns}, rest...)
	j.st.Rewrites++
	j.mu.Unlock()
	for _, s := range segs[:len(segs)-1] {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove compacted segment %s: %w", s.path, err)
		}
		if err := fsync.Dir(j.dir); err != nil {
			return err
		}
		if j.step("compact:deleted-one") {
			return errCrashed
		}
	}
	return nil
}

// copyLive appends the live ADDs of one segment to w.
func (j *Journal) copyLive(s *segment, w io.Writer, enc *[]byte) (int64, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return 0, fmt.Errorf("open segment %s for compaction: %w", s.path, err)
	}
	defer f.Close()
	r := frameReader{ra: f, off: fileHeaderSize, limit: s.size}
	var n int64
	for {
		rec, off, err := r.next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			if isDecodeErr(err) {
				return n, &CorruptError{s.path, off, err.Error()}
			}
			return n, fmt.Errorf("read segment %s for compaction: %w", s.path, err)
		}
		if rec.Type != RecAdd {
			continue
		}
		j.mu.Lock()
		_, live := j.live.size(rec.ID)
		j.mu.Unlock()
		if !live {
			continue
		}
		*enc = EncodeRecord((*enc)[:0], &rec)
		if _, err := w.Write(*enc); err != nil {
			return n, diskErr("write compaction file", s.path+tmpExt, err)
		}
		n += int64(len(*enc))
	}
}

func (j *Journal) isDead() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.dead
}

func (j *Journal) isClosing() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.closing
}

// abandon simulates a crash for tests: the goroutines stop without
// writing what is pending, files and the lock are released, and whatever
// reached the OS stays on disk, exactly as after SIGKILL.
func (j *Journal) abandon() {
	j.deadOnce.Do(func() {
		j.mu.Lock()
		j.dead = true
		j.mu.Unlock()
		close(j.deadC)
	})
	<-j.writerDone
	j.mu.Lock()
	j.closing = true
	if c := j.pendingCommit; c != nil {
		j.pendingCommit = nil
		c.finish(errCrashed)
	}
	j.cond.Broadcast()
	j.mu.Unlock()
	j.bg.Wait()
	j.closeFiles()
}
