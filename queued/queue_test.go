package queued

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpush/kpush/queued/journal"
)

func TestExpiry(t *testing.T) {
	s, addr := startServer(t, func(c *Config) {
		c.ExpirationTimerFrequency = 20 * time.Millisecond
		c.Queues["delayed"] = QueueConfig{Journal: true, ExpireToQueue: "work", MaxMemorySize: 1 << 20}
		c.Queues["capped"] = QueueConfig{Journal: true, MaxAge: time.Millisecond, MaxMemorySize: 1 << 20}
		c.Queues["capped1h"] = QueueConfig{Journal: true, MaxAge: time.Hour, MaxMemorySize: 1 << 20}
		// Every item of this one goes straight to read-behind.
		c.Queues["cappedrb"] = QueueConfig{Journal: true, MaxAge: time.Millisecond, MaxMemorySize: 10}
		// A delay queue whose target keeps every item in read-behind.
		c.Queues["delayrb"] = QueueConfig{Journal: true, ExpireToQueue: "workrb", MaxMemorySize: 1 << 20}
		c.Queues["workrb"] = QueueConfig{Journal: true, MaxMemorySize: 10}
	})
	c := dial(t, addr)
	t.Run("absolute time in the past is dropped at the head", func(t *testing.T) {
		c.do("set e1 0 1000000 1\r\nx\r\nset e1 0 0 1\r\ny\r\n", "STORED\r\nSTORED\r\n")
		c.do("get e1\r\n", "VALUE e1 0 1\r\ny\r\nEND\r\n")
		if st := queueStat(s, "e1"); st.ExpiredItems != 1 {
			t.Fatalf("expired_items = %d, want 1", st.ExpiredItems)
		}
	})
	t.Run("absolute time in the future is kept", func(t *testing.T) {
		c.do(fmt.Sprintf("set e5 0 %d 1\r\nx\r\nget e5\r\n", time.Now().Unix()+3600), "STORED\r\nVALUE e5 0 1\r\nx\r\nEND\r\n")
	})
	t.Run("relative expiry in the future is kept", func(t *testing.T) {
		c.do("set e2 0 3600 1\r\nx\r\nget e2\r\n", "STORED\r\nVALUE e2 0 1\r\nx\r\nEND\r\n")
	})
	t.Run("huge absolute expiry is kept", func(t *testing.T) {
		c.do("set e4 0 9223372036854775807 1\r\nx\r\nget e4\r\n", "STORED\r\nVALUE e4 0 1\r\nx\r\nEND\r\n")
	})
	t.Run("flush_expired counts", func(t *testing.T) {
		// On a server whose sweeper does not run during the test.
		_, addr := startServer(t, func(c *Config) { c.ExpirationTimerFrequency = time.Hour })
		c := dial(t, addr)
		c.do("set e3 0 1000000 1\r\na\r\nset e3 0 1000000 1\r\nb\r\nset e3 0 0 1\r\nc\r\n", "STORED\r\nSTORED\r\nSTORED\r\n")
		c.do("flush_expired e3\r\n", "2\r\n")
		c.do("get e3\r\n", "VALUE e3 0 1\r\nc\r\nEND\r\n")
	})
	t.Run("expiration_timer_frequency 0 sweeps at the default", func(t *testing.T) {
		s, addr := startServer(t, func(c *Config) {
			c.ExpirationTimerFrequency = 0
			c.Queues["capped0"] = QueueConfig{Journal: true, MaxAge: time.Millisecond, MaxMemorySize: 1 << 20}
		})
		dial(t, addr).do("set capped0 0 0 1\r\na\r\n", "STORED\r\n")
		waitFor(t, "sweep", func() bool { return queueStat(s, "capped0").ExpiredItems == 1 })
	})
	t.Run("an item moved into a queue in read-behind can be read", func(t *testing.T) {
		c.do("set delayrb 0 -1 1\r\nm\r\n", "STORED\r\n")
		c.do("get workrb/t=10000\r\nget workrb\r\n", "VALUE workrb 0 1\r\nm\r\nEND\r\nEND\r\n")
		if st := queueStat(s, "workrb"); st.Items != 0 || st.TotalItems != 1 {
			t.Fatalf("workrb after the get: %+v", st)
		}
	})
	t.Run("max_age caps", func(t *testing.T) {
		c.do("set capped 0 0 1\r\na\r\n", "STORED\r\n")
		waitFor(t, "sweep", func() bool { return queueStat(s, "capped").ExpiredItems == 1 })
		c.do("get capped\r\n", "END\r\n")
	})
	t.Run("max_age does not lengthen a shorter expiry", func(t *testing.T) {
		c.do("set capped1h 0 -1 1\r\na\r\nset capped1h 0 0 1\r\nb\r\nget capped1h\r\n", "STORED\r\nSTORED\r\nVALUE capped1h 0 1\r\nb\r\nEND\r\n")
	})
	t.Run("the sweep reaches items in read-behind", func(t *testing.T) {
		c.do("set cappedrb 0 0 1\r\na\r\nset cappedrb 0 0 1\r\nb\r\n", "STORED\r\nSTORED\r\n")
		// The sweep may already have run: the items are gone or behind.
		if st := queueStat(s, "cappedrb"); st.MemItems != 0 || st.Items+st.ExpiredItems != 2 {
			t.Fatalf("after the sets: mem_items=%d items=%d expired_items=%d, want none in memory", st.MemItems, st.Items, st.ExpiredItems)
		}
		waitFor(t, "sweep", func() bool { return queueStat(s, "cappedrb").ExpiredItems == 2 })
		if st := queueStat(s, "cappedrb"); st.Items != 0 {
			t.Fatalf("after the sweep: items=%d", st.Items)
		}
	})
	t.Run("a long delay does not hold back a short one", func(t *testing.T) {
		c.do("set delayed 0 3600 4\r\nlong\r\nset delayed 0 1 5\r\nshort\r\nset delayed 0 3600 4\r\nlate\r\n", "STORED\r\nSTORED\r\nSTORED\r\n")
		c.do("get work/t=10000\r\n", "VALUE work 0 5\r\nshort\r\nEND\r\n")
		// The items around the moved one stay, in order.
		c.do("get delayed/peek\r\n", "VALUE delayed 0 4\r\nlong\r\nEND\r\n")
		c.do("get delayed\r\nget delayed\r\nget delayed\r\n", "VALUE delayed 0 4\r\nlong\r\nEND\r\nVALUE delayed 0 4\r\nlate\r\nEND\r\nEND\r\n")
	})
	t.Run("expire_to_queue makes a delay queue", func(t *testing.T) {
		// The item expires 1s from now and is moved into work by the sweep;
		// a blocking get on work is woken by the move.
		before := queueStat(s, "delayed").ExpiredItems // counts the other subtests' moves too
		c.do("set delayed 0 1 5\r\nlater\r\n", "STORED\r\n")
		c.do("get work/t=10000\r\n", "VALUE work 0 5\r\nlater\r\nEND\r\n")
		c.do("get delayed\r\n", "END\r\n")
		if moved := queueStat(s, "delayed").ExpiredItems - before; moved != 1 {
			t.Fatalf("delayed expired_items grew by %d, want 1", moved)
		}
	})
}

