package worker_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
	"github.com/kpush/kpush/push/fcmsim"
	"github.com/kpush/kpush/queued"
	"github.com/kpush/kpush/worker"
)

// TestEndToEndTwoServers: messages enqueued through the producer onto two
// servers are all delivered exactly once (no faults, no crash), counted at
// the simulator, and every server ends with nothing queued or open.
func TestEndToEndTwoServers(t *testing.T) {
	a, b := startQueued(t, true), startQueued(t, true)
	sim := startSim(t, apnssim.Config{})
	prod := newProducer(t, a, b)
	const n = 2000
	tokens := enqueue(t, prod, n, 1)

	w, err := worker.New(worker.Config{
		Servers: []string{a, b}, Queue: testQueue, Concurrency: 200,
		AdminListen: "127.0.0.1:0", Logger: testLogger(t),
	}, newSender(t, apnsConfig(t, sim)), prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	waitFor(t, time.Minute, "every message delivered", func() bool { return sim.Stats().Accepted >= n })
	if err := stop(); err != nil {
		t.Fatalf("Run after graceful stop: %v", err)
	}
	st := sim.Stats()
	if st.Accepted != n {
		t.Errorf("simulator accepted %d, want %d", st.Accepted, n)
	}
	for _, tok := range tokens {
		if c := st.Tokens[tok]; c != 1 {
			t.Fatalf("token %s accepted %d times, want 1", tok, c)
		}
	}
	ws := w.Stats()
	if ws.Delivered != n || ws.Items != n || ws.InFlight != 0 || ws.Held != 0 {
		t.Errorf("worker stats %+v, want %d delivered and items, none in flight or held", ws, n)
	}
	for _, addr := range []string{a, b} {
		k := dialKestrel(t, addr)
		if items, open := k.queueStat(testQueue, "items"), k.queueStat(testQueue, "open_transactions"); items != 0 || open != 0 {
			t.Errorf("server %s: %d items left, %d open reads; want 0 and 0", addr, items, open)
		}
		if got := k.queueStat(testQueue, "total_items"); got == 0 {
			t.Errorf("server %s got no items: the producer did not spread them", addr)
		}
	}
}

// TestFaultsAndDeadTokens: with the simulator injecting 503 and 429 and some
// dead tokens, every live token is delivered exactly once (retried in
// process or through the delay queue), and every dead token lands in
// push_invalid_tokens with its reason and message id.
func TestFaultsAndDeadTokens(t *testing.T) {
	a, b := startQueued(t, true), startQueued(t, true)
	const n, per = 300, 3
	dead := map[string]bool{token(5): true, token(100): true, token(601): true, token(899): true}
	var deadList []string
	for tok := range dead {
		deadList = append(deadList, tok)
	}
	sim := startSim(t, apnssim.Config{
		DeadTokens: deadList,
		Failures:   []apnssim.Failure{{Reason: "ServiceUnavailable", Rate: 0.3}, {Reason: "TooManyRequests", Rate: 0.1}},
	})
	prod := newProducer(t, a, b)
	tokens := enqueue(t, prod, n, per)

	cfg := apnsConfig(t, sim)
	cfg.Backoff = push.Backoff{ServerBase: 500 * time.Millisecond, TokenBase: 500 * time.Millisecond, Max: time.Second}
	// The in-process backoff before a retry is drawn up to RetryBase,
	// doubled per attempt, and only capped by RetryMax: with one retry
	// per token, up to RetryBase's default of 100 ms, however far off
	// RetryMax is.
	w, err := worker.New(worker.Config{
		Servers: []string{a, b}, Queue: testQueue, Concurrency: 64,
		Attempts: 2, RetryMax: time.Hour,
		Logger: testLogger(t),
	}, newSender(t, cfg), prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	live := len(tokens) - len(dead)
	waitFor(t, time.Minute, "every live token delivered", func() bool { return sim.Stats().Accepted >= int64(live) })
	waitFor(t, 30*time.Second, "dead tokens recorded", func() bool { return w.Stats().DeadTokens >= uint64(len(dead)) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := sim.Stats()
	if st.Rejected["ServiceUnavailable"] == 0 || st.Rejected["Unregistered"] < int64(len(dead)) {
		t.Fatalf("faults not injected as configured: rejected %v", st.Rejected)
	}
	for _, tok := range tokens {
		want := int64(1)
		if dead[tok] {
			want = 0
		}
		if c := st.Tokens[tok]; c != want {
			t.Errorf("token %s accepted %d times, want %d", tok, c, want)
		}
	}
	ws := w.Stats()
	if ws.Requeued == 0 || ws.Retries == 0 {
		t.Errorf("stats %+v: expected both in-process retries and re-queues with a 40%% failure rate", ws)
	}

	got := map[string]worker.InvalidTokenRecord{}
	for _, addr := range []string{a, b} {
		for _, raw := range dialKestrel(t, addr).drain(testQueue + "_invalid_tokens") {
			var rec worker.InvalidTokenRecord
			if err := json.Unmarshal(raw, &rec); err != nil {
				t.Fatalf("invalid-token record %q: %v", raw, err)
			}
			got[rec.Token] = rec
		}
	}
	if len(got) != len(dead) {
		t.Fatalf("invalid-token records for %d tokens, want %d: %v", len(got), len(dead), got)
	}
	for tok := range dead {
		rec, ok := got[tok]
		if !ok {
			t.Fatalf("no invalid-token record for dead token %s", tok)
		}
		if rec.Reason != "Unregistered" || rec.Platform != push.PlatformAPNs || rec.Timestamp == 0 || !strings.HasPrefix(rec.MessageID, "m") || rec.Topic != "com.example.app" {
			t.Errorf("record %+v: want reason Unregistered, platform apns, a timestamp, the message id and topic", rec)
		}
	}
	for _, addr := range []string{a, b} {
		k := dialKestrel(t, addr)
		for _, q := range []string{testQueue, testQueue + "_retry", testQueue + "_failed"} {
			if items := k.queueStat(q, "items"); items != 0 {
				t.Errorf("server %s: queue %s has %d items left", addr, q, items)
			}
		}
	}
}

// TestUndeliverableMessagesAreDeadLettered: an item that is not a message,
// one too large to be one, and one past its expiration all land in
// push_failed with a reason, and their items are confirmed.
func TestUndeliverableMessagesAreDeadLettered(t *testing.T) {
	a := startQueued(t, true)
	sim := startSim(t, apnssim.Config{})
	prod := newProducer(t, a)
	ctx := t.Context()
	if err := prod.EnqueueRaw(ctx, testQueue, []byte("not json at all")); err != nil {
		t.Fatal(err)
	}
	expired, _ := (&push.Message{ID: "old", Tokens: []string{token(1)}, Topic: "com.example.app", Alert: &push.Alert{Text: "late"}, Expiration: time.Now().Add(-time.Hour).Unix()}).Encode()
	if err := prod.EnqueueRaw(ctx, testQueue, expired); err != nil {
		t.Fatal(err)
	}
	// An item too large to be a push message (a poison pill if it were
	// dropped with the connection: it would come back forever).
	if err := prod.EnqueueRaw(ctx, testQueue, []byte(strings.Repeat("x", 17<<20))); err != nil {
		t.Fatal(err)
	}
	enqueue(t, prod, 1, 1) // one good message, to know when the others were seen

	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: 8, Logger: testLogger(t)},
		newSender(t, apnsConfig(t, sim)), prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	waitFor(t, 30*time.Second, "four items finished", func() bool { return w.Stats().Items >= 4 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := dialKestrel(t, a).drain(testQueue + "_failed")
	if len(recs) != 3 {
		t.Fatalf("%d failed records, want 3", len(recs))
	}
	reasons := map[string]worker.FailedRecord{}
	for _, raw := range recs {
		var r worker.FailedRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("failed record %q: %v", raw, err)
		}
		key := r.Reason
		if strings.Contains(r.Error, "bytes, over") {
			key = "oversize"
		}
		reasons[key] = r
	}
	if r, ok := reasons[worker.ReasonInvalidMessage]; !ok || string(r.Raw) != "not json at all" || r.Error == "" {
		t.Errorf("invalid item: record %+v, want reason %s with the raw item and the parse error", r, worker.ReasonInvalidMessage)
	}
	if r, ok := reasons["oversize"]; !ok || r.Reason != worker.ReasonInvalidMessage || !strings.Contains(r.Error, "17825792 bytes") || r.Raw != nil {
		t.Errorf("oversize item: record %+v, want reason %s naming its size, without the item", r, worker.ReasonInvalidMessage)
	}
	if r, ok := reasons[worker.ReasonExpired]; !ok || r.Message == nil || r.Message.ID != "old" || len(r.Tokens) != 1 {
		t.Errorf("expired message: record %+v, want reason %s with the message", r, worker.ReasonExpired)
	}
	if st := sim.Stats(); st.Accepted != 1 || st.Tokens[token(1)] != 0 {
		t.Errorf("simulator: accepted %d (want only the good message), expired token pushed %d times", st.Accepted, st.Tokens[token(1)])
	}
	if items := dialKestrel(t, a).queueStat(testQueue, "items"); items != 0 {
		t.Errorf("%d items left in %s", items, testQueue)
	}
	// The three dead-lettered items and the good one finished: none is
	// left in flight or held. Two are not messages, one expired token.
	if s := w.Stats(); s.Items != 4 || s.InFlight != 0 || s.Held != 0 || s.Delivered != 1 || s.Failed != 3 {
		t.Errorf("stats %+v, want 4 items finished, none in flight or held, 1 delivered, 3 failed", s)
	}
}

// TestBadCredentialsReturnsEverything: APNs refusing the topic stops the
// worker with ErrBadCredentials, unhealthy, and every message is back on
// the server, none confirmed.
func TestBadCredentialsReturnsEverything(t *testing.T) {
	a := startQueued(t, true)
	sim := startSim(t, apnssim.Config{Topics: []string{"com.example.other"}})
	prod := newProducer(t, a)
	const n = 50
	enqueue(t, prod, n, 1)
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: 16, Logger: testLogger(t)},
		newSender(t, apnsConfig(t, sim)), prod)
	if err != nil {
		t.Fatal(err)
	}
	err = runUntilStopped(t, w, "on bad credentials")
	if !errors.Is(err, worker.ErrBadCredentials) || !strings.Contains(err.Error(), "TopicDisallowed") {
		t.Fatalf("Run = %v, want ErrBadCredentials naming TopicDisallowed", err)
	}
	rec := httptestGet(t, w.Handler(), "/healthz")
	if rec != http.StatusServiceUnavailable {
		t.Errorf("/healthz = %d after bad credentials, want 503", rec)
	}
	k := dialKestrel(t, a)
	waitFor(t, 10*time.Second, "items back on the server", func() bool {
		return k.queueStat(testQueue, "items") == n && k.queueStat(testQueue, "open_transactions") == 0
	})
	if st := sim.Stats(); st.Accepted != 0 {
		t.Errorf("simulator accepted %d", st.Accepted)
	}
	// Every item taken was given back, none finished: the gauges are back
	// at zero.
	if s := w.Stats(); s.InFlight != 0 || s.Held != 0 || s.Items != 0 || s.Delivered != 0 {
		t.Errorf("stats %+v after the stop, want nothing in flight, held, finished or delivered", s)
	}
}

// TestMissingRetryQueueFailsLoudly: a server without the delay queue makes
// Run fail naming the config lines to add; with AllowMissingRetryQueue it
// only warns and delivers, re-queueing retries straight onto the work queue
// (an item parked in a delay queue that expires into nothing would be lost).
func TestMissingRetryQueueFailsLoudly(t *testing.T) {
	a := startQueued(t, false)
	sim := startSim(t, apnssim.Config{})
	prod := newProducer(t, a)
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Logger: testLogger(t)},
		newSender(t, apnsConfig(t, sim)), prod)
	if err != nil {
		t.Fatal(err)
	}
	err = w.Run(t.Context())
	if !errors.Is(err, worker.ErrRetryQueueNotConfigured) || !strings.Contains(err.Error(), `push_retry { expire_to_queue = "push" }`) {
		t.Fatalf("Run = %v, want ErrRetryQueueNotConfigured with the config line", err)
	}

	const n = 40
	tokens := enqueue(t, prod, n, 1)
	// 30% of pushes fail with 503 and there is one in-process attempt, so
	// some tokens must go through the (missing) delay queue.
	flaky := startSim(t, apnssim.Config{Failures: []apnssim.Failure{{Reason: "ServiceUnavailable", Rate: 0.3}}})
	w, err = worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, AllowMissingRetryQueue: true,
		Attempts: 1, MaxRequeues: 30, Logger: testLogger(t)},
		newSender(t, apnsConfig(t, flaky)), prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	waitFor(t, 60*time.Second, "delivery despite the warning", func() bool { return flaky.Stats().Accepted == n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if w.Stats().Requeued == 0 {
		t.Fatal("no token was re-queued; the test did not exercise the missing delay queue")
	}
	st := flaky.Stats()
	for _, tok := range tokens {
		if st.Tokens[tok] != 1 {
			t.Errorf("token %s accepted %d times, want 1", tok, st.Tokens[tok])
		}
	}
	k := dialKestrel(t, a)
	if parked := k.queueStat(testQueue+"_retry", "items"); parked != 0 {
		t.Fatalf("%d items parked in %s_retry, which expires into nothing", parked, testQueue)
	}
}

func TestConfigErrors(t *testing.T) {
	sim := startSim(t, apnssim.Config{})
	sender := newSender(t, apnsConfig(t, sim))
	prod := newProducer(t, "127.0.0.1:1")
	tests := []struct {
		name string
		cfg  worker.Config
	}{
		{"no servers", worker.Config{Queue: "push"}},
		{"server without port", worker.Config{Servers: []string{"localhost"}, Queue: "push"}},
		{"server twice", worker.Config{Servers: []string{"127.0.0.1:22133", "127.0.0.1:22133"}, Queue: "push"}},
		{"no queue", worker.Config{Servers: []string{"127.0.0.1:22133"}}},
		{"bad queue name", worker.Config{Servers: []string{"127.0.0.1:22133"}, Queue: "push/open"}},
		{"negative concurrency", worker.Config{Servers: []string{"127.0.0.1:22133"}, Queue: "push", Concurrency: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := worker.New(tt.cfg, sender, prod); !errors.Is(err, worker.ErrBadConfig) {
				t.Fatalf("New = %v, want ErrBadConfig", err)
			}
		})
	}
}

// TestAdminEndpoints: /metrics carries the documented series, /healthz is
// 200 while running. The delivery latency is observed only for messages
// stamped with enqueued_at: a message some other producer queued without
// one is delivered but has no latency to tell.
func TestAdminEndpoints(t *testing.T) {
	a := startQueued(t, true)
	sim := startSim(t, apnssim.Config{})
	prod := newProducer(t, a)
	enqueue(t, prod, 10, 1)
	unstamped, err := (&push.Message{ID: "unstamped", Tokens: []string{token(10)}, Topic: "com.example.app", Alert: &push.Alert{Text: "hi"}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.EnqueueRaw(t.Context(), testQueue, unstamped); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Logger: testLogger(t)},
		newSender(t, apnsConfig(t, sim)), prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	waitFor(t, 30*time.Second, "delivery", func() bool { return w.Stats().Delivered == 11 })
	if code := httptestGet(t, w.Handler(), "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	body := httptestBody(t, w.Handler(), "/metrics")
	for _, want := range []string{
		`kpush_worker_delivered_total{platform="apns"} 11`, `kpush_worker_delivered_total{platform="fcm"} 0`,
		"kpush_worker_failed_total", `kpush_worker_retries_total{platform="apns"}`,
		"kpush_worker_in_flight", "kpush_worker_pool_saturation", `kpush_worker_delivery_latency_seconds_count{platform="apns"} 10`,
	} {
		if want == "kpush_worker_failed_total" {
			want = "# TYPE kpush_worker_failed_total counter"
		}
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSummaryLogsDeliveryRate: the summary logged when the worker stops
// gives its counters and the delivery rate since the worker was created,
// tokens per second. The simulator lets a device token have one push per
// two seconds and one token gets two messages, so the run lasts at least
// two seconds: the rate is then at most half the deliveries.
func TestSummaryLogsDeliveryRate(t *testing.T) {
	a := startQueued(t, true)
	sim := startSim(t, apnssim.Config{RateLimit: 0.5})
	prod := newProducer(t, a)
	tokens := enqueue(t, prod, 50, 1)
	if err := prod.Enqueue(t.Context(), testQueue, &push.Message{ID: "again", Tokens: tokens[:1], Topic: "com.example.app", Alert: &push.Alert{Text: "again"}}); err != nil {
		t.Fatal(err)
	}
	const delivered = 51
	cfg := apnsConfig(t, sim)
	cfg.Backoff = push.Backoff{ServerBase: 10 * time.Millisecond, TokenBase: 10 * time.Millisecond, Max: 10 * time.Millisecond}
	var logs lockedLog
	created := time.Now()
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, SummaryInterval: time.Hour,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}, newSender(t, cfg), prod)
	if err != nil {
		t.Fatal(err)
	}
	createdBy := time.Now()
	stop := runWorker(t, w)
	waitFor(t, time.Minute, "every push delivered", func() bool { return w.Stats().Delivered == delivered })
	deliveredBy := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if got := sim.Stats().Tokens[tokens[0]]; got != 2 {
		t.Fatalf("token %s accepted %d times, want 2", tokens[0], got)
	}

	summaries := summaryRecords(t, &logs)
	if len(summaries) != 1 {
		t.Fatalf("%d summary lines, want the final one only: %v", len(summaries), summaries)
	}
	sum := summaries[0]
	ws := w.Stats()
	for field, want := range map[string]float64{"delivered": delivered, "fcm_delivered": 0, "failed": 0, "dead_tokens": 0,
		"retried": float64(ws.Retries), "requeued": float64(ws.Requeued), "in_flight": 0, "open_reads": 0} {
		if got, ok := sum[field].(float64); !ok || got != want {
			t.Errorf("summary %s = %v, want %v", field, sum[field], want)
		}
	}
	// The summary's interval began inside New and ended after the last
	// delivery, within Run: the rate lies between the deliveries over the
	// longest such interval and over the shortest, give or take the
	// rounding to whole tokens per second.
	rateText, _ := sum["rate"].(string)
	rate, err := strconv.ParseFloat(strings.TrimSuffix(rateText, "/s"), 64)
	if err != nil || !strings.HasSuffix(rateText, "/s") {
		t.Fatalf("summary rate %q, want tokens per second as N/s", sum["rate"])
	}
	lo, hi := delivered/stopped.Sub(created).Seconds(), delivered/deliveredBy.Sub(createdBy).Seconds()
	if rate < lo-0.5 || rate > hi+0.5 {
		t.Errorf("summary rate %v/s, want %d deliveries over %v to %v: %.1f/s to %.1f/s", rate, delivered,
			deliveredBy.Sub(createdBy), stopped.Sub(created), lo, hi)
	}
}

// summaryRecords returns the summary lines of a worker's JSON log, oldest
// first.
func summaryRecords(t *testing.T, logs *lockedLog) []map[string]any {
	t.Helper()
	var summaries []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if line == "" {
			continue // nothing logged yet
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "summary" {
			summaries = append(summaries, rec)
		}
	}
	return summaries
}

// TestSummaryRateCoversItsIntervalOnly: a periodic summary's rate counts
// the deliveries since the previous summary, not since start: once every
// message is delivered, the next summary says 0/s.
func TestSummaryRateCoversItsIntervalOnly(t *testing.T) {
	a := startQueued(t, true)
	sim := startSim(t, apnssim.Config{})
	prod := newProducer(t, a)
	const n = 50
	enqueue(t, prod, n, 1)
	var logs lockedLog
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, SummaryInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}, newSender(t, apnsConfig(t, sim)), prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	all := func(rec map[string]any) bool { return rec["delivered"] == float64(n) }
	waitFor(t, time.Minute, "two summaries counting every delivery", func() bool {
		return len(slices.DeleteFunc(summaryRecords(t, &logs), func(rec map[string]any) bool { return !all(rec) })) >= 2
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	summaries := summaryRecords(t, &logs)
	i := slices.IndexFunc(summaries, all)
	if next := summaries[i+1]; !all(next) || next["rate"] != "0/s" {
		t.Errorf("summary after the one counting all %d deliveries: %v, want %d delivered at 0/s", n, next, n)
	}
}

// TestPprofOnlyWhenAsked: the admin handler serves Go profiles only with
// Config.Pprof (--pprof).
func TestPprofOnlyWhenAsked(t *testing.T) {
	sim := startSim(t, apnssim.Config{})
	sender := newSender(t, apnsConfig(t, sim))
	prod := newProducer(t, "127.0.0.1:1") // never used: the worker is not run
	for _, tt := range []struct {
		pprof bool
		want  int
	}{{false, http.StatusNotFound}, {true, http.StatusOK}} {
		w, err := worker.New(worker.Config{Servers: []string{"127.0.0.1:1"}, Queue: testQueue, Pprof: tt.pprof, Logger: testLogger(t)}, sender, prod)
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline"} {
			if code := httptestGet(t, w.Handler(), path); code != tt.want {
				t.Errorf("Pprof %v: GET %s = %d, want %d", tt.pprof, path, code, tt.want)
			}
		}
		if code := httptestGet(t, w.Handler(), "/healthz"); code != http.StatusOK {
			t.Errorf("Pprof %v: /healthz = %d, want 200", tt.pprof, code)
		}
	}
}

func httptestGet(t testing.TB, h http.Handler, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

func httptestBody(t testing.TB, h http.Handler, path string) string {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Body.String()
}

// gatedPusher wraps a real sender: pushes to tokens in slow wait for
// release, so later items finish before earlier ones.
type gatedPusher struct {
	worker.Pusher
	slow    map[string]bool
	release chan struct{}
	started atomic.Int64
}

func (g *gatedPusher) Send(ctx context.Context, msg *push.Message, tok string) push.Result {
	g.started.Add(1)
	if g.slow == nil || g.slow[tok] {
		select {
		case <-g.release:
		case <-ctx.Done():
		}
	}
	return g.Pusher.Send(ctx, msg, tok)
}

// TestOutOfOrderFinishesConfirmCorrectly: the oldest items of each window
// finish last. Confirms must wait for them (confirm settles the oldest open
// reads), so everything is delivered exactly once and nothing is left.
func TestOutOfOrderFinishesConfirmCorrectly(t *testing.T) {
	a := startQueued(t, true)
	sim := startSim(t, apnssim.Config{})
	prod := newProducer(t, a)
	const n = 400
	tokens := enqueue(t, prod, n, 1)
	slow := map[string]bool{}
	for i := 0; i < n; i += 7 {
		slow[tokens[i]] = true
	}
	g := &gatedPusher{Pusher: newSender(t, apnsConfig(t, sim)), slow: slow, release: make(chan struct{})}
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: 32, Logger: testLogger(t)}, g, prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	k := dialKestrel(t, a)
	// The fast items behind the first slow one finish but stay open.
	waitFor(t, 30*time.Second, "fast items delivered behind a slow one", func() bool { return sim.Stats().Accepted >= 10 })
	if open := k.queueStat(testQueue, "open_transactions"); open == 0 {
		t.Fatal("no open reads while the oldest item is held: items were confirmed ahead of it")
	}
	close(g.release)
	waitFor(t, 30*time.Second, "all delivered", func() bool { return sim.Stats().Accepted >= n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, sim, tokens)
	if items, open := k.queueStat(testQueue, "items"), k.queueStat(testQueue, "open_transactions"); items != 0 || open != 0 {
		t.Fatalf("%d items and %d open reads left", items, open)
	}
}

// TestFetchingWaitsForThePool: with every push blocked, the worker holds
// exactly Concurrency items open and leaves the rest on the server; its
// gauges show the pool saturated.
func TestFetchingWaitsForThePool(t *testing.T) {
	a := startQueued(t, true)
	sim := startSim(t, apnssim.Config{})
	prod := newProducer(t, a)
	const n, concurrency = 200, 8
	tokens := enqueue(t, prod, n, 1)
	g := &gatedPusher{Pusher: newSender(t, apnsConfig(t, sim)), release: make(chan struct{})}
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: concurrency, Logger: testLogger(t)}, g, prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	k := dialKestrel(t, a)
	waitFor(t, 30*time.Second, "the pool full", func() bool { return g.started.Load() == concurrency })
	// Let the fetch loops go round a few monitor periods: they must not
	// open more.
	for i := 0; i < 3; i++ {
		if open, items := k.queueStat(testQueue, "open_transactions"), k.queueStat(testQueue, "items"); open != concurrency || items != n-concurrency {
			t.Fatalf("open reads %d, items %d; want %d and %d", open, items, concurrency, n-concurrency)
		}
		if s := w.Stats(); s.Held != concurrency || s.InFlight != concurrency {
			t.Fatalf("worker stats %+v, want %d held and in flight", s, concurrency)
		}
		// Every pool goroutine runs a push, none waits.
		body := httptestBody(t, w.Handler(), "/metrics")
		for _, want := range []string{
			"kpush_worker_pool_saturation 1", "kpush_worker_pool_waiting_tasks 0",
			fmt.Sprintf("kpush_worker_open_reads %d", concurrency), fmt.Sprintf("kpush_worker_in_flight %d", concurrency),
		} {
			if !strings.Contains(body, "\n"+want+"\n") {
				t.Fatalf("/metrics lacks %q", want)
			}
		}
		k.cmd("monitor nothing_here 1 1") // one second of server time, no sleep
		if l := k.line(); l != "END" {
			t.Fatalf("monitor on an empty queue: %q", l)
		}
	}
	close(g.release)
	waitFor(t, 30*time.Second, "all delivered", func() bool { return sim.Stats().Accepted >= n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, sim, tokens)
	// Stopped, the pool runs nothing and holds nothing.
	body := httptestBody(t, w.Handler(), "/metrics")
	for _, want := range []string{"kpush_worker_pool_saturation 0", "kpush_worker_pool_waiting_tasks 0", "kpush_worker_open_reads 0", "kpush_worker_in_flight 0"} {
		if !strings.Contains(body, "\n"+want+"\n") {
			t.Errorf("/metrics after the stop lacks %q", want)
		}
	}
}

func checkExactlyOnce(t *testing.T, sim *apnssim.Server, tokens []string) {
	t.Helper()
	st := sim.Stats()
	for _, tok := range tokens {
		if c := st.Tokens[tok]; c != 1 {
			t.Fatalf("token %s delivered %d times, want 1", tok, c)
		}
	}
}

// TestOneServerDown: a server in the list that is down does not stop the
// worker from delivering everything from the others, and is reported
// once, with one fetch loop per server or several.
func TestOneServerDown(t *testing.T) {
	for _, loops := range []int{1, 2} {
		t.Run(strconv.Itoa(loops)+" loops per server", func(t *testing.T) {
			a := startQueued(t, true)
			down := testproc.ReserveAddr(t) // nothing listens there
			sim := startSim(t, apnssim.Config{})
			prod := newProducer(t, a)
			const n = 300
			tokens := enqueue(t, prod, n, 1)
			var logs lockedLog
			w, err := worker.New(worker.Config{Servers: []string{down, a}, Queue: testQueue, Concurrency: 50, LoopsPerServer: loops,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))},
				newSender(t, apnsConfig(t, sim)), prod)
			if err != nil {
				t.Fatal(err)
			}
			stop := runWorker(t, w)
			waitFor(t, 30*time.Second, "delivery from the live server", func() bool { return w.Stats().Delivered >= n })
			// The server that is down is said so once, by one of its
			// loops, however many retry.
			waitFor(t, 30*time.Second, "the down server reported", func() bool {
				return strings.Contains(logs.String(), "queued server unreachable")
			})
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			checkExactlyOnce(t, sim, tokens)
			if got := strings.Count(logs.String(), `msg="queued server unreachable; retrying with backoff" server=`+down+" "); got != 1 {
				t.Errorf("%d warnings that %s is unreachable, want 1:\n%s", got, down, logs.String())
			}
		})
	}
}

// TestMaxRequeuesDeadLetters: with APNs answering 503 and FCM UNAVAILABLE
// to everything, a message to both goes through the delay queue
// MaxRequeues times, then lands in push_failed: one record per reason,
// naming the attempts made, with every token of that platform. The
// re-queues are counted per platform and in Stats.
func TestMaxRequeuesDeadLetters(t *testing.T) {
	a := startQueued(t, true)
	sim := startSim(t, apnssim.Config{Failures: []apnssim.Failure{{Reason: "ServiceUnavailable", Rate: 1}}})
	fsim := startFCMSim(t, fcmsim.Config{Failures: []fcmsim.Failure{{Code: "UNAVAILABLE", Rate: 1}}})
	prod := newProducer(t, a)
	tokens := []string{token(1), token(2)}
	fcmTokens := []string{fcmToken(1)}
	msg := &push.Message{ID: "flaky", Tokens: tokens, FCMTokens: fcmTokens, Topic: "com.example.app", Alert: &push.Alert{Text: "hi"}}
	if err := prod.Enqueue(t.Context(), testQueue, msg); err != nil {
		t.Fatal(err)
	}
	cfg := apnsConfig(t, sim)
	cfg.Backoff = push.Backoff{ServerBase: 10 * time.Millisecond, Max: 10 * time.Millisecond}
	fcfg := fcmConfig(t, fsim)
	fcfg.Backoff = push.Backoff{ServerBase: 10 * time.Millisecond, Max: 10 * time.Millisecond}
	// RetryMax is left at its default, 2 s: FCM's Retry-After of 1 s is
	// short enough to be waited out in process, so every token is retried
	// once per read. RetryBase is the least there is, a nanosecond: the
	// first backoff's jitter spans [0, 1 ns].
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Attempts: 2, RetryBase: time.Nanosecond,
		MaxRequeues: 2, Logger: testLogger(t), FCM: newFCMSender(t, fcfg)}, newSender(t, cfg), prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	waitFor(t, 30*time.Second, "the message dead-lettered", func() bool { return w.Stats().Failed == 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Each token: 2 in-process attempts × (first try + 2 re-queues).
	if got := sim.Stats().Rejected["ServiceUnavailable"]; got != 12 {
		t.Errorf("APNs simulator answered 503 %d times, want 12", got)
	}
	if got := fsim.Stats().Rejected["UNAVAILABLE"]; got != 6 {
		t.Errorf("FCM simulator answered UNAVAILABLE %d times, want 6", got)
	}
	if s := w.Stats(); s.Requeued != 6 || s.Retries != 9 || s.Delivered != 0 || s.Failed != 3 {
		t.Errorf("stats %+v, want 6 tokens re-queued (4 APNs, 2 FCM), 9 retried in process (one per token and read), none delivered, 3 failed", s)
	}
	body := httptestBody(t, w.Handler(), "/metrics")
	for _, want := range []string{
		`kpush_worker_requeued_total{platform="apns"} 4`,
		`kpush_worker_requeued_total{platform="fcm"} 2`,
		`kpush_worker_failed_total{class="bad-message",platform="apns",reason="MaxAttempts"} 2`,
		`kpush_worker_failed_total{class="bad-message",platform="fcm",reason="MaxAttempts"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	recs := drainRecords[worker.FailedRecord](t, testQueue+"_failed", a)
	if len(recs) != 2 {
		t.Fatalf("%d failed records, want 2 (one per reason): %+v", len(recs), recs)
	}
	// The message was tried on its first read and after each of its 2
	// re-queues: 3 attempts. Records come in the order of their reasons;
	// a record's tokens in the order their pushes ended.
	for i, want := range []struct {
		reason    string
		apns, fcm []string
	}{
		{worker.ReasonMaxAttempts + " after 3 attempts: ServiceUnavailable", tokens, nil},
		{worker.ReasonMaxAttempts + " after 3 attempts: UNAVAILABLE", nil, fcmTokens},
	} {
		rec := recs[i]
		if rec.Reason != want.reason || rec.Status != 503 || !slices.Equal(slices.Sorted(slices.Values(rec.Tokens)), want.apns) || !slices.Equal(rec.FCMTokens, want.fcm) ||
			rec.Attempt != 2 || rec.Message == nil || rec.Message.ID != "flaky" {
			t.Errorf("record %d %+v: want reason %q, status 503, APNs tokens %v, FCM tokens %v, attempt 2", i, rec, want.reason, want.apns, want.fcm)
		}
	}
}

// TestManyTokensFanOut: messages with many tokens fan out over a pool much
// smaller than one message: every token is delivered exactly once and every
// item confirmed.
func TestManyTokensFanOut(t *testing.T) {
	a := startQueued(t, true)
	sim := startSim(t, apnssim.Config{})
	prod := newProducer(t, a)
	const n, per = 20, 100
	tokens := enqueue(t, prod, n, per)
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: 8, Logger: testLogger(t)},
		newSender(t, apnsConfig(t, sim)), prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	waitFor(t, time.Minute, "every item finished", func() bool { return w.Stats().Items == n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, sim, tokens)
	if s := w.Stats(); s.Delivered != n*per {
		t.Errorf("delivered %d, want %d", s.Delivered, n*per)
	}
	k := dialKestrel(t, a)
	if items, open := k.queueStat(testQueue, "items"), k.queueStat(testQueue, "open_transactions"); items != 0 || open != 0 {
		t.Fatalf("%d items and %d open reads left", items, open)
	}
}

// orderPusher counts the pushes of the message with ID big and, for every
// other message, how many of big's pushes had started before its own.
type orderPusher struct {
	worker.Pusher
	big     string
	bigSent atomic.Int64
	mu      sync.Mutex
	after   map[string]int64 // message ID -> pushes of big started before it
}

func (o *orderPusher) Send(ctx context.Context, msg *push.Message, tok string) push.Result {
	if msg.ID == o.big {
		o.bigSent.Add(1)
	} else {
		o.mu.Lock()
		o.after[msg.ID] = o.bigSent.Load()
		o.mu.Unlock()
	}
	return o.Pusher.Send(ctx, msg, tok)
}

// TestBigMessageDoesNotStarveSmallOnes: a message to 10,000 devices queued
// before one-token messages does not hold the pool until its last push
// started: the pool takes items in turn, so the small messages go out
// among its first pushes, not after all of them.
func TestBigMessageDoesNotStarveSmallOnes(t *testing.T) {
	a := startQueued(t, true)
	// A little latency, as from Apple, so the big message lasts.
	sim := startSim(t, apnssim.Config{Latency: 2 * time.Millisecond})
	prod := newProducer(t, a)
	const bigTokens, small, concurrency = 10000, 20, 100
	big := &push.Message{ID: "big", Topic: "com.example.app", Alert: &push.Alert{Text: "to everyone"}}
	for i := range bigTokens {
		big.Tokens = append(big.Tokens, token(i))
	}
	if err := prod.Enqueue(context.Background(), testQueue, big); err != nil {
		t.Fatal(err)
	}
	for i := range small {
		m := &push.Message{ID: "s" + strconv.Itoa(i), Tokens: []string{token(bigTokens + i)}, Topic: "com.example.app", Alert: &push.Alert{Text: "just you"}}
		if err := prod.Enqueue(context.Background(), testQueue, m); err != nil {
			t.Fatal(err)
		}
	}
	o := &orderPusher{Pusher: newSender(t, apnsConfig(t, sim)), big: big.ID, after: map[string]int64{}}
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: concurrency, ShutdownTimeout: 100 * time.Millisecond, Logger: testLogger(t)}, o, prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	waitFor(t, 5*time.Minute, "every small message pushed", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.after) == small
	})
	o.mu.Lock()
	// In turn, every small message starts within the first round over
	// the items; allow a few rounds of the pool for the fetch.
	for id, n := range o.after {
		if n > 3*concurrency {
			t.Errorf("message %s started after %d of the big message's %d pushes, want within its first %d", id, n, bigTokens, 3*concurrency)
		}
	}
	o.mu.Unlock()
	// The rest of the big message is of no interest: give it back.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// twoGatePusher holds pushes to tokens of set a until gateA is closed, and
// of set b until gateB is closed.
type twoGatePusher struct {
	worker.Pusher
	b            map[string]bool
	gateA, gateB chan struct{}
}

func (g *twoGatePusher) Send(ctx context.Context, msg *push.Message, tok string) push.Result {
	gate := g.gateA
	if g.b[tok] {
		gate = g.gateB
	}
	select {
	case <-gate:
	case <-ctx.Done():
	}
	return g.Pusher.Send(ctx, msg, tok)
}

// TestFinishedHeadIsRefilledPastAStuckRead: a loop whose last monitor
// left room in its window, but less than a batch, holds its reads; once
// the oldest finishes, the room is a batch and the loop confirms it and
// fetches again, although the read behind it is stuck.
func TestFinishedHeadIsRefilledPastAStuckRead(t *testing.T) {
	a := startQueued(t, true)
	sim := startSim(t, apnssim.Config{})
	prod := newProducer(t, a)
	// One loop with a window of 8 and batches of 2: it takes m0..m6 and
	// keeps them, one slot short of a batch.
	tokens := enqueue(t, prod, 7, 1)
	g := &twoGatePusher{Pusher: newSender(t, apnsConfig(t, sim)), b: map[string]bool{tokens[1]: true}, gateA: make(chan struct{}), gateB: make(chan struct{})}
	w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: 8, LoopsPerServer: 1, Logger: testLogger(t)}, g, prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	k := dialKestrel(t, a)
	waitFor(t, 30*time.Second, "all 7 messages held", func() bool {
		return k.queueStat(testQueue, "open_transactions") == 7 && k.queueStat(testQueue, "items") == 0
	})
	// The monitor that took them ends within its second: one second of
	// server time (no sleep), then no monitor waits.
	k.cmd("monitor nothing_here 1 1")
	if l := k.line(); l != "END" {
		t.Fatalf("monitor on an empty queue: %q", l)
	}
	waitFor(t, 30*time.Second, "no monitor waiting", func() bool { return k.queueStat(testQueue, "waiters") == 0 })
	for i := 7; i < 11; i++ {
		msg := &push.Message{ID: "m" + strconv.Itoa(i), Tokens: []string{token(i)}, Topic: "com.example.app", Alert: &push.Alert{Text: "hello"}}
		if err := prod.Enqueue(t.Context(), testQueue, msg); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, token(i))
	}
	// Everything but m1 finishes: m0, the oldest, is confirmable and
	// frees a slot; with the one left over that is a batch of 2.
	close(g.gateA)
	waitFor(t, 30*time.Second, "m0 confirmed and two new messages taken past the stuck m1", func() bool {
		return k.queueStat(testQueue, "items") == 2 && k.queueStat(testQueue, "open_transactions") == 8
	})
	close(g.gateB)
	waitFor(t, 30*time.Second, "all delivered", func() bool { return sim.Stats().Accepted >= int64(len(tokens)) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, sim, tokens)
	checkDrained(t, a)
}

// TestIdleServerLendsItsShare: while one server is empty, the busy one may
// use (almost) the whole allowance; once both have work, each gets its
// fair half; once the first runs dry, the other may use (almost) the whole
// allowance in turn; the total never exceeds Concurrency.
func TestIdleServerLendsItsShare(t *testing.T) {
	a, b := startQueued(t, true), startQueued(t, true)
	sim := startSim(t, apnssim.Config{})
	const concurrency, n = 40, 100
	tokensA := enqueue(t, newProducer(t, a), n, 1)
	g := &twoGatePusher{Pusher: newSender(t, apnsConfig(t, sim)), b: map[string]bool{}, gateA: make(chan struct{}), gateB: make(chan struct{})}
	var tokensB []string
	for i := 0; i < n; i++ {
		tok := token(100000 + i)
		g.b[tok] = true
		tokensB = append(tokensB, tok)
	}
	w, err := worker.New(worker.Config{Servers: []string{a, b}, Queue: testQueue, Concurrency: concurrency, Logger: testLogger(t)},
		g, newProducer(t, a, b))
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	ka, kb := dialKestrel(t, a), dialKestrel(t, b)
	// Fair share per server is 20. The idle server's two loops keep 2
	// reads' worth each to notice new items, and a loop asks for no less
	// than a batch (a quarter of its window, 5), so up to 4 more can stay
	// unused: the busy server gets at least 40-4-4.
	waitFor(t, 30*time.Second, "the busy server borrowing the idle one's share", func() bool {
		return ka.queueStat(testQueue, "open_transactions") >= concurrency-8
	})
	if held := w.Stats().Held; held > concurrency {
		t.Fatalf("%d reads held, more than %d", held, concurrency)
	}

	// Now b gets work that stays stuck, while a's flows: b must get at
	// least its fair half back (more once a runs dry).
	pb := newProducer(t, b)
	for _, tok := range tokensB {
		if err := pb.Enqueue(t.Context(), testQueue, &push.Message{Tokens: []string{tok}, Topic: "com.example.app", Alert: &push.Alert{Text: "b"}}); err != nil {
			t.Fatal(err)
		}
	}
	close(g.gateA)
	waitFor(t, 30*time.Second, "server b holding its fair half", func() bool {
		return kb.queueStat(testQueue, "open_transactions") >= concurrency/2
	})
	if held := w.Stats().Held; held > concurrency {
		t.Fatalf("%d reads held, more than %d", held, concurrency)
	}
	// Once a runs dry its loops turn idle and b, the only busy server
	// left, may borrow a's share in turn, by the same bound as a did.
	waitFor(t, 30*time.Second, "every item of a delivered", func() bool { return w.Stats().Delivered == n })
	waitFor(t, 30*time.Second, "server b borrowing the share of a, now idle", func() bool {
		return kb.queueStat(testQueue, "open_transactions") >= concurrency-8
	})
	if held := w.Stats().Held; held > concurrency {
		t.Fatalf("%d reads held, more than %d", held, concurrency)
	}
	close(g.gateB)
	waitFor(t, 30*time.Second, "everything delivered", func() bool { return w.Stats().Delivered == 2*n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, sim, append(tokensA, tokensB...))
}

// TestServerWithoutMonitor: a plain memcached stands for a server without
// dump_config and monitor (Kestrel 1.x has neither): the worker says so
// and stops, rather than reconnecting forever.
func TestServerWithoutMonitor(t *testing.T) {
	addr := testproc.Memcached(t) // a server without monitor
	sim := startSim(t, apnssim.Config{})
	sender := newSender(t, apnsConfig(t, sim))
	prod := newProducer(t, addr)

	tests := []struct {
		name         string
		allowMissing bool
		want         error
		wantText     string
	}{
		{"delay queue cannot be checked", false, worker.ErrRetryQueueNotConfigured, "does not answer dump_config"},
		{"no monitor", true, worker.ErrMonitorUnsupported, "answered ERROR to monitor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := worker.New(worker.Config{Servers: []string{addr}, Queue: testQueue, AllowMissingRetryQueue: tt.allowMissing, Logger: testLogger(t)}, sender, prod)
			if err != nil {
				t.Fatal(err)
			}
			err = runUntilStopped(t, w, "against a server without monitor")
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("Run = %v, want %v mentioning %q", err, tt.want, tt.wantText)
			}
		})
	}
}

// TestConcurrencyOne: with a budget of one read for four fetch loops the
// worker still delivers everything from both servers, one at a time: once
// one server is empty its idle loops must not win the only read at every
// release (they defer to loops that were refused).
func TestConcurrencyOne(t *testing.T) {
	a, b := startQueued(t, true), startQueued(t, true)
	sim := startSim(t, apnssim.Config{})
	prod := newProducer(t, a, b)
	const n = 20
	tokens := enqueue(t, prod, n, 1)
	g := &gatedPusher{Pusher: newSender(t, apnsConfig(t, sim)), slow: map[string]bool{}, release: make(chan struct{})}
	w, err := worker.New(worker.Config{Servers: []string{a, b}, Queue: testQueue, Concurrency: 1, Logger: testLogger(t)}, g, prod)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	waitFor(t, time.Minute, "everything delivered", func() bool {
		if s := w.Stats(); s.Held > 1 || s.InFlight > 1 {
			t.Fatalf("stats %+v: more than one item at once", s)
		}
		return w.Stats().Delivered == n
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, sim, tokens)
}

// TestOutcomeRecordStoreFailures: a dead-letter record that no server
// stores yet (its queue is full) holds its item unconfirmed while the
// worker retries, and the item is confirmed only once a server took the
// record; a record every server refuses outright (larger than their
// max_item_size) is logged with its content and its item confirmed, so
// one unstorable record cannot stall a connection forever. A record still
// unstored when the shutdown timeout passes leaves its item unconfirmed,
// back on the server.
func TestOutcomeRecordStoreFailures(t *testing.T) {
	sim := startSim(t, apnssim.Config{})
	sender := newSender(t, apnsConfig(t, sim))
	failedQueue := testQueue + "_failed"

	// fullFailedQueue starts a server whose failed queue already holds
	// its one allowed item, and puts a message no push can be made of.
	fullFailedQueue := func(t *testing.T) (string, *producer.Producer) {
		t.Helper()
		a := startQueuedWith(t, true, func(c *queued.Config) {
			q := c.Defaults
			q.MaxItems = 1
			c.Queues[failedQueue] = q
		})
		prod := newProducer(t, a)
		if err := prod.EnqueueRaw(t.Context(), failedQueue, []byte("blocker")); err != nil {
			t.Fatal(err)
		}
		if err := prod.EnqueueRaw(t.Context(), testQueue, []byte("not json")); err != nil {
			t.Fatal(err)
		}
		return a, prod
	}

	t.Run("full until drained", func(t *testing.T) {
		a, prod := fullFailedQueue(t)
		w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: 4, Logger: testLogger(t)}, sender, prod)
		if err != nil {
			t.Fatal(err)
		}
		stop := runWorker(t, w)
		k := dialKestrel(t, a)
		waitFor(t, 30*time.Second, "the record refused as NOT_STORED three times", func() bool { return prod.Stats()[a].NotStored >= 3 })
		if open, items := k.queueStat(testQueue, "open_transactions"), w.Stats().Items; open != 1 || items != 0 {
			t.Fatalf("while its record cannot be stored: %d open reads, %d items finished; want the item held open, unfinished", open, items)
		}
		k.cmd("get " + failedQueue)
		if l := k.line(); l != "VALUE "+failedQueue+" 0 7" {
			t.Fatalf("draining the blocker: %q", l)
		}
		k.line()
		k.line()
		waitFor(t, 30*time.Second, "the item finished once its record was stored", func() bool { return w.Stats().Items == 1 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		recs := k.drain(failedQueue)
		var rec worker.FailedRecord
		if len(recs) != 1 || json.Unmarshal(recs[0], &rec) != nil || string(rec.Raw) != "not json" {
			t.Fatalf("%s holds %q, want the invalid item's record", failedQueue, recs)
		}
		if items, open := k.queueStat(testQueue, "items"), k.queueStat(testQueue, "open_transactions"); items != 0 || open != 0 {
			t.Fatalf("%s: %d items, %d open after the record was stored; want the item confirmed", testQueue, items, open)
		}
	})

	t.Run("refused by every server", func(t *testing.T) {
		a := startQueuedWith(t, true, func(c *queued.Config) {
			q := c.Defaults
			q.MaxItemSize = 16
			c.Queues[failedQueue] = q
		})
		prod := newProducer(t, a)
		if err := prod.EnqueueRaw(t.Context(), testQueue, []byte("not json")); err != nil {
			t.Fatal(err)
		}
		var logs lockedLog
		w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: 4,
			Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}, sender, prod)
		if err != nil {
			t.Fatal(err)
		}
		stop := runWorker(t, w)
		waitFor(t, 30*time.Second, "the item finished although its record was refused", func() bool { return w.Stats().Items == 1 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		k := dialKestrel(t, a)
		if items, open, failed := k.queueStat(testQueue, "items"), k.queueStat(testQueue, "open_transactions"), k.queueStat(failedQueue, "items"); items != 0 || open != 0 || failed != 0 {
			t.Fatalf("%d items, %d open, %d records stored; want the item confirmed and no record", items, open, failed)
		}
		out := logs.String()
		if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "refused an outcome record") || !strings.Contains(out, base64.StdEncoding.EncodeToString([]byte("not json"))) {
			t.Fatalf("no ERROR line carrying the refused record:\n%s", out)
		}
	})

	t.Run("still full at the shutdown timeout", func(t *testing.T) {
		a, prod := fullFailedQueue(t)
		// The record can never be stored: the shutdown timeout is bound
		// to pass, however long it is.
		w, err := worker.New(worker.Config{Servers: []string{a}, Queue: testQueue, Concurrency: 4, ShutdownTimeout: time.Second, Logger: testLogger(t)}, sender, prod)
		if err != nil {
			t.Fatal(err)
		}
		stop := runWorker(t, w)
		waitFor(t, 30*time.Second, "the record refused as NOT_STORED", func() bool { return prod.Stats()[a].NotStored >= 1 })
		if err := stop(); err != nil {
			t.Fatalf("Run after a graceful stop whose timeout passed: %v", err)
		}
		// The item goes back to the server, unfinished, and the worker
		// holds nothing.
		if s := w.Stats(); s.Items != 0 || s.InFlight != 0 || s.Held != 0 || s.Failed != 0 {
			t.Errorf("stats %+v after the stop, want no item finished, in flight or held, and no failure counted", s)
		}
		k := dialKestrel(t, a)
		waitFor(t, 10*time.Second, "the item back on the server", func() bool {
			return k.queueStat(testQueue, "items") == 1 && k.queueStat(testQueue, "open_transactions") == 0
		})
		if got := k.drain(failedQueue); len(got) != 1 || string(got[0]) != "blocker" {
			t.Fatalf("%s holds %q, want the blocker only", failedQueue, got)
		}
	})
}

// lockedLog is a log destination several goroutines write to.
type lockedLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
