package apnssim

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/kpush/kpush/internal/simkit"
)

// DefaultAddr is where kpush apns-sim listens unless told otherwise (2197
// is Apple's alternative APNs port).
const DefaultAddr = "127.0.0.1:2197"

// MaxConcurrentStreams is the stream limit the simulator advertises once a
// connection has presented a valid provider token (docs/apns.md §6).
const MaxConcurrentStreams = 1000

// Config configures a simulator. The zero value plus TLSDir is a faithful,
// fault-free APNs that checks the form of provider tokens.
type Config struct {
	// TLSDir holds ca.pem, cert.pem and key.pem; they are generated there
	// when absent. Required.
	TLSDir string
	// TLSHosts are extra host names or IP addresses for the generated
	// server certificate (e.g. a docker-compose service name).
	TLSHosts []string
	// TrustKeys are files (.p8 auth keys or PEM public keys) whose keys
	// verify provider-token signatures. Without any, only the token's
	// form and age are checked.
	TrustKeys []string
	// ClientCAFile enables certificate auth: a client certificate signed
	// by it authenticates the connection; any other client certificate
	// gets GOAWAY {"reason":"BadCertificate"}. Connections without a
	// certificate use token auth.
	ClientCAFile string
	// DeadTokens answer 410 Unregistered with the simulator's start time.
	DeadTokens []string
	// TokenTopics binds device tokens to a topic; a push of a bound token
	// to another topic gets 400 DeviceTokenNotForTopic.
	TokenTopics map[string]string
	// Failures injects reasons at random rates (0..1) into would-be 200s.
	Failures []Failure
	// Latency (plus a uniform ±Jitter) delays every 200.
	Latency time.Duration
	Jitter  time.Duration
	// RateLimit is the pushes per second one device token may receive
	// before 429 TooManyRequests (burst: one second's worth); 0 is off.
	RateLimit float64
	// RetryAfter, when set, adds a Retry-After header (whole seconds) to
	// 429 and 503 answers. Apple sends none; this exercises senders that
	// honour one.
	RetryAfter time.Duration
	// IdleTimeout closes connections idle this long (with a GOAWAY; the
	// stock HTTP/2 server cannot attach the IdleTimeout reason).
	IdleTimeout time.Duration
	// Topics, when not empty, is the allow-list of bundle IDs; others get
	// 400 TopicDisallowed.
	Topics []string
	// TokenHexLen is the device-token length in hex digits; default 64.
	// -1 accepts any even length.
	TokenHexLen int
	// Development adds apns-unique-id to responses, like Apple's sandbox.
	Development bool
	// MaxConcurrentStreams is the stream limit advertised to every
	// connection; 0 means MaxConcurrentStreams (1,000). Tests lower it to
	// put more pushes in flight than a connection may carry.
	MaxConcurrentStreams int
	Logger               *slog.Logger
	// Now is the clock for provider-token ages; default time.Now.
	Now func() time.Time
}

// Failure injects Reason into a fraction Rate of would-be 200 responses.
type Failure struct {
	Reason string
	Rate   float64
}

// Server is a running simulator. Create it with New, start it with Start or
// Serve, stop it with Close.
type Server struct {
	cfg        Config
	log        *slog.Logger
	tlsConf    *tls.Config
	certPool   *x509.CertPool // client CAs; nil: certificate auth off
	trustKeys  []*ecdsa.PublicKey
	dead       map[string]bool
	started    time.Time
	hs         *http.Server  // the HTTP/2 server behind handoff
	handoff    *connListener // connections that passed TLS and certificate checks
	limiter    *simkit.RateLimiter
	stats      *counters
	invalidLog atomic.Int64

	mu      sync.Mutex
	ln      net.Listener
	conns   map[*simConn]struct{}
	pending map[*tls.Conn]*connState // handed off, not yet seen by ConnContext
	closed  bool
	serving sync.WaitGroup
}

type connStateKey struct{}