// max_expire_sweep bounds how many items one sweep takes out of a queue:
// at the head, and behind it for a delay queue, head items first. The
// sweeps are run here one at a time as sweepLoop runs them (the loop's
// ticker is off), since how many items one tick took cannot be seen from
// outside without timing it.
func TestMaxExpireSweep(t *testing.T) {
	s, addr := startServer(t, func(c *Config) {
		c.ExpirationTimerFrequency = time.Hour
		c.Queues["drip"] = QueueConfig{Journal: true, MaxExpireSweep: 1, MaxMemorySize: 1 << 20}
		c.Queues["slow"] = QueueConfig{Journal: true, ExpireToQueue: "due", MaxExpireSweep: 2, MaxMemorySize: 1 << 20}
		c.Queues["full"] = QueueConfig{Journal: true, ExpireToQueue: "due", MaxMemorySize: 1 << 20}
	})
	sweep := func(t *testing.T, name string) []string {
		t.Helper()
		q := s.queueFor(name, false)
		q.mu.Lock()
		max := q.cfg.MaxExpireSweep
		q.mu.Unlock()
		exp := q.sweepExpired(max, nowMS())
		var got []string
		for _, e := range exp {
			got = append(got, string(e.data))
		}
		if len(exp) > 0 {
			s.expire(q, exp)
		}
		return got
	}
	check := func(t *testing.T, name string, want ...string) {
		t.Helper()
		if got := sweep(t, name); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("sweep of %s took %q, want %q", name, got, want)
		}
	}

	t.Run("at the head", func(t *testing.T) {
		c := dial(t, addr)
		// exptime -1: expired already.
		c.do("set drip 0 -1 1\r\na\r\nset drip 0 -1 1\r\nb\r\nset drip 0 0 1\r\nc\r\n", "STORED\r\nSTORED\r\nSTORED\r\n")
		check(t, "drip", "a")
		check(t, "drip", "b")
		check(t, "drip")
		if st := queueStat(s, "drip"); st.ExpiredItems != 2 || st.Items != 1 {
			t.Fatalf("after the sweeps: expired_items=%d items=%d, want 2 and 1", st.ExpiredItems, st.Items)
		}
		c.do("get drip\r\n", "VALUE drip 0 1\r\nc\r\nEND\r\n")
	})
	t.Run("at the head, then behind it", func(t *testing.T) {
		c := dial(t, addr)
		var req strings.Builder
		for _, it := range []struct{ data, exptime string }{
			{"x1", "-1"}, {"x2", "-1"}, {"x3", "-1"}, {"l1", "3600"}, {"y1", "-1"}, {"l2", "3600"}, {"y2", "-1"},
		} {
			fmt.Fprintf(&req, "set slow 0 %s 2\r\n%s\r\n", it.exptime, it.data)
		}
		c.do(req.String(), strings.Repeat("STORED\r\n", 7))
		check(t, "slow", "x1", "x2")
		check(t, "slow", "x3", "y1")
		check(t, "slow", "y2")
		check(t, "slow")
		if st := queueStat(s, "slow"); st.ExpiredItems != 5 || st.Items != 2 {
			t.Fatalf("after the sweeps: expired_items=%d items=%d, want 5 and 2", st.ExpiredItems, st.Items)
		}
		c.do("get slow\r\nget slow\r\nget slow\r\n", "VALUE slow 0 2\r\nl1\r\nEND\r\nVALUE slow 0 2\r\nl2\r\nEND\r\nEND\r\n")
		var want strings.Builder
		for _, it := range []string{"x1", "x2", "x3", "y1", "y2"} {
			c.send("get due\r\n")
			want.WriteString("VALUE due 0 2\r\n" + it + "\r\nEND\r\n")
		}
		c.expect(want.String())
		c.do("get due\r\n", "END\r\n")
	})
	t.Run("from a full ring", func(t *testing.T) {
		c := dial(t, addr)
		// 16 items fill the in-memory ring's first 16 slots exactly.
		var req, want strings.Builder
		for i := 0; i < 16; i++ {
			exptime, data := "3600", fmt.Sprintf("k%02d", i)
			if i == 7 {
				exptime, data = "-1", "gone"
			}
			fmt.Fprintf(&req, "set full 0 %s %d\r\n%s\r\n", exptime, len(data), data)
			if i != 7 {
				fmt.Fprintf(&want, "VALUE full 0 3\r\n%s\r\nEND\r\n", data)
			}
		}
		c.do(req.String(), strings.Repeat("STORED\r\n", 16))
		check(t, "full", "gone")
		c.do(strings.Repeat("get full\r\n", 16), want.String()+"END\r\n")
		c.do("get due\r\n", "VALUE due 0 4\r\ngone\r\nEND\r\n")
	})
}

// msgLog is a slog handler that keeps the messages of a server's records.
type msgLog struct {
	mu   sync.Mutex
	msgs []string
}

func (h *msgLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *msgLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *msgLog) WithGroup(string) slog.Handler            { return h }
func (h *msgLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.msgs = append(h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}

func (h *msgLog) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// An expired item that expire_to_queue refuses (here: full) stays in its
// queue, still expired, and moves at a later sweep once the target takes
// it: a move never loses an item. The failure is logged once per sweep.
func TestExpireMoveFailureKeepsTheItem(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.ExpirationTimerFrequency = time.Hour
	cfg.Queues["later"] = QueueConfig{Journal: true, ExpireToQueue: "soon", MaxMemorySize: 1 << 20}
	cfg.Queues["soon"] = QueueConfig{Journal: true, MaxItems: 1, MaxMemorySize: 1 << 20}
	log := &msgLog{}
	s, err := NewServer(cfg, slog.New(log))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, serve(t, s))
	const warning = "could not move expired items"
	c.do("set later 0 -1 1\r\na\r\nflush_expired later\r\n", "STORED\r\n1\r\n")
	if n := log.count(warning); n != 0 {
		t.Fatalf("a move that worked logged %q %d times", warning, n)
	}
	c.do("set later 0 -1 1\r\nb\r\nflush_expired later\r\n", "STORED\r\n0\r\n")
	if n := log.count(warning); n != 1 {
		t.Fatalf("a move into a full queue logged %q %d times, want once", warning, n)
	}
	if st := queueStat(s, "later"); st.Items != 1 || st.ExpiredItems != 1 {
		t.Fatalf("later after the refused move: items=%d expired_items=%d, want the item kept and 1 expired (the first)", st.Items, st.ExpiredItems)
	}
	// A read meets the expired item at the head, tries the move again, and
	// finds nothing to hand out. Reads and sweeps retry the move, but the
	// queue warns once a minute, not at each.
	for range 50 {
		c.do("get later\r\n", "END\r\n")
	}
	c.do("flush_expired later\r\n", "0\r\n")
	if n := log.count(warning); n != 1 {
		t.Fatalf("50 reads and a sweep retrying a refused move logged %q %d times, want once", warning, n)
	}
	c.do("get soon\r\n", "VALUE soon 0 1\r\na\r\nEND\r\n")
	c.do("flush_expired later\r\n", "1\r\n")
	c.do("get soon\r\n", "VALUE soon 0 1\r\nb\r\nEND\r\n")
	if st := queueStat(s, "later"); st.Items != 0 || st.ExpiredItems != 2 {
		t.Fatalf("later after the move: items=%d expired_items=%d, want 0 and 2", st.Items, st.ExpiredItems)
	}
	// After a move that worked, the next refusal is reported at once.
	c.do("set soon 0 0 1\r\nx\r\nset later 0 -1 1\r\nc\r\nflush_expired later\r\n", "STORED\r\nSTORED\r\n0\r\n")
	if n := log.count(warning); n != 2 {
		t.Fatalf("a refusal after a successful move: %q logged %d times in all, want 2", warning, n)
	}
}

