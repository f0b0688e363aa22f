package kestrel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// ErrProtocol is wrapped by every error caused by a reply the client did
// not expect: the server is not Kestrel-compatible, or the stream is out of
// step. The connection is no longer usable.
var ErrProtocol = errors.New("kestrel protocol error")

// ErrMonitorUnsupported: the server answered ERROR to `monitor` (kpush
// queued and Kestrel 2.x have it; Kestrel 1.x and memcached do not).
var ErrMonitorUnsupported = errors.New("server does not support monitor/confirm (use kpush queued or Kestrel 2.x)")

// maxValueLen is the longest VALUE length believed at all; beyond it the
// stream is taken as corrupt.
const maxValueLen = 1 << 40

// Options configure a connection. The zero value is valid.
type Options struct {
	// Timeout, if positive, bounds every flush and every read of a reply
	// (beyond the time the server may wait by protocol, a monitor's
	// seconds): the Conn arms the deadline itself before each. Zero
	// leaves deadlines to the caller (SetDeadline), so a load generator
	// pays for one deadline per batch and not one per reply.
	Timeout time.Duration
	// ReadBuffer and WriteBuffer size the buffered reader and writer;
	// defaults 64 KiB and 4 KiB. A reply line must fit in ReadBuffer.
	ReadBuffer, WriteBuffer int
	// MaxItemSize bounds the data of a monitor item kept in memory; a
	// larger item is read past and reported by its size only (ReadMonitor).
	// Zero means no bound below the protocol's sanity limit.
	MaxItemSize int64
	// Dialer connects to addr; nil: a net.Dialer with the system's
	// resolver. The worker passes a discovery.Dialer, which keeps servers
	// found through DNS reachable while the DNS is down.
	Dialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
}

// Conn is one client connection. It is not safe for concurrent use: it
// belongs to one goroutine, as the open reads it holds belong to it on the
// server (dropping the connection returns them to their queues).
//
// Requests (Set, Get, Monitor, Confirm, Command) are buffered; Flush sends
// them, and the Read methods then read their replies in order, so several
// requests can share one round trip.
type Conn struct {
	addr    string
	nc      net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	opts    Options
	scratch []byte // request numbers are formatted here
}

// Dial connects to addr (host:port). The context bounds the dial only.
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	var nc net.Conn
	var err error
	if opts.Dialer != nil {
		nc, err = opts.Dialer.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	if opts.ReadBuffer <= 0 {
		opts.ReadBuffer = 64 << 10
	}
	if opts.WriteBuffer <= 0 {
		opts.WriteBuffer = 4 << 10
	}
	return &Conn{
		addr: addr,
		nc:   nc,
		r:    bufio.NewReaderSize(nc, opts.ReadBuffer),
		w:    bufio.NewWriterSize(nc, opts.WriteBuffer),
		opts: opts,
	}, nil
}

// Addr is the address the connection was dialled to.
func (c *Conn) Addr() string { return c.addr }

// Close drops the connection; the server returns every read it held open
// to the head of its queue.
func (c *Conn) Close() error { return c.nc.Close() }

// SetDeadline sets the read and write deadline of the connection (with
// Options.Timeout zero, the caller's only bound on a silent server).
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// Flush sends the buffered requests.
func (c *Conn) Flush() error {
	if c.opts.Timeout > 0 {
		if err := c.nc.SetWriteDeadline(time.Now().Add(c.opts.Timeout)); err != nil {
			return err
		}
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("write to %s: %w", c.addr, err)
	}
	return nil
}

// Set buffers `set <queue> 0 <exptime> <len>` and the data; ReadStored
// reads its reply.
func (c *Conn) Set(queue string, exptime int64, data []byte) {
	c.w.WriteString("set ")
	c.w.WriteString(queue)
	c.w.WriteString(" 0 ")
	c.scratch = strconv.AppendInt(c.scratch[:0], exptime, 10)
	c.scratch = append(c.scratch, ' ')
	c.scratch = strconv.AppendInt(c.scratch, int64(len(data)), 10)
	c.scratch = append(c.scratch, '\r', '\n')
	c.w.Write(c.scratch)
	c.w.Write(data)
	c.w.WriteString("\r\n")
}

