// Package fcmsim is a local Firebase Cloud Messaging (HTTP v1) simulator:
// a real HTTPS server (HTTP/2 and HTTP/1.1) that serves both FCM's OAuth2
// token endpoint and its send endpoint, for development, tests and load
// runs (kpush fcm-sim wraps it). docs/fcm.md describes what it checks.
//
// # Credentials
//
// Config.TLSDir holds ca.pem, cert.pem and key.pem (created when absent,
// as the APNs simulator does) and service-account.json: a development
// service account with an RSA key, created when absent, whose token_uri
// is rewritten to the simulator's own address at every start. A client
// that reads the file and trusts ca.pem runs the whole OAuth2 flow against
// the simulator: it signs an RS256 JWT with the file's key and POSTs it to
// token_uri; the simulator verifies the signature against that key (or a
// Config.TrustKeys one), the audience, the scope and the expiry, and
// issues an access token that expires after Config.TokenTTL.
//
// # Sending
//
// POST /v1/projects/{project}/messages:send is checked in FCM's order, the
// first failing check answering with FCM's error body: access token (401
// UNAUTHENTICATED), project (404 NOT_FOUND), body and message.token (400),
// data values and reserved keys (400), content size (400), android ttl
// and priority (400), registration-token form (400), dead tokens (404
// UNREGISTERED), tokens of another project (403 SENDER_ID_MISMATCH), the
// per-token rate limit (429 QUOTA_EXCEEDED with Retry-After), injected
// faults (which replace only would-be 200s), latency, then 200 with a
// message name. GET /sim/stats returns Stats as JSON.
//
// # Goroutines
//
// Start (or Serve) runs a net/http server with HTTP/2 on one listener; it
// runs one goroutine per connection and per stream. Issued access tokens
// and counters are guarded by their own mutexes. Close closes the
// listener and every connection and waits for the server to stop.
package fcmsim