// NewServer logs the queues it restored from the data directory, and says
// nothing of the kind for an empty one.
func TestRestoreIsLogged(t *testing.T) {
	dir := t.TempDir()
	start := func() (*Server, *msgLog) {
		t.Helper()
		cfg := DefaultConfig()
		cfg.DataDir = dir
		log := &msgLog{}
		s, err := NewServer(cfg, slog.New(log))
		if err != nil {
			t.Fatal(err)
		}
		return s, log
	}
	s, log := start()
	if n := log.count("queues restored"); n != 0 {
		t.Fatalf("an empty data directory: %d \"queues restored\" records", n)
	}
	c := dial(t, serve(t, s))
	c.do("set rs 0 0 1\r\na\r\n", "STORED\r\n")
	c.nc.Close()
	shutdown(t, s)
	s2, log2 := start()
	defer shutdown(t, s2)
	if n := log2.count("queues restored"); n != 1 {
		t.Fatalf("a data directory with a queue: %d \"queues restored\" records, want 1", n)
	}
}

func TestLimits(t *testing.T) {
	s, addr := startServer(t, func(c *Config) {
		c.Queues["few"] = QueueConfig{Journal: true, MaxItems: 2, MaxMemorySize: 1 << 20}
		c.Queues["tiny"] = QueueConfig{Journal: true, MaxSize: 5, MaxMemorySize: 1 << 20}
		c.Queues["ring"] = QueueConfig{Journal: true, MaxItems: 2, DiscardOldWhenFull: true, MaxMemorySize: 1 << 20}
		// Every item goes to read-behind: pipelined sets are counted
		// while their commits are pending.
		c.Queues["fewrb"] = QueueConfig{Journal: true, MaxItems: 2, MaxMemorySize: 10}
		c.Queues["tinyrb"] = QueueConfig{Journal: true, MaxSize: 5, MaxMemorySize: 10}
	})
	c := dial(t, addr)
	c.do("set few 0 0 1\r\na\r\nset few 0 0 1\r\nb\r\nset few 0 0 1\r\nc\r\n", "STORED\r\nSTORED\r\nNOT_STORED\r\n")
	c.do("get few\r\nset few 0 0 1\r\nd\r\n", "VALUE few 0 1\r\na\r\nEND\r\nSTORED\r\n")
	c.do("set fewrb 0 0 1\r\na\r\nset fewrb 0 0 1\r\nb\r\nset fewrb 0 0 1\r\nc\r\n", "STORED\r\nSTORED\r\nNOT_STORED\r\n")
	if st := queueStat(s, "fewrb"); st.Items != 2 || st.MemItems != 0 {
		t.Fatalf("fewrb: items=%d mem_items=%d, want 2 in read-behind", st.Items, st.MemItems)
	}
	c.do("set tinyrb 0 0 3\r\nabc\r\nset tinyrb 0 0 3\r\ndef\r\nset tinyrb 0 0 2\r\nde\r\n", "STORED\r\nNOT_STORED\r\nSTORED\r\n")
	if st := queueStat(s, "tinyrb"); st.Bytes != 5 || st.MemItems != 0 {
		t.Fatalf("tinyrb: bytes=%d mem_items=%d, want 5 in read-behind", st.Bytes, st.MemItems)
	}
	c.do("set tiny 0 0 3\r\nabc\r\nset tiny 0 0 3\r\ndef\r\nset tiny 0 0 2\r\nde\r\n", "STORED\r\nNOT_STORED\r\nSTORED\r\n")
	c.do("set ring 0 0 1\r\n1\r\nset ring 0 0 1\r\n2\r\nset ring 0 0 1\r\n3\r\n", "STORED\r\nSTORED\r\nSTORED\r\n")
	c.do("get ring\r\nget ring\r\nget ring\r\n", "VALUE ring 0 1\r\n2\r\nEND\r\nVALUE ring 0 1\r\n3\r\nEND\r\nEND\r\n")
	if st := queueStat(s, "ring"); st.Discarded != 1 {
		t.Fatalf("discarded = %d, want 1", st.Discarded)
	}
}

func TestFanout(t *testing.T) {
	s, addr := startServer(t, func(c *Config) {
		c.Queues["only"] = QueueConfig{Journal: true, FanoutOnly: true, MaxMemorySize: 1 << 20}
	})
	c := dial(t, addr)
	c.do("set ev 0 0 1\r\n0\r\n", "STORED\r\n") // before the children exist
	c.do("get ev+a\r\nget ev+b\r\n", "END\r\nEND\r\n")
	c.do("set ev 0 0 1\r\n1\r\n", "STORED\r\n")
	c.do("get ev+a\r\nget ev+b\r\n", "VALUE ev+a 0 1\r\n1\r\nEND\r\nVALUE ev+b 0 1\r\n1\r\nEND\r\n")
	c.do("get ev\r\nget ev\r\nget ev\r\n", "VALUE ev 0 1\r\n0\r\nEND\r\nVALUE ev 0 1\r\n1\r\nEND\r\nEND\r\n")

	c.do("get only+x\r\n", "END\r\n")
	c.do("set only 0 0 1\r\nz\r\n", "STORED\r\n")
	c.do("get only\r\nget only+x\r\n", "END\r\nVALUE only+x 0 1\r\nz\r\nEND\r\n")
	if st := queueStat(s, "only"); st.TotalItems != 0 {
		t.Fatalf("fanout_only parent stored %d items", st.TotalItems)
	}
	c.do("delete ev+a\r\nset ev 0 0 1\r\n2\r\n", "DELETED\r\nSTORED\r\n")
	c.do("get ev+b\r\n", "VALUE ev+b 0 1\r\n2\r\nEND\r\n")
}

