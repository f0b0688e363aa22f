package push_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testfcm"
	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/fcmsim"
)

// startFCMSim starts an FCM simulator on 127.0.0.1:0 with its files in a
// temp dir unless cfg names one; the temp dir starts with the test
// binary's shared service account (testfcm.SharedKeyDir).
func startFCMSim(t testing.TB, cfg fcmsim.Config) *fcmsim.Server {
	t.Helper()
	if cfg.TLSDir == "" {
		cfg.TLSDir = testfcm.SharedKeyDir(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
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

// fcmConfig points a sender at sim with the service account it wrote.
func fcmConfig(t testing.TB, sim *fcmsim.Server) push.FCMConfig {
	return push.FCMConfig{
		CredentialsFile: sim.ServiceAccountFile(),
		Endpoint:        sim.URL(),
		CAFile:          sim.CAFile(),
		Connections:     2,
		Logger:          testLogger(t),
	}
}

func newFCMSender(t testing.TB, sim *fcmsim.Server, mod func(*push.FCMConfig)) *push.FCMSender {
	t.Helper()
	cfg := fcmConfig(t, sim)
	if mod != nil {
		mod(&cfg)
	}
	s, err := push.NewFCMSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// fcmToken returns a distinct registration token of FCM's shape.
func fcmToken(i int) string { return fmt.Sprintf("d%03d:APA91b%0142d", i%1000, i) }

func fcmMessage(tokens ...string) *push.Message {
	return &push.Message{
		ID:        "fcm-msg",
		FCMTokens: tokens,
		Alert:     &push.Alert{Title: "Shipped", Body: "Your order is on its way"},
		Data:      map[string]any{"order": json.Number("42"), "express": true, "link": "app://orders/42"},
		Android:   &push.Android{Priority: "high", TTL: &push.TTL{Duration: time.Hour}, CollapseKey: "orders", ChannelID: "orders", Sound: "default", Tag: "orders"},
	}
}

func TestFCMSendDelivered(t *testing.T) {
	sim := startFCMSim(t, fcmsim.Config{})
	s := newFCMSender(t, sim, nil)
	m := fcmMessage(fcmToken(1))
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	res := s.Send(context.Background(), m, fcmToken(1))
	if res.Class != push.Delivered || res.Status != 200 || res.Err != nil || res.Platform != push.PlatformFCM {
		t.Fatalf("Send = %+v, want delivered over FCM", res)
	}
	if !strings.HasPrefix(res.Name, "projects/"+fcmsim.DevProject+"/messages/") {
		t.Errorf("message name %q, want one of project %s", res.Name, fcmsim.DevProject)
	}
	st := sim.Stats()
	if st.Accepted != 1 || st.Tokens[fcmToken(1)] != 1 || st.AccessTokensIssued != 1 || len(st.Rejected) != 0 {
		t.Errorf("stats = %+v, want one accepted, one access token, no rejections", st)
	}
}

// TestFCMSendClasses drives every row of FCM's error table through the
// sender and the simulator over TLS.
func TestFCMSendClasses(t *testing.T) {
	fail := func(code string) []fcmsim.Failure { return []fcmsim.Failure{{Code: code, Rate: 1}} }
	cases := []struct {
		name         string
		sim          fcmsim.Config
		msg          func(*push.Message)
		wantClass    push.Class
		wantStatus   int
		wantReason   string
		wantRejected int64 // sends the simulator refused
	}{
		{name: "bad field: reserved data key", msg: func(m *push.Message) { m.Data = map[string]any{"from": "x"} },
			wantClass: push.BadMessage, wantStatus: 400, wantReason: "INVALID_ARGUMENT", wantRejected: 1},
		{name: "bad field: ttl out of range", msg: func(m *push.Message) { m.Android.TTL = &push.TTL{Duration: 29 * 24 * time.Hour} },
			wantClass: push.BadMessage, wantStatus: 400, wantReason: "INVALID_ARGUMENT", wantRejected: 1},
		{name: "message too big", msg: func(m *push.Message) { m.Data = map[string]any{"blob": strings.Repeat("x", 4100)} },
			wantClass: push.BadMessage, wantStatus: 400, wantReason: "INVALID_ARGUMENT", wantRejected: 1},
		{name: "third-party auth error", sim: fcmsim.Config{Failures: fail("THIRD_PARTY_AUTH_ERROR")},
			wantClass: push.BadCredentials, wantStatus: 401, wantReason: "THIRD_PARTY_AUTH_ERROR", wantRejected: 1},
		{name: "access token refused twice", sim: fcmsim.Config{TokenTTL: time.Nanosecond},
			wantClass: push.BadCredentials, wantStatus: 401, wantReason: "UNAUTHENTICATED", wantRejected: 2},
		{name: "sender id mismatch", sim: fcmsim.Config{MismatchTokens: []string{fcmToken(1)}},
			wantClass: push.DeadToken, wantStatus: 403, wantReason: "SENDER_ID_MISMATCH", wantRejected: 1},
		{name: "permission denied", sim: fcmsim.Config{Failures: fail("PERMISSION_DENIED")},
			wantClass: push.BadCredentials, wantStatus: 403, wantReason: "PERMISSION_DENIED", wantRejected: 1},
		{name: "unregistered", sim: fcmsim.Config{DeadTokens: []string{fcmToken(1)}},
			wantClass: push.DeadToken, wantStatus: 404, wantReason: "UNREGISTERED", wantRejected: 1},
		{name: "wrong project", sim: fcmsim.Config{Project: "another-project"},
			wantClass: push.BadCredentials, wantStatus: 404, wantReason: "NOT_FOUND", wantRejected: 1},
		{name: "quota exceeded", sim: fcmsim.Config{Failures: fail("QUOTA_EXCEEDED"), RetryAfter: 3 * time.Second},
			wantClass: push.Retry, wantStatus: 429, wantReason: "QUOTA_EXCEEDED", wantRejected: 1},
		{name: "internal", sim: fcmsim.Config{Failures: fail("INTERNAL"), RetryAfter: 3 * time.Second},
			wantClass: push.Retry, wantStatus: 500, wantReason: "INTERNAL", wantRejected: 1},
		{name: "unavailable", sim: fcmsim.Config{Failures: fail("UNAVAILABLE"), RetryAfter: 3 * time.Second},
			wantClass: push.Retry, wantStatus: 503, wantReason: "UNAVAILABLE", wantRejected: 1},
		{name: "unknown error", sim: fcmsim.Config{Failures: fail("UNSPECIFIED_ERROR"), RetryAfter: 3 * time.Second},
			wantClass: push.Retry, wantStatus: 500, wantReason: "UNSPECIFIED_ERROR", wantRejected: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sim := startFCMSim(t, tc.sim)
			s := newFCMSender(t, sim, func(c *push.FCMConfig) {
				c.Backoff = push.Backoff{ServerBase: time.Second, TokenBase: time.Second, Max: 2 * time.Second}
			})
			m := fcmMessage(fcmToken(1))
			if tc.msg != nil {
				tc.msg(m)
			}
			res := s.Send(context.Background(), m, fcmToken(1))
			if res.Class != tc.wantClass || res.Status != tc.wantStatus || res.Reason != tc.wantReason {
				t.Fatalf("Send = class %v status %d reason %q (err %v), want %v %d %q",
					res.Class, res.Status, res.Reason, res.Err, tc.wantClass, tc.wantStatus, tc.wantReason)
			}
			st := sim.Stats()
			if st.Accepted != 0 || st.Rejected[tc.wantReason] != tc.wantRejected {
				t.Errorf("stats: accepted %d, rejected %v; want 0 and %d %s", st.Accepted, st.Rejected, tc.wantRejected, tc.wantReason)
			}
			if res.Class == push.Retry {
				// The server asked for 3 s; the backoff alone is at most 2 s.
				if res.ServerRetryAfter != 3*time.Second || res.RetryAfter < 3*time.Second {
					t.Errorf("Retry-After: server %v, RetryAfter %v; want 3s and at least 3s", res.ServerRetryAfter, res.RetryAfter)
				}
			}
		})
	}
}

// A malformed registration token is a dead token, found before any
// request; the simulator answers one that reaches it the same way.
func TestFCMMalformedTokenIsDead(t *testing.T) {
	sim := startFCMSim(t, fcmsim.Config{})
	s := newFCMSender(t, sim, nil)
	for _, tok := range []string{"short", strings.Repeat("a", 99), strings.Repeat("a", 120) + "/x"} {
		res := s.Send(context.Background(), fcmMessage(tok), tok)
		if res.Class != push.DeadToken || res.Reason != "INVALID_ARGUMENT" || res.Status != 0 {
			t.Errorf("Send(%q) = %v %d %q, want dead-token INVALID_ARGUMENT without a request", tok, res.Class, res.Status, res.Reason)
		}
	}
	if st := sim.Stats(); st.Accepted+int64(len(st.Rejected)) != 0 {
		t.Errorf("malformed tokens reached the simulator: %+v", st)
	}
	// What the simulator answers for one, classified: the message names
	// the registration token, so it is a dead token, not a bad message.
	if c := push.ClassifyFCM(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"); c != push.DeadToken {
		t.Errorf("ClassifyFCM(malformed token) = %v, want dead-token", c)
	}
}

// TestFCMAccessTokenRefresh: with access tokens that live 3 s, a sender
// sending for several seconds renews its token before each expires, and
// never gets a 401.
func TestFCMAccessTokenRefresh(t *testing.T) {
	sim := startFCMSim(t, fcmsim.Config{TokenTTL: 3 * time.Second})
	s := newFCMSender(t, sim, nil)
	m := fcmMessage(fcmToken(1))
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	sent := 0
	for sim.Stats().AccessTokensIssued < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s only %d access tokens issued", sim.Stats().AccessTokensIssued)
		}
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				if res := s.Send(context.Background(), m, fcmToken(i)); !res.OK() {
					t.Errorf("send: %v %d %s %v", res.Class, res.Status, res.Reason, res.Err)
				}
			})
		}
		wg.Wait()
		sent += 8
		time.Sleep(50 * time.Millisecond) // pacing the load, not synchronisation
	}
	// Renewed at half its life, three renewals take about 4.5 s; renewed
	// only when expired, they would take 9 s or more.
	if el := time.Since(start); el > 8*time.Second {
		t.Errorf("three renewals took %v: tokens were not renewed before they expired", el.Round(time.Millisecond))
	}
	st := sim.Stats()
	if st.Rejected["UNAUTHENTICATED"] != 0 {
		t.Errorf("%d sends got 401: the token was not renewed before it expired", st.Rejected["UNAUTHENTICATED"])
	}
	if st.Accepted != int64(sent) {
		t.Errorf("accepted %d of %d", st.Accepted, sent)
	}
	if got := s.AccessTokensFetched(); got != uint64(st.AccessTokensIssued) {
		t.Errorf("sender fetched %d tokens, simulator issued %d", got, st.AccessTokensIssued)
	}
}

