package fcmsim

import (
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kpush/kpush/internal/simkit"
)

// DefaultAddr is where kpush fcm-sim listens unless told otherwise.
const DefaultAddr = "127.0.0.1:4004"

// MaxConcurrentStreams is the HTTP/2 stream limit the simulator advertises
// per connection, as Google's front ends do.
const MaxConcurrentStreams = 100

// DefaultTokenTTL is the lifetime of an issued access token, as at Google.
const DefaultTokenTTL = time.Hour

// Config configures a simulator. The zero value plus TLSDir is a
// fault-free FCM for the project of the development service account.
type Config struct {
	// TLSDir holds ca.pem, cert.pem, key.pem and service-account.json;
	// they are created when absent. Required.
	TLSDir string
	// TLSHosts are extra host names or IP addresses for the generated
	// server certificate. The first one is also the host of the
	// service account's token_uri (e.g. a docker-compose service name);
	// without any, token_uri names the listening address.
	TLSHosts []string
	// Project is the Firebase project the simulator serves; empty means
	// the project_id of its service-account.json.
	Project string
	// TrustKeys are further service-account JSON files or PEM public keys
	// whose signed assertions the token endpoint accepts.
	TrustKeys []string
	// TokenTTL is the lifetime of issued access tokens; default 1 h.
	TokenTTL time.Duration
	// DeadTokens answer 404 UNREGISTERED; MismatchTokens 403
	// SENDER_ID_MISMATCH (registered to another project).
	DeadTokens     []string
	MismatchTokens []string
	// Failures injects errors at random rates (0..1) into would-be 200s.
	Failures []Failure
	// RateLimit is the sends per second one registration token may get
	// before 429 QUOTA_EXCEEDED (burst: one second's worth); 0 is off.
	RateLimit float64
	// RetryAfter is the Retry-After of 429, 500 and 503 answers, rounded
	// up to whole seconds; default 1 s.
	RetryAfter time.Duration
	// Latency (plus a uniform ±Jitter) delays every 200.
	Latency time.Duration
	Jitter  time.Duration
	Logger  *slog.Logger
}

// Failure injects the error Code (an FCM errorCode or status, see
// KnownCode) into a fraction Rate of would-be 200 responses.
type Failure struct {
	Code string
	Rate float64
}

// Server is a running simulator. Create it with New, start it with Start
// or Serve, stop it with Close.
type Server struct {
	cfg      Config
	log      *slog.Logger
	tlsConf  *tls.Config
	account  *serviceAccount // its own, written to TLSDir
	trustMu  sync.RWMutex
	trusted  []*rsa.PublicKey // nil after RevokeServiceAccounts
	dead     map[string]bool
	mismatch map[string]bool
	limiter  *simkit.RateLimiter
	issued   *issuedTokens
	stats    *counters
	hs       *http.Server

	mu      sync.Mutex
	ln      net.Listener
	closed  bool
	serving sync.WaitGroup
}

// New loads or creates the TLS files and the development service account
// and checks the configuration; it does not listen yet.
func New(cfg Config) (*Server, error) {
	if cfg.TLSDir == "" {
		return nil, errors.New("fcmsim: TLSDir is required (where ca.pem, cert.pem, key.pem and service-account.json live)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	for _, f := range cfg.Failures {
		if !KnownCode(f.Code) {
			return nil, fmt.Errorf("fcmsim: unknown failure code %q (want one of %s)", f.Code, knownCodes())
		}
		if f.Rate < 0 || f.Rate > 1 {
			return nil, fmt.Errorf("fcmsim: failure rate %v for %s is outside 0..1", f.Rate, f.Code)
		}
	}
	if cfg.RateLimit < 0 {
		return nil, errors.New("fcmsim: rate limit must not be negative")
	}
	cert, _, created, err := simkit.LoadOrCreateTLS(cfg.TLSDir, "kpush fcm-sim", cfg.TLSHosts)
	if err != nil {
		return nil, err
	}
	account, err := loadOrCreateServiceAccount(filepath.Join(cfg.TLSDir, ServiceAccountFileName))
	if err != nil {
		return nil, err
	}
	if cfg.Project == "" {
		cfg.Project = account.ProjectID
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		account:  account,
		trusted:  []*rsa.PublicKey{&account.key.PublicKey},
		dead:     make(map[string]bool, len(cfg.DeadTokens)),
		mismatch: make(map[string]bool, len(cfg.MismatchTokens)),
		limiter:  simkit.NewRateLimiter(cfg.RateLimit),
		issued:   &issuedTokens{m: map[string]time.Time{}},
		stats:    newCounters(),
	}
	if created {
		s.log.Info("created simulator TLS files", "dir", cfg.TLSDir)
	}
	for _, tok := range cfg.DeadTokens {
		s.dead[tok] = true
	}
	for _, tok := range cfg.MismatchTokens {
		s.mismatch[tok] = true
	}
	for _, path := range cfg.TrustKeys {
		k, err := loadTrustKey(path)
		if err != nil {
			return nil, err
		}
		s.trusted = append(s.trusted, k)
	}
	s.tlsConf = &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	s.hs = &http.Server{
		Handler:           http.HandlerFunc(s.handle),
		TLSConfig:         s.tlsConf,
		Protocols:         protocols,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: MaxConcurrentStreams},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.stats.connections.Add(1)
			}
		},
	}
	return s, nil
}