// TestFanoutChildrenOutliveTheirParent: as in Kestrel, deleting a fanout
// parent (by delete, or by max_queue_age on a fanout_only parent, which
// never holds items) does not cut its children off: the parent created
// again by the next set copies to them.
func TestFanoutChildrenOutliveTheirParent(t *testing.T) {
	s, addr := startServer(t, func(c *Config) {
		c.ExpirationTimerFrequency = time.Hour
		c.Queues["aged"] = QueueConfig{Journal: true, FanoutOnly: true, MaxQueueAge: time.Second, MaxMemorySize: 1 << 20}
	})
	c := dial(t, addr)
	c.do("get ev+b\r\nget ev+a\r\ndelete ev\r\nset ev 0 0 1\r\n1\r\n", "END\r\nEND\r\nDELETED\r\nSTORED\r\n")
	c.do("get ev+a\r\nget ev+b\r\n", "VALUE ev+a 0 1\r\n1\r\nEND\r\nVALUE ev+b 0 1\r\n1\r\nEND\r\n")

	// The child (its parent's settings, max_queue_age too) holds an item,
	// so only the parent expires.
	c.do("get aged+x\r\nset aged 0 0 1\r\ny\r\n", "END\r\nSTORED\r\n")
	s.sweep(time.Now().Add(2 * time.Second))
	if st := c.stats(); st["queue_expires"] != "1" {
		t.Fatalf("queue_expires %s, want the fanout_only parent expired", st["queue_expires"])
	}
	c.do("set aged 0 0 1\r\nz\r\nget aged+x\r\nget aged+x\r\n", "STORED\r\nVALUE aged+x 0 1\r\ny\r\nEND\r\nVALUE aged+x 0 1\r\nz\r\nEND\r\n")
}

// TestFanoutChildCreatedWhileItsParentIsRecreated: a child whose parent is
// deleted and created again while the child is being created ends up the
// new parent's child, once. At "parent-found" the new parent's scan cannot
// see the child yet (linking it to the parent it had found lost it); at
// "child-published" the scan sees it (linking it again doubled every
// copy).
func TestFanoutChildCreatedWhileItsParentIsRecreated(t *testing.T) {
	for _, stage := range []string{"parent-found", "child-published"} {
		t.Run(stage, func(t *testing.T) {
			s, addr := startServer(t, nil)
			c := dial(t, addr)
			c.do("set race 0 0 1\r\n0\r\n", "STORED\r\n")
			recreated := false
			hook := func(at string) {
				if at != stage || recreated {
					return
				}
				recreated = true
				if err := s.deleteQueue("race"); err != nil {
					t.Error(err)
				}
				s.queueFor("race", true)
			}
			s.onStage.Store(&hook)
			defer s.onStage.Store(nil)
			// Called here, not by a connection: the hook runs on this
			// goroutine.
			s.queueFor("race+b", true)
			if !recreated {
				t.Fatalf("the hook never ran at %s", stage)
			}
			c.do("set race 0 0 1\r\n1\r\nget race+b\r\nget race+b\r\nget race\r\n",
				"STORED\r\nVALUE race+b 0 1\r\n1\r\nEND\r\nEND\r\nVALUE race 0 1\r\n1\r\nEND\r\n")
		})
	}
}

func TestMonitorConfirm(t *testing.T) {
	s, addr := startServer(t, nil) // max_open_transactions 1: monitor is bounded by max instead
	c := dial(t, addr)
	for i := 0; i < 5; i++ {
		c.do(fmt.Sprintf("set mon 0 0 1\r\n%d\r\n", i), "STORED\r\n")
	}
	c.do("monitor mon 1 3\r\n", "VALUE mon 0 1\r\n0\r\nVALUE mon 0 1\r\n1\r\nVALUE mon 0 1\r\n2\r\nEND\r\n")
	if st := queueStat(s, "mon"); st.OpenTransactions != 3 {
		t.Fatalf("open_transactions = %d, want 3", st.OpenTransactions)
	}
	c.do("confirm mon 4\r\n", "ERROR\r\n")
	c.do("confirm mon 2\r\n", "END\r\n")
	// The third stays open; dropping the connection returns it to the head.
	c.nc.Close()
	waitFor(t, "open read returned", func() bool { return queueStat(s, "mon").OpenTransactions == 0 })
	c2 := dial(t, addr)
	c2.do("get mon\r\n", "VALUE mon 0 1\r\n2\r\nEND\r\n")

	t.Run("streams items as they arrive", func(t *testing.T) {
		m := dial(t, addr)
		m.send("monitor live 30 2\r\n")
		waitFor(t, "monitor waiting", func() bool { return queueStat(s, "live").Waiters == 1 })
		p := dial(t, addr)
		p.do("set live 0 0 1\r\na\r\n", "STORED\r\n")
		m.expect("VALUE live 0 1\r\na\r\n") // before the monitor ends
		p.do("set live 0 0 1\r\nb\r\n", "STORED\r\n")
		m.expect("VALUE live 0 1\r\nb\r\nEND\r\n")
		m.do("confirm live 2\r\n", "END\r\n")
		if st := queueStat(s, "live"); st.Items != 0 || st.OpenTransactions != 0 {
			t.Fatalf("after confirm: %+v", st)
		}
	})
	t.Run("ends with END after the time", func(t *testing.T) {
		m := dial(t, addr)
		m.do("monitor empty 0\r\n", "END\r\n")
	})
}

func TestReadBehind(t *testing.T) {
	dir := t.TempDir()
	const n, size = 3000, 100
	cfg := func(c *Config) {
		c.DataDir = dir
		c.Defaults.MaxMemorySize = 20 * size
	}
	s, addr := startServer(t, cfg)
	c := dial(t, addr)
	item := func(i int) string { return fmt.Sprintf("%0*d", size, i) }
	var req, want strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&req, "set rb 0 0 %d\r\n%s\r\n", size, item(i))
		want.WriteString("STORED\r\n")
	}
	c.do(req.String(), want.String())
	st := queueStat(s, "rb")
	// In memory: at most max_memory_size, counting each item's overhead.
	if st.Items != n || st.MemBytes+st.MemItems*itemOverhead > 20*size || st.Bytes != n*size {
		t.Fatalf("after fill: items=%d bytes=%d mem_bytes=%d mem_items=%d", st.Items, st.Bytes, st.MemBytes, st.MemItems)
	}
	// Drain half with open reads mixed in (abort returns to the head across
	// the memory boundary), then restart and drain the rest in order.
	for i := 0; i < n/2; i++ {
		if i%100 == 0 {
			c.do("get rb/open\r\n", "VALUE rb 0 100\r\n"+item(i)+"\r\nEND\r\n")
			c.do("get rb/abort\r\n", "END\r\n")
		}
		c.do("get rb\r\n", "VALUE rb 0 100\r\n"+item(i)+"\r\nEND\r\n")
		if st := queueStat(s, "rb"); st.MemBytes+st.MemItems*itemOverhead > 20*size {
			t.Fatalf("refilled: mem_bytes %d, mem_items %d: over the bound", st.MemBytes, st.MemItems)
		}
	}
	c.nc.Close()
	shutdown(t, s)
	// Replay fills memory up to the same bound, overhead counted.
	s2, addr2 := startServer(t, cfg)
	if st := queueStat(s2, "rb"); st.Items != n/2 || st.Bytes != n/2*size || st.MemItems == 0 || st.MemBytes+st.MemItems*itemOverhead > 20*size {
		t.Fatalf("after restart: %+v", st)
	}
	c2 := dial(t, addr2)
	for i := n / 2; i < n; i++ {
		c2.do("get rb\r\n", "VALUE rb 0 100\r\n"+item(i)+"\r\nEND\r\n")
		if st := queueStat(s2, "rb"); st.MemBytes+st.MemItems*itemOverhead > 20*size {
			t.Fatalf("after restart, refilled: mem_bytes %d, mem_items %d: over the bound", st.MemBytes, st.MemItems)
		}
	}
	c2.do("get rb\r\n", "END\r\n")
	// Drained, the queue is out of read-behind: a new item stays in memory.
	c2.do("set rb 0 0 1\r\nz\r\n", "STORED\r\n")
	if st := queueStat(s2, "rb"); st.Items != 1 || st.MemItems != 1 {
		t.Fatalf("a set after draining: items=%d mem_items=%d, want 1 in memory", st.Items, st.MemItems)
	}
}

