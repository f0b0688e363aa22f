package queued

import (
	"bufio"
	"context"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var syscallEMFILE = syscall.EMFILE

const (
	// readBufSize is a connection's read buffer at rest. It doubles while a
	// request does not fit and shrinks back once drained.
	readBufSize = 4 << 10
	// defaultMonitorMax bounds a monitor without an explicit max.
	defaultMonitorMax = 10000
)

// Replies.
var (
	rStored      = []byte("STORED\r\n")
	rNotStored   = []byte("NOT_STORED\r\n")
	rEnd         = []byte("END\r\n")
	rError       = []byte("ERROR\r\n")
	rDeleted     = []byte("DELETED\r\n")
	rFlushedAll  = []byte("Flushed all queues.\r\n")
	rReloaded    = []byte("Reloaded config.\r\n")
	rValue       = []byte("VALUE ")
	rZero        = []byte(" 0 ")
	rCRLF        = []byte("\r\n")
	rTooLarge    = []byte("SERVER_ERROR item larger than max_item_size\r\n")
	rReadOnly    = []byte("SERVER_ERROR server is read-only (status READONLY)\r\n")
	rQuiescent   = []byte("SERVER_ERROR server is quiescent (status QUIESCENT)\r\n")
	rBadName     = []byte("CLIENT_ERROR bad queue name: 1-250 bytes of [A-Za-z0-9_-] with at most one '+'\r\n")
	rTooManyConn = []byte("SERVER_ERROR too many connections\r\n")
)

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// conn is one client connection. Its goroutine (serve) owns everything in
// it; its open reads live in the queues (queue.opens), under their locks,
// because the sweeper may abort them.
type conn struct {
	s  *Server
	nc net.Conn
	id uint64

	buf  []byte // read buffer; buf[r:w] is unparsed input
	r, w int
	bw   *bufio.Writer // taken from writerPool while replies are pending
	out  connWriter

	touched  []*queue // queues this connection has opened reads on
	scratch  []byte
	peerGone bool      // the client closed its side while we waited
	mute     bool      // the command had noreply: replies are dropped
	inflight []storing // sets waiting for their commits, in request order
	skip     int       // bytes of a refused set's data still to drop
	skipEOL  bool      // then its line ending

	writeDeadline time.Time // armed on the socket; see connWriter
}

var connIDs atomic.Uint64

func (s *Server) startConn(nc net.Conn) {
	s.connMu.Lock()
	if s.closing {
		s.connMu.Unlock()
		nc.Close()
		return
	}
	if max := s.cfg.MaxConnections; max > 0 && len(s.conns) >= max {
		s.connMu.Unlock()
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write(rTooManyConn)
		nc.Close()
		s.log.Warn("connection refused: max_connections reached", "remote", nc.RemoteAddr().String(), "max", max)
		return
	}
	c := &conn{s: s, nc: nc, id: connIDs.Add(1)}
	c.out = connWriter{c: c}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.connMu.Unlock()
	s.currConns.Add(1)
	s.totalConns.Add(1)
	go c.serve()
}

// connWriter is what the buffered writer writes to: it arms the write
// deadline before each write, so a client that stops reading is dropped
// instead of growing anything.
type connWriter struct{ c *conn }

func (w connWriter) Write(p []byte) (int, error) {
	if t := w.c.s.writeTimeout; t > 0 {
		// Re-arm only when half the timeout has gone by: a client gets
		// between t/2 and t to take each write, and the common case costs
		// no timer update.
		now := time.Now()
		if w.c.writeDeadline.Sub(now) < t/2 {
			w.c.writeDeadline = now.Add(t)
			_ = w.c.nc.SetWriteDeadline(w.c.writeDeadline)
		}
	}
	n, err := w.c.nc.Write(p)
	w.c.s.bytesWritten.Add(int64(n))
	return n, err
}

func (c *conn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = writerPool.Get().(*bufio.Writer)
		c.bw.Reset(c.out)
	}
	return c.bw
}

func (c *conn) write(b []byte) {
	if !c.mute {
		_, _ = c.writer().Write(b)
	}
}

