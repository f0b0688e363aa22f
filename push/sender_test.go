package push_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
)

func TestSendDelivered(t *testing.T) {
	sim := startSim(t, apnssim.Config{Development: true})
	s := newSender(t, sim, nil)
	m := alertMessage(token(1))
	res := s.Send(context.Background(), m, token(1))
	if res.Class != push.Delivered || res.Status != 200 || res.Err != nil {
		t.Fatalf("Send = %+v, want delivered", res)
	}
	if want := push.APNsID(m.ID, token(1)); res.APNsID != want {
		t.Errorf("apns-id = %q, want the echoed %q", res.APNsID, want)
	}
	st := sim.Stats()
	if st.Accepted != 1 || st.Tokens[token(1)] != 1 {
		t.Errorf("stats = %+v, want one accepted for %s", st, token(1))
	}
}

// TestSendClasses drives every response class through apns2 over TLS.
func TestSendClasses(t *testing.T) {
	otherKey := writeAuthKey(t, t.TempDir())
	bigAlert := &push.Alert{Text: strings.Repeat("x", 4100)}
	cases := []struct {
		name       string
		sim        apnssim.Config
		msg        func(*push.Message)
		token      string
		wantClass  push.Class
		wantStatus int
		wantReason string
	}{
		{name: "delivered", wantClass: push.Delivered, wantStatus: 200},
		{name: "unregistered token", sim: apnssim.Config{DeadTokens: []string{token(1)}},
			wantClass: push.DeadToken, wantStatus: 410, wantReason: "Unregistered"},
		// Well-formed here (even-length hex, over 64 digits), refused by the
		// simulator, which wants Apple's 64.
		{name: "bad device token", token: strings.Repeat("ab", 33),
			wantClass: push.DeadToken, wantStatus: 400, wantReason: "BadDeviceToken"},
		{name: "token of another topic", sim: apnssim.Config{TokenTopics: map[string]string{token(1): "com.other.app"}},
			wantClass: push.DeadToken, wantStatus: 400, wantReason: "DeviceTokenNotForTopic"},
		{name: "service unavailable", sim: apnssim.Config{Failures: []apnssim.Failure{{Reason: "ServiceUnavailable", Rate: 1}}},
			wantClass: push.Retry, wantStatus: 503, wantReason: "ServiceUnavailable"},
		{name: "internal server error", sim: apnssim.Config{Failures: []apnssim.Failure{{Reason: "InternalServerError", Rate: 1}}},
			wantClass: push.Retry, wantStatus: 500, wantReason: "InternalServerError"},
		{name: "shutdown, resent once", sim: apnssim.Config{Failures: []apnssim.Failure{{Reason: "Shutdown", Rate: 1}}},
			wantClass: push.Retry, wantStatus: 503, wantReason: "Shutdown"},
		{name: "payload too large", msg: func(m *push.Message) { m.Alert = bigAlert },
			wantClass: push.BadMessage, wantStatus: 413, wantReason: "PayloadTooLarge"},
		{name: "bad collapse id", msg: func(m *push.Message) { m.CollapseID = strings.Repeat("c", 65) },
			wantClass: push.BadMessage, wantStatus: 400, wantReason: "BadCollapseId"},
		{name: "bad priority for background", msg: func(m *push.Message) {
			m.PushType, m.Priority, m.Alert, m.ContentAvailable = push.PushTypeBackground, 10, nil, true
		}, wantClass: push.BadMessage, wantStatus: 400, wantReason: "BadPriority"},
		{name: "topic disallowed", sim: apnssim.Config{Topics: []string{"com.example.other"}},
			wantClass: push.BadCredentials, wantStatus: 400, wantReason: "TopicDisallowed"},
		{name: "missing topic", msg: func(m *push.Message) { m.Topic = "" },
			wantClass: push.BadCredentials, wantStatus: 400, wantReason: "MissingTopic"},
		{name: "signature by an unknown key", sim: apnssim.Config{TrustKeys: []string{otherKey}},
			wantClass: push.BadCredentials, wantStatus: 403, wantReason: "InvalidProviderToken"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sim := startSim(t, tc.sim)
			s := newSender(t, sim, func(c *push.Config) {
				c.Backoff = push.Backoff{ServerBase: time.Second, TokenBase: time.Second, Max: 2 * time.Second}
			})
			tok := tc.token
			if tok == "" {
				tok = token(1)
			}
			m := alertMessage(tok)
			if tc.msg != nil {
				tc.msg(m)
			}
			res := s.Send(context.Background(), m, tok)
			if res.Class != tc.wantClass || res.Status != tc.wantStatus || res.Reason != tc.wantReason {
				t.Fatalf("Send = class %v status %d reason %q (err %v), want %v %d %q",
					res.Class, res.Status, res.Reason, res.Err, tc.wantClass, tc.wantStatus, tc.wantReason)
			}
			st := sim.Stats()
			switch tc.wantClass {
			case push.Delivered:
				if st.Accepted != 1 {
					t.Errorf("accepted = %d, want 1", st.Accepted)
				}
			case push.Retry:
				if res.RetryAfter < 0 || res.RetryAfter > time.Second {
					t.Errorf("RetryAfter = %v, want within [0, 1s] (base 1s, attempt 0)", res.RetryAfter)
				}
			}
			if tc.wantClass != push.Delivered && st.Accepted != 0 {
				t.Errorf("accepted = %d, want 0", st.Accepted)
			}
			wantRejected := int64(1)
			if tc.wantReason == "Shutdown" {
				wantRejected = 2 // the sender resends once on a new connection
			}
			if tc.wantReason != "" && st.Rejected[tc.wantReason] != wantRejected {
				t.Errorf("rejected[%s] = %d, want %d", tc.wantReason, st.Rejected[tc.wantReason], wantRejected)
			}
			if tc.wantReason == "Unregistered" {
				if res.Timestamp.IsZero() || time.Since(res.Timestamp) > time.Minute {
					t.Errorf("410 timestamp = %v, want the simulator's start", res.Timestamp)
				}
			}
		})
	}
}