// A restart replays the head of a queue into memory in batches of up to
// 1 MiB, each no bigger than the room left under max_memory_size (each
// item's overhead counted), so the data in memory stays within the bound.
func TestReplayStaysUnderMaxMemorySize(t *testing.T) {
	dir := t.TempDir()
	const n, size, bound = 5000, 1000, 5 << 19 // 5 MB of items, a 2.5 MiB bound
	cfg := func(c *Config) {
		c.DataDir = dir
		c.Defaults.MaxMemorySize = bound
	}
	s, addr := startServer(t, cfg)
	c := dial(t, addr)
	item := func(i int) string { return fmt.Sprintf("%0*d", size, i) }
	var req strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&req, "set rp 0 0 %d\r\n%s\r\n", size, item(i))
	}
	c.do(req.String(), strings.Repeat("STORED\r\n", n))
	c.nc.Close()
	shutdown(t, s)
	s2, addr2 := startServer(t, cfg)
	st := queueStat(s2, "rp")
	if st.Items != n || st.MemBytes > bound || st.MemItems == n {
		t.Fatalf("after restart: items=%d mem_items=%d mem_bytes=%d, want %d items and at most %d bytes in memory", st.Items, st.MemItems, st.MemBytes, n, bound)
	}
	c2 := dial(t, addr2)
	for _, i := range []int{0, 1} {
		c2.do("get rp\r\n", fmt.Sprintf("VALUE rp 0 %d\r\n%s\r\nEND\r\n", size, item(i)))
	}

	t.Run("a batch that fills the bound exactly", func(t *testing.T) {
		// 4096 items (one batch) of 100 bytes cost the bound exactly, with
		// their overhead: the replay stops there.
		dir := t.TempDir()
		const n, size, bound = 5000, 100, 4096 * (100 + itemOverhead)
		cfg := func(c *Config) {
			c.DataDir = dir
			c.Defaults.MaxMemorySize = bound
		}
		s, addr := startServer(t, cfg)
		c := dial(t, addr)
		c.do(strings.Repeat("set rx 0 0 100\r\n"+strings.Repeat("r", size)+"\r\n", n), strings.Repeat("STORED\r\n", n))
		// The set that fills the bound exactly is kept in memory too.
		if st := queueStat(s, "rx"); st.MemItems != 4096 {
			t.Fatalf("after the sets: mem_items=%d, want 4096", st.MemItems)
		}
		c.nc.Close()
		shutdown(t, s)
		s2, _ := startServer(t, cfg)
		if st := queueStat(s2, "rx"); st.Items != n || st.MemItems != 4096 {
			t.Fatalf("after restart: items=%d mem_items=%d, want %d and 4096", st.Items, st.MemItems, n)
		}
	})
}

func TestFlushAndDeleteDuringReadBehind(t *testing.T) {
	s, addr := startServer(t, func(c *Config) { c.Defaults.MaxMemorySize = 10 })
	c := dial(t, addr)
	for i := 0; i < 50; i++ {
		c.do("set fb 0 0 5\r\nhello\r\n", "STORED\r\n")
	}
	c.do("flush fb\r\nget fb\r\n", "END\r\nEND\r\n")
	c.do("set fb 0 0 3\r\nnew\r\nget fb\r\n", "STORED\r\nVALUE fb 0 3\r\nnew\r\nEND\r\n")
	if st := queueStat(s, "fb"); st.Items != 0 || st.TotalFlushes != 1 {
		t.Fatalf("%+v", st)
	}
	c.do("flush_all\r\n", "Flushed all queues.\r\n")
}

func TestOpenTransactionTimeout(t *testing.T) {
	s, addr := startServer(t, func(c *Config) {
		c.ExpirationTimerFrequency = 10 * time.Millisecond
		c.Defaults.OpenTransactionTimeout = 50 * time.Millisecond
	})
	c := dial(t, addr)
	c.do("set ot 0 0 1\r\na\r\nget ot/open\r\n", "STORED\r\nVALUE ot 0 1\r\na\r\nEND\r\n")
	waitFor(t, "open read timed out", func() bool { return queueStat(s, "ot").OpenTransactions == 0 })
	c2 := dial(t, addr)
	c2.do("get ot\r\n", "VALUE ot 0 1\r\na\r\nEND\r\n")
	// The first connection's close now has nothing to settle.
	c.do("get ot/close\r\n", "END\r\n")

	t.Run("a read younger than the timeout stays open", func(t *testing.T) {
		s, addr := startServer(t, func(c *Config) {
			c.ExpirationTimerFrequency = 10 * time.Millisecond
			c.Defaults.OpenTransactionTimeout = time.Hour
			c.Queues["witness"] = QueueConfig{Journal: true, MaxAge: time.Millisecond, MaxMemorySize: 1 << 20}
		})
		c := dial(t, addr)
		c.do("set held 0 0 1\r\na\r\nget held/open\r\n", "STORED\r\nVALUE held 0 1\r\na\r\nEND\r\n")
		// A sweep that expires the witness (created after the open read)
		// has also looked at held, which sorts before it.
		c.do("set witness 0 0 1\r\nw\r\n", "STORED\r\n")
		waitFor(t, "sweep", func() bool { return queueStat(s, "witness").ExpiredItems == 1 })
		if st := queueStat(s, "held"); st.OpenTransactions != 1 || st.CanceledTransactions != 0 || st.Items != 0 {
			t.Fatalf("after a sweep: %+v, want the read still open", st)
		}
		c.do("get held/close\r\n", "END\r\n")
		if st := queueStat(s, "held"); st.OpenTransactions != 0 || st.Items != 0 {
			t.Fatalf("after close: %+v", st)
		}
	})
}

