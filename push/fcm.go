package push

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

// FCM's production endpoint and the OAuth2 scope an access token needs.
const (
	FCMEndpoint = "https://fcm.googleapis.com"
	FCMScope    = "https://www.googleapis.com/auth/firebase.messaging"
	// GoogleTokenURI is where access tokens come from when the
	// credentials file names no token_uri.
	GoogleTokenURI = "https://oauth2.googleapis.com/token"
)

func cmpOrString(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// Sentinels for FCM configuration errors, for errors.Is.
var (
	ErrNoFCMCredentials = errors.New("no FCM credentials: give --fcm-credentials FILE, the service-account JSON file from the Firebase console (docs/fcm.md); for the local simulator use the service-account.json kpush fcm-sim writes, or run kpush up")
	// ErrFCMAccessToken marks a failure to get an OAuth2 access token
	// that the token endpoint answered with an error: the service
	// account is wrong, disabled or its key revoked.
	ErrFCMAccessToken = errors.New("the token endpoint refused the service account's access-token request")
)

// FCMConfig configures an FCMSender.
type FCMConfig struct {
	// CredentialsFile is the service-account JSON file. Its project_id
	// names the Firebase project; its token_uri is where access tokens
	// are fetched (the simulator writes its own address there).
	CredentialsFile string
	// Endpoint is FCM's base URL; empty means FCMEndpoint.
	Endpoint string
	// CAFile is a PEM file of extra roots to trust for Endpoint and the
	// token endpoint (the simulator's ca.pem); empty: the system roots.
	CAFile string
	// Connections is the number of HTTP/2 connections used round-robin;
	// default 4.
	Connections int
	// StreamsPerConnection bounds the sends in flight on one connection;
	// default 100, the stream limit Google advertises. More sends wait
	// for a free slot.
	StreamsPerConnection int
	// RequestTimeout bounds one send (and one access-token request);
	// default 30 s.
	RequestTimeout time.Duration
	// ReadIdleTimeout, PingTimeout and DialTimeout as in Config; defaults
	// 15 s, 10 s and 20 s.
	ReadIdleTimeout time.Duration
	PingTimeout     time.Duration
	DialTimeout     time.Duration
	// Backoff computes Result.RetryAfter.
	Backoff Backoff
	Logger  *slog.Logger
}

// FCMSender sends messages to FCM's HTTP v1 API, one request per
// registration token. It is safe for concurrent use by many goroutines.
type FCMSender struct {
	cfg     FCMConfig
	log     *slog.Logger
	sendURL string
	project string
	conns   []fcmConn
	next    atomic.Uint64
	token   *accessTokens
	closed  atomic.Bool

	credLog, unknownLog logLimiter
}

// fcmConn is one HTTP/2 connection's client and its free stream slots.
//
// The bound is the sender's own, not net/http's StrictMaxConcurrentRequests:
// in strict mode every request queued for a connection holds a stream
// reservation, and once more requests are queued than the server's stream
// limit, the one about to write waits for a slot the queued reservations
// never give back (all sends on that connection hang; seen with 256 sends
// over a 100-stream connection). Holding at most StreamsPerConnection
// requests in the transport avoids that; should a server advertise fewer
// streams, net/http dials another connection rather than block.
type fcmConn struct {
	client *http.Client
	slots  chan struct{}
}

// serviceAccount is what the sender reads from the credentials file
// itself, to check it before handing it to x/oauth2.
type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// NewFCMSender reads the service account, fetches the first access token
// (so bad credentials fail here, not on every send) and prepares
// Connections HTTP/2 connections.
func NewFCMSender(cfg FCMConfig) (*FCMSender, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CredentialsFile == "" {
		return nil, ErrNoFCMCredentials
	}
	if cfg.Connections <= 0 {
		cfg.Connections = 4
	}
	if cfg.StreamsPerConnection <= 0 {
		cfg.StreamsPerConnection = 100
	}
	cfg.RequestTimeout = cmpOr(cfg.RequestTimeout, 30*time.Second)
	cfg.ReadIdleTimeout = cmpOr(cfg.ReadIdleTimeout, 15*time.Second)
	cfg.PingTimeout = cmpOr(cfg.PingTimeout, 10*time.Second)
	cfg.DialTimeout = cmpOr(cfg.DialTimeout, 20*time.Second)

	raw, err := os.ReadFile(cfg.CredentialsFile)
	if err != nil {
		return nil, fmt.Errorf("read FCM credentials: %w", err)
	}
	var sa serviceAccount
	if err := json.Unmarshal(raw, &sa); err != nil {
		return nil, fmt.Errorf("%w: FCM credentials %s are not JSON: %v (want the service-account file from the Firebase console)", ErrBadConfig, cfg.CredentialsFile, err)
	}
	for _, f := range []struct{ name, value string }{
		{"project_id", sa.ProjectID}, {"private_key", sa.PrivateKey}, {"client_email", sa.ClientEmail},
	} {
		if f.value == "" {
			return nil, fmt.Errorf("%w: FCM credentials %s have no %s (want the service-account file from the Firebase console)", ErrBadConfig, cfg.CredentialsFile, f.name)
		}
	}
	if sa.Type != "service_account" {
		return nil, fmt.Errorf("%w: FCM credentials %s are of type %q, not service_account (want the service-account file from the Firebase console)", ErrBadConfig, cfg.CredentialsFile, sa.Type)
	}
	// What google.JWTConfigFromJSON builds, without the rest of
	// x/oauth2/google (and the GCE metadata client it pulls in).
	jwtCfg := &jwt.Config{
		Email:        sa.ClientEmail,
		PrivateKey:   []byte(sa.PrivateKey),
		PrivateKeyID: sa.PrivateKeyID,
		Scopes:       []string{FCMScope},
		TokenURL:     cmpOrString(sa.TokenURI, GoogleTokenURI),
	}
	if err := checkRSAKey(sa.PrivateKey); err != nil {
		return nil, fmt.Errorf("%w: FCM credentials %s: private_key: %v", ErrBadConfig, cfg.CredentialsFile, err)
	}

	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = FCMEndpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("%w: FCM endpoint %q: want an https URL such as https://127.0.0.1:4004", ErrBadConfig, endpoint)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := loadCAFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		tlsConf.RootCAs = pool
	}

	s := &FCMSender{
		cfg:     cfg,
		log:     cfg.Logger,
		sendURL: strings.TrimSuffix(endpoint, "/") + "/v1/projects/" + url.PathEscape(sa.ProjectID) + "/messages:send",
		project: sa.ProjectID,
	}
	for range cfg.Connections {
		// One connection per transport (newTransport's MaxConnsPerHost):
		// without the limit, the first burst of sends, arriving before
		// any HTTP/2 connection exists, dials and handshakes one
		// connection per send and then closes all but one.
		tr := newTransport(tlsConf, cfg.DialTimeout, cfg.ReadIdleTimeout, cfg.PingTimeout)
		s.conns = append(s.conns, fcmConn{
			// Client.Timeout costs here what a context deadline would:
			// the Transport is net/http's own, so the Client bounds the
			// request with a context, without the goroutine and timer it
			// adds for a RoundTripper it does not know (the APNs sender
			// wraps its transport, hence its context deadline instead).
			client: &http.Client{Transport: tr, Timeout: cfg.RequestTimeout},
			slots:  make(chan struct{}, cfg.StreamsPerConnection),
		})
	}
	// Access tokens travel on their own client: the token endpoint is
	// another host at Google, and HTTP/1.1 is fine for one request an hour.
	tokenClient := &http.Client{
		Transport: &http.Transport{TLSClientConfig: tlsConf.Clone(), TLSHandshakeTimeout: cfg.DialTimeout, ForceAttemptHTTP2: true},
		Timeout:   cfg.RequestTimeout,
	}
	s.token = &accessTokens{cfg: jwtCfg, client: tokenClient, log: cfg.Logger, account: sa.ClientEmail}
	if _, err := s.token.refresh(0); err != nil {
		return nil, fmt.Errorf("FCM credentials %s (%s, token endpoint %s): %w", cfg.CredentialsFile, sa.ClientEmail, jwtCfg.TokenURL, err)
	}
	return s, nil
}