func TestTooManyRequestsPerToken(t *testing.T) {
	clock := newFakeClock()
	sim := startSim(t, apnssim.Config{RateLimit: 2, Now: clock.Now})
	s := newSender(t, sim, func(c *push.Config) { c.Now = clock.Now })
	m := alertMessage(token(1), token(2))
	var classes []push.Class
	for range 3 {
		classes = append(classes, s.Send(context.Background(), m, token(1)).Class)
	}
	want := []push.Class{push.Delivered, push.Delivered, push.Retry}
	if fmt.Sprint(classes) != fmt.Sprint(want) {
		t.Fatalf("three pushes to one token at 2/s: %v, want %v", classes, want)
	}
	if res := s.Send(context.Background(), m, token(2)); !res.OK() {
		t.Errorf("another token is limited too: %+v", res)
	}
	clock.Advance(time.Second)
	if res := s.Send(context.Background(), m, token(1)); !res.OK() {
		t.Errorf("a second later the token is still limited: %+v", res)
	}
	if got := sim.Stats().Rejected["TooManyRequests"]; got != 1 {
		t.Errorf("rejected TooManyRequests = %d, want 1", got)
	}
}

// deliverAll sends m to every token, retrying Retry results (without
// waiting out RetryAfter, the test has no time to lose) up to 50 times.
// It returns the dead tokens.
func deliverAll(t *testing.T, s *push.Sender, m *push.Message) []string {
	t.Helper()
	var (
		mu   sync.Mutex
		dead []string
		wg   sync.WaitGroup
	)
	for _, tok := range m.Tokens {
		wg.Go(func() {
			for attempt := 0; attempt < 50; attempt++ {
				res := s.Send(context.Background(), m, tok)
				switch res.Class {
				case push.Delivered:
					return
				case push.DeadToken:
					mu.Lock()
					dead = append(dead, tok)
					mu.Unlock()
					return
				case push.Retry:
					continue
				default:
					t.Errorf("token %s: %+v", tok, res)
					return
				}
			}
			t.Errorf("token %s: not delivered after 50 attempts", tok)
		})
	}
	wg.Wait()
	return dead
}

