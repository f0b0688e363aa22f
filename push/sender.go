package push

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/google/uuid"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/certificate"
	"github.com/sideshow/apns2/token"
)

// Apple's hosts.
const (
	HostProduction  = apns2.HostProduction
	HostDevelopment = apns2.HostDevelopment
)

// Provider-token refresh bounds (docs/apns.md §4): Apple rejects a token older
// than an hour and a token changed more often than every 20 minutes. The
// upper bound stays below apns2's own 3000 s regeneration so apns2 never
// refreshes behind our back.
const (
	MinTokenRefresh     = 20 * time.Minute
	MaxTokenRefresh     = 50 * time.Minute
	DefaultTokenRefresh = 45 * time.Minute
)

// Sentinels for configuration errors, for errors.Is.
var (
	ErrNoCredentials = errors.New("no APNs credentials: give --auth-key, --key-id and --team-id (token auth) or --cert (certificate auth); for a local simulator, kpush up prints a kpush push command signed with its development key, and kpush apns-sim prints its key (--auth-key DIR/dev-key.p8 --key-id KPUSHSIM01 --team-id KPUSHDEV01)")
	ErrBadConfig     = errors.New("bad APNs sender configuration")
	ErrClosed        = errors.New("push: sender closed")
	// ErrLikelyWrongEnvironment marks a BadDeviceToken turned into
	// BadCredentials because most recent pushes got it: the tokens are
	// probably from the other APNs environment (sandbox vs production),
	// and dropping them all would destroy good tokens.
	ErrLikelyWrongEnvironment = errors.New("most recent pushes were rejected as BadDeviceToken: the tokens probably belong to the other APNs environment (check --development / --apns-host); tokens are kept")
)

// DefaultConnections is the number of HTTP/2 connections a Sender opens
// when Config.Connections is 0: one carries StreamsPerConnection pushes
// at once.
const DefaultConnections = 1

// Config configures a Sender. Exactly one of token auth (AuthKeyFile,
// KeyID, TeamID) or certificate auth (CertFile) is required.
type Config struct {
	// Host is the APNs base URL. Empty means Apple production, or Apple's
	// sandbox when Development is set.
	Host        string
	Development bool
	// CAFile is a PEM file of extra roots to trust (the simulator's
	// ca.pem); empty means the system roots.
	CAFile string

	AuthKeyFile string // .p8 PKCS#8 EC private key
	KeyID       string
	TeamID      string

	CertFile     string // .p12/.pfx or .pem certificate with its key
	CertPassword string
	// CertPasswordFile holds the password instead (its first line), so
	// that the password is never a flag value, visible in the process
	// list: a file mounted from a Secret.
	CertPasswordFile string

	// Connections is the number of HTTP/2 connections (apns2 clients)
	// used round-robin; 0 means DefaultConnections. Each carries up to the
	// server's stream limit concurrently (StreamsPerConnection); pushes
	// beyond it wait for a free stream. ConnectionsFor sizes it for a
	// number of pushes in flight. More connections than needed cost the
	// server (and this process) more reads and writes per push: each
	// carries fewer frames.
	Connections int
	// RequestTimeout bounds one push; default 30 s.
	RequestTimeout time.Duration
	// ReadIdleTimeout is how long a connection may receive nothing before
	// it is PINGed; PingTimeout is how long the PING may go unanswered
	// before the connection is closed and replaced. Defaults 15 s, 10 s.
	ReadIdleTimeout time.Duration
	PingTimeout     time.Duration
	// DialTimeout bounds TCP connect plus TLS handshake; default 20 s.
	DialTimeout time.Duration
	// TokenRefresh is the provider-token lifetime, within [20 min, 50
	// min]; default 45 min.
	TokenRefresh time.Duration
	// Backoff computes Result.RetryAfter.
	Backoff Backoff
	Logger  *slog.Logger
	// Now is the clock used for provider tokens; default time.Now. Tests
	// move it forward to exercise refresh without waiting an hour.
	Now func() time.Time
}

// StreamsPerConnection is the stream limit Apple advertised in recent
// reports and the simulator advertises (docs/apns.md).
const StreamsPerConnection = 1000

// ConnectionsFor is the number of connections that carries inFlight
// concurrent pushes without waiting for streams: one per
// StreamsPerConnection.
func ConnectionsFor(inFlight int) int {
	return max(1, (inFlight+StreamsPerConnection-1)/StreamsPerConnection)
}

