package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// ErrProtocol is wrapped by every error caused by a reply the consumer did
// not expect: the server is not Kestrel-compatible, or the stream is out of
// step. The connection is dropped (which returns its open reads).
var ErrProtocol = errors.New("kestrel protocol error")

// ErrMonitorUnsupported: the server answered ERROR to `monitor`, which the
// worker needs (kpush queued and Kestrel 2.x have it; Kestrel 1.x and
// memcached do not).
var ErrMonitorUnsupported = errors.New("server does not support monitor/confirm (use kpush queued or Kestrel 2.x)")

// maxItemSize bounds the VALUE the consumer keeps in memory: a push message
// is its payload (at most 5 KiB) plus ~70 bytes per token, so 16 MiB is a
// message to about 200,000 devices. A larger item is read past and handed
// on as an oversize item, to be dead-lettered, so it can neither exhaust
// memory nor come back forever as a poison pill.
const maxItemSize = 16 << 20

// maxValueLen is the longest VALUE length believed at all; beyond it the
// stream is taken as corrupt.
const maxValueLen = 1 << 40

// kconn is one consumer connection to a Kestrel-compatible server. It is
// owned by one fetch loop goroutine and is not safe for concurrent use: a
// reliable read belongs to the connection that opened it, so the consumer
// never shares or pools it.
type kconn struct {
	addr string
	nc   net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	// ioTimeout bounds every single read or write beyond the time the
	// server is allowed to wait by protocol (monitor seconds).
	ioTimeout time.Duration
}

// dialKestrel connects to addr. The context bounds the dial only.
func dialKestrel(ctx context.Context, addr string, ioTimeout time.Duration, resolver *net.Resolver) (*kconn, error) {
	d := net.Dialer{KeepAlive: 15 * time.Second, Resolver: resolver}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial queued server %s: %w", addr, err)
	}
	return &kconn{
		addr:      addr,
		nc:        nc,
		r:         bufio.NewReaderSize(nc, 64<<10),
		w:         bufio.NewWriterSize(nc, 4<<10),
		ioTimeout: ioTimeout,
	}, nil
}

// Close drops the connection; the server returns every read it held open
// to the head of its queue.
func (c *kconn) Close() error { return c.nc.Close() }

func (c *kconn) readLine(extra time.Duration) ([]byte, error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(c.ioTimeout + extra)); err != nil {
		return nil, err
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

func (c *kconn) flush() error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.ioTimeout)); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("write to %s: %w", c.addr, err)
	}
	return nil
}

// queueConfirm buffers `confirm <queue> <n>`; its reply is read by
// readConfirm after the next flush.
func (c *kconn) queueConfirm(queue string, n int) {
	fmt.Fprintf(c.w, "confirm %s %d\r\n", queue, n)
}

// readConfirm reads the reply to a confirm: END, or ERROR when the
// connection holds fewer open reads than confirmed (a bug on one side).
func (c *kconn) readConfirm(queue string, n int) error {
	line, err := c.readLine(0)
	if err != nil {
		return err
	}
	if string(line) != "END" {
		return fmt.Errorf("%w: %s answered %q to confirm %s %d", ErrProtocol, c.addr, line, queue, n)
	}
	return nil
}

// queueMonitor buffers `monitor <queue> <seconds> <max>`.
func (c *kconn) queueMonitor(queue string, seconds, max int) {
	fmt.Fprintf(c.w, "monitor %s %d %d\r\n", queue, seconds, max)
}