// New loads or creates the TLS material and checks the configuration; it
// does not listen yet.
func New(cfg Config) (*Server, error) {
	if cfg.TLSDir == "" {
		return nil, errors.New("apnssim: TLSDir is required (where ca.pem, cert.pem and key.pem live)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TokenHexLen == 0 {
		cfg.TokenHexLen = 64
	}
	for _, f := range cfg.Failures {
		if _, ok := reasonStatus[f.Reason]; !ok {
			return nil, fmt.Errorf("apnssim: unknown failure reason %q (want one of Apple's reasons, e.g. ServiceUnavailable)", f.Reason)
		}
		if f.Rate < 0 || f.Rate > 1 {
			return nil, fmt.Errorf("apnssim: failure rate %v for %s is outside 0..1", f.Rate, f.Reason)
		}
	}
	if cfg.RateLimit < 0 {
		return nil, errors.New("apnssim: rate limit must not be negative")
	}
	cert, _, created, err := simkit.LoadOrCreateTLS(cfg.TLSDir, "kpush apns-sim", cfg.TLSHosts)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		dead:    make(map[string]bool, len(cfg.DeadTokens)),
		started: cfg.Now(),
		limiter: simkit.NewRateLimiter(cfg.RateLimit),
		stats:   newCounters(),
		conns:   make(map[*simConn]struct{}),
		pending: make(map[*tls.Conn]*connState),
	}
	if created {
		s.log.Info("created simulator TLS files", "dir", cfg.TLSDir)
	}
	for _, tok := range cfg.DeadTokens {
		s.dead[strings.ToLower(tok)] = true
	}
	for _, path := range cfg.TrustKeys {
		k, err := loadTrustKey(path)
		if err != nil {
			return nil, err
		}
		s.trustKeys = append(s.trustKeys, k)
	}
	s.tlsConf = &tls.Config{
		Certificates: []tls.Certificate{cert},
		// HTTP/1.1 only so that plain clients (scripts, curl without
		// nghttp2, Python's urllib) can read /sim/stats; pushes need h2.
		NextProtos: []string{http2.NextProtoTLS, "http/1.1"},
		MinVersion: tls.VersionTLS12,
	}
	if cfg.ClientCAFile != "" {
		pool, err := loadCertPool(cfg.ClientCAFile)
		if err != nil {
			return nil, err
		}
		s.certPool = pool
		// Verified by us after the handshake, so a bad certificate can
		// be answered with Apple's GOAWAY instead of a TLS alert.
		s.tlsConf.ClientAuth = tls.RequestClientCert
	}
	s.handoff = newConnListener()
	s.hs = &http.Server{
		Handler:     http.HandlerFunc(s.handle),
		HTTP2:       &http.HTTP2Config{MaxConcurrentStreams: cmp.Or(cfg.MaxConcurrentStreams, MaxConcurrentStreams)},
		IdleTimeout: cfg.IdleTimeout,
		ConnContext: s.connContext,
		ErrorLog:    slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Start listens on addr ("127.0.0.1:0" picks a port) and serves in the
// background until Close.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("apnssim: listen on %s: %w", addr, err)
	}
	if err := s.setListener(ln); err != nil {
		ln.Close()
		return err
	}
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		s.acceptLoop(ln)
	}()
	return nil
}

// Serve serves on ln until Close, then returns nil (or the accept error
// that stopped it).
func (s *Server) Serve(ln net.Listener) error {
	if err := s.setListener(ln); err != nil {
		return err
	}
	s.serving.Add(1)
	defer s.serving.Done()
	return s.acceptLoop(ln)
}

func (s *Server) setListener(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("apnssim: server closed")
	}
	if s.ln != nil {
		return errors.New("apnssim: server already started")
	}
	s.ln = ln
	s.handoff.addr = ln.Addr()
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		// Returns http.ErrServerClosed after Close.
		_ = s.hs.Serve(s.handoff)
	}()
	s.log.Info("listening", "service", "apns-sim", "addr", ln.Addr().String())
	return nil
}

func (s *Server) acceptLoop(ln net.Listener) error {
	var delay time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("apnssim: accept: %w", err)
		}
		delay = 0
		c := &simConn{Conn: raw, release: make(chan struct{})}
		c.onClose = func() { s.untrack(c) }
		if !s.track(c) {
			raw.Close()
			return nil
		}
		s.serving.Add(1)
		go func() {
			defer s.serving.Done()
			s.serveConn(c)
		}()
	}
}

func (s *Server) track(c *simConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *simConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// serveConn owns one new TCP connection until it is handed to the HTTP/2
// server: TLS handshake, ALPN and client-certificate checks (a bad
// certificate is answered here, with Apple's GOAWAY).
func (s *Server) serveConn(c *simConn) {
	s.stats.connections.Add(1)
	tc := tls.Server(c, s.tlsConf)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.log.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		tc.Close()
		return
	}
	state := tc.ConnectionState()
	cs := &connState{gate: make(chan struct{}, 1), opened: make(chan struct{})}
	if state.NegotiatedProtocol == http2.NextProtoTLS && len(state.PeerCertificates) > 0 {
		topic, err := s.verifyClientCert(state.PeerCertificates)
		if err != nil {
			s.log.Info("rejected client certificate", "remote", c.RemoteAddr().String(), "err", err)
			s.stats.reject(reasonBadCertificate)
			goAwayAfterFirstRequest(tc, reasonBadCertificate)
			tc.Close()
			return
		}
		cs.certAuth, cs.certTopic = true, topic
		cs.markOpen()
	}
	s.mu.Lock()
	s.pending[tc] = cs
	s.mu.Unlock()
	if !s.handoff.push(tc) {
		s.mu.Lock()
		delete(s.pending, tc)
		s.mu.Unlock()
		tc.Close()
	}
}