// Project is the Firebase project the sender sends for.
func (s *FCMSender) Project() string { return s.project }

// Send sends m to one registration token and classifies the outcome
// (docs/fcm.md): a Retry carries RetryAfter from the backoff over
// m.Attempt, never shorter than the server's Retry-After. A 401
// UNAUTHENTICATED makes the sender fetch a new access token and resend
// once. It assumes a validated message but checks the token's form
// itself, without a request: a malformed token is DeadToken.
func (s *FCMSender) Send(ctx context.Context, m *Message, regToken string) Result {
	res := Result{Token: regToken, Platform: PlatformFCM}
	if s.closed.Load() {
		res.Class, res.Err = Retry, ErrClosed
		return res
	}
	if err := ValidateFCMToken(regToken); err != nil {
		res.Class, res.Reason = DeadToken, FCMInvalidArgument
		res.Err = &ValidationError{Field: "fcm_token", Reason: err.Error()}
		return res
	}
	body, err := m.FCMRequest(regToken)
	if err != nil {
		res.Class, res.Err = BadMessage, err
		return res
	}
	conn := s.conns[s.next.Add(1)%uint64(len(s.conns))]
	select {
	case conn.slots <- struct{}{}:
		defer func() { <-conn.slots }()
	case <-ctx.Done():
		res.Class, res.Err = Retry, fmt.Errorf("send to FCM: %w", ctx.Err())
		res.RetryAfter = s.cfg.Backoff.Delay("", m.Attempt)
		return res
	}
	client := conn.client
	for refreshed := false; ; refreshed = true {
		tok, err := s.token.get()
		if err != nil {
			res = s.tokenFailure(regToken, err, m.Attempt)
			break
		}
		res = s.post(ctx, client, tok.header, body, regToken, m.Attempt)
		if res.Status == http.StatusUnauthorized && res.Reason == FCMUnauthenticated && !refreshed {
			// The access token expired early or was revoked: fetch a
			// new one (once for all sends that saw this one) and resend.
			if _, err := s.token.refresh(tok.gen); err != nil {
				res = s.tokenFailure(regToken, err, m.Attempt)
				break
			}
			continue
		}
		break
	}
	if res.Class == BadCredentials {
		if n, ok := s.credLog.allow(); ok {
			s.log.Error("FCM rejected our credentials or configuration; stop sending and fix them",
				"status", res.Status, "reason", res.Reason, "err", res.Err, "project", s.project, "suppressed", n)
		}
	}
	return res
}

