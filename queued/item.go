package queued

// entry is an item held in memory. It is small and stored by value in a
// ring, so a queue of a million items is one allocation plus their data.
type entry struct {
	id      uint64 // journal id (a per-queue counter when there is no journal)
	addTime int64  // unix ms
	expiry  int64  // unix ms, 0 = never
	data    []byte // immutable once stored; shared with readers
}

// ring is a growable FIFO deque of entries.
type ring struct {
	buf  []entry
	head int
	n    int
}

func (r *ring) len() int { return r.n }

func (r *ring) grow() {
	size := len(r.buf) * 2
	if size == 0 {
		size = 16
	}
	nb := make([]entry, size)
	for i := 0; i < r.n; i++ {
		nb[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = nb, 0
}

func (r *ring) pushBack(e entry) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)%len(r.buf)] = e
	r.n++
}

func (r *ring) pushFront(e entry) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.head = (r.head - 1 + len(r.buf)) % len(r.buf)
	r.buf[r.head] = e
	r.n++
}

func (r *ring) front() *entry { return &r.buf[r.head] }

func (r *ring) at(i int) *entry { return &r.buf[(r.head+i)%len(r.buf)] }

func (r *ring) popFront() entry {
	e := r.buf[r.head]
	r.buf[r.head] = entry{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.maybeShrink()
	return e
}

// removeAt deletes entry i, keeping order.
func (r *ring) removeAt(i int) entry {
	e := *r.at(i)
	for j := i; j < r.n-1; j++ {
		*r.at(j) = *r.at(j + 1)
	}
	*r.at(r.n - 1) = entry{}
	r.n--
	return e
}

// truncate keeps the first n entries.
func (r *ring) truncate(n int) {
	for i := n; i < r.n; i++ {
		*r.at(i) = entry{}
	}
	r.n = n
	r.maybeShrink()
}

// maybeShrink gives memory back after a large backlog drained.
func (r *ring) maybeShrink() {
	if len(r.buf) > 1024 && r.n < len(r.buf)/8 {
		nb := make([]entry, len(r.buf)/4)
		for i := 0; i < r.n; i++ {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	if r.n == 0 {
		r.head = 0
	}
}

func (r *ring) clear() { *r = ring{} }