func (c *conn) writeString(s string) {
	if !c.mute {
		_, _ = c.writer().WriteString(s)
	}
}

// flush sends pending replies. It reports false if the client is gone.
func (c *conn) flush() bool {
	if c.bw == nil {
		return true
	}
	err := c.bw.Flush()
	return err == nil
}

// release returns the writer to the pool once nothing is pending, so an
// idle connection holds only its read buffer.
func (c *conn) release() {
	if c.bw != nil && c.bw.Buffered() == 0 {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
}

func (c *conn) serve() {
	defer c.cleanup()
	c.buf = make([]byte, readBufSize)
	for {
		need := 0
		for c.r < c.w {
			if c.skip > 0 || c.skipEOL {
				if err := c.skipData(); err != nil {
					c.protocolError(err)
					return
				}
				if c.skip > 0 || c.skipEOL {
					break
				}
				continue
			}
			cmd, n, nd, err := frame(c.buf[c.r:c.w])
			if err != nil {
				c.protocolError(err)
				return
			}
			if n == 0 {
				if nd > 0 && string(cmd.Name) == "set" && c.refuseOversized(&cmd, nd) {
					continue
				}
				need = nd
				break
			}
			c.r += n
			if !c.exec(&cmd) {
				c.settle()
				c.flush()
				return
			}
		}
		c.settle()
		if !c.flush() {
			return
		}
		c.release()
		if c.r == c.w {
			c.r, c.w = 0, 0
			if len(c.buf) > readBufSize {
				c.resize(readBufSize)
			}
		}
		if !c.makeRoom(need) {
			c.s.log.Warn("request buffer budget spent, closing connection", "conn", c.id, "need", need, "budget", c.s.reqBufLimit)
			c.writeString("SERVER_ERROR out of memory for request data, retry later\r\n")
			c.flush()
			return
		}
		if t := c.s.cfg.ClientTimeout; t > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(t))
		}
		select {
		case <-c.s.done: // checked after arming the deadline: see Shutdown
			return
		default:
		}
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		c.s.bytesRead.Add(int64(n))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.s.log.Debug("closing idle connection", "conn", c.id, "remote", c.nc.RemoteAddr().String())
			}
			return
		}
	}
}

func (c *conn) protocolError(err error) {
	c.settle()
	var pe *ProtocolError
	if errors.As(err, &pe) {
		c.writeString("CLIENT_ERROR " + pe.Reason + "\r\n")
	}
	c.flush()
}

// refuseOversized answers a set whose data is larger than its queue's
// max_item_size as soon as the header is in, and arranges for the data to
// be dropped as it streams in, so it is never buffered. need is the size
// of the whole request.
func (c *conn) refuseOversized(cmd *Command, need int) bool {
	size, _ := parseUint(cmd.Args[3], AbsoluteMaxItemSize)
	q := c.lookup(cmd.Args[0])
	if q == nil {
		return false
	}
	q.mu.Lock()
	limit := q.cfg.MaxItemSize
	q.mu.Unlock()
	if limit <= 0 || int64(size) <= limit {
		return false
	}
	c.s.cmdSet.Add(1)
	c.settle()
	if cmd.NArgs != 5 {
		c.write(rTooLarge)
	}
	c.r += need - int(size) - 2 // the header line
	c.skip, c.skipEOL = int(size), true
	return true
}

// skipData drops the data of a refused set, then its line ending.
func (c *conn) skipData() error {
	k := min(c.skip, c.w-c.r)
	c.r += k
	c.skip -= k
	if c.skip > 0 || c.r == c.w {
		return nil
	}
	switch c.buf[c.r] {
	case '\n':
		c.r++
		c.skipEOL = false
	case '\r':
		if c.r+1 == c.w {
			return nil
		}
		if c.buf[c.r+1] != '\n' {
			return &ProtocolError{Reason: "bad data chunk: data longer than declared or not followed by \\r\\n"}
		}
		c.r += 2
		c.skipEOL = false
	default:
		return &ProtocolError{Reason: "bad data chunk: data longer than declared or not followed by \\r\\n"}
	}
	return nil
}

