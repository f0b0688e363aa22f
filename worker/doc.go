// Package worker is the consumer side of kpush: it reads push messages from
// a cluster of queued (Kestrel-compatible) servers with reliable reads,
// delivers them through a Pusher on a fixed pool of goroutines, and confirms each
// queue item only after every one of its tokens reached an outcome.
//
// # Fetching
//
// For each server the worker runs LoopsPerServer fetch loops. A fetch loop
// owns exactly one TCP connection (not gomemcache's pool: a reliable read
// belongs to the connection that opened it), a kestrel.Conn of package
// internal/kestrel, kpush's one client of the protocol, through which it
// sends:
//
//	confirm <queue> <k>          settle the k oldest open reads (pipelined)
//	monitor <queue> <secs> <n>   stream up to n items, each an open read
//
// The loops share a budget of Concurrency open reads (budget.go): every
// monitor request is reserved from it first, so the worker never holds
// more items than its pool can work on. Busy loops split the budget
// evenly; a loop whose queue is empty keeps a quarter of its fair share and
// lends the rest, so an empty or down server does not idle capacity and
// busy servers get equal shares. Items are dispatched as they stream in.
// Pushes finish out of order, but `confirm` always settles the oldest open
// reads, so the window (window.go) tracks completions in fetch order and
// only the contiguous finished prefix is confirmed; a finished item behind
// an unfinished one waits. A loop fetches again once a quarter of its
// window is free or finished (or it holds nothing), asking for at most a
// fair share, and the confirm of the finished prefix rides in the same
// write as that monitor, which keeps round trips per item low under load.
// A loop confirms without fetching only when everything it holds finished,
// when fetching stops, or when another loop waits for capacity; it sleeps
// until one of those, or a batch, is ready (window.notifyAt), not at every
// finish.
//
// The servers are Config.Servers as package discovery finds them: DNS
// names are resolved again every ResolveInterval. A server that appears
// gets its loops at once, and the fair share shrinks to make room for
// them (budget.setLoops); a server that disappears has its loops stopped
// as at shutdown: a monitor in progress runs to its END, what they hold is
// finished and confirmed, then the connection closes. They do not redial.
//
// Any I/O or protocol error drops the connection; the server then puts
// every read it held back at the head of the queue. The loop redials with
// jittered exponential backoff (ReconnectMin..ReconnectMax) and starts a
// fresh window; completions of items from the old connection are ignored
// (those items will be delivered again).
//
// # Dispatch and outcomes
//
// A message with several tokens fans out: one pool task per token. The
// pool (pool.go) is Concurrency long-lived goroutines that take the items
// in turn, one token from each, so a big message does not hold the pool
// while small ones wait behind it. Handing an item to the pool never
// blocks the fetch loop; the budget of open reads is the back-pressure.
// The last token task of an item settles it:
//
//   - delivered tokens are counted;
//   - dead tokens become InvalidTokenRecords in <queue>_invalid_tokens;
//   - transient failures are retried in process (Attempts, full-jitter
//     backoff RetryBase..RetryMax; not 429 TooManyRequests, which is per
//     token and lasts seconds), then the still-failing tokens are
//     re-queued as one message with Attempt+1 to the delay queue
//     <queue>_retry with an expiry of push.Result.RetryAfter (at least
//     MinRequeueDelay); the servers move it back to <queue> when it
//     expires (expire_to_queue, checked with dump_config at connect);
//   - bad messages, items that are not messages (or over 16 MiB: read past
//     without keeping them, so they cannot come back as poison pills),
//     messages past their expiration and messages re-queued MaxRequeues
//     times become FailedRecords in <queue>_failed;
//   - bad credentials make the worker fail: it stops fetching, cancels
//     every push, closes its connections (the servers take every held
//     item back), and Run returns ErrBadCredentials.
//
// Records are written through the Enqueuer (a *producer.Producer) and must
// be STORED before the item is marked finished, so a crash can duplicate a
// record but never lose one.
//
// # Goroutines
//
// Run owns: one goroutine per fetch loop (owning its connection and
// window), the pool's goroutines (token tasks and settling), a summary
// ticker, and the admin HTTP server when AdminListen is set. A hard stop
// (shutdown timeout or fatal error) cancels sendCtx, which aborts pushes,
// record writes and (through context.AfterFunc) closes every connection.
//
// # Invariants
//
//   - An item is confirmed only after its outcome is durable (delivered or
//     its record STORED). Hence at-least-once: after a crash, the items a
//     connection had finished but not yet confirmed are delivered again.
//     At most Concurrency items are open at once, which bounds the
//     duplicates of one crash (docs/worker.md).
//   - confirm k is sent only for k finished items at the head of the
//     connection's window, so it settles exactly those.
//   - Open reads plus outstanding monitor requests, over all connections,
//     ≤ Concurrency, so at most Concurrency items are in the pool. The
//     reads of a confirm leave the budget when it is written, ahead of the
//     monitor in the same write, which the server handles after it.
//
// # Shutdown
//
// Cancelling Run's context stops fetching (a monitor in progress runs to
// its END, at most MonitorSeconds; its items are worked on too), waits up
// to ShutdownTimeout for every held item to finish and be confirmed, then
// closes the connections, which returns whatever is left.
package worker