// Get buffers `get <queue><opts>`, where opts are Kestrel's get options
// ("", "/open", "/close/open", "/abort", "/peek", "/t=500", ...);
// ReadValue reads its reply (a "/close" alone is answered END).
func (c *Conn) Get(queue, opts string) {
	c.w.WriteString("get ")
	c.w.WriteString(queue)
	c.w.WriteString(opts)
	c.w.WriteString("\r\n")
}

// Monitor buffers `monitor <queue> <seconds> <max>`: the server streams up
// to max items as they come, each an open read on this connection, for up
// to seconds. ReadMonitor reads the stream.
func (c *Conn) Monitor(queue string, seconds, max int) {
	c.queueCmd("monitor ", queue, seconds, max)
}

// Confirm buffers `confirm <queue> <n>`, which closes (removes for good)
// the n oldest reads this connection holds open on queue. ReadConfirm
// reads its reply.
func (c *Conn) Confirm(queue string, n int) {
	c.queueCmd("confirm ", queue, n, -1)
}

func (c *Conn) queueCmd(cmd, queue string, a, b int) {
	c.w.WriteString(cmd)
	c.w.WriteString(queue)
	c.scratch = append(c.scratch[:0], ' ')
	c.scratch = strconv.AppendInt(c.scratch, int64(a), 10)
	if b >= 0 {
		c.scratch = append(c.scratch, ' ')
		c.scratch = strconv.AppendInt(c.scratch, int64(b), 10)
	}
	c.scratch = append(c.scratch, '\r', '\n')
	c.w.Write(c.scratch)
}

// Command buffers one request line, without its line end (`flush q`,
// `delete q`, `stats`, ...).
func (c *Conn) Command(line string) {
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
}

// ReadLine reads one reply line without its line end. The slice is valid
// until the next read.
func (c *Conn) ReadLine() ([]byte, error) { return c.readLine(0) }