// tokenFailure is the Result of a send that could not get an access
// token: BadCredentials when the token endpoint refused the service
// account, Retry when it could not be reached.
func (s *FCMSender) tokenFailure(regToken string, err error, attempt int) Result {
	res := Result{Token: regToken, Platform: PlatformFCM, Err: err}
	if errors.Is(err, ErrFCMAccessToken) {
		res.Class, res.Reason = BadCredentials, "AccessTokenRefused"
		return res
	}
	res.Class = Retry
	res.RetryAfter = s.cfg.Backoff.Delay("", attempt)
	return res
}

// maxFCMErrorBody bounds how much of an error response is read.
const maxFCMErrorBody = 64 << 10

func (s *FCMSender) post(ctx context.Context, client *http.Client, auth string, body []byte, regToken string, attempt int) Result {
	res := Result{Token: regToken, Platform: PlatformFCM}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.sendURL, bytes.NewReader(body))
	if err != nil {
		res.Class, res.Err = BadMessage, err
		return res
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		res.Class, res.Err = Retry, fmt.Errorf("send to FCM: %w", err)
		if ctx.Err() != nil {
			res.Err = fmt.Errorf("send to FCM: %w", ctx.Err())
		}
		res.RetryAfter = s.cfg.Backoff.Delay("", attempt)
		return res
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxFCMErrorBody))
	if resp.StatusCode == http.StatusOK {
		var ok struct {
			Name string `json:"name"`
		}
		if err == nil {
			_ = json.Unmarshal(b, &ok)
		}
		// A 200 is a delivery even if its body got lost on the way:
		// sending again would notify the device twice.
		res.Class, res.Name = Delivered, ok.Name
		return res
	}
	if err != nil {
		res.Class, res.Err = Retry, fmt.Errorf("read FCM error response: %w", err)
		res.RetryAfter = s.cfg.Backoff.Delay("", attempt)
		return res
	}
	e := parseFCMError(b)
	res.Reason = e.reason()
	res.Class = ClassifyFCM(resp.StatusCode, e.ErrorCode, e.Status, e.Message)
	if res.Class == Retry && !KnownFCMReason(res.Reason) {
		if n, ok := s.unknownLog.allow(); ok {
			s.log.Warn("unknown FCM error; treated as transient", "status", res.Status, "reason", res.Reason, "body", string(b), "suppressed", n)
		}
	}
	if res.Class == DeadToken || res.Class == BadMessage || res.Class == BadCredentials {
		res.Err = fmt.Errorf("FCM %d %s: %s", resp.StatusCode, res.Reason, e.Message)
	}
	if res.Class == Retry {
		res.ServerRetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		res.RetryAfter = max(s.cfg.Backoff.Delay(res.Reason, attempt), res.ServerRetryAfter)
	}
	return res
}

// Close closes idle connections; later Sends return Retry with ErrClosed.
func (s *FCMSender) Close() {
	if s.closed.Swap(true) {
		return
	}
	for _, c := range s.conns {
		c.client.CloseIdleConnections()
	}
	s.token.client.CloseIdleConnections()
}

// AccessTokensFetched counts the access tokens this sender fetched, for
// diagnostics and tests.
func (s *FCMSender) AccessTokensFetched() uint64 { return s.token.current().gen }

