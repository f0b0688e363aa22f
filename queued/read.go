// The read commands: get (and its /open /close /abort /peek /t= options),
// monitor and confirm, and the wait for an item.

package queued

import (
	"errors"
	"net"
	"time"
)

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
		q.abortOpen(c.id, false)
		c.write(rEnd)
		return true
	}
	if o.close {
		removed, _ := q.closeOpen(c.id, 1)
		c.awaitBeforeReply(removed)
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
		held = q.openCountOf(c.id)
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
		e, ok, expired, removed, err := q.take(c.id, mode, w, front)
		c.awaitBeforeReply(removed)
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
	removed, ok := q.closeOpen(c.id, int(n))
	if !ok {
		c.write(rError)
		return true
	}
	c.awaitBeforeReply(removed)
	c.write(rEnd)
	return true
}
