package queued

import (
	"sort"
	"strconv"
	"time"
)

// QueueStats are one queue's statistics; field names mirror the Kestrel
// stat names (`queue_<name>_<stat>`).
type QueueStats struct {
	Name                 string
	Items                int64 // items: waiting in the queue (memory and read-behind)
	Bytes                int64 // bytes: their data
	TotalItems           int64 // total_items: ever added
	Logsize              int64 // logsize: journal bytes on disk
	ExpiredItems         int64 // expired_items
	MemItems             int64 // mem_items: items whose data is in memory
	MemBytes             int64 // mem_bytes
	Age                  int64 // age: ms the last item handed out had waited
	Discarded            int64 // discarded: dropped by discard_old_when_full
	Waiters              int64 // waiters: blocked gets
	OpenTransactions     int64 // open_transactions: open reads now
	Transactions         int64 // transactions: open reads ever started
	CanceledTransactions int64 // canceled_transactions: open reads aborted
	TotalFlushes         int64 // total_flushes
	JournalRewrites      int64 // journal_rewrites
	JournalRotations     int64 // journal_rotations
	CreateTime           int64 // create_time: unix seconds
	// Unavailable is non-empty when the queue's journal could not be
	// opened; the queue then refuses every command with this reason.
	Unavailable string
}

// ServerStats are the server-wide statistics of `stats`.
type ServerStats struct {
	Uptime           int64  // seconds
	Time             int64  // unix seconds
	Version          string // numeric: major.minor.micro
	Build            string // the build, e.g. "devel" or "v1.2.3"
	CurrItems        int64
	TotalItems       int64
	Bytes            int64
	CurrConnections  int64
	TotalConnections int64
	CmdGet           int64
	CmdSet           int64
	CmdPeek          int64
	GetHits          int64
	GetMisses        int64
	BytesRead        int64
	BytesWritten     int64
	QueueCreates     int64
	QueueDeletes     int64
	QueueExpires     int64
	Status           string // UP, READONLY or QUIESCENT
	Queues           []QueueStats
}

// Stats returns a consistent-per-queue snapshot of every statistic, queues
// sorted by name.
func (s *Server) Stats() ServerStats {
	now := time.Now()
	st := ServerStats{
		Uptime:           int64(now.Sub(s.started).Seconds()),
		Time:             now.Unix(),
		Version:          Version,
		Build:            Build,
		TotalItems:       s.totalItems.Load(),
		CurrConnections:  s.currConns.Load(),
		TotalConnections: s.totalConns.Load(),
		CmdGet:           s.cmdGet.Load(),
		CmdSet:           s.cmdSet.Load(),
		CmdPeek:          s.cmdPeek.Load(),
		GetHits:          s.getHits.Load(),
		GetMisses:        s.getMisses.Load(),
		BytesRead:        s.bytesRead.Load(),
		BytesWritten:     s.bytesWritten.Load(),
		QueueCreates:     s.queueCreates.Load(),
		QueueDeletes:     s.queueDeletes.Load(),
		QueueExpires:     s.queueExpires.Load(),
		Status:           s.Status().String(),
	}
	for _, q := range s.queueList() {
		qs := q.stats()
		st.CurrItems += qs.Items
		st.Bytes += qs.Bytes
		st.Queues = append(st.Queues, qs)
	}
	return st
}

func (q *queue) stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	qs := QueueStats{
		Name:                 q.name,
		Items:                q.itemCount(),
		Bytes:                q.byteCount(),
		TotalItems:           q.totalItems,
		ExpiredItems:         q.expiredItems,
		MemItems:             int64(q.mem.len()),
		MemBytes:             q.memBytes,
		Age:                  q.lastAge,
		Discarded:            q.discarded,
		Waiters:              int64(len(q.waiters)),
		OpenTransactions:     int64(q.openCount),
		Transactions:         q.transactions,
		CanceledTransactions: q.canceled,
		TotalFlushes:         q.totalFlushes,
		CreateTime:           q.created.Unix(),
	}
	if q.unavailable != nil {
		qs.Unavailable = q.unavailable.Error()
	}
	if q.j != nil {
		js := q.j.Stats()
		qs.Logsize = js.DiskBytes
		qs.JournalRewrites = js.Rewrites
		qs.JournalRotations = js.Rotations
	}
	return qs
}

// statPairs lists a queue's stats in Kestrel's order, as name/value pairs.
func (qs *QueueStats) statPairs(dst []statPair) []statPair {
	return append(dst,
		statPair{"items", qs.Items},
		statPair{"bytes", qs.Bytes},
		statPair{"total_items", qs.TotalItems},
		statPair{"logsize", qs.Logsize},
		statPair{"expired_items", qs.ExpiredItems},
		statPair{"mem_items", qs.MemItems},
		statPair{"mem_bytes", qs.MemBytes},
		statPair{"age", qs.Age},
		statPair{"discarded", qs.Discarded},
		statPair{"waiters", qs.Waiters},
		statPair{"open_transactions", qs.OpenTransactions},
		statPair{"transactions", qs.Transactions},
		statPair{"canceled_transactions", qs.CanceledTransactions},
		statPair{"total_flushes", qs.TotalFlushes},
		statPair{"journal_rewrites", qs.JournalRewrites},
		statPair{"journal_rotations", qs.JournalRotations},
		statPair{"create_time", qs.CreateTime},
	)
}

type statPair struct {
	name  string
	value int64
}

func (s *Server) queueList() []*queue {
	s.mu.RLock()
	qs := make([]*queue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	s.mu.RUnlock()
	sort.Slice(qs, func(i, j int) bool { return qs[i].name < qs[j].name })
	return qs
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
	w.WriteString("STAT build " + st.Build + "\r\n")
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
