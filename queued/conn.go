// A connection's goroutine: the read loop, its buffer, framing and the
// command dispatch (exec). Each command lives in the file of its concern:
// store.go (set), read.go (get, monitor, confirm), admin.go (delete, flush,
// status, shutdown, dump_config), stats.go (stats, dump_stats).

package queued

import (
	"bufio"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/kpush/kpush/internal/queuename"
	"github.com/kpush/kpush/queued/journal"
)

const (
	// readBufSize is a connection's read buffer at rest. It doubles while a
	// request does not fit and shrinks back once drained.
	readBufSize = 4 << 10
	// defaultMonitorMax bounds a monitor without an explicit max.
	defaultMonitorMax = 10000
)

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
	peerGone bool              // the client closed its side while we waited
	mute     bool              // the command had noreply: replies are dropped
	inflight []storing         // sets waiting for their commits, in request order
	removals []*journal.Commit // removes the unsent replies wait for (awaitBeforeReply)
	skip     int               // bytes of a refused set's data still to drop
	skipEOL  bool              // then its line ending

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
		q.abortOpen(c.id, true)
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
			c.writeString("SERVER_ERROR shutdown command disabled (enable it with enable_shutdown_command = true or kpush queued --enable-shutdown)\r\n")
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

// lookup validates a queue name and returns its queue, creating it.
func (c *conn) lookup(name []byte) *queue {
	if !queuename.Valid(name) {
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
