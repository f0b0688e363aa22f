package queued

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/kpush/kpush/internal/queuename"
	"github.com/kpush/kpush/queued/journal"
)

// SyncPolicy says how a journal write relates to fsync (sync_journal):
// journal.SyncAlways (the acknowledgement waits for an fsync that covers
// it; concurrent writers share one fsync), journal.SyncNever (the OS
// decides), or journal.SyncInterval, every Interval.
type SyncPolicy struct {
	Mode     journal.SyncMode
	Interval time.Duration // only for journal.SyncInterval
}

// QueueConfig holds the per-queue settings. Top-level values in a config
// file are the defaults every queue inherits; a `queues { name { ... } }`
// block overrides them for one queue. Zero means "no limit" for the limits.
type QueueConfig struct {
	MaxItems               int64         // max_items
	MaxSize                int64         // max_size, bytes
	MaxItemSize            int64         // max_item_size, bytes
	MaxAge                 time.Duration // max_age (ms in the file): caps every item's expiry
	MaxMemorySize          int64         // max_memory_size, bytes kept in memory before read-behind
	DiscardOldWhenFull     bool          // discard_old_when_full
	Journal                bool          // journal on|off, keep_journal = true|false
	Sync                   SyncPolicy    // sync_journal
	ExpireToQueue          string        // expire_to_queue
	MaxExpireSweep         int           // max_expire_sweep: items moved per sweep, 0 = all
	FanoutOnly             bool          // fanout_only
	OpenTransactionTimeout time.Duration // open_transaction_timeout (ms in the file)
	MaxQueueAge            time.Duration // max_queue_age (ms in the file): delete the queue once it is this old and empty

	// Journal sizing, as in Kestrel 1.x: once the journal passes
	// MaxJournalSize and the queue is empty (or the journal passes
	// MaxJournalSize*MaxJournalOverflow, or MaxJournalSizeAbsolute) it is
	// rewritten. Zero means the journal engineer's default.
	MaxJournalSize         int64 // max_journal_size, bytes
	MaxJournalOverflow     int   // max_journal_overflow, a multiple of MaxJournalSize
	MaxJournalSizeAbsolute int64 // max_journal_size_absolute, bytes
}

// Config is the effective configuration of a queued server: a Kestrel 1.x
// config file (read by package queued/config) with command-line flags
// applied over it.
type Config struct {
	Listen                   string        // host and port (host, port)
	DataDir                  string        // queue_path
	AdminListen              string        // admin_listen; empty = no admin HTTP listener
	Pprof                    bool          // --pprof: also serve /debug/pprof/ on the admin listener
	MaxOpenTransactions      int           // max_open_transactions per connection (default 1)
	ClientTimeout            time.Duration // client_timeout (ms in the file); 0 = none
	MaxConnections           int           // max_connections; 0 = unlimited
	ExpirationTimerFrequency time.Duration // expiration_timer_frequency (ms in the file)
	TotalMemorySize          int64         // total_memory_size: server-wide cap on items held in memory
	EnableShutdown           bool          // enable_shutdown_command: whether `shutdown` is honoured (off by default: anyone who reaches the port could stop the daemon)
	LogFile                  string        // log { filename }
	LogLevel                 string        // log { level }

	Defaults QueueConfig            // top-level queue settings
	Queues   map[string]QueueConfig // queues { name { ... } }, already merged over Defaults
}

// DefaultConfig returns the settings used when no config file is given.
func DefaultConfig() Config {
	return Config{
		Listen:                   "127.0.0.1:22133",
		DataDir:                  "data/queued",
		MaxOpenTransactions:      1,
		ExpirationTimerFrequency: time.Second,
		TotalMemorySize:          1 << 30,
		LogLevel:                 "info",
		Defaults: QueueConfig{
			MaxMemorySize: 128 << 20,
			Journal:       true,
			Sync:          SyncPolicy{Mode: journal.SyncAlways},
		},
		Queues: map[string]QueueConfig{},
	}
}

// QueueConfig returns the settings of the named queue: its own block if the
// config has one; for a fanout queue "parent+child" without a block of its
// own, the parent's block (as Kestrel 1.x does) except fanout_only, which
// describes the parent alone; else the defaults. An expire_to_queue naming
// the queue itself (inherited from the defaults, say) is dropped: its
// expired items would expire into it again forever.
func (c Config) QueueConfig(name string) QueueConfig {
	q, ok := c.Queues[name]
	if !ok {
		q = c.Defaults
		if parent, isFanout := queuename.Parent(name); isFanout {
			if pq, ok := c.Queues[parent]; ok {
				q = pq
				q.FanoutOnly = false
			}
		}
	}
	if q.ExpireToQueue == name {
		q.ExpireToQueue = ""
	}
	return q
}

// Dump writes the effective settings of every queue that has its own block,
// in name order, in the format of Kestrel's dump_config: for each queue
//
//	queue 'name' {
//	  max_items=0
//	  ...
//	}
//
// with \r\n line ends, and no trailing END (the protocol handler adds it).
func (c Config) Dump(w io.Writer) error {
	names := make([]string, 0, len(c.Queues))
	for name := range c.Queues {
		names = append(names, name)
	}
	slices.Sort(names)
	return c.DumpQueues(w, names)
}

// DumpQueues is Dump for the given queue names (typically the queues that
// exist on the server), each with the settings QueueConfig returns for it.
func (c Config) DumpQueues(w io.Writer, names []string) error {
	bw := bufio.NewWriter(w)
	for _, name := range names {
		fmt.Fprintf(bw, "queue '%s' {\r\n", name)
		for _, kv := range c.QueueConfig(name).Settings() {
			fmt.Fprintf(bw, "  %s=%s\r\n", kv[0], kv[1])
		}
		bw.WriteString("}\r\n")
	}
	return bw.Flush()
}

// Settings lists a queue's settings as key/value pairs, in Kestrel 1.x's
// dump_config order followed by the keys Kestrel 1.x did not have.
// Durations are in milliseconds, as in the file.
func (q QueueConfig) Settings() [][2]string {
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	ms := func(d time.Duration) string { return i64(d.Milliseconds()) }
	expireTo := q.ExpireToQueue
	if expireTo == "" {
		expireTo = "(none)"
	}
	return [][2]string{
		{"max_items", i64(q.MaxItems)},
		{"max_size", i64(q.MaxSize)},
		{"max_item_size", i64(q.MaxItemSize)},
		{"max_age", ms(q.MaxAge)},
		{"max_journal_size", i64(q.MaxJournalSize)},
		{"max_memory_size", i64(q.MaxMemorySize)},
		{"max_journal_overflow", strconv.Itoa(q.MaxJournalOverflow)},
		{"max_journal_size_absolute", i64(q.MaxJournalSizeAbsolute)},
		{"discard_old_when_full", strconv.FormatBool(q.DiscardOldWhenFull)},
		{"journal", strconv.FormatBool(q.Journal)},
		{"sync_journal", q.Sync.String()},
		{"expire_to_queue", expireTo},
		{"max_expire_sweep", strconv.Itoa(q.MaxExpireSweep)},
		{"fanout_only", strconv.FormatBool(q.FanoutOnly)},
		{"open_transaction_timeout", ms(q.OpenTransactionTimeout)},
		{"max_queue_age", ms(q.MaxQueueAge)},
	}
}

// String renders the policy as sync_journal accepts it: "always", "never"
// or an interval such as "10ms".
func (p SyncPolicy) String() string {
	if p.Mode == journal.SyncInterval {
		return p.Interval.String()
	}
	return p.Mode.String()
}