func TestTotalMemorySize(t *testing.T) {
	const bound = 64 * (100 + itemOverhead)
	s, addr := startServer(t, func(c *Config) {
		c.TotalMemorySize = bound
		c.Defaults.MaxMemorySize = 1 << 20
	})
	c := dial(t, addr)
	item := strings.Repeat("m", 100)
	for i := 0; i < 100; i++ {
		c.do("set ma 0 0 100\r\n"+item+"\r\nset mb 0 0 100\r\n"+item+"\r\n", "STORED\r\nSTORED\r\n")
	}
	a, b := queueStat(s, "ma"), queueStat(s, "mb")
	if cost := a.MemBytes + b.MemBytes + (a.MemItems+b.MemItems)*itemOverhead; cost > bound+100+itemOverhead {
		t.Fatalf("in memory: %d bytes (%d+%d items), bound %d", cost, a.MemItems, b.MemItems, bound)
	}
	// The item that fills the bound exactly is in memory too.
	if a.MemItems+b.MemItems != 64 {
		t.Fatalf("%d+%d items in memory, want the 64 that fill the bound", a.MemItems, b.MemItems)
	}
	if a.Items != 100 || b.Items != 100 {
		t.Fatalf("items %d and %d, want 100 each", a.Items, b.Items)
	}
	for i := 0; i < 100; i++ {
		c.do("get ma\r\nget mb\r\n", "VALUE ma 0 100\r\n"+item+"\r\nEND\r\nVALUE mb 0 100\r\n"+item+"\r\nEND\r\n")
	}
	// Items that left memory free their whole cost: after many more go
	// through, the bound still has room for the same 64.
	for i := 0; i < 300; i++ {
		c.do("set ma 0 0 100\r\n"+item+"\r\nget ma\r\n", "STORED\r\nVALUE ma 0 100\r\n"+item+"\r\nEND\r\n")
	}
	for i := 0; i < 100; i++ {
		c.do("set mb 0 0 100\r\n"+item+"\r\n", "STORED\r\n")
	}
	if st := queueStat(s, "mb"); st.MemItems != 64 {
		t.Fatalf("after 300 items went through ma: %d items of mb in memory, want 64", st.MemItems)
	}
}

// Replay after a restart fills memory up to total_memory_size too, not
// one batch past it; what does not fit is read back in order later.
func TestTotalMemorySizeAfterRestart(t *testing.T) {
	const bound = 64 * (100 + itemOverhead)
	dir := t.TempDir()
	cfg := func(c *Config) {
		c.DataDir = dir
		c.TotalMemorySize = bound
		c.Defaults.MaxMemorySize = 1 << 20
	}
	s, addr := startServer(t, cfg)
	c := dial(t, addr)
	item := func(q string, i int) string { return fmt.Sprintf("%s%098d", q, i) }
	for i := 0; i < 100; i++ {
		c.do("set ma 0 0 100\r\n"+item("ma", i)+"\r\nset mb 0 0 100\r\n"+item("mb", i)+"\r\n", "STORED\r\nSTORED\r\n")
	}
	c.nc.Close()
	shutdown(t, s)
	s2, addr2 := startServer(t, cfg)
	a, b := queueStat(s2, "ma"), queueStat(s2, "mb")
	if cost := s2.memCost.Load(); cost > bound || a.Items != 100 || b.Items != 100 || a.MemItems+b.MemItems == 0 {
		t.Fatalf("after restart: %d in memory (bound %d), ma %+v, mb %+v", cost, bound, a, b)
	}
	c2 := dial(t, addr2)
	for i := 0; i < 100; i++ {
		c2.do("get ma\r\nget mb\r\n", "VALUE ma 0 100\r\n"+item("ma", i)+"\r\nEND\r\nVALUE mb 0 100\r\n"+item("mb", i)+"\r\nEND\r\n")
		// A refill takes half the room left, and at least one item.
		if cost := s2.memCost.Load(); cost > bound+100+itemOverhead {
			t.Fatalf("refilled: %d in memory, bound %d", cost, bound)
		}
	}
}

// With both memory bounds off (max_memory_size and total_memory_size 0,
// "no limit"), a journaled queue keeps every item in memory: none go to
// read-behind when set, and a restart replays them all into memory.
func TestNoMemoryBound(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *Config) {
		c.DataDir = dir
		c.TotalMemorySize = 0
		c.Defaults.MaxMemorySize = 0
	}
	const n = 5000 // more than one replay batch (4096 items)
	s, addr := startServer(t, cfg)
	c := dial(t, addr)
	c.do(strings.Repeat("set nb 0 0 5\r\nhello\r\n", n), strings.Repeat("STORED\r\n", n))
	if st := queueStat(s, "nb"); st.Items != n || st.MemItems != n || st.MemBytes != 5*n {
		t.Fatalf("after the sets: items=%d mem_items=%d mem_bytes=%d, want %d in memory", st.Items, st.MemItems, st.MemBytes, n)
	}
	c.nc.Close()
	shutdown(t, s)
	s2, addr2 := startServer(t, cfg)
	if st := queueStat(s2, "nb"); st.Items != n || st.MemItems != n || st.MemBytes != 5*n {
		t.Fatalf("after restart: items=%d mem_items=%d mem_bytes=%d, want %d in memory", st.Items, st.MemItems, st.MemBytes, n)
	}
	// All of it was replayed: the queue is not in read-behind.
	c2 := dial(t, addr2)
	c2.do("set nb 0 0 5\r\nafter\r\n", "STORED\r\n")
	if st := queueStat(s2, "nb"); st.Items != n+1 || st.MemItems != n+1 {
		t.Fatalf("a set after the restart: items=%d mem_items=%d, want %d in memory", st.Items, st.MemItems, n+1)
	}
	c2.do("get nb\r\n", "VALUE nb 0 5\r\nhello\r\nEND\r\n")
}

func TestMemoryOnlyQueue(t *testing.T) {
	dir := t.TempDir()
	cfg := func(c *Config) {
		c.DataDir = dir
		c.Queues["transient"] = QueueConfig{Journal: false}
	}
	s, addr := startServer(t, cfg)
	c := dial(t, addr)
	// Expired items of a memory-only queue have no journal removal to wait for.
	c.do("set transient 0 -1 1\r\nx\r\nflush_expired transient\r\n", "STORED\r\n1\r\n")
	c.do("set transient 0 0 1\r\na\r\nset durable 0 0 1\r\nb\r\n", "STORED\r\nSTORED\r\n")
	if st := queueStat(s, "transient"); st.Logsize != 0 || st.Items != 1 {
		t.Fatalf("memory-only queue: %+v", st)
	}
	c.nc.Close()
	shutdown(t, s)
	_, addr2 := startServer(t, cfg)
	c2 := dial(t, addr2)
	c2.do("get transient\r\nget durable\r\n", "END\r\nVALUE durable 0 1\r\nb\r\nEND\r\n")
}

