// Package apnssim is a local APNs provider-API simulator: a real HTTP/2
// server over TLS that apns2 cannot tell from Apple, for development,
// tests and load runs (kpush apns-sim wraps it).
//
// It answers POST /3/device/<token> with Apple's status codes and JSON
// reasons, applying the checks of docs/apns.md §7 in order (the
// first failing check answers): method, path, repeated headers, token form,
// the apns-* headers, the provider token (form always; signature with
// Config.TrustKeys; team, key and update rate per connection), payload
// size, dead and topic-bound tokens, the per-token rate limit, injected
// faults (which replace only would-be 200s, so validation stays
// deterministic), then latency and 200 with the apns-id echoed or
// generated. GET /sim/stats returns Stats as JSON and is not counted.
//
// TLS: Config.TLSDir holds ca.pem, cert.pem and key.pem, generated (a small
// P-256 CA and a server certificate for 127.0.0.1, ::1 and localhost)
// when all three are absent and reused when present; a partial set is an
// error. Clients trust ca.pem.
//
// # Goroutines
//
// The accept loop (Start or Serve) owns the listener and starts one
// goroutine per connection, which owns the TLS handshake and the
// certificate check, then hands the *tls.Conn to a net/http.Server (HTTP/2,
// MaxConcurrentStreams 1,000) through connListener; ConnContext attaches
// the connection's connState to its requests. The HTTP/2 server runs one
// goroutine per stream calling handle. Per-connection state (first team and
// key, current token, the one-stream gate) is guarded by its own mutex;
// counters by one mutex in counters. Close closes the listener, every raw
// connection (releasing stalled ones), then the HTTP server, and waits for
// all goroutines it started.
//
// # Deviations from Apple (documented in docs/apns.md)
//
// Go's stock HTTP/2 server advertises MaxConcurrentStreams (1,000) in
// its first SETTINGS and cannot lower it per connection. So "one stream
// until the first valid provider token" is enforced by serialising a
// connection's streams behind a one-slot gate until a valid token arrives,
// not by SETTINGS. GOAWAY with debug data is sent only for a bad client
// certificate (the simulator speaks raw frames on that connection); the
// idle timeout and Shutdown close with a GOAWAY that carries no reason.
package apnssim
