package apnssim_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/kpush/kpush/push/apnssim"
	"golang.org/x/net/http2"
)

const devToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func start(t *testing.T, cfg apnssim.Config) *apnssim.Server {
	t.Helper()
	if cfg.TLSDir == "" {
		cfg.TLSDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	sim, err := apnssim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// client is a raw HTTP/2 client (one connection, reused) that can send
// requests apns2 never would.
func client(t *testing.T, sim *apnssim.Server) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(sim.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: protocols, ForceAttemptHTTP2: true, MaxConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type signer struct {
	key       *ecdsa.PrivateKey
	kid, team string
}

func newSigner(t *testing.T) *signer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{key: key, kid: "KEY1234567", team: "TEAM123456"}
}

func (s *signer) bearer(t *testing.T, iat time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": s.team, "iat": iat.Unix()})
	tok.Header["kid"] = s.kid
	b, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (s *signer) writeKey(t *testing.T) string {
	der, err := x509.MarshalPKCS8PrivateKey(s.key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "AuthKey.p8")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type reply struct {
	status    int
	reason    string
	timestamp json.RawMessage
	apnsID    string
	uniqueID  string
}

type req struct {
	method  string
	path    string
	headers [][2]string // added in order; repeats allowed
	body    string
	noAuth  bool
	auth    string
}

func do(t *testing.T, c *http.Client, sim *apnssim.Server, r req, bearer string) reply {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.path == "" {
		r.path = "/3/device/" + devToken
	}
	body := r.body
	if body == "" && r.method == http.MethodPost {
		body = `{"aps":{"alert":"hi"}}`
	}
	if body == "-" {
		body = ""
	}
	hr, err := http.NewRequest(r.method, sim.URL()+r.path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hasTopic := false
	for _, h := range r.headers {
		hr.Header.Add(h[0], h[1])
		hasTopic = hasTopic || h[0] == "apns-topic"
	}
	if !hasTopic {
		hr.Header.Set("apns-topic", "com.example.app")
	}
	switch {
	case r.auth != "":
		hr.Header.Set("authorization", r.auth)
	case !r.noAuth:
		hr.Header.Set("authorization", "bearer "+bearer)
	}
	resp, err := c.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	rep := reply{status: resp.StatusCode, apnsID: resp.Header.Get("apns-id"), uniqueID: resp.Header.Get("apns-unique-id")}
	if len(raw) > 0 {
		var body struct {
			Reason    string          `json:"reason"`
			Timestamp json.RawMessage `json:"timestamp"`
		}
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("error body %q is not JSON: %v", raw, err)
		}
		rep.reason, rep.timestamp = body.Reason, body.Timestamp
	}
	return rep
}

func h(kv ...string) [][2]string {
	var out [][2]string
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, [2]string{kv[i], kv[i+1]})
	}
	return out
}

// TestCheckOrder sends one request per row; each row's request fails
// several checks at once where useful, so the reason proves the order of
// docs/apns.md §7.
func TestCheckOrder(t *testing.T) {
	deadTok := strings.Repeat("de", 32)
	sim := start(t, apnssim.Config{DeadTokens: []string{deadTok}, Topics: []string{"com.example.app"}, Development: true})
	c := client(t, sim)
	sg := newSigner(t)
	bearer := sg.bearer(t, time.Now())
	cases := []struct {
		name       string
		r          req
		wantStatus int
		wantReason string
	}{
		{"ok", req{}, 200, ""},
		{"GET", req{method: http.MethodGet}, 405, "MethodNotAllowed"},
		{"bad path before token", req{path: "/3/devices/zz"}, 404, "BadPath"},
		{"missing token", req{path: "/3/device/"}, 400, "MissingDeviceToken"},
		{"duplicate header before bad token", req{path: "/3/device/zz", headers: h("apns-priority", "10", "apns-priority", "10")}, 400, "DuplicateHeaders"},
		{"bad token before bad id", req{path: "/3/device/abc", headers: h("apns-id", "nope")}, 400, "BadDeviceToken"},
		{"short token", req{path: "/3/device/abcd"}, 400, "BadDeviceToken"},
		{"uppercase apns-id", req{headers: h("apns-id", "6F0D3C5E-2B1A-4F6E-9C1D-6B7A1E2F3A4B")}, 400, "BadMessageId"},
		{"bad id before bad push type", req{headers: h("apns-id", "x", "apns-push-type", "fax")}, 400, "BadMessageId"},
		{"bad push type", req{headers: h("apns-push-type", "fax")}, 400, "InvalidPushType"},
		{"bad priority", req{headers: h("apns-priority", "3")}, 400, "BadPriority"},
		{"background at priority 10", req{headers: h("apns-push-type", "background", "apns-priority", "10")}, 400, "BadPriority"},
		{"bad expiration", req{headers: h("apns-expiration", "soon")}, 400, "BadExpirationDate"},
		{"negative expiration", req{headers: h("apns-expiration", "-1")}, 400, "BadExpirationDate"},
		{"long collapse id", req{headers: h("apns-collapse-id", strings.Repeat("c", 65))}, 400, "BadCollapseId"},
		{"no topic before no auth", req{headers: h("apns-topic", ""), noAuth: true}, 400, "MissingTopic"},
		{"voip topic without suffix", req{headers: h("apns-push-type", "voip")}, 400, "BadTopic"},
		{"voip topic with suffix", req{headers: h("apns-push-type", "voip", "apns-topic", "com.example.app.voip")}, 200, ""},
		{"topic not allowed", req{headers: h("apns-topic", "com.other.app")}, 400, "TopicDisallowed"},
		{"no auth before empty body", req{noAuth: true, body: "-"}, 403, "MissingProviderToken"},
		{"auth not bearer", req{auth: "Basic abc"}, 403, "MissingProviderToken"},
		{"empty bearer", req{auth: "bearer "}, 403, "MissingProviderToken"},
		{"capitalised Bearer", req{auth: "Bearer " + bearer}, 200, ""},
		{"malformed JWT", req{auth: "bearer a.b"}, 403, "InvalidProviderToken"},
		{"auth before dead token", req{path: "/3/device/" + deadTok, auth: "bearer x.y.z"}, 403, "InvalidProviderToken"},
		{"empty body", req{body: "-"}, 400, "PayloadEmpty"},
		{"payload 4097 bytes", req{body: `{"aps":{},"k":"` + strings.Repeat("x", 4097-17) + `"}`}, 413, "PayloadTooLarge"},
		{"payload 4096 bytes", req{body: `{"aps":{},"k":"` + strings.Repeat("x", 4096-17) + `"}`}, 200, ""},
		{"voip payload 5120 bytes", req{headers: h("apns-push-type", "voip", "apns-topic", "com.example.app.voip"), body: `{"aps":{},"k":"` + strings.Repeat("x", 5120-17) + `"}`}, 200, ""},
		{"invalid JSON accepted", req{body: "not json"}, 200, ""},
		{"dead token", req{path: "/3/device/" + deadTok}, 410, "Unregistered"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := do(t, c, sim, tc.r, bearer)
			if got.status != tc.wantStatus || got.reason != tc.wantReason {
				t.Fatalf("got %d %q, want %d %q", got.status, got.reason, tc.wantStatus, tc.wantReason)
			}
			if got.apnsID == "" && tc.wantStatus == 200 {
				t.Error("200 without apns-id")
			}
			if tc.wantStatus == 200 && got.uniqueID == "" {
				t.Error("development mode 200 without apns-unique-id")
			}
			if tc.wantReason == "Unregistered" {
				var ms int64
				if err := json.Unmarshal(got.timestamp, &ms); err != nil || ms <= 0 {
					t.Errorf("410 timestamp %s is not a positive JSON number", got.timestamp)
				}
			}
		})
	}
	id := "6f0d3c5e-2b1a-4f6e-9c1d-6b7a1e2f3a4b"
	if got := do(t, c, sim, req{headers: h("apns-id", id)}, bearer); got.apnsID != id {
		t.Errorf("apns-id echoed as %q, want %q", got.apnsID, id)
	}
}

func TestProviderTokenPerConnection(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	sg := newSigner(t)
	sim := start(t, apnssim.Config{Now: clock.Now, TrustKeys: []string{sg.writeKey(t)}})
	c := client(t, sim)
	t0 := clock.Now()
	first := sg.bearer(t, t0)

	steps := []struct {
		name       string
		advance    time.Duration
		bearer     func() string
		wantStatus int
		wantReason string
	}{
		{"first token", 0, func() string { return first }, 200, ""},
		{"same token again", time.Minute, func() string { return first }, 200, ""},
		{"other key id", 0, func() string { s := *sg; s.kid = "OTHERKEY00"; return s.bearer(t, t0) }, 403, "UnrelatedKeyIdInToken"},
		{"other team", 0, func() string { s := *sg; s.team = "OTHERTEAM0"; return s.bearer(t, t0) }, 403, "InvalidProviderToken"},
		{"signed by another key", 0, func() string { return newSigner(t).bearer(t, t0) }, 403, "InvalidProviderToken"},
		{"iat far in the future", 0, func() string { return sg.bearer(t, t0.Add(2*time.Hour)) }, 403, "InvalidProviderToken"},
		{"new token after 10 min", 9 * time.Minute, func() string { return sg.bearer(t, clock.Now()) }, 429, "TooManyProviderTokenUpdates"},
		{"first token still fine", 0, func() string { return first }, 200, ""},
		{"new token after 25 min", 15 * time.Minute, func() string { return sg.bearer(t, clock.Now()) }, 200, ""},
		{"first token is older than an hour", 40 * time.Minute, func() string { return first }, 403, "ExpiredProviderToken"},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		got := do(t, c, sim, req{}, st.bearer())
		if got.status != st.wantStatus || got.reason != st.wantReason {
			t.Fatalf("%s: got %d %q, want %d %q", st.name, got.status, got.reason, st.wantStatus, st.wantReason)
		}
	}
	if st := sim.Stats(); st.Connections != 1 || st.TokenUpdates != 1 {
		t.Errorf("stats %+v: want all steps on one connection and one token update", st)
	}
}

func TestInjectedFailuresAndStatsEndpoint(t *testing.T) {
	sim := start(t, apnssim.Config{Failures: []apnssim.Failure{{Reason: "InternalServerError", Rate: 0.5}}})
	c := client(t, sim)
	bearer := newSigner(t).bearer(t, time.Now())
	const n = 200
	for range n {
		got := do(t, c, sim, req{}, bearer)
		if got.status != 200 && (got.status != 500 || got.reason != "InternalServerError") {
			t.Fatalf("got %d %q, want 200 or 500 InternalServerError", got.status, got.reason)
		}
	}
	resp, err := c.Get(sim.URL() + "/sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Accepted int64            `json:"accepted"`
		Rejected map[string]int64 `json:"rejected"`
		Tokens   map[string]int64 `json:"tokens"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	failed := st.Rejected["InternalServerError"]
	if st.Accepted+failed != n || st.Tokens[devToken] != st.Accepted {
		t.Fatalf("stats %+v: want accepted+failed = %d and the token counted per accept", st, n)
	}
	if failed < n/4 || failed > 3*n/4 {
		t.Errorf("%d of %d failed at rate 0.5", failed, n)
	}
	resp2, err := c.Get(sim.URL() + "/sim/stats?tokens=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	var brief map[string]json.RawMessage
	if err := json.NewDecoder(resp2.Body).Decode(&brief); err != nil {
		t.Fatal(err)
	}
	if _, ok := brief["accepted"]; !ok || string(brief["tokens"]) != "null" {
		t.Errorf("/sim/stats?tokens=0 = %v, want totals without per-token counts", brief)
	}
	if again := sim.Stats(); again.Accepted != st.Accepted {
		t.Errorf("reading /sim/stats was counted: %d then %d", st.Accepted, again.Accepted)
	}
	var buf bytes.Buffer
	sim.Stats().WriteSummary(&buf)
	if !strings.Contains(buf.String(), "rejected") || !strings.Contains(buf.String(), "InternalServerError") {
		t.Errorf("summary %q lacks the rejections", buf.String())
	}
}

func TestTLSDirReusedAndPartialDirRejected(t *testing.T) {
	dir := t.TempDir()
	if _, err := apnssim.New(apnssim.Config{TLSDir: dir}); err != nil {
		t.Fatal(err)
	}
	ca1, err := os.ReadFile(filepath.Join(dir, apnssim.CAFileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apnssim.New(apnssim.Config{TLSDir: dir}); err != nil {
		t.Fatal(err)
	}
	ca2, _ := os.ReadFile(filepath.Join(dir, apnssim.CAFileName))
	if !bytes.Equal(ca1, ca2) {
		t.Fatal("ca.pem regenerated although present")
	}
	if err := os.Remove(filepath.Join(dir, apnssim.KeyFileName)); err != nil {
		t.Fatal(err)
	}
	_, err = apnssim.New(apnssim.Config{TLSDir: dir})
	if err == nil || !strings.Contains(err.Error(), "only some") {
		t.Fatalf("New with a partial TLS dir: %v, want an error naming the problem", err)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  apnssim.Config
		want string
	}{
		{"no TLS dir", apnssim.Config{}, "TLSDir"},
		{"unknown failure reason", apnssim.Config{Failures: []apnssim.Failure{{Reason: "Nope", Rate: 0.1}}}, "unknown failure reason"},
		{"rate over 1", apnssim.Config{Failures: []apnssim.Failure{{Reason: "Shutdown", Rate: 2}}}, "outside 0..1"},
		{"missing trust key", apnssim.Config{TrustKeys: []string{"/nonexistent.p8"}}, "trust key"},
		{"missing client CA", apnssim.Config{ClientCAFile: "/nonexistent.pem"}, "client CA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.TLSDir == "" && tc.name != "no TLS dir" {
				tc.cfg.TLSDir = t.TempDir()
			}
			_, err := apnssim.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	f, err := apnssim.ParseFailure("ServiceUnavailable=0.2")
	if err != nil || f.Reason != "ServiceUnavailable" || f.Rate != 0.2 {
		t.Errorf("ParseFailure = %+v, %v", f, err)
	}
	f, err = apnssim.ParseFailure("Shutdown=5%")
	if err != nil || f.Rate != 0.05 {
		t.Errorf("ParseFailure percent = %+v, %v", f, err)
	}
	for _, bad := range []string{"ServiceUnavailable", "Bogus=0.1", "Shutdown=1.5", "Shutdown=x", "=0.1"} {
		if _, err := apnssim.ParseFailure(bad); err == nil {
			t.Errorf("ParseFailure(%q) succeeded", bad)
		}
	}
	for in, want := range map[string][2]time.Duration{
		"5ms": {5 * time.Millisecond, 0}, "5ms±2ms": {5 * time.Millisecond, 2 * time.Millisecond}, "1s+-100ms": {time.Second, 100 * time.Millisecond},
	} {
		d, j, err := apnssim.ParseLatency(in)
		if err != nil || d != want[0] || j != want[1] {
			t.Errorf("ParseLatency(%q) = %v, %v, %v", in, d, j, err)
		}
	}
	for _, bad := range []string{"fast", "5ms±", "-1s"} {
		if _, _, err := apnssim.ParseLatency(bad); err == nil {
			t.Errorf("ParseLatency(%q) succeeded", bad)
		}
	}
	for in, want := range map[string]float64{"5/s": 5, "5": 5, "120/m": 2} {
		if got, err := apnssim.ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"x/s", "5/day", "-1/s"} {
		if _, err := apnssim.ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) succeeded", bad)
		}
	}
}

// TestOneStreamUntilValidToken: before a connection's first valid provider
// token its streams run one at a time; after it, many at once.
func TestOneStreamUntilValidToken(t *testing.T) {
	sim := start(t, apnssim.Config{Latency: 50 * time.Millisecond})
	c := client(t, sim)
	sg := newSigner(t)
	const n = 20
	burst := func(r req, bearer string, want int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for range n {
			wg.Go(func() {
				if got := do(t, c, sim, r, bearer); got.status != want {
					errs <- got.reason
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatalf("unexpected answer %q", e)
		}
	}
	burst(req{noAuth: true}, "", 403) // MissingProviderToken, one at a time
	if st := sim.Stats(); st.Connections != 1 || st.MaxStreamsBeforeToken != 1 {
		t.Fatalf("stats %+v: want one connection and at most 1 stream before a valid token", st)
	}
	burst(req{}, sg.bearer(t, time.Now()), 200)
	if st := sim.Stats(); st.Connections != 1 || st.MaxStreams < n/2 {
		t.Fatalf("stats %+v: want many concurrent streams on the one connection once the token was valid", st)
	}
}

// TestSettingsAdvertiseStreamLimit reads the server's first SETTINGS frame
// with a raw framer: 1,000 concurrent streams, as Apple is observed to.
func TestSettingsAdvertiseStreamLimit(t *testing.T) {
	sim := start(t, apnssim.Config{})
	caPEM, err := os.ReadFile(sim.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := tls.Dial("tcp", sim.Addr(), &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN negotiated %q, want h2", p)
	}
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		sf, ok := f.(*http2.SettingsFrame)
		if !ok || sf.IsAck() {
			continue
		}
		v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
		if !ok || v != apnssim.MaxConcurrentStreams {
			t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (present %v), want %d", v, ok, apnssim.MaxConcurrentStreams)
		}
		return
	}
}

func TestHTTP1ServesOnlyStats(t *testing.T) {
	sim := start(t, apnssim.Config{})
	caPEM, err := os.ReadFile(sim.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}} // HTTP/1.1 only
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(sim.URL() + "/sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Fatalf("GET /sim/stats over HTTP/1.1: %d %s", resp.StatusCode, resp.Proto)
	}
	resp, err = c.Post(sim.URL()+"/3/device/"+devToken, "application/json", strings.NewReader(`{"aps":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusHTTPVersionNotSupported {
		t.Fatalf("push over HTTP/1.1: %d, want 505", resp.StatusCode)
	}
	if st := sim.Stats(); st.Accepted != 0 || len(st.Rejected) != 0 {
		t.Errorf("HTTP/1.1 requests were counted: %+v", st)
	}
}