// readLine is ReadLine allowing extra time beyond Options.Timeout (the
// wait a monitor is allowed).
func (c *Conn) readLine(extra time.Duration) ([]byte, error) {
	if c.opts.Timeout > 0 {
		if err := c.nc.SetReadDeadline(time.Now().Add(c.opts.Timeout + extra)); err != nil {
			return nil, err
		}
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: reply line from %s longer than %d bytes", ErrProtocol, c.addr, c.r.Size())
		}
		return nil, fmt.Errorf("read from %s: %w", c.addr, err)
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// ReplyError is a reply line that is not the success reply of its request
// (ERROR, CLIENT_ERROR ..., SERVER_ERROR ..., or anything unexpected) but
// leaves the stream in step: the connection can go on.
type ReplyError struct {
	Addr, Request, Line string
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("%s answered %q to %s", e.Addr, e.Line, e.Request)
}

func (c *Conn) replyError(request string, line []byte) error {
	return &ReplyError{Addr: c.addr, Request: request, Line: string(line)}
}

// ReadStored reads the reply to a set: true for STORED, false for
// NOT_STORED (the queue is full); any other line is a *ReplyError.
func (c *Conn) ReadStored() (bool, error) {
	line, err := c.readLine(0)
	if err != nil {
		return false, err
	}
	switch string(line) {
	case "STORED":
		return true, nil
	case "NOT_STORED":
		return false, nil
	}
	return false, c.replyError("set", line)
}

// ReadValue reads the reply to a get: a VALUE, its data and END (ok
// true), or a lone END (ok false: the queue is empty). With keep the data
// is returned in a new slice; without it the data is read past, nothing
// allocated. A reply other than VALUE or END is a *ReplyError.
func (c *Conn) ReadValue(keep bool) (data []byte, ok bool, err error) {
	line, err := c.readLine(0)
	if err != nil {
		return nil, false, err
	}
	if string(line) == "END" {
		return nil, false, nil
	}
	size, err := valueSize(line)
	if err != nil {
		if errors.Is(err, errNotValue) {
			return nil, false, c.replyError("get", line)
		}
		return nil, false, fmt.Errorf("%w: %s answered %q to get", err, c.addr, line)
	}
	if keep {
		if data, err = c.readData(size); err != nil {
			return nil, false, err
		}
	} else if err := c.discard(size + 2); err != nil {
		return nil, false, fmt.Errorf("read item from %s: %w", c.addr, err)
	}
	end, err := c.readLine(0)
	if err != nil {
		return nil, false, err
	}
	if string(end) != "END" {
		return nil, false, fmt.Errorf("%w: %s sent %q after an item, want END", ErrProtocol, c.addr, end)
	}
	return data, true, nil
}

// ReadConfirm reads the reply to a confirm: END, or ERROR when the
// connection holds fewer open reads than confirmed (a bug on one side),
// which is returned as ErrProtocol.
func (c *Conn) ReadConfirm(queue string, n int) error {
	line, err := c.readLine(0)
	if err != nil {
		return err
	}
	if string(line) != "END" {
		return fmt.Errorf("%w: %s answered %q to confirm %s %d", ErrProtocol, c.addr, line, queue, n)
	}
	return nil
}

// ReadMonitor reads the stream a monitor produces: VALUE items, each an
// open read on this connection, then END. onItem is called for each item
// in order, with a slice it may keep and, for an item over
// Options.MaxItemSize, nil data and the item's size. It returns the number
// of items read. seconds is the monitor's wait, which the read deadline
// allows for.
func (c *Conn) ReadMonitor(queue string, seconds int, onItem func(data []byte, oversize int64)) (int, error) {
	n := 0
	wait := time.Duration(seconds) * time.Second
	for {
		line, err := c.readLine(wait)
		if err != nil {
			return n, err
		}
		if string(line) == "END" {
			return n, nil
		}
		if n == 0 && string(line) == "ERROR" {
			return 0, fmt.Errorf("%w: %s answered ERROR to monitor %s", ErrMonitorUnsupported, c.addr, queue)
		}
		size, err := valueSize(line)
		if err != nil {
			return n, fmt.Errorf("%w: %s answered %q to monitor %s", err, c.addr, line, queue)
		}
		if c.opts.MaxItemSize > 0 && size > c.opts.MaxItemSize {
			if err := c.discard(size + 2); err != nil {
				return n, fmt.Errorf("read item from %s: %w", c.addr, err)
			}
			n++
			onItem(nil, size)
			continue
		}
		data, err := c.readData(size)
		if err != nil {
			return n, err
		}
		n++
		onItem(data, 0)
	}
}

// readData reads an item's size bytes of data and its CRLF into a new
// slice (one allocation), returning the data.
func (c *Conn) readData(size int64) ([]byte, error) {
	if c.opts.Timeout > 0 {
		if err := c.nc.SetReadDeadline(time.Now().Add(c.opts.Timeout)); err != nil {
			return nil, err
		}
	}
	data := make([]byte, size+2)
	if _, err := io.ReadFull(c.r, data); err != nil {
		return nil, fmt.Errorf("read item from %s: %w", c.addr, err)
	}
	if data[size] != '\r' || data[size+1] != '\n' {
		return nil, fmt.Errorf("%w: item from %s not followed by CRLF", ErrProtocol, c.addr)
	}
	return data[:size:size], nil
}

// discard reads past n bytes, renewing the read deadline as data flows.
func (c *Conn) discard(n int64) error {
	for n > 0 {
		if c.opts.Timeout > 0 {
			if err := c.nc.SetReadDeadline(time.Now().Add(c.opts.Timeout)); err != nil {
				return err
			}
		}
		step := int(min(n, 1<<20))
		k, err := c.r.Discard(step)
		n -= int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}

// errNotValue: the line is not a VALUE line at all.
var errNotValue = fmt.Errorf("%w: not a VALUE line", ErrProtocol)

// valueSize parses `VALUE <key> <flags> <bytes> [...]` and returns bytes,
// without allocating.
func valueSize(line []byte) (int64, error) {
	rest, ok := bytes.CutPrefix(line, []byte("VALUE "))
	if !ok {
		return 0, errNotValue
	}
	var num []byte // the third field
	fields, start := 0, -1
	for i := 0; i <= len(rest) && num == nil; i++ {
		if i < len(rest) && rest[i] != ' ' && rest[i] != '\t' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			if fields++; fields == 3 {
				num = rest[start:i]
			}
			start = -1
		}
	}
	if num == nil {
		return 0, errNotValue
	}
	var size int64
	for _, d := range num {
		if d < '0' || d > '9' || size > maxValueLen {
			return 0, fmt.Errorf("%w: bad item length", ErrProtocol)
		}
		size = size*10 + int64(d-'0')
	}
	if size > maxValueLen {
		return 0, fmt.Errorf("%w: bad item length", ErrProtocol)
	}
	return size, nil
}
