// The queue and server admin commands of the text protocol: delete,
// flush, flush_expired, status, shutdown, dump_config. (stats.go has stats
// and dump_stats; http.go the HTTP admin endpoint.)

package queued

import (
	"context"
	"errors"
	"time"

	"github.com/kpush/kpush/internal/queuename"
)

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
	if !queuename.Valid(cmd.Args[0]) {
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
	exp := q.sweepExpired(0, nowMS())
	if len(exp) == 0 {
		return 0
	}
	return int64(c.s.expire(q, exp))
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

func (s *Server) requestShutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		s.log.Error("shutdown", "err", err)
	}
}

func (c *conn) dumpConfig() {
	qs := c.s.queueList()
	names := make([]string, len(qs))
	for i, q := range qs {
		names[i] = q.name
	}
	// Kestrel's dump_config rendering of each queue's effective settings
	// (Config.DumpQueues, config.go).
	_ = c.s.config().DumpQueues(c.writer(), names)
	c.write(rEnd)
}