// readMonitor reads the stream a monitor produces: VALUE items, each an
// open read on this connection, then END. onItem is called for each item
// in order, with a slice it may keep and, for an item over maxItemSize,
// nil data and the item's size. It returns the number of items read.
// seconds is the monitor's wait, which the read deadline allows for.
func (c *kconn) readMonitor(queue string, seconds int, onItem func(data []byte, oversize int64)) (int, error) {
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
		size, err := parseValueLine(line)
		if err != nil {
			return n, fmt.Errorf("%w: %s answered %q to monitor %s", err, c.addr, line, queue)
		}
		if err := c.nc.SetReadDeadline(time.Now().Add(c.ioTimeout)); err != nil {
			return n, err
		}
		if size > maxItemSize {
			if err := c.discard(size + 2); err != nil {
				return n, fmt.Errorf("read item from %s: %w", c.addr, err)
			}
			n++
			onItem(nil, size)
			continue
		}
		data := make([]byte, size+2)
		if _, err := io.ReadFull(c.r, data); err != nil {
			return n, fmt.Errorf("read item from %s: %w", c.addr, err)
		}
		if data[size] != '\r' || data[size+1] != '\n' {
			return n, fmt.Errorf("%w: item from %s not followed by CRLF", ErrProtocol, c.addr)
		}
		n++
		onItem(data[:size:size], 0)
	}
}

// parseValueLine parses `VALUE <key> <flags> <bytes>` and returns bytes.
func parseValueLine(line []byte) (int64, error) {
	fields := strings.Fields(string(line))
	if len(fields) < 4 || fields[0] != "VALUE" {
		return 0, ErrProtocol
	}
	size, err := strconv.ParseInt(fields[3], 10, 64)
	if err != nil || size < 0 || size > maxValueLen {
		return 0, fmt.Errorf("%w: bad item length", ErrProtocol)
	}
	return size, nil
}

// discard reads past n bytes, renewing the read deadline as data flows.
func (c *kconn) discard(n int64) error {
	for n > 0 {
		if err := c.nc.SetReadDeadline(time.Now().Add(c.ioTimeout)); err != nil {
			return err
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

// dumpConfig sends dump_config and returns its lines up to END.
func (c *kconn) dumpConfig() ([]string, error) {
	c.w.WriteString("dump_config\r\n")
	if err := c.flush(); err != nil {
		return nil, err
	}
	var lines []string
	for {
		line, err := c.readLine(0)
		if err != nil {
			return nil, err
		}
		s := string(line)
		if s == "END" {
			return lines, nil
		}
		if s == "ERROR" && len(lines) == 0 {
			return nil, fmt.Errorf("%w: %s does not know dump_config", ErrProtocol, c.addr)
		}
		lines = append(lines, s)
	}
}

// touchQueue makes the server create queue (a queue comes into being the
// first time a command names it) without taking anything from it, so
// dump_config lists its effective settings.
func (c *kconn) touchQueue(queue string) error {
	fmt.Fprintf(c.w, "get %s/peek\r\n", queue)
	if err := c.flush(); err != nil {
		return err
	}
	for {
		line, err := c.readLine(0)
		if err != nil {
			return err
		}
		if string(line) == "END" {
			return nil
		}
		size, err := parseValueLine(line)
		if err != nil {
			return fmt.Errorf("%w: %s answered %q to get %s/peek", err, c.addr, line, queue)
		}
		if err := c.discard(size + 2); err != nil {
			return fmt.Errorf("read from %s: %w", c.addr, err)
		}
	}
}

// expireTarget finds, in dump_config output, the expire_to_queue of the
// block for queue. It accepts our snake_case keys and Kestrel's camelCase
// (expireToQueue) and block headers `queue 'name' {` or `name {`.
func expireTarget(lines []string, queue string) (target string, found bool) {
	in := false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasSuffix(t, "{") {
			head := strings.TrimSpace(strings.TrimSuffix(t, "{"))
			head = strings.TrimPrefix(head, "queue ")
			head = strings.Trim(strings.TrimSpace(head), `'"`)
			in = head == queue
			if in {
				found = true
			}
			continue
		}
		if t == "}" {
			in = false
			continue
		}
		if !in {
			continue
		}
		key, val, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		if key == "expire_to_queue" || key == "expireToQueue" {
			val = strings.Trim(strings.TrimSpace(val), `'"`)
			// Kestrel prints Scala Options as Some(x) / None.
			if v, ok := strings.CutPrefix(val, "Some("); ok {
				val = strings.TrimSuffix(v, ")")
			}
			if val == "None" || val == "none" || val == "(none)" {
				val = ""
			}
			target = val
		}
	}
	return target, found
}