// Sender sends messages to APNs over several HTTP/2 connections. It is safe
// for concurrent use by many goroutines.
type Sender struct {
	cfg    Config
	log    *slog.Logger
	host   string
	conns  []apnsConn
	next   atomic.Uint64
	token  *providerToken // nil with certificate auth
	closed atomic.Bool
	badEnv badTokenWindow

	credLog, unknownLog logLimiter
}

// Thresholds of the wrong-environment guard: among the last
// badTokenWindowSize APNs answers, at least badTokenMinSamples seen, a
// BadDeviceToken share of badTokenShare or more means misconfiguration,
// not dead tokens (docs/apns.md §3, "Most tokens failing").
const (
	badTokenWindowSize = 100
	badTokenMinSamples = 50
	badTokenShare      = 0.8
)

// badTokenWindow remembers whether each of the last APNs answers was
// BadDeviceToken. Every push records into it, so it takes no lock: a slot
// is claimed by an atomic counter and swapped, and bad counts the true
// slots (exact whatever the interleaving, since each swap returns what it
// replaced).
type badTokenWindow struct {
	ring [badTokenWindowSize]atomic.Bool
	next atomic.Int64 // answers recorded
	bad  atomic.Int64 // true slots in ring
}

// record adds one answer and reports whether BadDeviceToken answers now
// dominate the window.
func (w *badTokenWindow) record(bad bool) bool {
	i := w.next.Add(1) - 1
	old := w.ring[i%badTokenWindowSize].Swap(bad)
	n := w.bad.Load()
	if bad != old {
		if bad {
			n = w.bad.Add(1)
		} else {
			n = w.bad.Add(-1)
		}
	}
	count := min(i+1, badTokenWindowSize)
	return count >= badTokenMinSamples && float64(n) >= badTokenShare*float64(count)
}

// NewSender checks the configuration, loads the credentials and, for token
// auth, signs the first provider token, so a bad key, certificate or CA
// fails here rather than on every push.
func NewSender(cfg Config) (*Sender, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	realClock := cfg.Now == nil
	if realClock {
		cfg.Now = time.Now
	}
	if cfg.Connections <= 0 {
		cfg.Connections = DefaultConnections
	}
	cfg.RequestTimeout = cmpOr(cfg.RequestTimeout, 30*time.Second)
	cfg.ReadIdleTimeout = cmpOr(cfg.ReadIdleTimeout, 15*time.Second)
	cfg.PingTimeout = cmpOr(cfg.PingTimeout, 10*time.Second)
	cfg.DialTimeout = cmpOr(cfg.DialTimeout, 20*time.Second)
	cfg.TokenRefresh = cmpOr(cfg.TokenRefresh, DefaultTokenRefresh)
	if cfg.TokenRefresh < MinTokenRefresh || cfg.TokenRefresh > MaxTokenRefresh {
		return nil, fmt.Errorf("%w: token refresh %v outside [%v, %v] (Apple rejects tokens changed more often than every 20 minutes or older than an hour)", ErrBadConfig, cfg.TokenRefresh, MinTokenRefresh, MaxTokenRefresh)
	}

	host, err := resolveHost(cfg.Host, cfg.Development)
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := loadCAFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		tlsConf.RootCAs = pool
	}

	s := &Sender{cfg: cfg, log: cfg.Logger, host: host}
	tokenAuth := cfg.AuthKeyFile != "" || cfg.KeyID != "" || cfg.TeamID != ""
	switch {
	case tokenAuth && cfg.CertFile != "":
		return nil, fmt.Errorf("%w: give either token auth (auth key, key id, team id) or a certificate, not both", ErrBadConfig)
	case tokenAuth:
		tok, err := newProviderToken(cfg.AuthKeyFile, cfg.KeyID, cfg.TeamID, cfg.TokenRefresh, cfg.Now, realClock)
		if err != nil {
			return nil, err
		}
		s.token = tok
	case cfg.CertFile != "":
		password := cfg.CertPassword
		if cfg.CertPasswordFile != "" {
			if password != "" {
				return nil, fmt.Errorf("%w: give the certificate password as a file or a value, not both", ErrBadConfig)
			}
			b, err := os.ReadFile(cfg.CertPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("%w: certificate password file: %w", ErrBadConfig, err)
			}
			password, _, _ = strings.Cut(string(b), "\n")
			password = strings.TrimSuffix(password, "\r")
		}
		cert, err := loadCertificate(cfg.CertFile, password)
		if err != nil {
			return nil, err
		}
		tlsConf.Certificates = []tls.Certificate{cert}
	default:
		return nil, ErrNoCredentials
	}

	for range cfg.Connections {
		tr := newTransport(tlsConf, cfg.DialTimeout, cfg.ReadIdleTimeout, cfg.PingTimeout)
		c := &apns2.Client{
			Host: host,
			// No http.Client.Timeout: with a RoundTripper net/http does
			// not know (retryAfterTransport) it arms a timer and starts
			// a goroutine per request; push bounds the request with its
			// context instead (docs/benchmarks.md).
			HTTPClient: &http.Client{Transport: retryAfterTransport{tr}},
		}
		if s.token != nil {
			c.Token = s.token.tok
		}
		s.conns = append(s.conns, apnsConn{client: c, slots: make(chan struct{}, StreamsPerConnection)})
	}
	return s, nil
}