// TestMaxQueueAge: as in Kestrel, max_queue_age deletes a queue, journal
// and all, once it has existed that long and holds nothing; it is counted
// in queue_expires and queue_deletes, and a later set creates the queue
// afresh. A queue with items, an open read or a blocked reader is kept, and
// its items do not age out (that is max_age's job). The sweep runs with a
// clock moved ahead instead of waiting.
func TestMaxQueueAge(t *testing.T) {
	dataDir := t.TempDir()
	s, addr := startServer(t, func(c *Config) {
		c.DataDir = dataDir
		c.ExpirationTimerFrequency = time.Hour // sweeps only when the test says
		for _, name := range []string{"idle", "full", "held", "waited"} {
			c.Queues[name] = QueueConfig{Journal: true, MaxQueueAge: time.Second, MaxMemorySize: 1 << 20}
		}
	})
	c := dial(t, addr)
	c.do("set idle 0 0 1\r\na\r\nget idle\r\n", "STORED\r\nVALUE idle 0 1\r\na\r\nEND\r\n")
	c.do("set full 0 0 3\r\nold\r\n", "STORED\r\n")
	c.do("set held 0 0 1\r\nh\r\nget held/open\r\n", "STORED\r\nVALUE held 0 1\r\nh\r\nEND\r\n")
	w := dial(t, addr)
	w.send("get waited/t=60000\r\n")
	waitFor(t, "the blocking get waits", func() bool { return queueStat(s, "waited").Waiters == 1 })
	exists := func(name string) bool {
		_, ok := c.stats()["queue_"+name+"_items"]
		return ok
	}

	s.sweep(time.Now()) // younger than max_queue_age: nothing goes
	for _, name := range []string{"idle", "full", "held", "waited"} {
		if !exists(name) {
			t.Fatalf("queue %s deleted before max_queue_age", name)
		}
	}
	s.sweep(time.Now().Add(2 * time.Second))
	st := c.stats()
	if exists("idle") || st["queue_expires"] != "1" || st["queue_deletes"] != "1" {
		t.Fatalf("after the sweep: idle still there %v, queue_expires %s, queue_deletes %s; want gone, 1, 1",
			exists("idle"), st["queue_expires"], st["queue_deletes"])
	}
	if files, _ := filepath.Glob(filepath.Join(dataDir, "idle*")); len(files) != 0 {
		t.Fatalf("the expired queue's files are still there: %v", files)
	}
	for _, name := range []string{"full", "held", "waited"} {
		if !exists(name) {
			t.Fatalf("queue %s deleted though it holds an item, an open read or a reader", name)
		}
	}
	c.do("get full\r\n", "VALUE full 0 3\r\nold\r\nEND\r\n") // not aged out
	c.do("set waited 0 0 1\r\nw\r\n", "STORED\r\n")
	w.expect("VALUE waited 0 1\r\nw\r\nEND\r\n")
	c.do("get held/close\r\n", "END\r\n")

	// Now all three are empty and idle: the next sweep past their age
	// takes them. A set afterwards creates the queue afresh.
	s.sweep(time.Now().Add(2 * time.Second))
	if st := c.stats(); st["queue_expires"] != "4" || exists("full") || exists("held") || exists("waited") {
		t.Fatalf("queue_expires %s after the emptied queues' sweep, want 4 and all gone", st["queue_expires"])
	}
	creates := c.stats()["queue_creates"]
	c.do("set idle 0 0 1\r\nb\r\nget idle\r\n", "STORED\r\nVALUE idle 0 1\r\nb\r\nEND\r\n")
	if got := c.stats()["queue_creates"]; got == creates {
		t.Fatalf("queue_creates %s after a set on an expired queue, want one more", got)
	}
}

func TestStatsAreTrue(t *testing.T) {
	s, addr := startServer(t, nil)
	c := dial(t, addr)
	c.do("set sa 0 0 3\r\nabc\r\nset sa 0 0 2\r\nde\r\nget sa\r\nget sa/peek\r\nget sb\r\n",
		"STORED\r\nSTORED\r\nVALUE sa 0 3\r\nabc\r\nEND\r\nVALUE sa 0 2\r\nde\r\nEND\r\nEND\r\n")
	st := c.stats()
	want := map[string]string{
		"curr_items": "1", "total_items": "2", "bytes": "2", "curr_connections": "1", "total_connections": "1",
		"cmd_set": "2", "cmd_get": "2", "cmd_peek": "1", "get_hits": "2", "get_misses": "1", "queue_creates": "2",
		"queue_sa_items": "1", "queue_sa_bytes": "2", "queue_sa_total_items": "2", "queue_sa_mem_items": "1",
		"queue_sa_mem_bytes": "2", "queue_sa_open_transactions": "0", "queue_sb_items": "0",
	}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("STAT %s = %q, want %q", k, st[k], v)
		}
	}
	for _, k := range []string{"uptime", "time", "version", "bytes_read", "bytes_written", "queue_deletes", "queue_expires",
		"queue_sa_logsize", "queue_sa_expired_items", "queue_sa_age", "queue_sa_discarded", "queue_sa_waiters",
		"queue_sa_transactions", "queue_sa_canceled_transactions", "queue_sa_total_flushes", "queue_sa_journal_rewrites",
		"queue_sa_journal_rotations", "queue_sa_create_time"} {
		if _, ok := st[k]; !ok {
			t.Errorf("STAT %s missing", k)
		}
	}
	if st["queue_sa_logsize"] == "0" {
		t.Errorf("logsize 0 for a journaled queue")
	}
	gs := s.Stats()
	if gs.CmdSet != 2 || gs.CurrItems != 1 || len(gs.Queues) != 2 || gs.Queues[0].Name != "sa" {
		t.Errorf("Stats(): %+v", gs)
	}
	c.send("dump_stats sa\r\n")
	if l := c.line(); l != "queue 'sa' {" {
		t.Fatalf("dump_stats first line %q", l)
	}
	for {
		l := c.line()
		if l == "}" {
			break
		}
		if !strings.HasPrefix(l, "  ") || !strings.Contains(l, "=") || strings.HasPrefix(l, "  unavailable=") {
			t.Fatalf("dump_stats line %q", l)
		}
	}
	c.do("", "END\r\n")
	// Without names, dump_stats covers every queue.
	c.send("dump_stats\r\n")
	var queues []string
	for {
		l := c.line()
		if l == "END" {
			break
		}
		if strings.HasPrefix(l, "queue ") {
			queues = append(queues, l)
		}
	}
	if got := strings.Join(queues, ","); got != "queue 'sa' {,queue 'sb' {" {
		t.Fatalf("dump_stats without names listed %q", got)
	}
	c.send("dump_config\r\n")
	if l := c.line(); l != "queue 'sa' {" {
		t.Fatalf("dump_config first line %q", l)
	}
}