// Start listens on addr ("127.0.0.1:0" picks a port), writes the service
// account's token_uri for that address, and serves in the background
// until Close.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("fcmsim: listen on %s: %w", addr, err)
	}
	if err := s.setListener(ln); err != nil {
		ln.Close()
		return err
	}
	go func() {
		defer s.serving.Done()
		_ = s.hs.ServeTLS(ln, "", "")
	}()
	return nil
}

// Serve serves on ln until Close, then returns nil.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.setListener(ln); err != nil {
		return err
	}
	defer s.serving.Done()
	if err := s.hs.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) setListener(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("fcmsim: server closed")
	}
	if s.ln != nil {
		return errors.New("fcmsim: server already started")
	}
	// Written before the first request is served, so a client that
	// waits for the simulator to answer finds its token_uri there.
	if err := s.account.writeTokenURI(s.tokenURI(ln.Addr())); err != nil {
		return err
	}
	s.ln = ln
	s.serving.Add(1)
	s.log.Info("listening", "service", "fcm-sim", "addr", ln.Addr().String())
	return nil
}

// tokenURI is the token endpoint written into service-account.json: the
// first TLS host (or the listening address) with the listening port.
func (s *Server) tokenURI(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if len(s.cfg.TLSHosts) > 0 {
		host = s.cfg.TLSHosts[0]
	}
	return "https://" + net.JoinHostPort(host, port) + TokenPath
}

// URL is the base URL clients send to (their FCM endpoint), e.g.
// https://127.0.0.1:4004.
func (s *Server) URL() string { return "https://" + s.Addr() }

// Addr is the listening address, or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// CAFile is the path of the CA certificate clients must trust.
func (s *Server) CAFile() string { return filepath.Join(s.cfg.TLSDir, simkit.CAFileName) }

// ServiceAccountFile is the path of the development service account,
// the credentials file clients use.
func (s *Server) ServiceAccountFile() string { return s.account.path }

// Project is the Firebase project the simulator serves.
func (s *Server) Project() string { return s.cfg.Project }

// RevokeAccessTokens makes every access token issued so far invalid, as
// Google does when a key is rotated; clients get 401 UNAUTHENTICATED
// until they fetch a new one.
func (s *Server) RevokeAccessTokens() { s.issued.revokeAll() }

// RevokeServiceAccounts makes the token endpoint refuse every service
// account from now on and revokes every issued access token, as when a
// service account's keys are deleted in the Google Cloud console.
func (s *Server) RevokeServiceAccounts() {
	s.trustMu.Lock()
	s.trusted = nil
	s.trustMu.Unlock()
	s.issued.revokeAll()
}

// Close stops listening, closes every connection and waits for the server
// to stop.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.ln != nil
	s.mu.Unlock()
	err := s.hs.Close()
	if started {
		s.serving.Wait()
	}
	return err
}

func (s *Server) latency() time.Duration {
	d := s.cfg.Latency
	if s.cfg.Jitter > 0 {
		d += time.Duration((rand.Float64()*2 - 1) * float64(s.cfg.Jitter))
	}
	return max(d, 0)
}

func (s *Server) retryAfterHeader() string {
	return strconv.FormatInt(int64((s.cfg.RetryAfter+time.Second-1)/time.Second), 10)
}

// ParseFailure parses "CODE=RATE" (rate 0..1, or a percentage "20%"), the
// form of kpush fcm-sim --fail.
func ParseFailure(s string) (Failure, error) {
	code, rateText, ok := strings.Cut(s, "=")
	if !ok || code == "" {
		return Failure{}, fmt.Errorf("--fail %q: want CODE=RATE, e.g. UNAVAILABLE=0.2", s)
	}
	if !KnownCode(code) {
		return Failure{}, fmt.Errorf("--fail %q: unknown code %q (want one of %s)", s, code, knownCodes())
	}
	rate, err := simkit.ParseFraction(rateText)
	if err != nil {
		return Failure{}, fmt.Errorf("--fail %q: %v", s, err)
	}
	return Failure{Code: code, Rate: rate}, nil
}