// apnsConn is one HTTP/2 connection's client and its free stream slots.
//
// The bound is the sender's own, not net/http's StrictMaxConcurrentRequests:
// in strict mode every request queued for a connection holds a stream
// reservation, and once more requests are queued than the server's stream
// limit, the one about to write waits for a slot the queued reservations
// never give back, and every push on that connection hangs
// (TestMoreSendsThanStreamsOnOneConnection). Holding at most
// StreamsPerConnection requests in the transport avoids that; should a
// server advertise fewer streams, net/http dials another connection rather
// than block.
type apnsConn struct {
	client *apns2.Client
	slots  chan struct{}
}

// newTransport is one HTTP/2-only client transport. MaxConnsPerHost 1 makes
// a burst of first requests share a few dials instead of one each; the
// stream limit is not strict (see apnsConn). A connection that hears
// nothing for ReadIdleTimeout is PINGed and closed when the PING (or a
// write) stalls for PingTimeout; the next request dials a new one. Idle
// connections are kept: Apple asks providers to keep them open.
func newTransport(tlsConf *tls.Config, dialTimeout, readIdleTimeout, pingTimeout time.Duration) *http.Transport {
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	return &http.Transport{
		TLSClientConfig:     tlsConf.Clone(),
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}).DialContext,
		TLSHandshakeTimeout: dialTimeout,
		ForceAttemptHTTP2:   true,
		Protocols:           protocols,
		MaxConnsPerHost:     1,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout:  readIdleTimeout,
			PingTimeout:      pingTimeout,
			WriteByteTimeout: pingTimeout,
		},
	}
}

func resolveHost(host string, development bool) (string, error) {
	if host == "" {
		if development {
			return HostDevelopment, nil
		}
		return HostProduction, nil
	}
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("%w: APNs host %q: want an https URL such as https://127.0.0.1:2197", ErrBadConfig, host)
	}
	return strings.TrimSuffix(host, "/"), nil
}

func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrBadConfig, path)
	}
	return pool, nil
}

func loadCertificate(path, password string) (tls.Certificate, error) {
	var (
		cert tls.Certificate
		err  error
	)
	switch strings.ToLower(filepath.Ext(path)) {
	case ".p12", ".pfx":
		cert, err = certificate.FromP12File(path, password)
	default:
		cert, err = certificate.FromPemFile(path, password)
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load APNs certificate %s: %w (want a .p12 or a PEM with certificate and key)", path, err)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	if cert.Leaf != nil && time.Now().After(cert.Leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("%w: APNs certificate %s expired on %s", ErrBadConfig, path, cert.Leaf.NotAfter.Format(time.DateOnly))
	}
	return cert, nil
}

// Host is the APNs base URL the sender pushes to.
func (s *Sender) Host() string { return s.host }