// TestFCMUnauthenticatedRecoversAfterOneRefresh: the simulator revokes
// every access token; concurrent sends each get one 401, the sender
// fetches one new token for all of them and every send is delivered.
func TestFCMUnauthenticatedRecoversAfterOneRefresh(t *testing.T) {
	sim := startFCMSim(t, fcmsim.Config{})
	s := newFCMSender(t, sim, nil)
	m := fcmMessage(fcmToken(0))
	if res := s.Send(context.Background(), m, fcmToken(0)); !res.OK() {
		t.Fatalf("first send: %+v", res)
	}
	sim.RevokeAccessTokens()
	var wg sync.WaitGroup
	for i := 1; i <= 20; i++ {
		wg.Go(func() {
			if res := s.Send(context.Background(), m, fcmToken(i)); !res.OK() {
				t.Errorf("send after revocation: %v %d %s %v", res.Class, res.Status, res.Reason, res.Err)
			}
		})
	}
	wg.Wait()
	st := sim.Stats()
	if st.AccessTokensIssued != 2 {
		t.Errorf("access tokens issued = %d, want 2 (one at start, one after the revocation)", st.AccessTokensIssued)
	}
	if st.Accepted != 21 || st.Rejected["UNAUTHENTICATED"] < 1 || st.Rejected["UNAUTHENTICATED"] > 20 {
		t.Errorf("stats = %+v, want 21 accepted and 1..20 UNAUTHENTICATED", st)
	}
}