// makeRoom makes sure the read buffer has free space after w, and room for
// need bytes of pending request if known. It reports false if the server's
// budget for request buffers is spent.
func (c *conn) makeRoom(need int) bool {
	if c.r > 0 && (c.w == len(c.buf) || need > len(c.buf)-c.r) {
		copy(c.buf, c.buf[c.r:c.w])
		c.w -= c.r
		c.r = 0
	}
	size := len(c.buf)
	if need > size {
		size = need
	}
	if c.w == size {
		size *= 2
	}
	if size == len(c.buf) {
		return true
	}
	return c.resize(size)
}

// resize gives the connection a read buffer of size bytes, keeping the
// unparsed input. Whatever a buffer holds beyond readBufSize is counted
// against the server-wide budget (requestBufferBudget), so many clients
// each sending a 64 MiB set cannot exhaust memory together.
func (c *conn) resize(size int) bool {
	delta := int64(max(size, readBufSize) - max(len(c.buf), readBufSize))
	if delta > 0 && c.s.reqBuf.Add(delta) > c.s.reqBufLimit {
		c.s.reqBuf.Add(-delta)
		return false
	}
	if delta < 0 {
		c.s.reqBuf.Add(delta)
	}
	nb := make([]byte, size)
	copy(nb, c.buf[c.r:c.w])
	c.w -= c.r
	c.r = 0
	c.buf = nb
	return true
}

// cleanup returns every open read to the head of its queue and forgets the
// connection.
func (c *conn) cleanup() {
	c.settle()
	if extra := len(c.buf) - readBufSize; extra > 0 {
		c.s.reqBuf.Add(-int64(extra))
	}
	for _, q := range c.touched {
		q.abortOpen(c, true)
	}
	if c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
	c.nc.Close()
	c.s.connMu.Lock()
	delete(c.s.conns, c)
	c.s.connMu.Unlock()
	c.s.currConns.Add(-1)
	c.s.connWG.Done()
}

// exec runs one command and queues its reply. It reports false when the
// connection must close.
func (c *conn) exec(cmd *Command) bool {
	if len(c.inflight) > 0 && string(cmd.Name) != "set" {
		c.settle()
	}
	// memcache clients append "noreply" to delete and flush_all (pymemcache
	// does by default): run the command, send nothing.
	if n := cmd.NArgs; n > 0 && n <= maxArgs && string(cmd.Args[n-1]) == "noreply" && takesNoreply(cmd.Name) {
		cmd.NArgs--
		c.mute = true
		defer func() { c.mute = false }()
	}
	switch string(cmd.Name) {
	case "get", "gets":
		return c.get(cmd)
	case "set":
		return c.set(cmd)
	case "monitor":
		return c.monitor(cmd)
	case "confirm":
		return c.confirm(cmd)
	case "delete":
		return c.queueAdmin(cmd, "delete")
	case "flush":
		return c.queueAdmin(cmd, "flush")
	case "flush_expired":
		return c.queueAdmin(cmd, "flush_expired")
	case "flush_all": // [delay] is accepted and ignored
		for _, q := range c.s.queueList() {
			if err := q.flush(); err != nil && !errors.Is(err, ErrQueueUnavailable) && !errors.Is(err, ErrQueueDeleted) {
				c.serverError(err)
				return true
			}
		}
		c.write(rFlushedAll)
	case "flush_all_expired":
		var n int64
		for _, q := range c.s.queueList() {
			n += c.flushExpired(q)
		}
		c.writeInt(n)
	case "version":
		c.writeString("VERSION " + Version + "\r\n")
	case "stats":
		c.stats()
	case "dump_stats":
		c.dumpStats(cmd)
	case "dump_config":
		c.dumpConfig()
	case "reload":
		if err := c.s.Reload(); err != nil {
			c.serverError(err)
		} else {
			c.write(rReloaded)
		}
	case "status":
		c.status(cmd)
	case "shutdown":
		if !c.s.config().EnableShutdown {
			c.writeString("SERVER_ERROR shutdown command disabled (enable_shutdown_command)\r\n")
			return true
		}
		c.s.log.Info("shutdown requested by a client", "conn", c.id, "remote", c.nc.RemoteAddr().String())
		go c.s.requestShutdown()
		return false
	case "quit":
		return false
	default:
		c.write(rError)
	}
	return true
}