// TestDeliveryAccounting is the sender test of docs/apns.md §8: N pushes, one to
// a dead token, with and without injected 503s; every live token ends at
// exactly one delivery.
func TestDeliveryAccounting(t *testing.T) {
	const n = 60
	for _, rate := range []float64{0, 0.2} {
		t.Run(fmt.Sprintf("ServiceUnavailable=%v", rate), func(t *testing.T) {
			deadTok := token(n - 1)
			cfg := apnssim.Config{DeadTokens: []string{deadTok}}
			if rate > 0 {
				cfg.Failures = []apnssim.Failure{{Reason: "ServiceUnavailable", Rate: rate}}
			}
			sim := startSim(t, cfg)
			s := newSender(t, sim, func(c *push.Config) { c.Connections = 3 })
			tokens := make([]string, n)
			for i := range tokens {
				tokens[i] = token(i)
			}
			m := alertMessage(tokens...)
			dead := deliverAll(t, s, m)
			if len(dead) != 1 || dead[0] != deadTok {
				t.Errorf("dead tokens = %v, want [%s]", dead, deadTok)
			}
			st := sim.Stats()
			if st.Accepted != n-1 || st.Rejected["Unregistered"] != 1 {
				t.Errorf("accepted %d rejected %v, want %d and Unregistered 1", st.Accepted, st.Rejected, n-1)
			}
			if _, ok := st.Tokens[deadTok]; ok {
				t.Errorf("dead token counted as delivered")
			}
			for _, tok := range tokens[:n-1] {
				if st.Tokens[tok] != 1 {
					t.Errorf("token %s delivered %d times, want 1", tok, st.Tokens[tok])
				}
			}
			if rate > 0 && st.Rejected["ServiceUnavailable"] == 0 {
				t.Errorf("no ServiceUnavailable injected at rate %v", rate)
			}
		})
	}
}

func TestProviderTokenRefresh(t *testing.T) {
	clock := newFakeClock()
	sim := startSim(t, apnssim.Config{Now: clock.Now})
	s := newSender(t, sim, func(c *push.Config) {
		c.Now = clock.Now
		c.Connections = 1
		c.TokenRefresh = 45 * time.Minute
	})
	m := alertMessage(token(1))
	send := func(when string) {
		t.Helper()
		if res := s.Send(context.Background(), m, token(1)); !res.OK() {
			t.Fatalf("%s: %+v", when, res)
		}
	}
	send("at start")
	first := s.Bearer()
	clock.Advance(30 * time.Minute)
	send("after 30 min")
	if s.Bearer() != first {
		t.Fatalf("token changed after 30 min; Apple allows refresh no sooner than 20 and we refresh at 45")
	}
	clock.Advance(16 * time.Minute) // 46 min: refresh due
	send("after 46 min")
	if s.Bearer() == first {
		t.Fatal("token not refreshed after 46 min")
	}
	clock.Advance(50 * time.Minute) // 96 min: the first token would be expired
	send("after 96 min")
	st := sim.Stats()
	if st.TokenUpdates != 2 || st.Rejected["TooManyProviderTokenUpdates"] != 0 || st.Rejected["ExpiredProviderToken"] != 0 {
		t.Errorf("stats %+v: want 2 token updates on the connection and no token rejections", st)
	}
}

