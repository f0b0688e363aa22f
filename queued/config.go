package queued

import (
	"time"

	"github.com/kpush/kpush/internal/queuename"
)

// SyncPolicy says how a journal write relates to fsync: Always (the
// acknowledgement waits for an fsync that covers it; concurrent writers share
// one fsync), Never (the OS decides), or every Interval.
type SyncPolicy struct {
	Mode     SyncMode
	Interval time.Duration // only for SyncInterval
}

// SyncMode is the kind of a SyncPolicy.
type SyncMode int

const (
	SyncAlways SyncMode = iota
	SyncNever
	SyncInterval
)

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
	MaxQueueAge            time.Duration // max_queue_age (ms in the file): drop items older than this at the head

	// Journal sizing, as in Kestrel 1.x: once the journal passes
	// MaxJournalSize and the queue is empty (or the journal passes
	// MaxJournalSize*MaxJournalOverflow, or MaxJournalSizeAbsolute) it is
	// rewritten. Zero means the journal engineer's default.
	MaxJournalSize         int64 // max_journal_size, bytes
	MaxJournalOverflow     int   // max_journal_overflow, a multiple of MaxJournalSize
	MaxJournalSizeAbsolute int64 // max_journal_size_absolute, bytes
}

// Config is the effective configuration of a queued server: a Kestrel 1.x
// config file (LoadConfigFile) with command-line flags applied over it.
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
	EnableShutdown           bool          // enable_shutdown_command: whether `shutdown` is honoured
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
		EnableShutdown:           true,
		LogLevel:                 "info",
		Defaults: QueueConfig{
			MaxMemorySize: 128 << 20,
			Journal:       true,
			Sync:          SyncPolicy{Mode: SyncAlways},
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
