package journal

import "sort"

// liveTable records which item ids are live and the data size of each.
// It never holds item data. Ids are grouped in chunks of chunkLen; a chunk
// with many live ids is a dense array of 4-byte sizes, a chunk with few
// (a stuck head, items left behind) is a short sorted list, and a chunk is
// freed when its last live id dies. With ids increasing and removals
// mostly in order, memory is about 4 bytes per live item and never more
// than ~1 KiB per live item however the live ids are scattered.
type liveTable struct {
	chunks map[uint64]*liveChunk // key: id >> chunkBits
	keys   []uint64              // sorted chunk keys; kept in sync with chunks
	items  int64
	bytes  int64
}

const (
	chunkBits = 12
	chunkLen  = 1 << chunkBits
	// A dense chunk turns sparse when its live ids drop to sparseMin; a
	// sparse one turns dense when they pass sparseMax.
	sparseMin = 8
	sparseMax = 64
)

type liveChunk struct {
	dense  *[chunkLen]uint32 // data size + 1; 0 = not live. nil when sparse
	sparse []sparseEntry     // sorted by off, when dense is nil
	live   int
}

type sparseEntry struct {
	off  uint16
	size uint32 // data size + 1
}

func newLiveTable() *liveTable { return &liveTable{chunks: make(map[uint64]*liveChunk)} }

// get returns the stored size+1 at off (0 = not live).
func (c *liveChunk) get(off uint64) uint32 {
	if c.dense != nil {
		return c.dense[off]
	}
	i := sort.Search(len(c.sparse), func(i int) bool { return uint64(c.sparse[i].off) >= off })
	if i < len(c.sparse) && uint64(c.sparse[i].off) == off {
		return c.sparse[i].size
	}
	return 0
}

// set stores v (size+1, or 0 to clear) at off and returns the old value.
func (c *liveChunk) set(off uint64, v uint32) uint32 {
	if c.dense != nil {
		old := c.dense[off]
		c.dense[off] = v
		c.adjust(old, v)
		if c.live <= sparseMin {
			c.toSparse()
		}
		return old
	}
	i := sort.Search(len(c.sparse), func(i int) bool { return uint64(c.sparse[i].off) >= off })
	var old uint32
	if i < len(c.sparse) && uint64(c.sparse[i].off) == off {
		old = c.sparse[i].size
		if v == 0 {
			c.sparse = append(c.sparse[:i], c.sparse[i+1:]...)
		} else {
			c.sparse[i].size = v
		}
	} else if v != 0 {
		c.sparse = append(c.sparse, sparseEntry{})
		copy(c.sparse[i+1:], c.sparse[i:])
		c.sparse[i] = sparseEntry{uint16(off), v}
	}
	c.adjust(old, v)
	if c.live > sparseMax {
		c.toDense()
	}
	return old
}

func (c *liveChunk) adjust(old, v uint32) {
	if old != 0 {
		c.live--
	}
	if v != 0 {
		c.live++
	}
}

func (c *liveChunk) toSparse() {
	c.sparse = make([]sparseEntry, 0, c.live)
	for off, s := range c.dense {
		if s != 0 {
			c.sparse = append(c.sparse, sparseEntry{uint16(off), s})
		}
	}
	c.dense = nil
}

func (c *liveChunk) toDense() {
	c.dense = new([chunkLen]uint32)
	for _, e := range c.sparse {
		c.dense[e.off] = e.size
	}
	c.sparse = nil
}

// each calls fn for the live offsets in [from, to] in order, until fn
// returns false.
func (c *liveChunk) each(from, to uint64, fn func(off uint64, v uint32) bool) {
	if c.dense != nil {
		for off := from; off <= to; off++ {
			if v := c.dense[off]; v != 0 && !fn(off, v) {
				return
			}
		}
		return
	}
	for _, e := range c.sparse {
		off := uint64(e.off)
		if off < from {
			continue
		}
		if off > to || !fn(off, e.size) {
			return
		}
	}
}

