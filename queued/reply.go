// Writing replies: the pooled buffered writer, the write deadline, and the
// fixed reply strings.

package queued

import (
	"bufio"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kpush/kpush/internal/queuename"
	"github.com/kpush/kpush/queued/journal"
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
	rBadName     = []byte("CLIENT_ERROR bad queue name: " + queuename.Rule + "\r\n")
	rTooManyConn = []byte("SERVER_ERROR too many connections\r\n")
)

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

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
	if len(w.c.removals) > 0 {
		w.c.awaitRemovals()
	}
	n, err := w.c.nc.Write(p)
	w.c.s.bytesWritten.Add(int64(n))
	return n, err
}

// awaitBeforeReply holds every reply byte that has not reached the socket
// yet until cm, the commit of a REMOVE (a plain get, close, confirm), has
// finished: an acknowledged removal must be in the journal under the
// queue's sync policy (see doc.go, Durability). Nothing waits here: the
// connection goes on running the rest of a pipelined batch, whose removes
// join the same journal write, and the wait happens once, in connWriter,
// when the batch's replies go out.
func (c *conn) awaitBeforeReply(cm *journal.Commit) {
	if cm == nil || cm.Done() {
		return
	}
	if n := len(c.removals); n > 0 && c.removals[n-1] == cm {
		return // same batch of the same journal
	}
	c.removals = append(c.removals, cm)
}

// awaitRemovals waits for the commits awaitBeforeReply recorded. A failed
// journal write does not hold the reply back: the item is consumed in
// memory, the journal writes the REMOVE again with its next write (and
// logged the failure), and answering an error instead could only lose a
// plain get's item.
func (c *conn) awaitRemovals() {
	for i, cm := range c.removals {
		if err := cm.Wait(); err != nil {
			c.s.log.Warn("reply sent before its removal reached the journal; a crash could deliver the item again", "conn", c.id, "err", err)
		}
		c.removals[i] = nil
	}
	c.removals = c.removals[:0]
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

func (c *conn) writeInt(n int64) {
	c.scratch = strconv.AppendInt(c.scratch[:0], n, 10)
	c.scratch = append(c.scratch, '\r', '\n')
	c.write(c.scratch)
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
