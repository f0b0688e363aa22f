package journal

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// A Cursor reads live items in id order from disk: at start-up to fill the
// in-memory head, and later for read-behind. It survives rotation and
// compaction: it keeps its open file (an unlinked file stays readable) and
// finds its next segment by sequence number, skipping ids it has passed.
// A Cursor is not safe for concurrent use; distinct Cursors are.
type Cursor struct {
	j    *Journal
	last uint64   // highest id returned or passed over
	seg  *segment // segment being read, nil = find one
	// doneSeq is the sequence number of the segment last read to its end;
	// 0 means find the segment by id instead.
	doneSeq uint64
	// closedSize is the size of the open file once its segment is closed
	// (no longer active); -1 until known.
	closedSize int64
	f          *os.File
	r          frameReader
	closed     bool
}

// Cursor returns a cursor positioned after afterID.
func (j *Journal) Cursor(afterID uint64) *Cursor {
	return &Cursor{j: j, last: afterID}
}

// Next returns up to maxItems live items (and at least one if any is
// available, even if bigger than maxBytes) with ID > the last returned.
// It sees every Append whose Commit has been issued. An empty slice with
// nil error means caught up with the writer.
func (c *Cursor) Next(maxItems int, maxBytes int64) ([]Item, error) {
	return c.next(maxItems, func(n int, bytes, _ int64) bool { return n == 0 || bytes < maxBytes })
}

// NextWithin is Next with a strict budget: the items' data plus perItem
// bytes each add up to at most maxCost. The item that would not fit stays
// unread, for the next call; none is returned if the first does not fit.
func (c *Cursor) NextWithin(maxItems int, maxCost, perItem int64) ([]Item, error) {
	var cost int64
	return c.next(maxItems, func(_ int, _, size int64) bool {
		if cost+size+perItem > maxCost {
			return false
		}
		cost += size + perItem
		return true
	})
}

// next reads live items while admit, asked with the items and data bytes
// taken so far and the next item's data size, accepts them.
func (c *Cursor) next(maxItems int, admit func(n int, bytes, size int64) bool) ([]Item, error) {
	if c.closed {
		return nil, fmt.Errorf("journal cursor: %w", ErrClosed)
	}
	maxItems = max(maxItems, 1)
	j := c.j
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		return nil, fmt.Errorf("journal %s cursor: %w", j.name, ErrClosed)
	}
	target := j.nextID - 1
	if c.last >= target {
		j.mu.Unlock()
		return nil, nil
	}
	if !j.live.anyLiveAfter(c.last) {
		// Nothing live ahead: skip the disk entirely.
		c.last = target
		c.dropFile(false)
		j.mu.Unlock()
		return nil, nil
	}
	// Appends still in the write buffer must reach the file first.
	for j.writtenNext <= target && !j.closing && !j.dead {
		select {
		case j.kick <- struct{}{}:
		default:
		}
		j.cond.Wait()
	}
	j.mu.Unlock()

	var out []Item
	var bytes int64
	for len(out) < maxItems {
		if c.seg == nil {
			ok, err := c.locate()
			if err != nil {
				return out, err
			}
			if !ok {
				break
			}
		}
		j.mu.Lock()
		c.r.limit = c.seg.size
		active := c.seg == j.active
		j.mu.Unlock()
		if !active {
			// A closed segment never changes, but the path may have been
			// renamed over by a compaction between our look-up and open:
			// then we hold the compacted file, a valid stand-in for it
			// (ids we passed are skipped), whose own size is the limit.
			if c.closedSize < 0 {
				st, err := c.f.Stat()
				if err != nil {
					return out, fmt.Errorf("stat journal segment %s: %w", c.seg.path, err)
				}
				c.closedSize = st.Size()
			}
			c.r.limit = c.closedSize
		}
		rec, off, err := c.r.next()
		if err != nil && !active && isDecodeErr(err) {
			// Zeros after a closed segment's last record (zeroAhead,
			// left where the roll could not trim them) end it, as at
			// replay.
			if zeros, zerr := zeroTail(c.f, off, c.r.limit); zerr == nil && zeros {
				err = io.EOF
			}
		}
		if errors.Is(err, io.EOF) {
			if active {
				break // caught up with what is written
			}
			c.dropFile(true) // move on to the next segment
			continue
		}
		if err != nil {
			if isDecodeErr(err) {
				return out, &CorruptError{c.seg.path, off, err.Error()}
			}
			return out, fmt.Errorf("read journal %s: %w", c.seg.path, err)
		}
		if rec.Type != RecAdd || rec.ID <= c.last {
			continue
		}
		j.mu.Lock()
		_, live := j.live.size(rec.ID)
		j.mu.Unlock()
		if live && !admit(len(out), bytes, int64(len(rec.Data))) {
			c.r.off = off // unread: the next call starts with this item
			break
		}
		c.last = rec.ID
		if !live {
			continue
		}
		out = append(out, Item{ID: rec.ID, AddTime: rec.AddTime, Expiry: rec.Expiry, Data: append([]byte(nil), rec.Data...)})
		bytes += int64(len(rec.Data))
	}
	return out, nil
}

// locate opens the segment that follows the one just finished (or, at
// first, the one that holds the id after c.last).
func (c *Cursor) locate() (bool, error) {
	for attempt := 0; ; attempt++ {
		ok, err := c.tryLocate()
		if !errors.Is(err, os.ErrNotExist) || attempt == 3 {
			return ok, err
		}
		// Dropped or compacted between our look-up and open: look again.
	}
}

func (c *Cursor) tryLocate() (bool, error) {
	j := c.j
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		return false, fmt.Errorf("journal %s cursor: %w", j.name, ErrClosed)
	}
	var seg *segment
	for i, s := range j.segs {
		if s.firstID <= c.last+1 {
			seg = s
			continue
		}
		if seg == nil {
			seg = j.segs[i]
		}
		break
	}
	if c.doneSeq > 0 {
		seg = nil
		for _, s := range j.segs {
			if s.seq > c.doneSeq {
				seg = s
				break
			}
		}
	}
	j.mu.Unlock()
	if seg == nil {
		return false, nil
	}
	f, err := os.Open(seg.path)
	if err != nil {
		return false, fmt.Errorf("open journal segment %s: %w", seg.path, err)
	}
	c.seg, c.f, c.closedSize = seg, f, -1
	c.r = frameReader{ra: f, off: fileHeaderSize, buf: c.r.buf}
	return true, nil
}

func (c *Cursor) dropFile(finished bool) {
	c.doneSeq = 0
	if finished && c.seg != nil {
		c.doneSeq = c.seg.seq
	}
	if c.f != nil {
		c.f.Close()
	}
	c.seg, c.f = nil, nil
}

// Close releases the cursor's file.
func (c *Cursor) Close() error {
	if c.f != nil {
		c.f.Close()
	}
	c.seg, c.f, c.closed = nil, nil, true
	return nil
}
