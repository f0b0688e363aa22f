// The set pipeline: a set is appended to its queue's journal (and its
// fanout children's) at once, and its reply waits, in request order, for
// the group commit (settle).

package queued

import (
	"errors"
	"math"
)

func (c *conn) set(cmd *Command) bool {
	c.s.cmdSet.Add(1)
	noreply := cmd.NArgs == 5
	// A refused set's reply takes its turn behind the STOREDs of the sets
	// before it, which wait for their commit (settle).
	refuse := func(b []byte) bool {
		c.inflight = append(c.inflight, storing{refused: b, noreply: noreply})
		return true
	}
	switch c.s.Status() {
	case StatusReadOnly:
		return refuse(rReadOnly)
	case StatusQuiescent:
		return refuse(rQuiescent)
	}
	q := c.lookup(cmd.Args[0])
	if q == nil {
		return refuse(rBadName)
	}
	exptime, _ := parseInt(cmd.Args[2])
	now := nowMS()
	var expiry int64
	switch {
	case exptime == 0:
	case exptime < 0:
		expiry = now // already expired, as in memcache
	case exptime < 1000000:
		expiry = now + exptime*1000
	case exptime > math.MaxInt64/1000:
		expiry = math.MaxInt64 // absurdly far: never, in effect
	default:
		expiry = exptime * 1000
	}
	data := c.takeData(cmd.Data)
	c.s.testHook("set-looked-up")
	// The reply waits for the commit, but the connection goes on parsing:
	// pipelined sets are all in the journal's next group commit, and their
	// replies are written, in order, when the batch settles.
	st := c.s.storeStart(q, data, now, expiry)
	// Deleted between the lookup and the put: a set after a delete creates
	// the queue afresh. Again if the new queue was deleted too (a client
	// deleting in a loop), a bounded number of times.
	for i := 0; i < 64 && errors.Is(st.err, ErrQueueDeleted); i++ {
		st = c.s.storeStart(c.lookup(cmd.Args[0]), data, now, expiry)
	}
	st.noreply = noreply
	c.inflight = append(c.inflight, st)
	if len(c.inflight) >= maxInflightSets {
		c.settle()
	}
	return true
}

// stealMin is the data size from which a set's item takes over the read
// buffer that grew to receive it instead of copying it.
const stealMin = 64 << 10

// takeData returns a set's data (which lies in the read buffer, before
// c.r) as memory of the item's own. A big item is the bulk of a buffer
// that grew just for it: the item keeps that buffer and the connection
// starts a fresh one holding what follows, so megabytes are neither
// zeroed nor copied twice (with 8 MiB items beside small ones, the copies
// and their garbage were a large share of the daemon's CPU time:
// docs/benchmarks.md, Fairness).
func (c *conn) takeData(d []byte) []byte {
	if len(d) < stealMin || 2*len(d) < len(c.buf) {
		data := make([]byte, len(d))
		copy(data, d)
		return data
	}
	rest := c.w - c.r
	nb := make([]byte, max(readBufSize, rest))
	copy(nb, c.buf[c.r:c.w])
	// The old buffer now counts as item memory, not request memory.
	c.s.reqBuf.Add(int64(max(len(nb), readBufSize) - max(len(c.buf), readBufSize)))
	c.buf, c.r, c.w = nb, 0, rest
	return d[:len(d):len(d)]
}

// maxInflightSets bounds the sets of one connection waiting for their
// commits before the connection stops to settle them.
const maxInflightSets = 256

// settle waits for the commits of the connection's pending sets and writes
// their replies in order. It runs before any other command, before every
// flush and when the connection ends (the queues' bookkeeping needs
// finishPut even if no reply can be sent).
func (c *conn) settle() {
	for i := range c.inflight {
		st := &c.inflight[i]
		err := c.s.storeFinish(st)
		if st.noreply {
			continue
		}
		switch {
		case st.refused != nil:
			c.write(st.refused)
		case err == nil:
			c.write(rStored)
		case errors.Is(err, ErrQueueFull):
			c.write(rNotStored)
		case errors.Is(err, ErrItemTooLarge):
			c.write(rTooLarge)
		default:
			c.serverError(err)
		}
	}
	clear(c.inflight)
	c.inflight = c.inflight[:0]
}

// storing is a set whose copies (the queue's and its fanout children's)
// are appended to their journals but not yet committed.
type storing struct {
	first      pendingPut // zero if fanout_only or refused
	extra      []pendingPut
	fanoutOnly bool
	err        error  // refused before reaching the journal
	refused    []byte // the reply of a set refused before any queue saw it
	noreply    bool
}

// storeStart puts an item on q and on each of its fanout children.
func (s *Server) storeStart(q *queue, data []byte, now, expiry int64) storing {
	q.mu.Lock()
	children := q.children
	fanoutOnly := q.cfg.FanoutOnly
	q.mu.Unlock()
	st := storing{fanoutOnly: fanoutOnly}
	if !fanoutOnly {
		if st.first, st.err = q.put(data, now, expiry); st.err != nil {
			return st
		}
	}
	for _, child := range children {
		p, err := child.put(data, now, expiry)
		if err != nil {
			if !errors.Is(err, ErrQueueFull) && !errors.Is(err, ErrQueueDeleted) {
				s.log.Warn("fanout copy not stored", "queue", child.name, "err", err)
			}
			continue
		}
		st.extra = append(st.extra, p)
	}
	return st
}

// storeFinish waits until every copy is committed under its queue's sync
// policy and settles the queues' bookkeeping. The error is the queue's
// (for fanout_only, the first failing child's).
func (s *Server) storeFinish(st *storing) error {
	if st.err != nil {
		return st.err
	}
	var err error
	if p := st.first; p.q != nil && p.commit != nil {
		err = p.commit.Wait()
		p.finish(err)
	}
	for _, p := range st.extra {
		if p.commit != nil {
			cerr := p.commit.Wait()
			p.finish(cerr)
			if cerr != nil && st.fanoutOnly && err == nil {
				err = cerr
			}
		}
	}
	if err != nil {
		return &journalWriteError{err: err}
	}
	return nil
}

type journalWriteError struct{ err error }

func (e *journalWriteError) Error() string {
	return "journal write failed, item not stored: " + e.err.Error()
}

func (e *journalWriteError) Unwrap() error { return e.err }
