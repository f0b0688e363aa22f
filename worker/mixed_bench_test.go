package worker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
	"github.com/kpush/kpush/push"
)

// BenchmarkMixedDrain measures what users run: `kpush queued`, `kpush
// apns-sim`, `kpush fcm-sim` and `kpush worker` as separate processes, the
// worker with its default flags plus both platforms' credentials. A queue
// of b.N one-token messages is filled, then a worker drains it, timed from
// its first delivery to its last. Two kinds of backlog alternate, twice
// each, in the same run: APNs only (the reference), and mixed (every other
// message to an FCM token). mixed/apns is the mixed drain rate as a share
// of the APNs-only one.
//
//	flock /tmp/kpush-bench.lock go test -run '^$' -bench MixedDrain -benchtime 20000x ./worker
func BenchmarkMixedDrain(b *testing.B) {
	dir := b.TempDir()
	q, addr := startQueuedProc(b, dir, "127.0.0.1:0")
	_ = q
	apnsDir, fcmDir := filepath.Join(dir, "apns"), filepath.Join(dir, "fcm")
	asim := testproc.Start(b, "apns-sim", "--listen", "127.0.0.1:0", "--tls-dir", apnsDir)
	fsim := testproc.Start(b, "fcm-sim", "--listen", "127.0.0.1:0", "--tls-dir", fcmDir)
	aURL, fURL := "https://"+asim.Addr("apns-sim"), "https://"+fsim.Addr("fcm-sim")
	args := []string{"worker", "--servers", addr, "--queue", testQueue,
		"--apns-host", aURL, "--apns-ca", filepath.Join(apnsDir, "ca.pem"),
		"--auth-key", filepath.Join(apnsDir, "dev-key.p8"), "--key-id", "ABC123DEFG", "--team-id", "DEF123GHIJ",
		"--fcm-endpoint", fURL, "--fcm-ca", filepath.Join(fcmDir, "ca.pem"), "--fcm-credentials", filepath.Join(fcmDir, "service-account.json")}
	aStats, fStats := simStatsReader(b, aURL, filepath.Join(apnsDir, "ca.pem")), simStatsReader(b, fURL, filepath.Join(fcmDir, "ca.pem"))
	prod := newProducer(b, addr)
	n := b.N

	var seq atomic.Int64
	drain := func(mixed bool) float64 {
		// Fill.
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 64 {
			wg.Go(func() {
				for i := next.Add(1); i <= int64(n); i = next.Add(1) {
					id := seq.Add(1)
					m := &push.Message{ID: "d" + strconv.FormatInt(id, 10), Alert: &push.Alert{Text: "hello"}}
					if mixed && i%2 == 0 {
						m.FCMTokens = []string{fcmToken(int(id))}
					} else {
						m.Tokens, m.Topic = []string{token(int(id))}, "com.example.app"
					}
					if err := prod.Enqueue(context.Background(), testQueue, m); err != nil {
						b.Errorf("enqueue: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		base := aStats() + fStats()
		w := testproc.Start(b, args...)
		var first, last time.Time
		deadline := time.Now().Add(10 * time.Minute)
		for {
			done := aStats() + fStats() - base
			now := time.Now()
			if done > 0 && first.IsZero() {
				first = now
			}
			if done >= int64(n) {
				last = now
				break
			}
			if now.After(deadline) {
				b.Fatalf("drained %d of %d in 10 minutes", done, n)
			}
			time.Sleep(5 * time.Millisecond) // polling interval of the measurement
		}
		if err := w.Stop(time.Minute); err != nil {
			b.Fatalf("worker: %v", err)
		}
		return float64(n) / last.Sub(first).Seconds()
	}

	b.ResetTimer()
	var apnsRates, mixedRates []float64
	for range 2 {
		apnsRates = append(apnsRates, drain(false))
		mixedRates = append(mixedRates, drain(true))
	}
	b.StopTimer()
	mean := func(v []float64) float64 { return (v[0] + v[1]) / 2 }
	b.ReportMetric(mean(apnsRates), "apns_only/s")
	b.ReportMetric(mean(mixedRates), "mixed/s")
	b.ReportMetric(mean(mixedRates)/mean(apnsRates), "mixed/apns")
	fmt.Fprintf(os.Stderr, "BenchmarkMixedDrain n=%d: APNs-only %.0f, %.0f/s; mixed %.0f, %.0f/s\n", n, apnsRates[0], apnsRates[1], mixedRates[0], mixedRates[1])
}

// simStatsReader returns a function reading a simulator's accepted count
// from its /sim/stats (without the per-token map).
func simStatsReader(b *testing.B, url, caFile string) func() int64 {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return func() int64 {
		resp, err := client.Get(url + "/sim/stats?tokens=0")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Accepted int64 `json:"accepted"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			b.Fatal(err)
		}
		return st.Accepted
	}
}
