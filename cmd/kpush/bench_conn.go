package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kpush/kpush/internal/kestrel"
)

// benchConn is one client connection; it is owned by one goroutine.
type benchConn struct {
	cfg                            *benchConfig
	conn                           *kestrel.Conn
	key                            string // queue (kestrel) or key (memcached)
	payload                        []byte
	getOpts                        string    // "" or, in reliable mode, "/close/open"
	next                           benchKind // alternating loops: 0 for a set next, 1 for a get
	hist                           [numKinds]latencyHist
	ops                            [numKinds]int64
	hits, misses, rejected, errors int64
	measuring                      *atomic.Bool // nil: always; else record only while true (after --warmup)
}

func dialBench(ctx context.Context, cfg *benchConfig, i int, big bool) (*benchConn, error) {
	// No Timeout: the connection's deadline is set once per group of
	// requests (cfg.Timeout), not per reply, which would be part of what
	// is measured.
	conn, err := kestrel.Dial(ctx, cfg.Addr, kestrel.Options{ReadBuffer: 64 << 10, WriteBuffer: 64 << 10})
	if err != nil {
		return nil, err
	}
	key := cfg.queueName(i)
	switch {
	case big:
		key = cfg.Queue + "_big"
	case cfg.Target == "memcached":
		key = fmt.Sprintf("%s_%d", cfg.Queue, i)
	}
	size := cfg.Size
	if big {
		size = cfg.BigSize
	}
	getOpts := ""
	if cfg.Mode == "reliable" && !big {
		getOpts = "/close/open"
	}
	return &benchConn{
		cfg:     cfg,
		conn:    conn,
		key:     key,
		payload: bytes.Repeat([]byte{'x'}, size),
		getOpts: getOpts,
	}, nil
}

// kindFor returns the kind of the connection's next request.
func (c *benchConn) kindFor(big bool) benchKind {
	if big {
		k := kindBigSet + c.next
		c.next = 1 - c.next
		return k
	}
	switch c.cfg.Mode {
	case "set":
		return kindSet
	case "get", "reliable":
		return kindGet
	}
	k := c.next
	c.next = 1 - c.next
	return k
}

// batch sends the requests of kinds, Pipeline at a time: each group is
// written and flushed at once, then its replies are read, each reply's
// latency counted from the flush, or from scheduled if that is earlier
// (open loop: a request sent late because the server was slow is charged
// for the wait, so slow replies are not hidden by sending less;
// "coordinated omission").
func (c *benchConn) batch(kinds []benchKind, scheduled time.Time) error {
	for len(kinds) > 0 {
		n := min(len(kinds), c.cfg.Pipeline)
		if err := c.group(kinds[:n], scheduled); err != nil {
			return err
		}
		kinds = kinds[n:]
	}
	return nil
}

func (c *benchConn) group(kinds []benchKind, scheduled time.Time) error {
	for _, k := range kinds {
		if k == kindGet || k == kindBigGet {
			c.conn.Get(c.key, c.getOpts)
		} else {
			c.conn.Set(c.key, 0, c.payload)
		}
	}
	if err := c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout)); err != nil {
		return err
	}
	start := time.Now()
	if !scheduled.IsZero() && scheduled.Before(start) {
		start = scheduled
	}
	if err := c.conn.Flush(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	for _, k := range kinds {
		out, err := c.readReply(k)
		if err != nil {
			return err
		}
		if c.measuring == nil || c.measuring.Load() {
			c.hist[k].record(time.Since(start))
			c.ops[k]++
			c.count(k, out)
		}
	}
	return nil
}

// replyOutcome is what a reply said, for the counters.
type replyOutcome int

const (
	outStored   replyOutcome = iota // STORED, or a get of a big item
	outRejected                     // NOT_STORED
	outError                        // ERROR, CLIENT_ERROR, SERVER_ERROR, anything unexpected
	outHit                          // a get that returned an item
	outMiss                         // a get that found nothing
)

func (c *benchConn) count(k benchKind, out replyOutcome) {
	switch out {
	case outRejected:
		c.rejected++
	case outError:
		c.errors++
	case outHit:
		if k == kindGet {
			c.hits++
		}
	case outMiss:
		if k == kindGet {
			c.misses++
		}
	}
}

// readReply reads the reply to one request of kind k; an error means the
// connection can no longer be read in step with its requests. An error
// reply (ERROR, CLIENT_ERROR, SERVER_ERROR) is counted, and the run goes on.
func (c *benchConn) readReply(k benchKind) (replyOutcome, error) {
	var re *kestrel.ReplyError
	if k == kindSet || k == kindBigSet {
		stored, err := c.conn.ReadStored()
		switch {
		case err == nil && stored:
			return outStored, nil
		case err == nil:
			return outRejected, nil
		case errors.As(err, &re):
			return outError, nil
		}
		return outError, err
	}
	_, hit, err := c.conn.ReadValue(false)
	switch {
	case err == nil && hit:
		return outHit, nil
	case err == nil:
		return outMiss, nil
	case errors.As(err, &re):
		return outError, nil
	}
	return outError, err
}

// simple sends one request line outside the measurement and returns its
// reply line (for flush and the last close).
func (c *benchConn) simple(req string) (string, error) {
	if err := c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout)); err != nil {
		return "", err
	}
	c.conn.Command(req)
	if err := c.conn.Flush(); err != nil {
		return "", fmt.Errorf("send: %w", err)
	}
	line, err := c.conn.ReadLine()
	return string(line), err
}

// fill puts n items on the connection's queue (or its key), pipelined,
// unmeasured.
func (c *benchConn) fill(n int64) error {
	const depth = 64
	for n > 0 {
		b := min(n, depth)
		for range b {
			c.conn.Set(c.key, 0, c.payload)
		}
		if err := c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout)); err != nil {
			return err
		}
		if err := c.conn.Flush(); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
		for range b {
			stored, err := c.conn.ReadStored()
			if err == nil && !stored {
				err = fmt.Errorf("server replied NOT_STORED")
			}
			if err != nil {
				return fmt.Errorf("fill: set %s: %w", c.key, err)
			}
		}
		n -= b
	}
	return nil
}