// takesNoreply lists the commands besides set that memcache clients send
// with noreply. A get never does: it would consume an item unseen.
func takesNoreply(name []byte) bool {
	switch string(name) {
	case "delete", "flush", "flush_all":
		return true
	}
	return false
}

func (s *Server) requestShutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		s.log.Error("shutdown", "err", err)
	}
}

func (c *conn) writeInt(n int64) {
	c.scratch = strconv.AppendInt(c.scratch[:0], n, 10)
	c.scratch = append(c.scratch, '\r', '\n')
	c.write(c.scratch)
}

// serverError replies SERVER_ERROR with err on one line.
func (c *conn) serverError(err error) {
	msg := strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, err.Error())
	c.writeString("SERVER_ERROR " + msg + "\r\n")
}

// lookup validates a queue name and returns its queue, creating it.
func (c *conn) lookup(name []byte) *queue {
	if !validName(name) {
		return nil
	}
	c.s.mu.RLock()
	q := c.s.queues[string(name)]
	c.s.mu.RUnlock()
	if q != nil {
		<-q.ready
		return q
	}
	return c.s.queueFor(string(name), true)
}

func (c *conn) set(cmd *Command) bool {
	c.s.cmdSet.Add(1)
	noreply := cmd.NArgs == 5
	reply := func(b []byte) {
		if !noreply {
			c.write(b)
		}
	}
	switch c.s.Status() {
	case StatusReadOnly:
		reply(rReadOnly)
		return true
	case StatusQuiescent:
		reply(rQuiescent)
		return true
	}
	q := c.lookup(cmd.Args[0])
	if q == nil {
		reply(rBadName)
		return true
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
// zeroed nor copied twice (measured with 8 MiB items beside small ones:
// the copies and their garbage were a third of the daemon's CPU time).
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
	err        error // refused before reaching the journal
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

// getOptions are the /options of a get.
type getOptions struct {
	timeout                  time.Duration
	hasTimeout               bool
	open, close, abort, peek bool
}

func parseGetKey(key []byte) (name []byte, o getOptions, ok bool) {
	i := 0
	for i < len(key) && key[i] != '/' {
		i++
	}
	name = key[:i]
	for i < len(key) {
		i++ // skip '/'
		j := i
		for j < len(key) && key[j] != '/' {
			j++
		}
		opt := key[i:j]
		i = j
		switch {
		case string(opt) == "open":
			o.open = true
		case string(opt) == "close":
			o.close = true
		case string(opt) == "abort":
			o.abort = true
		case string(opt) == "peek":
			o.peek = true
		case len(opt) > 2 && opt[0] == 't' && opt[1] == '=':
			ms, okn := parseUint(opt[2:], 1<<31)
			if !okn {
				return name, o, false
			}
			o.timeout, o.hasTimeout = time.Duration(ms)*time.Millisecond, true
		default:
			return name, o, false
		}
	}
	if len(name) == 0 || ((o.peek || o.abort) && (o.open || o.close)) || (o.peek && o.abort) {
		return name, o, false
	}
	return name, o, true
}

func (c *conn) get(cmd *Command) bool {
	if cmd.NArgs < 1 {
		c.write(rError)
		return true
	}
	name, o, ok := parseGetKey(cmd.Args[0])
	if !ok {
		c.writeString("CLIENT_ERROR bad get options: use <queue>[/t=<ms>][/open][/close][/abort][/peek] without mixing peek or abort with open or close\r\n")
		return false
	}
	q := c.lookup(name)
	if q == nil {
		c.write(rBadName)
		return false
	}
	if o.peek {
		c.s.cmdPeek.Add(1)
	} else {
		c.s.cmdGet.Add(1)
	}
	if err := q.unusable(); err != nil {
		c.serverError(err)
		return true
	}
	if o.abort {
		q.abortOpen(c, false)
		c.write(rEnd)
		return true
	}
	if o.close {
		q.closeOpen(c, 1)
		if !o.open {
			c.write(rEnd)
			return true
		}
	}
	if c.s.Status() == StatusQuiescent {
		c.write(rQuiescent)
		return true
	}
	held := 0
	if len(c.touched) > 0 { // a connection that never opened a read holds none
		held = q.openCountOf(c)
	}
	if !o.peek && !o.open && held > 0 {
		c.s.log.Warn("plain get while holding an open read; closing connection", "queue", q.name, "conn", c.id)
		c.write(rError)
		return false
	}
	mode := takeRemove
	switch {
	case o.peek:
		mode = takePeek
	case o.open:
		// Per connection and queue, as Kestrel counts them.
		if int32(held) >= c.s.maxOpen.Load() {
			c.write(rError)
			return true
		}
		mode = takeOpen
		c.touch(q)
	}
	e, got, err := c.takeWait(q, mode, o.hasTimeout, time.Now().Add(o.timeout))
	if err != nil {
		c.serverError(err)
		return true
	}
	if !got {
		c.s.getMisses.Add(1)
		c.write(rEnd)
		return !c.peerGone
	}
	c.s.getHits.Add(1)
	c.writeValue(name, e.data)
	c.write(rEnd)
	return !c.peerGone
}

func (c *conn) writeValue(name, data []byte) {
	w := c.writer()
	w.Write(rValue)
	w.Write(name)
	w.Write(rZero)
	c.scratch = strconv.AppendInt(c.scratch[:0], int64(len(data)), 10)
	c.scratch = append(c.scratch, '\r', '\n')
	w.Write(c.scratch)
	w.Write(data)
	w.Write(rCRLF)
}

func (c *conn) touch(q *queue) {
	for _, t := range c.touched {
		if t == q {
			return
		}
	}
	c.touched = append(c.touched, q)
}

// takeWait takes an item from q, waiting until deadline if wait is set.
// Before blocking it flushes pending replies; while blocked it watches the
// socket so a client that hangs up stops waiting at once.
func (c *conn) takeWait(q *queue, mode takeMode, wait bool, deadline time.Time) (entry, bool, error) {
	var w *waiter
	if wait {
		w = &waiter{ch: make(chan struct{}, 1)}
	}
	front := false
	var timer *time.Timer
	var watch chan error
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if watch != nil {
			c.stopWatch(watch)
		}
	}()
	for {
		e, ok, expired, err := q.take(c, mode, w, front)
		if len(expired) > 0 {
			c.s.expire(q, expired)
		}
		if errors.Is(err, ErrQueueDeleted) {
			return entry{}, false, nil // the queue went away: it is empty
		}
		if err != nil {
			return entry{}, false, err
		}
		if ok {
			if w != nil {
				// Still queued (we looped because the watcher read
				// pipelined input) or woken for an item we took anyway:
				// leave the waiters, handing on any wake.
				q.cancelWait(w)
			}
			return e, true, nil
		}
		if !wait {
			return entry{}, false, nil
		}
		d := time.Until(deadline)
		if d <= 0 {
			q.cancelWait(w)
			return entry{}, false, nil
		}
		if !c.flush() {
			q.cancelWait(w)
			c.peerGone = true
			return entry{}, false, nil
		}
		if timer == nil {
			timer = time.NewTimer(d)
		}
		if watch == nil {
			watch = c.startWatch()
		}
		select {
		case <-w.ch:
			front = true
		case <-timer.C:
			q.cancelWait(w)
			timer = nil
			return entry{}, false, nil
		case err := <-watch:
			watch = nil
			if err != nil {
				q.cancelWait(w)
				c.peerGone = true
				return entry{}, false, nil
			}
		case <-c.s.done:
			q.cancelWait(w)
			return entry{}, false, nil
		}
	}
}

// startWatch reads from the socket in the background while the connection
// goroutine is blocked, to learn if the client hangs up. Whatever it reads
// (pipelined requests) is kept in the buffer. The result is sent once.
func (c *conn) startWatch() chan error {
	if !c.makeRoom(0) {
		return nil // no room to read into: no hang-up detection this time
	}
	ch := make(chan error, 1)
	_ = c.nc.SetReadDeadline(time.Time{})
	go func(buf []byte) {
		n, err := c.nc.Read(buf)
		c.w += n // the connection goroutine reads w only after receiving from ch
		c.s.bytesRead.Add(int64(n))
		if n > 0 {
			err = nil
		}
		ch <- err
	}(c.buf[c.w:])
	return ch
}

// stopWatch ends a watch started by startWatch and waits for it.
func (c *conn) stopWatch(ch chan error) {
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	err := <-ch
	_ = c.nc.SetReadDeadline(time.Time{})
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		c.peerGone = true
	}
}