func TestExpiredProviderTokenStops(t *testing.T) {
	simClock, senderClock := newFakeClock(), newFakeClock()
	senderClock.Advance(-2 * time.Hour) // the sender's clock is two hours slow
	sim := startSim(t, apnssim.Config{Now: simClock.Now})
	s := newSender(t, sim, func(c *push.Config) { c.Now = senderClock.Now })
	res := s.Send(context.Background(), alertMessage(token(1)), token(1))
	if res.Class != push.BadCredentials || res.Reason != "ExpiredProviderToken" {
		t.Fatalf("Send = %+v, want bad-credentials ExpiredProviderToken", res)
	}
	if got := sim.Stats().Rejected["ExpiredProviderToken"]; got != 2 {
		t.Errorf("ExpiredProviderToken answered %d times, want 2 (a fresh token is tried once)", got)
	}
}

func TestStalledConnectionIsReplaced(t *testing.T) {
	sim := startSim(t, apnssim.Config{})
	s := newSender(t, sim, func(c *push.Config) {
		c.Connections = 1
		c.ReadIdleTimeout = 200 * time.Millisecond
		c.PingTimeout = 200 * time.Millisecond
		c.RequestTimeout = 20 * time.Second
	})
	m := alertMessage(token(1), token(2))
	if res := s.Send(context.Background(), m, token(1)); !res.OK() {
		t.Fatalf("before the stall: %+v", res)
	}
	if n := sim.StallConnections(); n != 1 {
		t.Fatalf("stalled %d connections, want 1", n)
	}
	start := time.Now()
	res := s.Send(context.Background(), m, token(2))
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("stall noticed after %v: PING should catch it well before the 20s request timeout", took)
	}
	if res.Class != push.Retry || res.Err == nil {
		t.Fatalf("push on the stalled connection = %+v, want retry with a network error", res)
	}
	if res := s.Send(context.Background(), m, token(2)); !res.OK() {
		t.Fatalf("after the stall: %+v, want delivered on a new connection", res)
	}
	if st := sim.Stats(); st.Connections < 2 || st.Tokens[token(2)] != 1 {
		t.Errorf("stats %+v: want a second connection and token 2 delivered once", st)
	}
}

// TestMoreSendsThanStreamsOnOneConnection: with more pushes in flight than
// the server's stream limit on one connection, every push completes; the
// ones beyond the limit wait for a free stream (net/http's strict stream
// limit can leave such requests queued forever, as it did for FCM).
func TestMoreSendsThanStreamsOnOneConnection(t *testing.T) {
	const streams, n = 8, 400
	sim := startSim(t, apnssim.Config{MaxConcurrentStreams: streams, Latency: 2 * time.Millisecond})
	s := newSender(t, sim, func(c *push.Config) { c.Connections = 1; c.RequestTimeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var failed sync.Map
	for i := range n {
		wg.Go(func() {
			if res := s.Send(ctx, alertMessage(token(i)), token(i)); !res.OK() {
				failed.Store(i, fmt.Sprintf("%v %v", res.Class, res.Err))
			}
		})
	}
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Errorf("push %v: %v", k, v); return false })
	st := sim.Stats()
	if st.Accepted != n {
		t.Errorf("accepted %d of %d", st.Accepted, n)
	}
	if st.MaxStreams > streams {
		t.Errorf("%d streams at once on a connection; want at most the limit of %d", st.MaxStreams, streams)
	}
	t.Logf("%d connections, %d open, max streams %d", st.Connections, st.OpenConnections, st.MaxStreams)
}

// TestRequestTimeoutBoundsAPush: a push APNs does not answer ends after
// RequestTimeout as a Retry, the connection staying usable.
func TestRequestTimeoutBoundsAPush(t *testing.T) {
	sim := startSim(t, apnssim.Config{Latency: time.Minute})
	s := newSender(t, sim, func(c *push.Config) { c.RequestTimeout = 200 * time.Millisecond })
	start := time.Now()
	res := s.Send(context.Background(), alertMessage(token(1)), token(1))
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("Send took %v with a 200 ms request timeout", el)
	}
	if res.Class != push.Retry || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("Send = %+v, want Retry with the deadline exceeded", res)
	}
}

