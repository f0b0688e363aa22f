package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
	"github.com/kpush/kpush/push/fcmsim"
	"github.com/kpush/kpush/worker"
)

func startFCMSim(t testing.TB, cfg fcmsim.Config) *fcmsim.Server {
	t.Helper()
	if cfg.TLSDir == "" {
		cfg.TLSDir = t.TempDir()
	}
	cfg.Logger = testLogger(t)
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

func fcmConfig(t testing.TB, sim *fcmsim.Server) push.FCMConfig {
	return push.FCMConfig{CredentialsFile: sim.ServiceAccountFile(), Endpoint: sim.URL(), CAFile: sim.CAFile(), Connections: 2, Logger: testLogger(t)}
}

func newFCMSender(t testing.TB, cfg push.FCMConfig) *push.FCMSender {
	t.Helper()
	s, err := push.NewFCMSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// fcmArgs are the kpush worker flags pointing at an FCM simulator.
func fcmArgs(sim *fcmsim.Server) []string {
	return []string{"--fcm-credentials", sim.ServiceAccountFile(), "--fcm-endpoint", sim.URL(), "--fcm-ca", sim.CAFile()}
}

// fcmToken returns a distinct registration token of FCM's shape.
func fcmToken(i int) string { return fmt.Sprintf("w%03d:APA91b%0142d", i%1000, i) }

// enqueueMixed puts n messages on the cluster, each with apnsPer APNs and
// fcmPer FCM tokens; it returns every token of each platform.
func enqueueMixed(t testing.TB, p *producer.Producer, n, apnsPer, fcmPer int) (apns, fcm []string) {
	t.Helper()
	for i := 0; i < n; i++ {
		msg := &push.Message{ID: "x" + strconv.Itoa(i), Alert: &push.Alert{Title: "Hi", Body: "both"}, Data: map[string]any{"n": i}}
		for j := 0; j < apnsPer; j++ {
			msg.Tokens = append(msg.Tokens, token(i*apnsPer+j))
			msg.Topic = "com.example.app"
		}
		for j := 0; j < fcmPer; j++ {
			msg.FCMTokens = append(msg.FCMTokens, fcmToken(i*fcmPer+j))
		}
		if err := p.Enqueue(context.Background(), testQueue, msg); err != nil {
			t.Fatalf("enqueue message %d: %v", i, err)
		}
		apns, fcm = append(apns, msg.Tokens...), append(fcm, msg.FCMTokens...)
	}
	return apns, fcm
}

func drainRecords[T any](t *testing.T, queue string, addrs ...string) []T {
	t.Helper()
	var out []T
	for _, addr := range addrs {
		for _, raw := range dialKestrel(t, addr).drain(queue) {
			var rec T
			if err := json.Unmarshal(raw, &rec); err != nil {
				t.Fatalf("%s record %q: %v", queue, raw, err)
			}
			out = append(out, rec)
		}
	}
	return out
}

// TestMixedMessageOutcomes: messages addressing iPhones and Android phones
// together; every live token of each platform is delivered exactly once,
// dead tokens of both platforms land in one <queue>_invalid_tokens with
// their platform, and FCM faults are retried without duplicates.
func TestMixedMessageOutcomes(t *testing.T) {
	a, b := startQueued(t, true), startQueued(t, true)
	prod := newProducer(t, a, b)
	const n = 60
	apnsTokens, fcmTokens := enqueueMixed(t, prod, n, 2, 3)
	apnsDead := map[string]string{apnsTokens[3]: "Unregistered"}
	fcmDead := map[string]string{fcmTokens[4]: "UNREGISTERED", fcmTokens[100]: "SENDER_ID_MISMATCH"}
	asim := startSim(t, apnssim.Config{DeadTokens: []string{apnsTokens[3]}})
	fsim := startFCMSim(t, fcmsim.Config{
		DeadTokens: []string{fcmTokens[4]}, MismatchTokens: []string{fcmTokens[100]},
		Failures: []fcmsim.Failure{{Code: "UNAVAILABLE", Rate: 0.2}, {Code: "INTERNAL", Rate: 0.1}},
	})
	fcfg := fcmConfig(t, fsim)
	fcfg.Backoff = push.Backoff{ServerBase: 500 * time.Millisecond, Max: time.Second}
	w, err := worker.New(worker.Config{
		Servers: []string{a, b}, Queue: testQueue, Concurrency: 64, Attempts: 2,
		RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond, Logger: testLogger(t),
		FCM: newFCMSender(t, fcfg),
	}, newSender(t, apnsConfig(t, asim)), prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	waitFor(t, time.Minute, "every live token of both platforms delivered", func() bool {
		return asim.Stats().Accepted >= int64(len(apnsTokens)-len(apnsDead)) && fsim.Stats().Accepted >= int64(len(fcmTokens)-len(fcmDead))
	})
	waitFor(t, 30*time.Second, "dead tokens recorded", func() bool { return w.Stats().DeadTokens >= 3 })
	checkDrained(t, a, b)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, c := range []struct {
		name   string
		counts map[string]int64
		tokens []string
		dead   map[string]string
	}{{"APNs", asim.Stats().Tokens, apnsTokens, apnsDead}, {"FCM", fsim.Stats().Tokens, fcmTokens, fcmDead}} {
		for _, tok := range c.tokens {
			want := int64(1)
			if c.dead[tok] != "" {
				want = 0
			}
			if got := c.counts[tok]; got != want {
				t.Errorf("%s token %s delivered %d times, want %d", c.name, tok, got, want)
			}
		}
	}
	if st := fsim.Stats(); st.Rejected["UNAVAILABLE"] == 0 {
		t.Errorf("no FCM fault was injected: %v", st.Rejected)
	}
	recs := drainRecords[worker.InvalidTokenRecord](t, testQueue+"_invalid_tokens", a, b)
	if len(recs) != 3 {
		t.Fatalf("%d invalid-token records, want 3: %+v", len(recs), recs)
	}
	for _, r := range recs {
		wantPlatform, wantReason := push.PlatformAPNs, apnsDead[r.Token]
		if wantReason == "" {
			wantPlatform, wantReason = push.PlatformFCM, fcmDead[r.Token]
		}
		if r.Platform != wantPlatform || r.Reason != wantReason || r.MessageID == "" || r.Timestamp == 0 {
			t.Errorf("record %+v: want platform %s, reason %q, the message id and a timestamp", r, wantPlatform, wantReason)
		}
		if (r.Platform == push.PlatformFCM) != (r.Topic == "") {
			t.Errorf("record %+v: the APNs topic belongs on APNs records only", r)
		}
	}
	if recs := drainRecords[worker.FailedRecord](t, testQueue+"_failed", a, b); len(recs) != 0 {
		t.Errorf("failed records: %+v", recs)
	}
	ws := w.Stats()
	if ws.FCMDelivered != uint64(len(fcmTokens)-2) || ws.Delivered != uint64(len(apnsTokens)+len(fcmTokens)-3) {
		t.Errorf("stats %+v: want %d FCM and %d total deliveries", ws, len(fcmTokens)-2, len(apnsTokens)+len(fcmTokens)-3)
	}
	body := httptestBody(t, w.Handler(), "/metrics")
	for _, want := range []string{
		fmt.Sprintf(`kpush_worker_delivered_total{platform="fcm"} %d`, len(fcmTokens)-2),
		fmt.Sprintf(`kpush_worker_delivered_total{platform="apns"} %d`, len(apnsTokens)-1),
		`kpush_worker_failed_total{class="dead-token",platform="fcm",reason="SENDER_ID_MISMATCH"} 1`,
		`kpush_worker_failed_total{class="dead-token",platform="apns",reason="Unregistered"} 1`,
		fmt.Sprintf(`kpush_worker_delivery_latency_seconds_count{platform="fcm"} %d`, len(fcmTokens)-2),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestOnePlatformsCredentialsOnly: a worker with only APNs credentials
// delivers the APNs tokens and dead-letters the FCM tokens with a reason
// naming the missing credentials, and goes on working; likewise the other
// way round.
func TestOnePlatformsCredentialsOnly(t *testing.T) {
	for _, only := range []push.Platform{push.PlatformAPNs, push.PlatformFCM} {
		t.Run(string(only), func(t *testing.T) {
			a := startQueued(t, true)
			prod := newProducer(t, a)
			asim, fsim := startSim(t, apnssim.Config{}), startFCMSim(t, fcmsim.Config{})
			cfg := worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: 8, Logger: testLogger(t)}
			var apns worker.Pusher
			wantReason, missing := worker.ReasonNoFCMCredentials, "--fcm-credentials"
			if only == push.PlatformAPNs {
				apns = newSender(t, apnsConfig(t, asim))
			} else {
				cfg.FCM = newFCMSender(t, fcmConfig(t, fsim))
				wantReason, missing = worker.ReasonNoAPNsCredentials, "--auth-key"
			}
			w, err := worker.New(cfg, apns, prod)
			if err != nil {
				t.Fatal(err)
			}
			stop := runWorker(t, w)
			apnsTokens, fcmTokens := enqueueMixed(t, prod, 5, 1, 2)
			waitFor(t, 30*time.Second, "every item finished", func() bool { return w.Stats().Items >= 5 })
			// Still working: a later message of the platform it has.
			msg := &push.Message{Alert: &push.Alert{Text: "later"}}
			if only == push.PlatformAPNs {
				msg.Tokens, msg.Topic = []string{token(999)}, "com.example.app"
			} else {
				msg.FCMTokens = []string{fcmToken(999)}
			}
			if err := prod.Enqueue(t.Context(), testQueue, msg); err != nil {
				t.Fatal(err)
			}
			wantDelivered := uint64(11) // 5 messages of 2 FCM tokens, then one
			if only == push.PlatformAPNs {
				wantDelivered = 6 // 5 messages of 1 APNs token, then one
			}
			waitFor(t, 30*time.Second, "the later message delivered", func() bool { return w.Stats().Delivered == wantDelivered })
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			recs := drainRecords[worker.FailedRecord](t, testQueue+"_failed", a)
			if len(recs) != 5 {
				t.Fatalf("%d failed records, want one per message: %+v", len(recs), recs)
			}
			var failed []string
			for _, r := range recs {
				if r.Reason != wantReason || !strings.Contains(r.Error, missing) || r.Message == nil {
					t.Errorf("record %+v: want reason %s, an error naming %s, and the message", r, wantReason, missing)
				}
				if only == push.PlatformAPNs {
					failed = append(failed, r.FCMTokens...)
					if len(r.Tokens) != 0 || len(r.Message.Tokens) != 0 {
						t.Errorf("record %+v names APNs tokens that were delivered", r)
					}
				} else {
					failed = append(failed, r.Tokens...)
				}
			}
			want := fcmTokens
			if only == push.PlatformFCM {
				want = apnsTokens
			}
			if fmt.Sprint(sortedCopy(failed)) != fmt.Sprint(sortedCopy(want)) {
				t.Errorf("dead-lettered %v, want %v", failed, want)
			}
			if only == push.PlatformAPNs && (asim.Stats().Accepted != 6 || fsim.Stats().Accepted != 0) {
				t.Errorf("accepted: APNs %d (want 6), FCM %d (want 0)", asim.Stats().Accepted, fsim.Stats().Accepted)
			}
			if only == push.PlatformFCM && (fsim.Stats().Accepted != 11 || asim.Stats().Accepted != 0) {
				t.Errorf("accepted: FCM %d (want 11), APNs %d (want 0)", fsim.Stats().Accepted, asim.Stats().Accepted)
			}
		})
	}
	if _, err := worker.New(worker.Config{Servers: []string{"127.0.0.1:1"}, Queue: testQueue}, nil, newProducer(t, "127.0.0.1:1")); !errors.Is(err, worker.ErrBadConfig) {
		t.Errorf("a worker without any pusher: %v, want ErrBadConfig", err)
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

// TestFCMBadCredentialsReturnsEverything: FCM refusing the service
// account (permission denied, or a revoked key the token endpoint refuses)
// stops the worker with ErrBadCredentials and every held item, the APNs
// halves of mixed messages included, goes back to the server unconfirmed.
func TestFCMBadCredentialsReturnsEverything(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		sim        fcmsim.Config
		revoke     bool
	}{
		{name: "permission denied", want: "PERMISSION_DENIED", sim: fcmsim.Config{Failures: []fcmsim.Failure{{Code: "PERMISSION_DENIED", Rate: 1}}}},
		{name: "service account revoked", want: "access-token request", revoke: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startQueued(t, true)
			prod := newProducer(t, a)
			const n = 40
			enqueueMixed(t, prod, n, 1, 1)
			asim, fsim := startSim(t, apnssim.Config{Latency: 20 * time.Millisecond}), startFCMSim(t, tc.sim)
			fcm := newFCMSender(t, fcmConfig(t, fsim))
			if tc.revoke {
				fsim.RevokeServiceAccounts()
			}
			w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: 16, Logger: testLogger(t), FCM: fcm},
				newSender(t, apnsConfig(t, asim)), prod)
			if err != nil {
				t.Fatal(err)
			}
			err = runUntilStopped(t, w, "on bad FCM credentials")
			if !errors.Is(err, worker.ErrBadCredentials) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--fcm-credentials") {
				t.Fatalf("Run = %v, want ErrBadCredentials naming %s and --fcm-credentials", err, tc.want)
			}
			if code := httptestGet(t, w.Handler(), "/healthz"); code != http.StatusServiceUnavailable {
				t.Errorf("/healthz = %d, want 503", code)
			}
			k := dialKestrel(t, a)
			waitFor(t, 10*time.Second, "every item back on the server", func() bool {
				return k.queueStat(testQueue, "items") == n && k.queueStat(testQueue, "open_transactions") == 0
			})
			if fsim.Stats().Accepted != 0 {
				t.Errorf("FCM simulator accepted %d", fsim.Stats().Accepted)
			}
			for _, q := range []string{"_failed", "_invalid_tokens", "_retry"} {
				if items := k.queueStat(testQueue+q, "items"); items != 0 {
					t.Errorf("%d records in %s%s: a credentials error is not a message's fault", items, testQueue, q)
				}
			}
		})
	}
}

// TestFCMQuotaRetryAfterHonoured: FCM's 429 QUOTA_EXCEEDED with a
// Retry-After the in-process backoff can wait out is retried after that
// long, in process; a longer one goes through the delay queue at least
// that late. Each token is delivered exactly once.
func TestFCMQuotaRetryAfterHonoured(t *testing.T) {
	a := startQueued(t, true)
	prod := newProducer(t, a)
	fsim := startFCMSim(t, fcmsim.Config{RateLimit: 1, RetryAfter: time.Second})
	w, err := worker.New(worker.Config{
		Servers: []string{a}, Queue: testQueue, Concurrency: 4, Attempts: 3,
		RetryBase: time.Millisecond, RetryMax: 2 * time.Second, Logger: testLogger(t),
		FCM: newFCMSender(t, fcmConfig(t, fsim)),
	}, nil, prod)
	if err != nil {
		t.Fatal(err)
	}
	// Two messages to one registration token: the second is over the
	// token's rate until a second has passed.
	for i := range 2 {
		msg := &push.Message{ID: "q" + strconv.Itoa(i), FCMTokens: []string{fcmToken(1)}, Alert: &push.Alert{Text: "hi"}}
		if err := prod.Enqueue(t.Context(), testQueue, msg); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	stop := runWorker(t, w)
	waitFor(t, 30*time.Second, "both delivered", func() bool { return fsim.Stats().Tokens[fcmToken(1)] == 2 })
	elapsed := time.Since(start)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st, ws := fsim.Stats(), w.Stats()
	if st.Rejected["QUOTA_EXCEEDED"] == 0 || ws.Retries == 0 || ws.Requeued != 0 {
		t.Fatalf("rejected %v, worker %+v: want a 429, an in-process retry and no re-queue", st.Rejected, ws)
	}
	// Retrying sooner than Retry-After would have met 429 again until the
	// second passed, and each early retry counts a rejection.
	if st.Rejected["QUOTA_EXCEEDED"] != 1 || elapsed < time.Second {
		t.Errorf("%d QUOTA_EXCEEDED answers in %v: the retry did not wait for Retry-After (1s)", st.Rejected["QUOTA_EXCEEDED"], elapsed)
	}
}

// TestWorkerKilledDuringMixedDelivery: SIGKILL a worker binary delivering
// mixed messages, start another: every token of both platforms is
// delivered at least once, and duplicates stay within the held items.
func TestWorkerKilledDuringMixedDelivery(t *testing.T) {
	_, a := startQueuedProc(t, t.TempDir(), "127.0.0.1:0")
	asim := startSim(t, apnssim.Config{Latency: time.Millisecond})
	fsim := startFCMSim(t, fcmsim.Config{Latency: 10 * time.Millisecond})
	prod := newProducer(t, a)
	const n, concurrency = 1000, 50
	apnsTokens, fcmTokens := enqueueMixed(t, prod, n, 1, 1)

	args := append(workerArgs(t, asim, []string{a}, "--concurrency", strconv.Itoa(concurrency)), fcmArgs(fsim)...)
	w1 := testproc.Start(t, args...)
	delivered := func() int64 { return asim.Stats().Accepted + fsim.Stats().Accepted }
	waitFor(t, time.Minute, "a quarter delivered", func() bool { return delivered() >= n/2 })
	w1.Kill()
	killedAt := delivered()
	if killedAt >= 2*n {
		t.Fatalf("everything was delivered before the kill (%d); the test proves nothing", killedAt)
	}
	w2 := testproc.Start(t, args...)
	waitFor(t, time.Minute, "every token of both platforms delivered", func() bool {
		return len(asim.Stats().Tokens) == n && len(fsim.Stats().Tokens) == n
	})
	if err := w2.Stop(30 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, w2.Output())
	}
	dups := 0
	for _, c := range []struct {
		counts map[string]int64
		tokens []string
	}{{asim.Stats().Tokens, apnsTokens}, {fsim.Stats().Tokens, fcmTokens}} {
		for _, tok := range c.tokens {
			if c.counts[tok] < 1 {
				t.Fatalf("token %s never delivered: lost", tok)
			}
			dups += int(c.counts[tok] - 1)
		}
	}
	// A held item is one message of two tokens.
	if dups > 2*concurrency {
		t.Errorf("%d duplicate deliveries, more than the bound %d", dups, 2*concurrency)
	}
	t.Logf("killed after %d deliveries; %d duplicates (bound %d)", killedAt, dups, 2*concurrency)
	checkDrained(t, a)
}