// Send pushes m to one device token and classifies the outcome; a Retry
// from APNs or the network carries RetryAfter computed from m.Attempt
// (after Close, Send returns Retry with ErrClosed at once). It assumes a
// validated message (ParseMessage or Validate) but checks the token's form
// itself, without a request: a malformed token is DeadToken. A 503
// Shutdown or 400 IdleTimeout is resent once at once on a fresh
// connection; an ExpiredProviderToken makes the sender sign a new token and
// resend once.
func (s *Sender) Send(ctx context.Context, m *Message, deviceToken string) Result {
	res := Result{Token: deviceToken, Platform: PlatformAPNs}
	if s.closed.Load() {
		res.Class, res.Err = Retry, ErrClosed
		return res
	}
	if err := ValidateToken(deviceToken); err != nil {
		// Apple classifies a malformed token as BadDeviceToken: the app
		// should drop it, as for any dead token.
		res.Class, res.Reason = DeadToken, apns2.ReasonBadDeviceToken
		res.Err = &ValidationError{Field: "token", Reason: err.Error()}
		return res
	}
	payload, err := m.APNsPayload()
	if err != nil {
		res.Class, res.Err = BadMessage, &ValidationError{Field: "payload", Reason: err.Error()}
		return res
	}
	n := &apns2.Notification{
		DeviceToken: deviceToken,
		Topic:       m.Topic,
		CollapseID:  m.CollapseID,
		Priority:    m.Priority,
		PushType:    apns2.EPushType(m.EffectivePushType()),
		Payload:     json.RawMessage(payload),
	}
	if m.ID != "" {
		n.ApnsID = APNsID(m.ID, deviceToken)
	}
	if m.Expiration > 0 {
		n.Expiration = time.Unix(m.Expiration, 0)
	}

	idx := s.next.Add(1)
	resentShutdown, resentToken := false, false
	for {
		conn := s.conns[idx%uint64(len(s.conns))]
		client := conn.client
		var gen uint64
		if s.token != nil {
			s.token.refreshIfDue(s.log)
			gen = s.token.gen.Load()
		}
		select {
		case conn.slots <- struct{}{}:
			res = s.push(ctx, client, n, m.Attempt)
			<-conn.slots
		case <-ctx.Done():
			res = Result{Token: deviceToken, APNsID: n.ApnsID, Platform: PlatformAPNs, Class: Retry,
				Err: fmt.Errorf("push to APNs: %w", ctx.Err()), RetryAfter: s.cfg.Backoff.Delay("", m.Attempt)}
		}
		switch {
		case !resentShutdown && res.Class == Retry && (res.Reason == apns2.ReasonShutdown || res.Reason == apns2.ReasonIdleTimeout || isGoAway(res.Err)):
			// The connection is going away: let the transport drop it
			// and resend once on a fresh one.
			resentShutdown = true
			client.CloseIdleConnections()
			idx++
			continue
		case !resentToken && s.token != nil && res.Reason == apns2.ReasonExpiredProviderToken:
			resentToken = true
			s.log.Warn("APNs says the provider token expired; signing a new one (check the clock)", "token_age", s.token.age())
			s.token.refreshAfter(gen, s.log)
			continue
		}
		break
	}
	if res.Status != 0 {
		dominated := s.badEnv.record(res.Reason == apns2.ReasonBadDeviceToken)
		if dominated && res.Reason == apns2.ReasonBadDeviceToken {
			res.Class, res.Err = BadCredentials, ErrLikelyWrongEnvironment
		}
	}
	switch {
	case res.Class == BadCredentials:
		if n, ok := s.credLog.allow(); ok {
			s.log.Error("APNs rejected our credentials or configuration; stop sending and fix them",
				"status", res.Status, "reason", res.Reason, "err", res.Err, "topic", m.Topic, "host", s.host, "suppressed", n)
		}
	case res.Err == nil && res.Class != Delivered && !KnownReason(res.Reason):
		if n, ok := s.unknownLog.allow(); ok {
			s.log.Warn("unknown APNs reason", "status", res.Status, "reason", res.Reason, "class", res.Class, "suppressed", n)
		}
	}
	return res
}

// logLimiter lets one log line through per second and counts the rest, so
// a stream of identical failures stays loud without flooding the log.
type logLimiter struct {
	last       atomic.Int64 // UnixNano of the last line let through
	suppressed atomic.Int64
}

func (l *logLimiter) allow() (suppressed int64, ok bool) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(time.Second) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}

