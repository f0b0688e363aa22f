// Package producer puts push messages on a cluster of queued servers.
//
// queued speaks Kestrel's memcache text protocol, so enqueueing is a plain
// `set <queue> 0 <exptime> <bytes>`; any memcache client can do it (see
// examples/). This package is the careful way to do it from Go, on
// github.com/bradfitz/gomemcache.
//
// # Contract
//
// Enqueue returns nil only after a server answered STORED (which queued
// sends once the item is journaled, and synced under its sync policy). A
// message push.Message.Validate refuses is never sent. Every other outcome
// is an error wrapping one sentinel:
//
//   - ErrQueueFull: a server said NOT_STORED (queue full) and no other
//     server took the item. This is back-pressure; nothing was stored.
//   - ErrNoServers: no server could take the item (down, unreachable, or
//     SERVER_ERROR); nothing was stored.
//   - ErrOutcomeUnknown: the request was written but no answer came (the
//     server died or exceeded WithTimeout). The item may have been stored.
//     The error names the server. Retrying is at-least-once: it may store
//     the item twice. WithAtLeastOnce makes Enqueue do that retry itself,
//     on another server.
//   - ErrRejected: the item itself was refused: over every server's
//     max_item_size, or a CLIENT_ERROR any server would repeat.
//
// The concrete error is an *EnqueueError listing each failed attempt.
//
// # Placement
//
// Each server has its own gomemcache.Client, so gomemcache's key hashing
// (the key is the queue name: one queue would land on one server) never
// chooses. Items without a routing key go round-robin over the healthy
// servers, so each gets the same share; WithLeastLoaded trades that
// exactness for passing over a server whose requests pile up. Items with a
// RoutingKey go to the key's server on a ketama continuum (160 points per
// server, MD5, as libketama): related items share a server and, sent one
// after another, keep their order; adding a server moves about 1/N of the
// keys. When that server is down its keys move together to the next server
// on the ring; their order holds again once it is back.
//
// # Servers found through DNS
//
// A server given as dns:NAME:PORT or dns+srv:NAME (package discovery) is
// resolved in New and every WithResolveInterval. The servers and their
// ring are one immutable set swapped atomically: an enqueue places on the
// set it loaded, a new server is in the rotation for the next item, and a
// removed one gets no new item (its probe stops; its connections close as
// its requests in flight finish). A failed lookup keeps the last set.
//
// # Failures
//
// One attempt's result decides what happens next:
//
//	STORED                          done
//	NOT_STORED                      try the next server (queue full there)
//	SERVER_ERROR item too large     try the next server; ErrRejected if
//	                                none takes it
//	SERVER_ERROR (other)            nothing stored: try the next server
//	connect or write failed,
//	SERVER_ERROR too many conns     nothing stored: mark down, next server
//	written, no answer              mark down; ErrOutcomeUnknown (or next
//	                                server with WithAtLeastOnce)
//	CLIENT_ERROR, ERROR             ErrRejected
//
// A write can fail only before the server has the whole request, so it
// stored nothing. Connections idle in gomemcache's pool may have been
// closed by the server (restart, client_timeout); before the first write of
// each request a non-blocking MSG_PEEK finds those, and the request is
// redialled instead of being written into a dead socket and reported as
// unknown.
//
// # Goroutines
//
// Enqueue runs on the caller's goroutine (plus one per request when ctx
// can be cancelled, see Limits); EnqueueBatch adds at most
// WithBatchConcurrency goroutines for its own duration. A server marked
// down is owned by one probe goroutine, which sends `version` after a
// jittered, doubling backoff (WithRetryBackoff) until the server answers
// and then puts it back in rotation. Close cancels the probes and waits
// for them and for requests left in flight by a cancelled ctx. Health flags and counters are atomics read on every enqueue.
//
// # Limits
//
// gomemcache has no context support. When ctx can be cancelled, each
// request runs on its own goroutine so Enqueue can return as soon as ctx is
// done (with ErrOutcomeUnknown wrapping ctx's error, since the request may
// still be stored); the request itself ends within WithTimeout and Close
// waits for it. With a ctx that is never done (context.Background) there
// is no extra goroutine. Host names are resolved at each connect, so a
// name that does not resolve yet only makes its server look down.
package producer