// TestFCMQuotaPerToken: the simulator's per-token rate limit answers 429
// QUOTA_EXCEEDED with Retry-After; other tokens go on.
func TestFCMQuotaPerToken(t *testing.T) {
	sim := startFCMSim(t, fcmsim.Config{RateLimit: 1, RetryAfter: 2 * time.Second})
	s := newFCMSender(t, sim, nil)
	m := fcmMessage(fcmToken(1))
	if res := s.Send(context.Background(), m, fcmToken(1)); !res.OK() {
		t.Fatalf("first send: %+v", res)
	}
	res := s.Send(context.Background(), m, fcmToken(1))
	if res.Class != push.Retry || res.Reason != push.FCMQuotaExceeded || res.ServerRetryAfter != 2*time.Second || res.RetryAfter < 2*time.Second {
		t.Fatalf("second send to the same token: %v %q server-retry-after %v retry-after %v; want retry QUOTA_EXCEEDED, 2s, >= 2s",
			res.Class, res.Reason, res.ServerRetryAfter, res.RetryAfter)
	}
	if res := s.Send(context.Background(), m, fcmToken(2)); !res.OK() {
		t.Errorf("another token is limited too: %+v", res)
	}
}

func TestNewFCMSenderRejectsBadCredentials(t *testing.T) {
	sim := startFCMSim(t, fcmsim.Config{})
	dir := t.TempDir()
	good := func() map[string]any {
		var f map[string]any
		b := mustRead(t, sim.ServiceAccountFile())
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	write := func(name string, f map[string]any) string {
		b, _ := json.Marshal(f)
		return writeFile(t, dir, name, string(b))
	}
	// Another service account (its own key), which the simulator does
	// not trust.
	other := startFCMSim(t, fcmsim.Config{TLSDir: t.TempDir()})
	untrusted := good()
	untrusted["private_key"] = mustJSONField(t, other.ServiceAccountFile(), "private_key")
	noProject := good()
	delete(noProject, "project_id")
	wrongType := good()
	wrongType["type"] = "authorized_user"
	badKey := good()
	badKey["private_key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
	cases := []struct {
		name, file, want string
		is               error
		refused          int64 // what the case adds to the token endpoint's refusals
	}{
		{"missing file", dir + "/absent.json", "no such file", nil, 0},
		{"not JSON", writeFile(t, dir, "garbage.json", "not json"), "not JSON", push.ErrBadConfig, 0},
		{"no project", write("noproject.json", noProject), "project_id", push.ErrBadConfig, 0},
		{"wrong type", write("type.json", wrongType), "service_account", push.ErrBadConfig, 0},
		{"damaged key", write("badkey.json", badKey), "private_key", push.ErrBadConfig, 0},
		{"key the token endpoint does not trust", write("untrusted.json", untrusted), "invalid JWT signature", push.ErrFCMAccessToken, 1},
	}
	var refused int64 // counted as the cases run, so each can run alone
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refused += tc.refused
			cfg := fcmConfig(t, sim)
			cfg.CredentialsFile = tc.file
			_, err := push.NewFCMSender(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("NewFCMSender = %v, want an error containing %q (is %v)", err, tc.want, tc.is)
			}
		})
	}
	if _, err := push.NewFCMSender(push.FCMConfig{}); !errors.Is(err, push.ErrNoFCMCredentials) {
		t.Errorf("no credentials file: %v, want ErrNoFCMCredentials", err)
	}
	if st := sim.Stats(); st.AccessTokensRefused != refused {
		t.Errorf("token endpoint refused %d requests, want %d (the untrusted key)", st.AccessTokensRefused, refused)
	}
}