func TestSimulatorRestartMidStream(t *testing.T) {
	dir := t.TempDir()
	sim1 := startSim(t, apnssim.Config{TLSDir: dir, Latency: 5 * time.Millisecond})
	addr := sim1.Addr()
	s := newSender(t, sim1, func(c *push.Config) {
		c.Connections = 2
		c.RequestTimeout = 5 * time.Second
	})
	const n = 200
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = token(i)
	}
	m := alertMessage(tokens...)

	var (
		sent    sync.WaitGroup
		mu      sync.Mutex
		results = map[string]push.Result{}
		retries int
	)
	// Four streams of sequential pushes, each with one push in flight at
	// any moment (5 ms of simulator latency each): the restart after a
	// quarter of the deliveries lands while pushes are in flight and 150
	// remain to send.
	halfway := make(chan struct{})
	var halfOnce sync.Once
	var done int
	const workers = 4
	for w := range workers {
		sent.Go(func() {
			for i := w; i < n; i += workers {
				tok := tokens[i]
				for {
					res := s.Send(context.Background(), m, tok)
					mu.Lock()
					if res.Class == push.Retry {
						retries++
						mu.Unlock()
						continue
					}
					results[tok] = res
					done++
					if done == n/4 {
						halfOnce.Do(func() { close(halfway) })
					}
					mu.Unlock()
					break
				}
			}
		})
	}
	<-halfway
	sim1.Close()
	before := sim1.Stats() // after Close: includes every 200 a client saw
	sim2, err := apnssim.New(apnssim.Config{TLSDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim2.Start(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim2.Close() })
	sent.Wait()

	after := sim2.Stats()
	for _, tok := range tokens {
		if r := results[tok]; !r.OK() {
			t.Errorf("token %s: %+v", tok, r)
		}
		if before.Tokens[tok]+after.Tokens[tok] == 0 {
			t.Errorf("token %s reported delivered but neither simulator accepted it", tok)
		}
	}
	if after.Accepted == 0 || before.Accepted == 0 {
		t.Errorf("accepted before %d after %d: want both sides of the restart to deliver", before.Accepted, after.Accepted)
	}
	if retries == 0 {
		t.Error("no push failed at the restart: the test did not catch pushes in flight")
	}
	t.Logf("delivered %d before and %d after the restart, %d retries", before.Accepted, after.Accepted, retries)
}

