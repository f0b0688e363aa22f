// Package kestrel is kpush's client for the Kestrel wire protocol: the
// memcache text protocol (set, get, stats, version) plus Kestrel's queue
// commands (get options /open /close /abort /peek /t=, monitor, confirm,
// status, dump_config). kpush queued speaks it, and so do Kestrel itself and, for
// set/get, memcached. The worker's fetch loops, `kpush bench`,
// `kpush ping` and `kpush drain` use it; the producer uses gomemcache.
//
// A Conn is one TCP connection owned by one goroutine. Requests are
// buffered and sent by Flush, then their replies are read in order
// (ReadStored, ReadValue, ReadConfirm, ReadMonitor, ReadLine), so a caller
// pipelines as it likes: the worker sends a confirm and the next monitor
// in one write. Round trips for the rest (Version, Stats, SetStatus,
// DumpConfig)
// read their own reply.
//
// Costs on the hot paths are those of the protocol and no more: requests
// are formatted into the buffered writer without allocating; a monitor
// item costs one allocation, the slice handed to the caller (which may
// keep it); a get whose data is not kept allocates nothing. With
// Options.Timeout set the Conn arms a deadline before each flush and each
// reply read (the worker); without it the caller sets one per batch
// (kpush bench, where a deadline per reply would be part of what it
// measures).
//
// Errors: ErrProtocol when the stream cannot be trusted any more (drop the
// connection), *ReplyError for an error reply that leaves the stream in
// step (ERROR, CLIENT_ERROR, SERVER_ERROR), and ErrMonitorUnsupported from
// a server without monitor. Each names the server's address.
//
// It uses the standard library only.
package kestrel