// TestFCMRevokedServiceAccount: once the token endpoint refuses the
// service account, a send is BadCredentials (stop), not a per-token
// failure or a retry.
func TestFCMRevokedServiceAccount(t *testing.T) {
	sim := startFCMSim(t, fcmsim.Config{})
	s := newFCMSender(t, sim, nil)
	sim.RevokeServiceAccounts()
	res := s.Send(context.Background(), fcmMessage(fcmToken(1)), fcmToken(1))
	if res.Class != push.BadCredentials || !errors.Is(res.Err, push.ErrFCMAccessToken) {
		t.Fatalf("Send with a revoked service account = %v %q %v, want bad-credentials wrapping ErrFCMAccessToken", res.Class, res.Reason, res.Err)
	}
	if st := sim.Stats(); st.AccessTokensRefused != 1 || st.Rejected["UNAUTHENTICATED"] != 1 {
		t.Errorf("stats = %+v, want one 401 and one refused token request", st)
	}
}

func TestFCMSendAfterClose(t *testing.T) {
	sim := startFCMSim(t, fcmsim.Config{})
	s := newFCMSender(t, sim, nil)
	s.Close()
	if res := s.Send(context.Background(), fcmMessage(fcmToken(1)), fcmToken(1)); res.Class != push.Retry || !errors.Is(res.Err, push.ErrClosed) {
		t.Fatalf("Send after Close = %+v, want retry with ErrClosed", res)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSONField(t testing.TB, path, field string) string {
	t.Helper()
	var f map[string]any
	if err := json.Unmarshal(mustRead(t, path), &f); err != nil {
		t.Fatal(err)
	}
	v, _ := f[field].(string)
	return v
}

// TestFCMManySendsOnOneConnection: far more concurrent sends than the
// simulator's 100 streams on one connection all complete (net/http's strict
// stream limit alone deadlocks here, see fcmConn).
func TestFCMManySendsOnOneConnection(t *testing.T) {
	sim := startFCMSim(t, fcmsim.Config{Latency: 2 * time.Millisecond})
	s := newFCMSender(t, sim, func(c *push.FCMConfig) { c.Connections = 1 })
	m := fcmMessage(fcmToken(0))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 400
	var wg sync.WaitGroup
	var failed sync.Map
	for i := range n {
		wg.Go(func() {
			if res := s.Send(ctx, m, fcmToken(i)); !res.OK() {
				failed.Store(i, fmt.Sprintf("%v %v", res.Class, res.Err))
			}
		})
	}
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Errorf("send %v: %v", k, v); return false })
	if got := sim.Stats().Accepted; got != n {
		t.Errorf("accepted %d of %d", got, n)
	}
}

// TestFCMConnectionsBounded: a burst of concurrent sends from a fresh
// sender opens its Connections connections to FCM and no more (plus the
// one the access token came over), instead of one handshake per send.
func TestFCMConnectionsBounded(t *testing.T) {
	sim := startFCMSim(t, fcmsim.Config{Latency: 2 * time.Millisecond})
	s := newFCMSender(t, sim, func(c *push.FCMConfig) { c.Connections = 2 })
	m := fcmMessage(fcmToken(0))
	const n = 300
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if res := s.Send(context.Background(), m, fcmToken(i)); !res.OK() {
				t.Errorf("send %d: %v %v", i, res.Class, res.Err)
			}
		})
	}
	wg.Wait()
	if got := sim.Stats().Connections; got > 2+1 {
		t.Errorf("the simulator accepted %d connections from a sender with 2 (and one for the access token)", got)
	}
}
