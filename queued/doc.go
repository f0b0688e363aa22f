// Package queued is the queue daemon of kpush: named FIFO queues of opaque
// items, journaled to disk (package queued/journal), served over Kestrel's
// memcache text protocol (docs/protocol.md has every command and reply).
// Its configuration is a Config; package queued/config reads and writes
// the config file, and package internal/queuename owns the queue-name rule.
//
// # Files
//
// One concern per file, so that "what does confirm do" is one file:
//
//	server.go  Server: NewServer, the queue map (queueFor, deleteQueue),
//	           Serve/ListenAndServe, Reload, Shutdown
//	conn.go    a connection's goroutine: read loop, read buffer, framing,
//	           the command dispatch (exec)
//	parse.go   request framing and the get-option parser
//	reply.go   writing replies: the pooled writer, the write deadline
//	store.go   set: the store pipeline (storeStart/storeFinish) and the
//	           in-order settling of pipelined replies
//	read.go    get (all options), monitor, confirm, waiting for an item
//	admin.go   delete, flush, flush_expired, status, shutdown, dump_config
//	stats.go   stats, dump_stats and the Stats snapshot
//	http.go    the admin HTTP endpoint (/metrics, /healthz, /stats.json)
//	queue.go   a queue: put, limits, memory accounting, flush
//	take.go    taking the head item; the waiters of blocked gets
//	open.go    open reads: open, close, abort, timeouts
//	load.go    replay and read-behind refill, through one loader
//	expire.go  expiry at the head, the sweeper, expire_to_queue
//	item.go    entry and the ring holding a queue's in-memory items
//	status.go  UP/READONLY/QUIESCENT, persisted in the data directory
//	config.go  Config and QueueConfig, and their dump_config rendering
//
// # Goroutines and ownership
//
//   - One goroutine per connection (conn.serve) owns the connection: its
//     read buffer, its reply writer and the list of queues it touched. It
//     parses every complete request in the buffer (redcon style), runs
//     them in order and flushes once per batch, and before anything that
//     may block (a get with t=, a monitor). While it is blocked it starts a
//     short-lived watcher goroutine reading the socket, so a client that
//     hangs up leaves the waiters at once; the watcher is stopped (read
//     deadline) and joined before the buffer is touched again.
//   - Each queue is guarded by its own mutex (queue.mu). A per-queue
//     goroutine was considered (nsq style) but every operation is a few
//     hundred nanoseconds of bookkeeping, and a mutex lets readers and
//     writers of different queues run on different cores without a channel
//     hop. Nothing slow happens under queue.mu: journal appends encode
//     into the journal's buffer (they block only when 8 MiB are waiting to
//     be written), or under sync never/interval write it themselves with
//     one pwrite when the journal's writer is idle (package journal); a
//     big item's set hands its read buffer to the item (conn.takeData) and
//     the journal writes it from there (a few ms for 8 MiB, holding up
//     only that queue); commits are waited for after unlocking, so
//     hundreds of connections' sets are in one group commit (one write
//     and one fsync for all of them). A connection also goes on parsing after a set and
//     settles the replies of all its pending sets, in order, before any
//     other command and before each flush, so pipelined sets share a
//     commit. The exception is the read-behind refill, a bounded
//     sequential read of the journal (at most half of max_memory_size)
//     when the in-memory head runs dry.
//   - The server's queue map has its own RWMutex, taken before a queue's
//     mutex and never the other way round; no code holds two queue mutexes
//     at once (fanout and expire_to_queue copy items after unlocking). A
//     new queue is put in the map first and its journal opened (files
//     created, directory fsynced, replay) after the map is unlocked, under
//     the queue's own mutex; commands on it wait for its ready channel,
//     commands on other queues are not held up.
//   - One sweeper goroutine (Server.sweepLoop) expires items at the heads
//     of the queues (anywhere in memory for delay queues, those with
//     expire_to_queue) every expiration_timer_frequency and aborts open
//     reads older than open_transaction_timeout.
//   - Each journal has its own writer goroutine (see package journal).
//
// # Items and their states
//
// An item's state is where it is, not a field: ready (in the queue's
// in-memory ring, mem), behind (in the queue, but only on disk: counted
// in behind, read back by a journal cursor), open (handed out by an open
// read, in queue.opens under the id of the connection holding it) or gone
// (in none of them; its REMOVE is in the journal). Every transition is one
// queue method: put (→ready, or →behind when memory is at its bound or
// the queue is already reading behind), refill (behind→ready; replay
// loads the head of a reopened queue the same way, through loadNext),
// take (ready→gone or →open), closeOpen (open→gone), abortOpen/unopen/
// timeoutOpens (open→ready at the head).
//
// # Invariants
//
//   - Queue order is id order: mem holds a prefix of the queue, then come
//     `behind` committed items only on disk (with ids above memHighID),
//     then `pendingBehind` items appended but not yet committed. A new item
//     goes to mem only when nothing is behind or pending and it fits under
//     the memory bound; so mem is never evicted, only drained.
//   - Memory: per queue at most max_memory_size (item data plus 64 bytes
//     of bookkeeping per item) in mem, server-wide total_memory_size; only
//     aborted open reads returning to the head can pass it, by at most the
//     reads that were open. Beyond it the journal holds the data and a
//     journal.Cursor refills the head, at most half the bound at a time.
//     Per item in memory: one 48-byte ring slot plus its data; no
//     per-item goroutines, timers or maps.
//   - An open read belongs to exactly one connection (queue.opens, keyed by
//     the connection's id, so a queue knows nothing of connections); when
//     the connection ends, every read it holds goes back to the head of its
//     queue, oldest first. Open reads are not journaled: after a crash they
//     are simply live items again.
//   - A waiter is woken once per item made available, oldest waiter first;
//     a woken waiter that finds the item gone goes back to the front.
//
// # Durability
//
// Every acknowledgement waits for its journal record under the queue's
// sync policy (always: fsynced; interval/never: written to the OS):
// STORED for a set (settle), and the reply to a removal — a plain get,
// close, confirm — for its REMOVE. A removal does not wait where it
// happens: take and closeOpen return the REMOVE's commit, the connection
// notes it (awaitBeforeReply) and goes on running its pipelined batch, and
// connWriter waits for the noted commits before any reply byte reaches
// the socket. So the removes of a batch, and of every connection pending
// at that moment, share one write (journal: the first waiter writes what
// is pending) or one group commit. A process crash then never re-delivers
// an acknowledged removal, and under always neither does a power cut
// (docs/protocol.md, Durability; TestCrashKeepsAcknowledgedItems,
// TestPowerLossKeepsAcknowledgedRemovals). The price is that a plain get
// whose reply a crash cuts off has consumed its item unseen; reliable
// reads never lose one.
//
// A failed journal write answers SERVER_ERROR and takes the item back
// out; reads and removes keep working (the journal reserves room for
// removes).
// A queue whose journal is corrupt mid-file is refused (every command gets
// SERVER_ERROR naming file and offset) while the others work.
package queued