func (c *conn) monitor(cmd *Command) bool {
	if cmd.NArgs < 2 || cmd.NArgs > 3 {
		c.writeString("CLIENT_ERROR usage: monitor <queue> <seconds> [max]\r\n")
		return true
	}
	secs, ok := parseUint(cmd.Args[1], 1<<31)
	maxItems := uint64(defaultMonitorMax)
	if ok && cmd.NArgs == 3 {
		maxItems, ok = parseUint(cmd.Args[2], 1<<31)
	}
	if !ok {
		c.writeString("CLIENT_ERROR usage: monitor <queue> <seconds> [max]\r\n")
		return true
	}
	q := c.lookup(cmd.Args[0])
	if q == nil {
		c.write(rBadName)
		return true
	}
	if c.s.Status() == StatusQuiescent {
		c.write(rQuiescent)
		return true
	}
	if err := q.unusable(); err != nil {
		c.serverError(err)
		return true
	}
	c.touch(q)
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for n := uint64(0); n < maxItems; n++ {
		e, got, err := c.takeWait(q, takeOpen, true, deadline)
		if err != nil {
			c.serverError(err)
			return true
		}
		if !got {
			break
		}
		c.s.cmdGet.Add(1)
		c.s.getHits.Add(1)
		c.writeValue(cmd.Args[0], e.data)
	}
	c.write(rEnd)
	return !c.peerGone
}

