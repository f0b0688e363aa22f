package journal

import "sort"

// liveTable records which item ids are live and the data size of each.
// It never holds item data: 4 bytes per id in chunks of chunkLen ids,
// and a chunk is freed as soon as its last live item is removed, so with
// ids increasing and removals mostly in order only the window between the
// oldest live item and the newest costs memory.
type liveTable struct {
	chunks map[uint64]*liveChunk // key: id >> chunkBits
	keys   []uint64              // sorted chunk keys; kept in sync with chunks
	items  int64
	bytes  int64
}

const (
	chunkBits = 12
	chunkLen  = 1 << chunkBits
)

type liveChunk struct {
	size [chunkLen]uint32 // data size + 1; 0 = not live
	live int
}

func newLiveTable() *liveTable { return &liveTable{chunks: make(map[uint64]*liveChunk)} }

func (t *liveTable) add(id uint64, size int) {
	k := id >> chunkBits
	c := t.chunks[k]
	if c == nil {
		c = new(liveChunk)
		t.chunks[k] = c
		i := sort.Search(len(t.keys), func(i int) bool { return t.keys[i] >= k })
		t.keys = append(t.keys, 0)
		copy(t.keys[i+1:], t.keys[i:])
		t.keys[i] = k
	}
	s := &c.size[id&(chunkLen-1)]
	if *s != 0 {
		t.bytes -= int64(*s - 1)
		t.items--
		c.live--
	}
	*s = uint32(size) + 1
	c.live++
	t.items++
	t.bytes += int64(size)
}

// size reports whether id is live and its data size.
func (t *liveTable) size(id uint64) (int, bool) {
	c := t.chunks[id>>chunkBits]
	if c == nil {
		return 0, false
	}
	s := c.size[id&(chunkLen-1)]
	return int(s) - 1, s != 0
}

// remove marks id removed and reports whether it was live, and its size.
func (t *liveTable) remove(id uint64) (int, bool) {
	k := id >> chunkBits
	c := t.chunks[k]
	if c == nil {
		return 0, false
	}
	s := &c.size[id&(chunkLen-1)]
	if *s == 0 {
		return 0, false
	}
	size := int(*s) - 1
	*s = 0
	c.live--
	t.items--
	t.bytes -= int64(size)
	if c.live == 0 {
		t.dropChunk(k)
	}
	return size, true
}

func (t *liveTable) dropChunk(k uint64) {
	delete(t.chunks, k)
	i := sort.Search(len(t.keys), func(i int) bool { return t.keys[i] >= k })
	if i < len(t.keys) && t.keys[i] == k {
		t.keys = append(t.keys[:i], t.keys[i+1:]...)
	}
}

// removeRange removes every live id in [lo, hi] and returns how many.
func (t *liveTable) removeRange(lo, hi uint64) int {
	n := 0
	i := sort.Search(len(t.keys), func(i int) bool { return t.keys[i] >= lo>>chunkBits })
	for i < len(t.keys) && t.keys[i] <= hi>>chunkBits {
		k := t.keys[i]
		c := t.chunks[k]
		base := k << chunkBits
		from, to := uint64(0), uint64(chunkLen-1)
		if base < lo {
			from = lo - base
		}
		if base+to > hi {
			to = hi - base
		}
		for off := from; off <= to && c.live > 0; off++ {
			if s := c.size[off]; s != 0 {
				c.size[off] = 0
				c.live--
				t.items--
				t.bytes -= int64(s - 1)
				n++
			}
		}
		if c.live == 0 {
			delete(t.chunks, k)
			t.keys = append(t.keys[:i], t.keys[i+1:]...)
			continue
		}
		i++
	}
	return n
}

// firstLive returns the lowest live id, or ok=false when nothing is live.
func (t *liveTable) firstLive() (uint64, bool) {
	for _, k := range t.keys {
		c := t.chunks[k]
		for off, s := range c.size {
			if s != 0 {
				return k<<chunkBits | uint64(off), true
			}
		}
	}
	return 0, false
}

// frameBytesBelow sums the on-disk size of the ADD records of live ids
// below limit, stopping early once the sum exceeds stop.
func (t *liveTable) frameBytesBelow(limit uint64, stop int64) int64 {
	var sum int64
	for _, k := range t.keys {
		base := k << chunkBits
		if base >= limit {
			break
		}
		c := t.chunks[k]
		for off, s := range c.size {
			if base+uint64(off) >= limit {
				break
			}
			if s != 0 {
				sum += int64(addFrameSize(int(s - 1)))
			}
		}
		if sum > stop {
			return sum
		}
	}
	return sum
}

func (t *liveTable) reset() {
	t.chunks = make(map[uint64]*liveChunk)
	t.keys = nil
	t.items, t.bytes = 0, 0
}

// anyLiveAfter reports whether some id above after is live.
func (t *liveTable) anyLiveAfter(after uint64) bool {
	k := after >> chunkBits
	i := sort.Search(len(t.keys), func(i int) bool { return t.keys[i] >= k })
	for ; i < len(t.keys); i++ {
		key := t.keys[i]
		if key > k {
			return true // a chunk exists only while it holds a live id
		}
		c := t.chunks[key]
		for off := (after & (chunkLen - 1)) + 1; off < chunkLen; off++ {
			if c.size[off] != 0 {
				return true
			}
		}
	}
	return false
}
