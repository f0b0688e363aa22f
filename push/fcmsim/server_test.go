package fcmsim_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v4"

	"github.com/kpush/kpush/internal/testfcm"
	"github.com/kpush/kpush/push/fcmsim"
)

func start(t *testing.T, cfg fcmsim.Config) *fcmsim.Server {
	t.Helper()
	if cfg.TLSDir == "" {
		cfg.TLSDir = testfcm.SharedKeyDir(t)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	sim, err := fcmsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// client trusts the simulator's CA; http2 picks HTTP/2 or HTTP/1.1.
func client(t *testing.T, sim *fcmsim.Server, http2 bool) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(sim.CAFile())
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("read ca.pem: %v", err)
	}
	protocols := new(http.Protocols)
	if http2 {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetHTTP1(true)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: protocols}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type account struct {
	key      *rsa.PrivateKey
	email    string
	tokenURI string
	project  string
}

func readAccount(t *testing.T, path string) account {
	t.Helper()
	var f struct {
		PrivateKey  string `json:"private_key"`
		ClientEmail string `json:"client_email"`
		TokenURI    string `json:"token_uri"`
		ProjectID   string `json:"project_id"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(f.PrivateKey))
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return account{key: k.(*rsa.PrivateKey), email: f.ClientEmail, tokenURI: f.TokenURI, project: f.ProjectID}
}

// assertion signs claims (defaults: a valid grant for a) with key.
func assertion(t *testing.T, a account, key *rsa.PrivateKey, alg jwt.SigningMethod, mod func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	claims := jwt.MapClaims{"iss": a.email, "aud": a.tokenURI, "scope": "https://www.googleapis.com/auth/firebase.messaging",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if mod != nil {
		mod(claims)
	}
	var signKey any = key
	if alg == jwt.SigningMethodHS256 {
		signKey = []byte("secret")
	}
	s, err := jwt.NewWithClaims(alg, claims).SignedString(signKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func requestToken(t *testing.T, c *http.Client, uri, grant, jwtText string) (int, map[string]any) {
	t.Helper()
	resp, err := c.PostForm(uri, url.Values{"grant_type": {grant}, "assertion": {jwtText}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

const grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

func TestTokenEndpointVerifiesAssertions(t *testing.T) {
	sim := start(t, fcmsim.Config{TokenTTL: 90 * time.Second})
	a := readAccount(t, sim.ServiceAccountFile())
	if a.tokenURI != sim.URL()+"/token" || a.project != fcmsim.DevProject {
		t.Fatalf("service account: token_uri %q project %q; want %s/token and %s", a.tokenURI, a.project, sim.URL(), fcmsim.DevProject)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	c := client(t, sim, true)
	cases := []struct {
		name, grant, jwt, wantErr string
	}{
		{"wrong grant type", "client_credentials", assertion(t, a, a.key, jwt.SigningMethodRS256, nil), "unsupported_grant_type"},
		{"not a JWT", grant, "abc", "invalid_grant"},
		{"HS256", grant, assertion(t, a, a.key, jwt.SigningMethodHS256, nil), "invalid_grant"},
		{"untrusted key", grant, assertion(t, a, other, jwt.SigningMethodRS256, nil), "invalid_grant"},
		{"other audience", grant, assertion(t, a, a.key, jwt.SigningMethodRS256, func(c jwt.MapClaims) { c["aud"] = "https://oauth2.googleapis.com/elsewhere" }), "invalid_grant"},
		{"no scope", grant, assertion(t, a, a.key, jwt.SigningMethodRS256, func(c jwt.MapClaims) { c["scope"] = "https://www.googleapis.com/auth/userinfo.email" }), "invalid_grant"},
		{"expired", grant, assertion(t, a, a.key, jwt.SigningMethodRS256, func(c jwt.MapClaims) {
			c["iat"], c["exp"] = time.Now().Add(-3*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix()
		}), "invalid_grant"},
		{"lives over an hour", grant, assertion(t, a, a.key, jwt.SigningMethodRS256, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(2 * time.Hour).Unix() }), "invalid_grant"},
	}
	for _, tc := range cases {
		status, body := requestToken(t, c, a.tokenURI, tc.grant, tc.jwt)
		if status != 400 || body["error"] != tc.wantErr {
			t.Errorf("%s: %d %v, want 400 %s", tc.name, status, body, tc.wantErr)
		}
	}
	status, body := requestToken(t, c, a.tokenURI, grant, assertion(t, a, a.key, jwt.SigningMethodRS256, nil))
	if status != 200 || body["token_type"] != "Bearer" || body["expires_in"] != 90.0 || !strings.HasPrefix(body["access_token"].(string), "ya29.") {
		t.Fatalf("valid assertion: %d %v", status, body)
	}
	st := sim.Stats()
	if st.AccessTokensIssued != 1 || st.AccessTokensRefused != int64(len(cases)) {
		t.Errorf("issued %d refused %d, want 1 and %d", st.AccessTokensIssued, st.AccessTokensRefused, len(cases))
	}
}

// TestTrustKey: a service account the simulator did not write is accepted
// once it is trusted with Config.TrustKeys.
func TestTrustKey(t *testing.T) {
	otherDir := t.TempDir()
	other := start(t, fcmsim.Config{TLSDir: otherDir})
	sim := start(t, fcmsim.Config{TrustKeys: []string{other.ServiceAccountFile()}})
	a := readAccount(t, other.ServiceAccountFile())
	a.tokenURI = sim.URL() + "/token"
	status, body := requestToken(t, client(t, sim, false), a.tokenURI, grant, assertion(t, a, a.key, jwt.SigningMethodRS256, nil))
	if status != 200 {
		t.Fatalf("trusted key refused: %d %v", status, body)
	}
}

func accessToken(t *testing.T, sim *fcmsim.Server, c *http.Client) string {
	t.Helper()
	a := readAccount(t, sim.ServiceAccountFile())
	status, body := requestToken(t, c, a.tokenURI, grant, assertion(t, a, a.key, jwt.SigningMethodRS256, nil))
	if status != 200 {
		t.Fatalf("token: %d %v", status, body)
	}
	return body["access_token"].(string)
}

var regToken = "e1:APA91b" + strings.Repeat("x", 140)

func send(t *testing.T, c *http.Client, url, bearer, body string) (int, string, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer is not JSON: %s", b)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), out
}

// code is an error answer's errorCode, or its status without one.
func code(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	if d, ok := e["details"].([]any); ok && len(d) > 0 {
		return d[0].(map[string]any)["errorCode"].(string)
	}
	s, _ := e["status"].(string)
	return s
}

// TestSendChecksInOrder sends requests that fail several checks at once:
// the first check in FCM's order answers.
func TestSendChecksInOrder(t *testing.T) {
	dead := "d2:APA91b" + strings.Repeat("d", 140)
	sim := start(t, fcmsim.Config{DeadTokens: []string{dead}, MismatchTokens: []string{regToken}})
	for _, h2 := range []bool{true, false} {
		c := client(t, sim, h2)
		bearer := accessToken(t, sim, c)
		sendURL := sim.URL() + "/v1/projects/" + fcmsim.DevProject + "/messages:send"
		msg := func(inner string) string { return `{"message":{` + inner + `}}` }
		cases := []struct {
			name, url, bearer, body string
			status                  int
			code                    string
		}{
			{"no access token before a bad project", sim.URL() + "/v1/projects/nope/messages:send", "", "{", 401, "UNAUTHENTICATED"},
			{"unknown access token", sendURL, "ya29.forged", msg(`"token":"` + regToken + `"`), 401, "UNAUTHENTICATED"},
			{"project before the body", sim.URL() + "/v1/projects/nope/messages:send", bearer, "{", 404, "NOT_FOUND"},
			{"body not JSON", sendURL, bearer, "{", 400, "INVALID_ARGUMENT"},
			{"no token", sendURL, bearer, msg(`"data":{"a":"b"}`), 400, "INVALID_ARGUMENT"},
			{"unknown message field", sendURL, bearer, msg(`"token":"` + regToken + `","priority":"high"`), 400, "INVALID_ARGUMENT"},
			{"number in data before a bad token", sendURL, bearer, msg(`"token":"bad","data":{"n":1}`), 400, "INVALID_ARGUMENT"},
			{"reserved key", sendURL, bearer, msg(`"token":"` + regToken + `","data":{"message_type":"x"}`), 400, "INVALID_ARGUMENT"},
			{"too big", sendURL, bearer, msg(`"token":"` + regToken + `","data":{"k":"` + strings.Repeat("x", 4000) + `"},"notification":{"body":"` + strings.Repeat("y", 100) + `"}`), 400, "INVALID_ARGUMENT"},
			{"bad ttl", sendURL, bearer, msg(`"token":"` + regToken + `","android":{"ttl":"2419201s"}`), 400, "INVALID_ARGUMENT"},
			{"bad priority", sendURL, bearer, msg(`"token":"` + regToken + `","android":{"priority":"urgent"}`), 400, "INVALID_ARGUMENT"},
			{"malformed registration token", sendURL, bearer, msg(`"token":"short"`), 400, "INVALID_ARGUMENT"},
			{"dead", sendURL, bearer, msg(`"token":"` + dead + `"`), 404, "UNREGISTERED"},
			{"another project's", sendURL, bearer, msg(`"token":"` + regToken + `"`), 403, "SENDER_ID_MISMATCH"},
		}
		for _, tc := range cases {
			status, _, body := send(t, c, tc.url, tc.bearer, tc.body)
			if status != tc.status || code(body) != tc.code {
				t.Errorf("h2=%v %s: %d %s (%v), want %d %s", h2, tc.name, status, code(body), body, tc.status, tc.code)
			}
		}
		good := "g3:APA91b" + strings.Repeat("g", 140)
		status, _, body := send(t, c, sendURL, bearer, `{"validate_only":true,"message":{"token":"`+good+`"}}`)
		if status != 200 || !strings.HasPrefix(body["name"].(string), "projects/"+fcmsim.DevProject+"/messages/") {
			t.Errorf("h2=%v validate_only: %d %v", h2, status, body)
		}
		status, _, body = send(t, c, sendURL, bearer, msg(`"token":"`+good+`","notification":{"title":"t"},"data":{"a":"b"},"android":{"priority":"HIGH","ttl":"3.5s","notification":{"channel_id":"c"}}`))
		if status != 200 {
			t.Errorf("h2=%v good message: %d %v", h2, status, body)
		}
	}
	st := sim.Stats()
	if st.Accepted != 2 || st.Validated != 2 || st.Tokens["g3:APA91b"+strings.Repeat("g", 140)] != 2 {
		t.Errorf("stats = %+v, want 2 accepted, 2 validated", st)
	}
}

// TestFaultsCarryRetryAfter: injected 500/503 and the rate limit's 429
// carry Retry-After; faults replace only would-be 200s.
func TestFaultsCarryRetryAfter(t *testing.T) {
	sim := start(t, fcmsim.Config{Failures: []fcmsim.Failure{{Code: "UNAVAILABLE", Rate: 1}}, RetryAfter: 1500 * time.Millisecond})
	c := client(t, sim, true)
	bearer := accessToken(t, sim, c)
	sendURL := sim.URL() + "/v1/projects/" + fcmsim.DevProject + "/messages:send"
	status, retryAfter, body := send(t, c, sendURL, bearer, `{"message":{"token":"`+regToken+`"}}`)
	if status != 503 || retryAfter != "2" || code(body) != "UNAVAILABLE" {
		t.Errorf("injected fault: %d Retry-After %q %v, want 503, 2, UNAVAILABLE", status, retryAfter, body)
	}
	if status, _, _ := send(t, c, sendURL, bearer, `{"message":{"token":"bad"}}`); status != 400 {
		t.Errorf("a bad token under --fail answered %d, want 400: faults replace only would-be 200s", status)
	}
	if _, err := fcmsim.New(fcmsim.Config{TLSDir: t.TempDir(), Failures: []fcmsim.Failure{{Code: "NOPE", Rate: 1}}}); err == nil {
		t.Error("an unknown failure code was accepted")
	}
}

// TestFilesReused: a second simulator on the same directory reuses the
// CA and the service account's key, and rewrites token_uri for its port.
func TestFilesReused(t *testing.T) {
	dir := t.TempDir()
	first := start(t, fcmsim.Config{TLSDir: dir})
	ca1, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	a1 := readAccount(t, first.ServiceAccountFile())
	first.Close()
	second := start(t, fcmsim.Config{TLSDir: dir, TLSHosts: []string{"localhost"}})
	ca2, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	a2 := readAccount(t, second.ServiceAccountFile())
	if !bytes.Equal(ca1, ca2) || !a1.key.Equal(a2.key) {
		t.Fatal("a restart replaced the CA or the service account's key")
	}
	_, port, _ := strings.Cut(strings.TrimPrefix(second.URL(), "https://"), ":")
	if a2.tokenURI != "https://localhost:"+port+"/token" {
		t.Errorf("token_uri = %q, want https://localhost:%s/token (the first TLS host)", a2.tokenURI, port)
	}
	// The stats are served to plain HTTP/1.1 clients too.
	resp, err := client(t, second, false).Get(second.URL() + "/sim/stats?tokens=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"accepted", "rejected", "tokens", "access_tokens_issued"} {
		if _, ok := st[k]; !ok {
			t.Errorf("/sim/stats lacks %q: %v", k, st)
		}
	}
}