func (c *conn) confirm(cmd *Command) bool {
	if cmd.NArgs != 2 {
		c.writeString("CLIENT_ERROR usage: confirm <queue> <count>\r\n")
		return true
	}
	n, ok := parseUint(cmd.Args[1], 1<<31)
	if !ok {
		c.writeString("CLIENT_ERROR usage: confirm <queue> <count>\r\n")
		return true
	}
	q := c.lookup(cmd.Args[0])
	if q == nil {
		c.write(rBadName)
		return true
	}
	if err := q.unusable(); err != nil {
		c.serverError(err)
		return true
	}
	if !q.closeOpen(c, int(n)) {
		c.write(rError)
		return true
	}
	c.write(rEnd)
	return true
}

func (c *conn) queueAdmin(cmd *Command, op string) bool {
	if op == "delete" && cmd.NArgs == 2 {
		// memcache's "delete <key> <time>": the time is ignored.
		if _, ok := parseUint(cmd.Args[1], 1<<32); ok {
			cmd.NArgs = 1
		}
	}
	if cmd.NArgs != 1 {
		c.writeString("CLIENT_ERROR usage: " + op + " <queue>\r\n")
		return true
	}
	if !validName(cmd.Args[0]) {
		c.write(rBadName)
		return true
	}
	if c.s.Status() == StatusQuiescent {
		c.write(rQuiescent)
		return true
	}
	name := string(cmd.Args[0])
	if q := c.s.queueFor(name, false); q != nil {
		// A queue whose journal cannot be opened is refused, delete
		// included: its files are left for an operator to inspect.
		if err := q.unusable(); err != nil && !errors.Is(err, ErrQueueDeleted) {
			c.serverError(err)
			return true
		}
	}
	switch op {
	case "delete":
		if err := c.s.deleteQueue(name); err != nil {
			c.serverError(err)
			return true
		}
		c.write(rDeleted)
	case "flush":
		q := c.s.queueFor(name, true)
		if err := q.flush(); err != nil {
			c.serverError(err)
			return true
		}
		c.write(rEnd)
	case "flush_expired":
		q := c.s.queueFor(name, true)
		c.writeInt(c.flushExpired(q))
	}
	return true
}