// connContext attaches a handed-off connection's state to its requests.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	tc, _ := c.(*tls.Conn)
	s.mu.Lock()
	cs := s.pending[tc]
	delete(s.pending, tc)
	s.mu.Unlock()
	if cs == nil {
		// Not one of ours; requests on it fail closed (MissingProviderToken).
		cs = &connState{gate: make(chan struct{}, 1), opened: make(chan struct{})}
	}
	return context.WithValue(ctx, connStateKey{}, cs)
}

// connListener hands connections that passed the simulator's own checks
// to the HTTP/2 server, which sees an ordinary listener of *tls.Conn.
type connListener struct {
	ch        chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	addr      net.Addr
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to Accept; false if the listener is closed.
func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

func (s *Server) verifyClientCert(chain []*x509.Certificate) (string, error) {
	if s.certPool == nil {
		return "", errors.New("certificate auth is not enabled (no client CA)")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         s.certPool,
		Intermediates: inter,
		CurrentTime:   s.cfg.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "", err
	}
	// Apple's push certificates carry the bundle ID as the subject UID;
	// ours use the common name.
	return chain[0].Subject.CommonName, nil
}

// goAwayAfterFirstRequest speaks just enough HTTP/2 to answer a
// connection-level error the way Apple does: server SETTINGS, wait for the
// client's first request, then GOAWAY with that stream as the last
// processed one and {"reason": ...} as debug data, so the client reports the
// reason instead of retrying elsewhere.
func goAwayAfterFirstRequest(tc *tls.Conn, reason string) {
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(tc, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	fr := http2.NewFramer(tc, tc)
	if err := fr.WriteSettings(); err != nil {
		return
	}
	var last uint32
	for last == 0 {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			last = f.StreamID
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					return
				}
			}
		}
	}
	_ = fr.WriteGoAway(last, http2.ErrCodeNo, []byte(`{"reason":"`+reason+`"}`))
}

// URL is the base URL clients push to, e.g. https://127.0.0.1:2197.
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
func (s *Server) CAFile() string { return s.cfg.TLSDir + "/" + CAFileName }

// Close stops listening, closes every connection (like a crash or restart
// of APNs) and waits for the connection goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	conns := make([]*simConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.handoff.Close()
	// Raw connections first: that releases stalled ones, whose TLS layer
	// would otherwise block hs.Close writing its close_notify.
	for _, c := range conns {
		c.Close()
	}
	_ = s.hs.Close()
	s.serving.Wait()
	return err
}

// StallConnections makes every open connection stop reading and writing,
// like a peer that vanished without closing TCP; the client sees silence,
// not a reset. New connections are served normally. For tests of stalled
// connection detection; Close releases the stalled goroutines.
func (s *Server) StallConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.stalled.Store(true)
	}
	return len(s.conns)
}

// simConn is a server connection that can be stalled.
type simConn struct {
	net.Conn
	stalled   atomic.Bool
	release   chan struct{}
	closeOnce sync.Once
	onClose   func()
}

func (c *simConn) Read(p []byte) (int, error) {
	if c.stalled.Load() {
		<-c.release
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if c.stalled.Load() {
		<-c.release
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *simConn) Write(p []byte) (int, error) {
	if c.stalled.Load() {
		<-c.release
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func (c *simConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.release)
		err = c.Conn.Close()
		c.onClose()
	})
	return err
}

// connState is what the simulator remembers per connection, as Apple does:
// the first provider token's team and key, the current token, and whether a
// valid token has been seen (until then streams run one at a time).
type connState struct {
	open      atomic.Bool
	gate      chan struct{} // one-slot semaphore while !open
	opened    chan struct{} // closed when open becomes true
	openOnce  sync.Once
	inflight  atomic.Int64 // streams in handle
	certAuth  bool
	certTopic string

	mu     sync.Mutex
	team   string
	keyID  string
	bearer string
	iat    time.Time
	// The token before the current one, still accepted (see
	// checkProviderToken).
	prevBearer string
	prevIat    time.Time
}

// markOpen lifts the one-stream limit: a valid provider token (or client
// certificate) has been seen on the connection.
func (cs *connState) markOpen() {
	cs.openOnce.Do(func() {
		cs.open.Store(true)
		close(cs.opened)
	})
}

// rand01 is a uniform float in [0, 1) for fault injection.
func rand01() float64 { return rand.Float64() }