func (t *liveTable) add(id uint64, size int) {
	k := id >> chunkBits
	c := t.chunks[k]
	if c == nil {
		// Appends fill a chunk in order: start dense.
		c = &liveChunk{dense: new([chunkLen]uint32)}
		t.chunks[k] = c
		t.insertKey(k)
	}
	if old := c.set(id&(chunkLen-1), uint32(size)+1); old != 0 {
		t.items--
		t.bytes -= int64(old - 1)
	}
	t.items++
	t.bytes += int64(size)
}

func (t *liveTable) insertKey(k uint64) {
	if n := len(t.keys); n == 0 || t.keys[n-1] < k {
		t.keys = append(t.keys, k)
		return
	}
	i := sort.Search(len(t.keys), func(i int) bool { return t.keys[i] >= k })
	t.keys = append(t.keys, 0)
	copy(t.keys[i+1:], t.keys[i:])
	t.keys[i] = k
}

// size reports whether id is live and its data size.
func (t *liveTable) size(id uint64) (int, bool) {
	c := t.chunks[id>>chunkBits]
	if c == nil {
		return 0, false
	}
	v := c.get(id & (chunkLen - 1))
	return int(v) - 1, v != 0
}

// remove marks id removed and reports whether it was live, and its size.
func (t *liveTable) remove(id uint64) (int, bool) {
	k := id >> chunkBits
	c := t.chunks[k]
	if c == nil {
		return 0, false
	}
	old := c.set(id&(chunkLen-1), 0)
	if old == 0 {
		return 0, false
	}
	t.items--
	t.bytes -= int64(old - 1)
	if c.live == 0 {
		t.dropChunk(k)
	}
	return int(old) - 1, true
}

func (t *liveTable) dropChunk(k uint64) {
	delete(t.chunks, k)
	if len(t.keys) > 0 && t.keys[0] == k {
		t.keys = t.keys[1:] // the usual case: the oldest chunk drains first
		return
	}
	i := sort.Search(len(t.keys), func(i int) bool { return t.keys[i] >= k })
	if i < len(t.keys) && t.keys[i] == k {
		t.keys = append(t.keys[:i], t.keys[i+1:]...)
	}
}

// removeRange removes every live id in [lo, hi] and returns how many.
func (t *liveTable) removeRange(lo, hi uint64) int {
	if lo == hi {
		if _, ok := t.remove(lo); ok {
			return 1
		}
		return 0
	}
	n := 0
	i := sort.Search(len(t.keys), func(i int) bool { return t.keys[i] >= lo>>chunkBits })
	var drop []uint64
	for ; i < len(t.keys) && t.keys[i] <= hi>>chunkBits; i++ {
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
		var offs []uint64
		c.each(from, to, func(off uint64, v uint32) bool {
			offs = append(offs, off)
			t.items--
			t.bytes -= int64(v - 1)
			return true
		})
		for _, off := range offs {
			c.set(off, 0)
		}
		n += len(offs)
		if c.live == 0 {
			drop = append(drop, k)
		}
	}
	for _, k := range drop {
		t.dropChunk(k)
	}
	return n
}

// firstLive returns the lowest live id, or ok=false when nothing is live.
func (t *liveTable) firstLive() (uint64, bool) {
	for _, k := range t.keys {
		var id uint64
		found := false
		t.chunks[k].each(0, chunkLen-1, func(off uint64, _ uint32) bool {
			id, found = k<<chunkBits|off, true
			return false
		})
		if found {
			return id, true
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
		to := uint64(chunkLen - 1)
		if base+to >= limit {
			to = limit - 1 - base
		}
		t.chunks[k].each(0, to, func(_ uint64, v uint32) bool {
			sum += int64(addFrameSize(int(v - 1)))
			return true
		})
		if sum > stop {
			return sum
		}
	}
	return sum
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
		from := (after & (chunkLen - 1)) + 1
		if from >= chunkLen {
			continue
		}
		found := false
		t.chunks[key].each(from, chunkLen-1, func(uint64, uint32) bool {
			found = true
			return false
		})
		if found {
			return true
		}
	}
	return false
}

func (t *liveTable) reset() {
	t.chunks = make(map[uint64]*liveChunk)
	t.keys = nil
	t.items, t.bytes = 0, 0
}