func TestNewSenderRejectsBadCredentials(t *testing.T) {
	dir := t.TempDir()
	sim := startSim(t, apnssim.Config{})
	goodKey := writeAuthKey(t, dir)
	notPEM := writeFile(t, dir, "garbage.p8", "not a key")
	rsaKey := writeFile(t, dir, "rsa.p8", rsaPKCS8PEM(t))
	cases := []struct {
		name string
		cfg  push.Config
		want string
	}{
		{"no credentials", push.Config{}, "no APNs credentials"},
		{"missing key file", push.Config{AuthKeyFile: dir + "/absent.p8", KeyID: "K", TeamID: "T"}, "absent.p8"},
		{"not PEM", push.Config{AuthKeyFile: notPEM, KeyID: "K", TeamID: "T"}, "valid .p8 PEM"},
		{"RSA key", push.Config{AuthKeyFile: rsaKey, KeyID: "K", TeamID: "T"}, "ecdsa"},
		{"no key id", push.Config{AuthKeyFile: goodKey, TeamID: "T"}, "--key-id"},
		{"no team id", push.Config{AuthKeyFile: goodKey, KeyID: "K"}, "--team-id"},
		{"both auth kinds", push.Config{AuthKeyFile: goodKey, KeyID: "K", TeamID: "T", CertFile: goodKey}, "not both"},
		{"bad certificate", push.Config{CertFile: notPEM}, "load APNs certificate"},
		{"bad CA file", push.Config{AuthKeyFile: goodKey, KeyID: "K", TeamID: "T", CAFile: notPEM}, "no PEM certificate"},
		{"http host", push.Config{AuthKeyFile: goodKey, KeyID: "K", TeamID: "T", Host: "http://127.0.0.1:1"}, "https URL"},
		{"refresh too often", push.Config{AuthKeyFile: goodKey, KeyID: "K", TeamID: "T", TokenRefresh: time.Minute}, "20 minutes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.Host == "" {
				tc.cfg.Host = sim.URL()
			}
			s, err := push.NewSender(tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("NewSender succeeded, want an error at start")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	_, err := push.NewSender(push.Config{})
	if !errors.Is(err, push.ErrNoCredentials) {
		t.Errorf("errors.Is(%v, ErrNoCredentials) = false", err)
	}
	if sim.Stats().Connections != 0 {
		t.Errorf("a failed NewSender connected to APNs")
	}
}

func TestSendAfterClose(t *testing.T) {
	sim := startSim(t, apnssim.Config{})
	s := newSender(t, sim, nil)
	s.Close()
	res := s.Send(context.Background(), alertMessage(token(1)), token(1))
	if res.Class != push.Retry || !errors.Is(res.Err, push.ErrClosed) {
		t.Fatalf("Send after Close = %+v, want retry with ErrClosed", res)
	}
}

func TestSendHonoursContext(t *testing.T) {
	sim := startSim(t, apnssim.Config{Latency: 10 * time.Second})
	s := newSender(t, sim, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res := s.Send(ctx, alertMessage(token(1)), token(1))
	if res.Class != push.Retry || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("Send with an expiring context = %+v, want retry with DeadlineExceeded", res)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	sim := startSim(t, apnssim.Config{
		Failures:   []apnssim.Failure{{Reason: "ServiceUnavailable", Rate: 1}},
		RetryAfter: 90 * time.Second,
	})
	s := newSender(t, sim, func(c *push.Config) { c.Backoff = push.Backoff{ServerBase: time.Second} })
	res := s.Send(context.Background(), alertMessage(token(1)), token(1))
	if res.Class != push.Retry || res.RetryAfter < 90*time.Second {
		t.Fatalf("Send = %+v, want retry no sooner than the server's Retry-After of 90s", res)
	}
}

func TestMalformedTokenIsDead(t *testing.T) {
	sim := startSim(t, apnssim.Config{})
	s := newSender(t, sim, nil)
	res := s.Send(context.Background(), alertMessage(token(1)), "not-hex")
	if res.Class != push.DeadToken || res.Reason != "BadDeviceToken" || res.Err == nil {
		t.Fatalf("Send to a malformed token = %+v, want dead-token BadDeviceToken without a request", res)
	}
	if st := sim.Stats(); st.Connections != 0 {
		t.Errorf("a malformed token reached APNs: %+v", st)
	}
}

func TestIdleTimeoutReconnects(t *testing.T) {
	sim := startSim(t, apnssim.Config{IdleTimeout: 100 * time.Millisecond})
	s := newSender(t, sim, func(c *push.Config) { c.Connections = 1 })
	m := alertMessage(token(1))
	if res := s.Send(context.Background(), m, token(1)); !res.OK() {
		t.Fatalf("first push: %+v", res)
	}
	// Wait (bounded) for the simulator to close the idle connection.
	// (x/net closes the connection about a second after its GOAWAY).
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for sim.Stats().OpenConnections != 0 {
		select {
		case <-deadline:
			t.Fatal("idle connection still open after 10s with a 100ms idle timeout")
		case <-tick.C:
		}
	}
	if res := s.Send(context.Background(), m, token(1)); !res.OK() {
		t.Fatalf("push after the idle close: %+v, want delivered on a new connection", res)
	}
	if st := sim.Stats(); st.Connections != 2 || st.Tokens[token(1)] != 2 {
		t.Errorf("stats %+v: want 2 connections and 2 deliveries", st)
	}
}

// TestProviderTokenRefreshConcurrent: many pushes in flight when the
// refresh falls due sign exactly one new token.
func TestProviderTokenRefreshConcurrent(t *testing.T) {
	clock := newFakeClock()
	sim := startSim(t, apnssim.Config{Now: clock.Now})
	s := newSender(t, sim, func(c *push.Config) { c.Now = clock.Now; c.Connections = 1 })
	tokens := make([]string, 64)
	for i := range tokens {
		tokens[i] = token(i)
	}
	m := alertMessage(tokens...)
	if dead := deliverAll(t, s, m); len(dead) != 0 {
		t.Fatalf("dead tokens %v", dead)
	}
	clock.Advance(push.DefaultTokenRefresh)
	if dead := deliverAll(t, s, m); len(dead) != 0 {
		t.Fatalf("dead tokens %v", dead)
	}
	st := sim.Stats()
	if st.Connections != 1 || st.TokenUpdates != 1 || st.Accepted != 128 || len(st.Rejected) != 0 {
		t.Errorf("stats %+v: want 128 accepted on one connection with exactly one token update", st)
	}
}

func TestSendersShareOneProviderToken(t *testing.T) {
	sim := startSim(t, apnssim.Config{})
	key := writeAuthKey(t, t.TempDir())
	cfg := push.Config{Host: sim.URL(), CAFile: sim.CAFile(), AuthKeyFile: key, KeyID: "ABC123DEFG", TeamID: "DEF123GHIJ"}
	a, err := push.NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := push.NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Bearer() == "" || a.Bearer() != b.Bearer() {
		t.Fatal("two senders with the same key in one process have different provider tokens")
	}
	cfg.TeamID = "OTHERTEAM0"
	c, err := push.NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Bearer() == a.Bearer() {
		t.Fatal("a sender for another team shares the token")
	}
	for _, s := range []*push.Sender{a, b, c} {
		if res := s.Send(context.Background(), alertMessage(token(1)), token(1)); !res.OK() {
			t.Fatalf("Send = %+v", res)
		}
	}
}

// TestWrongEnvironmentGuard: when most tokens come back BadDeviceToken the
// sender stops calling them dead (that would wipe good tokens from the
// app) and reports bad credentials instead.
func TestWrongEnvironmentGuard(t *testing.T) {
	sim := startSim(t, apnssim.Config{TokenHexLen: 32}) // every 64-digit token is "bad"
	s := newSender(t, sim, nil)
	m := alertMessage(token(0))
	var dead, stopped int
	for i := range 60 {
		res := s.Send(context.Background(), m, token(i))
		switch {
		case res.Class == push.DeadToken && res.Reason == "BadDeviceToken":
			dead++
		case res.Class == push.BadCredentials && errors.Is(res.Err, push.ErrLikelyWrongEnvironment):
			stopped++
		default:
			t.Fatalf("push %d: %+v", i, res)
		}
	}
	if dead >= 50 || stopped < 10 {
		t.Errorf("%d reported dead and %d stopped; want the guard to trip by the 50th push", dead, stopped)
	}
}

// TestBadCredentialsLoggedLoudlyOnce: every push reports the class, the
// log says so at error level without one line per push.
func TestBadCredentialsLoggedLoudlyOnce(t *testing.T) {
	sim := startSim(t, apnssim.Config{Topics: []string{"com.other.app"}})
	var buf syncBuffer
	s := newSender(t, sim, func(c *push.Config) { c.Logger = slog.New(slog.NewTextHandler(&buf, nil)) })
	for i := range 5 {
		if res := s.Send(context.Background(), alertMessage(token(i)), token(i)); res.Class != push.BadCredentials {
			t.Fatalf("push %d: %+v, want bad-credentials", i, res)
		}
	}
	out := buf.String()
	if n := strings.Count(out, "level=ERROR"); n != 1 || !strings.Contains(out, "reason=TopicDisallowed") {
		t.Errorf("want exactly one error line naming TopicDisallowed, got %d:\n%s", n, out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
