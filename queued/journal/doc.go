// Package journal is the on-disk journal of one queue of the queue daemon:
// a sequence of segment files of CRC32C-framed records (ADD, REMOVE,
// CLEAR, and a START opening each file), replayed at Open to rebuild which
// items are live. docs/journal.md specifies the bytes.
//
// # Files
//
//	journal.go  Journal, Open (replay, the active segment), Close, Delete
//	append.go   Append, Remove, ClearExcept, Sync: records into the pending
//	            batch, after reserving disk room for future removes
//	inline.go   writes by a waiting caller while the writer is idle, and
//	            big items written from their own memory
//	writer.go   the writer goroutine: write, fsync, roll, drop segments
//	compact.go  rewriting old segments without their dead items
//	replay.go   reading segments back, the torn-tail repair
//	cursor.go   Cursor: reading live items back for read-behind
//	live.go     the live-id table
//	format.go   record framing, CRC32C, encode and decode
//	files.go    file names, the queue lock, long-name files
//	dump.go     DumpFile and Check (kpush journal dump/check)
//	kestrel.go  reading Kestrel's own journals (kpush journal import)
//	errors.go   ErrCorrupt, CorruptError, ErrDiskFull and friends
//
// Queue names are checked by package internal/queuename before they
// become file names; files are replaced and directories synced through
// package internal/fsync.
//
// # Goroutines
//
// Each Journal has one writer goroutine (run) that owns the files: it is
// the only code that fsyncs, rolls or deletes segments. Append, Remove and
// Clear encode their records into a shared pending buffer under
// Journal.mu and return a *Commit; the writer takes the whole buffer, writes
// it with one write(2) and (SyncAlways) one fsync, and then finishes the
// batch's Commit, releasing every waiter of the batch at once (group
// commit).
//
// Appends (and, under SyncNever and SyncInterval, removes) are not written
// at once: they stay pending with a lazy Commit, and the first Wait on it
// writes everything pending (writeFor), other callers' records included.
// Under SyncNever and SyncInterval, Wait first yields the processor
// (runtime.Gosched), so under load the connections that run meanwhile add
// their records to the same write; it does so only while such yields pay
// (other callers added records during them), since a yield with nothing
// else to run wakes an idle thread for nothing. A pipelined batch's
// records are all added before its replies wait. Records nobody waits for
// (noreply sets, removes of expired items) are written by a timer
// lazyDelay (1 ms) later. Under SyncNever and SyncInterval a commit needs
// only the write(2), and waking the writer and parking the caller cost
// more than the write (docs/benchmarks.md has what writing inline gained):
// so while the writer is idle (writerBusy false) that write is made by the
// waiting caller itself, with one pwrite under mu. The writer, while busy,
// keeps the files to itself; after inline writes it is kicked only when a
// roll, a segment deletion or a compaction check is due. A failed inline
// write leaves the records pending for the writer, which retries at the
// same offset and undoes them if that fails too. A compaction runs in its
// own goroutine, reading immutable old segments and writing a temp file;
// only the final swap takes the lock.
// Cursors read segment files with their own file descriptors.
//
// # Invariants
//
//   - Ids are assigned under mu in the same critical section that encodes
//     the ADD, so file order is id order, across segments too.
//   - Every segment but the last is whole: the writer fsyncs a segment
//     before it creates the next, so only the last can have a torn tail.
//   - A REMOVE is always in the segment of its items or a later one, so
//     only a prefix of segments may be deleted: a segment goes once every
//     id below the next segment's first id is dead, judged on a snapshot
//     whose REMOVEs are already written and fsynced.
//   - A compacted file supersedes every segment with a lower sequence
//     number; it is renamed into place only after the REMOVEs that made
//     the items it dropped look dead are durable.
//   - Memory: no item data is held beyond the write buffer and read
//     windows. The live set costs about 4 bytes per live item (dense
//     chunks of 4096 ids, turned into short lists when few ids are left,
//     freed when empty).
//   - Disk full: space for a REMOVE of every live item is kept
//     preallocated (fallocate, KEEP_SIZE) in the active segment, so a full
//     disk refuses new ADDs with ErrDiskFull but removes still fit.
//
// Open reads are not journaled: after a crash they come back as live items.
package journal