func (s *Sender) push(ctx context.Context, client *apns2.Client, n *apns2.Notification, attempt int) Result {
	res := Result{Token: n.DeviceToken, APNsID: n.ApnsID, Platform: PlatformAPNs}
	hint := new(retryAfterHint)
	reqCtx, cancel := context.WithTimeout(context.WithValue(ctx, retryAfterKey{}, hint), s.cfg.RequestTimeout)
	defer cancel()
	resp, err := client.PushWithContext(reqCtx, n)
	if err != nil {
		res.Err = err
		res.Class = Retry
		if debug, ok := goAwayDebugData(err); ok {
			var body struct{ Reason string }
			if json.Unmarshal([]byte(debug), &body) == nil && body.Reason != "" {
				res.Reason = body.Reason
				res.Class = Classify(0, body.Reason)
			}
		}
		if ctx.Err() != nil {
			res.Err = fmt.Errorf("push to APNs: %w", ctx.Err())
		}
		res.RetryAfter = s.cfg.Backoff.Delay(res.Reason, attempt)
		return res
	}
	res.Status = resp.StatusCode
	res.Reason = resp.Reason
	if resp.ApnsID != "" {
		res.APNsID = resp.ApnsID
	}
	res.Timestamp = resp.Timestamp.Time
	res.Class = Classify(resp.StatusCode, resp.Reason)
	if res.Class == Retry {
		// Apple sends no Retry-After today; if a server ever does, never
		// come back sooner than it asked.
		res.RetryAfter = max(s.cfg.Backoff.Delay(resp.Reason, attempt), hint.get())
	}
	return res
}

// retryAfterTransport records a response's Retry-After header in the
// request context's retryAfterHint, since apns2's Response drops headers.
// It keeps CloseIdleConnections, which apns2 calls through a type assertion.
type retryAfterTransport struct{ base *http.Transport }

type retryAfterKey struct{}

type retryAfterHint struct{ d atomic.Int64 }

func (h *retryAfterHint) get() time.Duration { return time.Duration(h.d.Load()) }

func (t retryAfterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode == http.StatusOK {
		return resp, err
	}
	if hint, ok := req.Context().Value(retryAfterKey{}).(*retryAfterHint); ok {
		hint.d.Store(int64(parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())))
	}
	return resp, err
}

func (t retryAfterTransport) CloseIdleConnections() { t.base.CloseIdleConnections() }

// parseRetryAfter reads delay-seconds or an HTTP date; 0 if absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs > 0 {
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if when, err := http.ParseTime(v); err == nil && when.After(now) {
		return when.Sub(now)
	}
	return 0
}

func isGoAway(err error) bool {
	_, ok := goAwayDebugData(err)
	return ok
}

// goAwayDebugData finds the GOAWAY error in err's chain and returns its
// debug data (Apple puts {"reason": ...} there). net/http's HTTP/2 error
// type is unexported and has no As method, so it is recognised by shape:
// a struct with LastStreamID, ErrCode and a string DebugData, the fields
// of both net/http's and x/net's GoAwayError.
func goAwayDebugData(err error) (string, bool) {
	for err != nil {
		v := reflect.ValueOf(err)
		if v.Kind() == reflect.Struct {
			debug := v.FieldByName("DebugData")
			if debug.IsValid() && debug.Kind() == reflect.String &&
				v.FieldByName("LastStreamID").IsValid() && v.FieldByName("ErrCode").IsValid() {
				return debug.String(), true
			}
		}
		err = errors.Unwrap(err)
	}
	return "", false
}

// Close closes idle connections; later Sends return Retry with ErrClosed.
func (s *Sender) Close() {
	if s.closed.Swap(true) {
		return
	}
	for _, c := range s.conns {
		c.client.CloseIdleConnections()
	}
}

// apnsIDSpace is the UUID namespace for name-based apns-ids.
var apnsIDSpace = uuid.MustParse("6f0d3c5e-2b1a-4f6e-9c1d-6b7a1e2f3a4b")

// APNsID is the apns-id kpush sends for message id and device token: a
// lowercase name-based (SHA-1) UUID, the same on every retry.
func APNsID(messageID, deviceToken string) string {
	return uuid.NewSHA1(apnsIDSpace, []byte(messageID+"/"+strings.ToLower(deviceToken))).String()
}

