// Package push delivers push messages to Apple's APNs through
// github.com/sideshow/apns2 and classifies every outcome.
//
// # Messages
//
// A Message is the JSON body of one queue item (docs/message.md).
// ParseMessage decodes strictly (unknown fields are errors) and validates;
// Validate rejects, before anything is sent, every message that can never be
// delivered, with a *ValidationError naming the field and wrapping
// ErrInvalidMessage. APNsPayload builds the exact body sent to Apple; Encode
// the compact JSON for a queue item.
//
// # Sending
//
// NewSender(Config) loads credentials and fails at once on a bad key,
// certificate, CA file or host, and for token auth signs the first provider
// token, so a bad key never reaches the send path. A Sender owns
// Config.Connections apns2 clients, each with its own HTTP/2-only
// net/http.Transport and at most StreamsPerConnection pushes in flight
// (more wait for a free slot; a server advertising fewer streams gets more
// connections, not a hang). Send picks a client round-robin and is safe
// for any number of concurrent goroutines; it blocks only on the network
// and for a slot (bounded by ctx), the request by Config.RequestTimeout too.
//
// Stalled connections: every transport's HTTP2Config has SendPingTimeout
// (Config.ReadIdleTimeout) and PingTimeout,
// so a connection that receives nothing for ReadIdleTimeout is PINGed and,
// if the PING is not answered within PingTimeout, closed; its in-flight
// pushes fail with a network error (class Retry) and the next push dials a
// fresh connection.
//
// Provider token: one per process, shared by all clients of all Senders
// with the same key, key ID, team ID and refresh interval (an apns2
// token.Token, kept in processTokens; a Sender with an injected clock gets
// its own). Its Bearer and IssuedAt are replaced under the token's own
// mutex, by Send, when Config.TokenRefresh (20 to 50 min, default 45) has
// passed on Config.Now; apns2's own 3000 s regeneration therefore never
// fires first. Config.Now is injectable so tests can move an hour in an
// instant.
//
// # Outcomes
//
// Send returns a Result with a Class, per docs/apns.md §3:
//
//	Delivered       200
//	DeadToken       410 Unregistered/ExpiredToken, BadDeviceToken,
//	                DeviceTokenNotForTopic: tell the app to drop the token
//	                (for 410, only if registered before Result.Timestamp)
//	Retry           429 TooManyRequests, 5xx, IdleTimeout, network errors:
//	                retry after Result.RetryAfter (full jitter, Backoff)
//	BadMessage      the message is wrong (413, BadCollapseId, ...): drop it
//	BadCredentials  key, certificate, topic or configuration is wrong
//	                (403s, BadTopic, TooManyProviderTokenUpdates): stop,
//	                keep the message, alert a human (logged at error level)
//
// A wrong-environment guard (badTokenWindow) turns BadDeviceToken into
// BadCredentials with ErrLikelyWrongEnvironment once it dominates the last
// 100 answers, so a misconfigured host cannot make the app drop every token.
//
// Unknown reasons are classified by status (403 → BadCredentials, other 4xx
// → BadMessage, 5xx → Retry) and logged. Two cases are retried inside Send,
// once each: 503 Shutdown / IdleTimeout / a GOAWAY (resent at once on a new
// connection) and 403 ExpiredProviderToken (a new token is signed first).
// GOAWAY debug data ({"reason": ...}) is parsed and classified like a
// response.
//
// Invariant: Send never reports Delivered without a 200 from APNs, and the
// zero Class is ClassUnknown, never Delivered.
package push