// accessTokens is the sender's one OAuth2 access token, fetched with the
// service account's signed JWT (x/oauth2/jwt) and replaced before it
// expires. Sends read it with one atomic load; one goroutine at a time
// fetches a new one.
type accessTokens struct {
	cfg     *jwt.Config
	client  *http.Client
	log     *slog.Logger
	account string

	cur atomic.Pointer[accessToken]
	mu  sync.Mutex // serialises fetches
}

type accessToken struct {
	header    string    // "Bearer <token>"
	refreshAt time.Time // fetch a new one from here on
	expiry    time.Time // unusable from here on
	gen       uint64    // counts fetches, from 1
}

// refreshMargin is how long before its expiry an access token is
// replaced: half its lifetime, at most five minutes, so a one-hour token
// is renewed at 55 minutes and a 4-second test token at 2.
func refreshMargin(lifetime time.Duration) time.Duration {
	return min(lifetime/2, 5*time.Minute)
}

func (a *accessTokens) current() *accessToken {
	if t := a.cur.Load(); t != nil {
		return t
	}
	return &accessToken{}
}

// get returns a usable access token. Past its refresh time one caller
// fetches a new one while the others go on with the old; past its expiry
// every caller waits for the new one.
func (a *accessTokens) get() (*accessToken, error) {
	t := a.cur.Load()
	now := time.Now()
	if now.Before(t.refreshAt) {
		return t, nil
	}
	if now.Before(t.expiry) {
		if !a.mu.TryLock() {
			return t, nil
		}
		nt, err := a.fetchLocked(t.gen)
		a.mu.Unlock()
		if err != nil {
			a.log.Warn("cannot renew the FCM access token yet; using the current one until it expires", "err", err, "expires_in", time.Until(t.expiry).Round(time.Second))
			return t, nil
		}
		return nt, nil
	}
	return a.refresh(t.gen)
}

// refresh fetches a new token unless one was fetched since generation
// gen (0 forces the first fetch).
func (a *accessTokens) refresh(gen uint64) (*accessToken, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fetchLocked(gen)
}

func (a *accessTokens) fetchLocked(gen uint64) (*accessToken, error) {
	if t := a.cur.Load(); t != nil && t.gen != gen {
		return t, nil // another caller fetched one meanwhile
	}
	start := time.Now() // the server's clock starts the token's life about here
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), oauth2.HTTPClient, a.client), a.client.Timeout)
	defer cancel()
	// A fresh TokenSource each time: x/oauth2 would otherwise keep
	// returning its cached token until ten seconds before expiry.
	tok, err := a.cfg.TokenSource(ctx).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
			return nil, fmt.Errorf("%w: %s got %d: %s", ErrFCMAccessToken, a.account, re.Response.StatusCode, strings.TrimSpace(string(re.Body)))
		}
		return nil, fmt.Errorf("fetch FCM access token: %w", err)
	}
	lifetime := time.Hour
	if !tok.Expiry.IsZero() {
		lifetime = time.Until(tok.Expiry)
	}
	nt := &accessToken{
		header:    "Bearer " + tok.AccessToken,
		expiry:    start.Add(lifetime),
		refreshAt: start.Add(lifetime - refreshMargin(lifetime)),
		gen:       a.current().gen + 1,
	}
	a.cur.Store(nt)
	return nt, nil
}

// fcmError is the error object of an FCM response body.
type fcmError struct {
	Code      int
	Message   string
	Status    string
	ErrorCode string // from the FcmError detail, "" when absent
}

func (e fcmError) reason() string {
	if e.ErrorCode != "" {
		return e.ErrorCode
	}
	return e.Status
}

func parseFCMError(b []byte) fcmError {
	var body struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &body) != nil {
		return fcmError{}
	}
	e := fcmError{Code: body.Error.Code, Message: body.Error.Message, Status: body.Error.Status}
	for _, d := range body.Error.Details {
		if strings.HasSuffix(d.Type, "google.firebase.fcm.v1.FcmError") && d.ErrorCode != "" {
			e.ErrorCode = d.ErrorCode
			break
		}
	}
	return e
}

// checkRSAKey checks that a service account's private_key is the PEM RSA
// key RS256 signing needs, so a damaged file fails with a clear reason.
func checkRSAKey(pemText string) error {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return errors.New("not a PEM key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		if _, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 != nil {
			return fmt.Errorf("not a PKCS#8 or PKCS#1 RSA key: %v", err)
		}
		return nil
	}
	if _, ok := key.(*rsa.PrivateKey); !ok {
		return fmt.Errorf("a %T, not an RSA key", key)
	}
	return nil
}