// providerToken is the one provider token of a process, shared by every
// apns2 client. apns2 reads it under tok's mutex; we replace Bearer and
// IssuedAt under the same mutex, on our clock and our schedule.
type providerToken struct {
	tok     *token.Token
	refresh time.Duration
	now     func() time.Time

	mu     sync.Mutex // serialises signing; tok.Mutex guards tok's fields
	issued time.Time  // on our clock; guarded by mu
	// due is when the next refresh is due (UnixNano on our clock), read
	// without mu so the per-push check costs one atomic load.
	due atomic.Int64
	// gen counts signings, so many pushes rejected with the same expired
	// token cause one new token, not one each.
	gen atomic.Uint64
}

// processTokens holds the provider tokens of this process, one per (key,
// key ID, team ID, refresh interval), so every Sender in the process (a
// worker and kpush up may build several) shares one token, as Apple asks.
// Senders with an injected clock (tests) get their own.
var processTokens struct {
	sync.Mutex
	m map[string]*providerToken
}

func newProviderToken(keyFile, keyID, teamID string, refresh time.Duration, now func() time.Time, share bool) (*providerToken, error) {
	switch {
	case keyFile == "":
		return nil, fmt.Errorf("%w: token auth needs the .p8 auth key file (--auth-key)", ErrBadConfig)
	case keyID == "":
		return nil, fmt.Errorf("%w: token auth needs the key ID (--key-id)", ErrBadConfig)
	case teamID == "":
		return nil, fmt.Errorf("%w: token auth needs the team ID (--team-id)", ErrBadConfig)
	}
	key, err := token.AuthKeyFromFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("load APNs auth key %s: %w (want Apple's .p8 PKCS#8 EC key)", keyFile, err)
	}
	var id string
	if share {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("load APNs auth key %s: %w", keyFile, err)
		}
		sum := sha256.Sum256(der)
		id = fmt.Sprintf("%s\x00%s\x00%x\x00%d", keyID, teamID, sum, refresh)
		processTokens.Lock()
		defer processTokens.Unlock()
		if p := processTokens.m[id]; p != nil {
			return p, nil
		}
	}
	p := &providerToken{
		tok:     &token.Token{AuthKey: key, KeyID: keyID, TeamID: teamID},
		refresh: refresh,
		now:     now,
	}
	if err := p.sign(); err != nil {
		return nil, fmt.Errorf("sign APNs provider token with %s: %w", keyFile, err)
	}
	if share {
		if processTokens.m == nil {
			processTokens.m = make(map[string]*providerToken)
		}
		processTokens.m[id] = p
	}
	return p, nil
}

// sign makes a new JWT with iat from our clock. apns2's IssuedAt gets the
// wall-clock time, so apns2's own 3000 s expiry never fires before ours.
func (p *providerToken) sign() error {
	iat := p.now()
	jwtToken := &jwt.Token{
		Header: map[string]any{"alg": "ES256", "kid": p.tok.KeyID},
		Claims: jwt.MapClaims{"iss": p.tok.TeamID, "iat": iat.Unix()},
		Method: jwt.SigningMethodES256,
	}
	bearer, err := jwtToken.SignedString(p.tok.AuthKey)
	if err != nil {
		return err
	}
	p.tok.Lock()
	p.tok.Bearer = bearer
	p.tok.IssuedAt = time.Now().Unix()
	p.tok.Unlock()
	p.issued = iat
	p.due.Store(iat.Add(p.refresh).UnixNano())
	p.gen.Add(1)
	return nil
}

func (p *providerToken) refreshIfDue(log *slog.Logger) {
	if p.now().UnixNano() < p.due.Load() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.now().Sub(p.issued) < p.refresh {
		return // another goroutine refreshed it meanwhile
	}
	if err := p.sign(); err != nil {
		log.Error("cannot sign a new APNs provider token; the old one will expire", "err", err)
	}
}

// refreshAfter signs a new token unless one was signed since generation
// gen (the token a rejected push carried).
func (p *providerToken) refreshAfter(gen uint64, log *slog.Logger) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen.Load() != gen {
		return
	}
	if err := p.sign(); err != nil {
		log.Error("cannot sign a new APNs provider token", "err", err)
	}
}

func (p *providerToken) age() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.now().Sub(p.issued)
}

// Bearer returns the current provider token (empty with certificate
// auth), for diagnostics and tests.
func (s *Sender) Bearer() string {
	if s.token == nil {
		return ""
	}
	s.token.tok.Lock()
	defer s.token.tok.Unlock()
	return s.token.tok.Bearer
}