func (c *conn) flushExpired(q *queue) int64 {
	exp := q.sweepExpired(0)
	if len(exp) > 0 {
		c.s.expire(q, exp)
	}
	return int64(len(exp))
}

func (c *conn) status(cmd *Command) {
	if cmd.NArgs == 0 {
		c.writeString(c.s.Status().String() + "\r\n")
		return
	}
	st, err := ParseStatus(string(cmd.Args[0]))
	if err != nil || cmd.NArgs > 1 {
		c.writeString("CLIENT_ERROR usage: status [UP|READONLY|QUIESCENT]\r\n")
		return
	}
	if err := c.s.SetStatus(st); err != nil {
		c.serverError(err)
		return
	}
	c.write(rEnd)
}

func (c *conn) stats() {
	st := c.s.Stats()
	w := c.writer()
	stat := func(name string, v int64) {
		w.WriteString("STAT ")
		w.WriteString(name)
		w.WriteByte(' ')
		c.scratch = strconv.AppendInt(c.scratch[:0], v, 10)
		w.Write(c.scratch)
		w.Write(rCRLF)
	}
	stat("uptime", st.Uptime)
	stat("time", st.Time)
	w.WriteString("STAT version " + st.Version + "\r\n")
	stat("curr_items", st.CurrItems)
	stat("total_items", st.TotalItems)
	stat("bytes", st.Bytes)
	stat("curr_connections", st.CurrConnections)
	stat("total_connections", st.TotalConnections)
	stat("cmd_get", st.CmdGet)
	stat("cmd_set", st.CmdSet)
	stat("cmd_peek", st.CmdPeek)
	stat("get_hits", st.GetHits)
	stat("get_misses", st.GetMisses)
	stat("bytes_read", st.BytesRead)
	stat("bytes_written", st.BytesWritten)
	stat("queue_creates", st.QueueCreates)
	stat("queue_deletes", st.QueueDeletes)
	stat("queue_expires", st.QueueExpires)
	var pairs []statPair
	for i := range st.Queues {
		qs := &st.Queues[i]
		pairs = qs.statPairs(pairs[:0])
		for _, p := range pairs {
			stat("queue_"+qs.Name+"_"+p.name, p.value)
		}
	}
	w.Write(rEnd)
}

func (c *conn) dumpStats(cmd *Command) {
	st := c.s.Stats()
	want := map[string]bool{}
	for i := 0; i < cmd.NArgs && i < maxArgs; i++ {
		want[string(cmd.Args[i])] = true
	}
	w := c.writer()
	var pairs []statPair
	for i := range st.Queues {
		qs := &st.Queues[i]
		if len(want) > 0 && !want[qs.Name] {
			continue
		}
		w.WriteString("queue '" + qs.Name + "' {\r\n")
		pairs = qs.statPairs(pairs[:0])
		for _, p := range pairs {
			w.WriteString("  " + p.name + "=" + itoa(p.value) + "\r\n")
		}
		if qs.Unavailable != "" {
			w.WriteString("  unavailable=" + qs.Unavailable + "\r\n")
		}
		w.WriteString("}\r\n")
	}
	w.Write(rEnd)
}

func (c *conn) dumpConfig() {
	qs := c.s.queueList()
	names := make([]string, len(qs))
	for i, q := range qs {
		names[i] = q.name
	}
	// The config file's own rendering (configfile.go), so what is dumped
	// reads back the same.
	_ = c.s.config().DumpQueues(c.writer(), names)
	c.write(rEnd)
}