// dump_config shows each existing queue's sync_journal as the config file
// spells it: always, never, or an interval.
func TestDumpConfigSyncJournal(t *testing.T) {
	_, addr := startServer(t, func(c *Config) {
		c.Queues["sa"] = QueueConfig{Journal: true, Sync: SyncPolicy{Mode: journal.SyncAlways}, MaxMemorySize: 1 << 20}
		c.Queues["sn"] = QueueConfig{Journal: true, Sync: SyncPolicy{Mode: journal.SyncNever}, MaxMemorySize: 1 << 20}
		c.Queues["si"] = QueueConfig{Journal: true, Sync: SyncPolicy{Mode: journal.SyncInterval, Interval: 10 * time.Millisecond}, MaxMemorySize: 1 << 20}
	})
	c := dial(t, addr)
	c.do("get sa\r\nget si\r\nget sn\r\n", "END\r\nEND\r\nEND\r\n")
	c.send("dump_config\r\n")
	got := map[string]string{}
	queue := ""
	for {
		l := c.line()
		if l == "END" {
			break
		}
		if name, ok := strings.CutPrefix(l, "queue '"); ok {
			queue = strings.TrimSuffix(name, "' {")
		}
		if v, ok := strings.CutPrefix(l, "  sync_journal="); ok {
			got[queue] = v
		}
	}
	want := map[string]string{"sa": "always", "sn": "never", "si": "10ms"}
	for q, v := range want {
		if got[q] != v {
			t.Errorf("queue %s: sync_journal=%q, want %q", q, got[q], v)
		}
	}
}

// The age stat is how long the last item handed out (by a get or an open
// read) had waited in the queue: at least the time it was left there, and
// not more than the test has run.
func TestStatsAge(t *testing.T) {
	s, addr := startServer(t, nil)
	c := dial(t, addr)
	c.do("set ag 0 0 1\r\na\r\nset ag 0 0 1\r\nb\r\n", "STORED\r\nSTORED\r\n")
	// Wait on an unrelated blocking get so the items age without a sleep.
	c.do("get nothing/t=50\r\n", "END\r\n")
	for _, get := range []string{"get ag", "get ag/open"} {
		want := "VALUE ag 0 1\r\na\r\nEND\r\n"
		if get == "get ag/open" {
			want = "VALUE ag 0 1\r\nb\r\nEND\r\n"
		}
		c.do(get+"\r\n", want)
		if age := queueStat(s, "ag").Age; age < 50 || age > time.Minute.Milliseconds() {
			t.Fatalf("after %s: age %d ms, want from 50 (the wait) to a minute", get, age)
		}
	}
}

// Concurrent producers and consumers across the read-behind boundary:
// every item is delivered exactly once, and each producer's items arrive
// in order.
func TestReadBehindConcurrent(t *testing.T) {
	s, addr := startServer(t, func(c *Config) { c.Defaults.MaxMemorySize = 50 * (20 + itemOverhead) })
	const producers, each, consumers = 4, 1500, 3
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			c := dial(t, addr)
			var req, want strings.Builder
			for i := 0; i < each; i++ {
				item := fmt.Sprintf("p%d-%015d", p, i)
				fmt.Fprintf(&req, "set rbc 0 0 %d\r\n%s\r\n", len(item), item)
				want.WriteString("STORED\r\n")
				if i%50 == 49 { // pipelined in batches
					c.do(req.String(), want.String())
					req.Reset()
					want.Reset()
				}
			}
		}(p)
	}
	// Let a backlog build up first, so most items go through the journal.
	waitFor(t, "backlog", func() bool { return queueStat(s, "rbc").Items >= 1000 })
	if st := queueStat(s, "rbc"); st.MemItems >= st.Items {
		t.Fatalf("no read-behind: %d items, %d in memory", st.Items, st.MemItems)
	}
	got := make([][]string, consumers)
	var received atomic.Int64
	for k := 0; k < consumers; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			c := dial(t, addr)
			for received.Load() < producers*each {
				c.send("get rbc/t=50\r\n")
				l := c.line()
				if l == "END" {
					continue
				}
				data := c.line()
				if end := c.line(); end != "END" {
					t.Errorf("after %q: %q, want END", data, end)
					return
				}
				got[k] = append(got[k], data)
				received.Add(1)
			}
		}(k)
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, items := range got {
		last := map[string]string{}
		for _, it := range items {
			if seen[it] {
				t.Fatalf("%s delivered twice", it)
			}
			seen[it] = true
			prod := it[:strings.IndexByte(it, '-')]
			if it < last[prod] {
				t.Fatalf("%s after %s", it, last[prod])
			}
			last[prod] = it
		}
	}
	if len(seen) != producers*each {
		t.Fatalf("%d distinct items delivered, want %d", len(seen), producers*each)
	}
	if st := queueStat(s, "rbc"); st.Items != 0 || st.MemBytes != 0 {
		t.Fatalf("after draining: %+v", st)
	}
}

// Reliable consumers that abort some reads and drop connections while the
// queue is in read-behind: every item is confirmed exactly once.
func TestReliableReadsAcrossReadBehind(t *testing.T) {
	_, addr := startServer(t, func(c *Config) { c.Defaults.MaxMemorySize = 40 * (20 + itemOverhead) })
	const n, consumers = 3000, 3
	p := dial(t, addr)
	var req, want strings.Builder
	for i := 0; i < n; i++ {
		item := fmt.Sprintf("%020d", i)
		fmt.Fprintf(&req, "set rr 0 0 20\r\n%s\r\n", item)
		want.WriteString("STORED\r\n")
	}
	p.do(req.String(), want.String())
	var mu sync.Mutex
	confirmed := map[string]int{}
	var wg sync.WaitGroup
	for k := 0; k < consumers; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			c := dial(t, addr)
			for i := 0; ; i++ {
				c.send("get rr/open\r\n")
				l := c.line()
				if l == "END" {
					return
				}
				data := c.line()
				c.line() // END
				switch {
				case i%7 == 3:
					c.do("get rr/abort\r\n", "END\r\n")
				case i%50 == 49:
					c.nc.Close() // drop with the read open: it goes back
					c = dial(t, addr)
				default:
					c.do("get rr/close\r\n", "END\r\n")
					mu.Lock()
					confirmed[data]++
					mu.Unlock()
				}
			}
		}(k)
	}
	wg.Wait()
	// Dropped connections' reads may come back after a consumer saw END.
	c := dial(t, addr)
	for {
		c.send("get rr/t=200/close/open\r\n")
		if l := c.line(); l == "END" {
			break
		}
		confirmed[c.line()]++
		c.line()
	}
	if len(confirmed) != n {
		t.Fatalf("%d distinct items confirmed, want %d", len(confirmed), n)
	}
	for it, k := range confirmed {
		if k != 1 {
			t.Fatalf("%s confirmed %d times", it, k)
		}
	}
}
