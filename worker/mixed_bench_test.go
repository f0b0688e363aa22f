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
	"slices"
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
// its first delivery to its last. Two kinds of backlog alternate, three
// times each, in the same run: APNs only (the reference), and mixed (every
// other message to an FCM token). mixed/apns is the median mixed drain rate
// as a share of the median APNs-only one: on a shared machine one round
// can land on a burst of someone else's load, and the median ignores it.
//
//	flock /tmp/kpush-bench.lock go test -run '^$' -bench MixedDrain -benchtime 20000x ./worker
func BenchmarkMixedDrain(b *testing.B) {
	dir := b.TempDir()
	q, addr := startQueuedProc(b, dir, "127.0.0.1:0")
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

	// CPU per delivery of each process, between the first delivery and
	// the last, to see which one a mixed queue costs more.
	type cpuUse struct{ queued, worker, apnsSim, fcmSim time.Duration }
	cpuOf := func(w *testproc.Proc) cpuUse {
		return cpuUse{cpuTime(b, q.PID()), cpuTime(b, w.PID()), cpuTime(b, asim.PID()), cpuTime(b, fsim.PID())}
	}
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
		var cpu0, cpu1 cpuUse
		deadline := time.Now().Add(10 * time.Minute)
		for {
			done := aStats() + fStats() - base
			now := time.Now()
			if done > 0 && first.IsZero() {
				first, cpu0 = now, cpuOf(w)
			}
			if done >= int64(n) {
				last, cpu1 = now, cpuOf(w)
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
		per := func(t1, t0 time.Duration) float64 { return float64((t1 - t0).Microseconds()) / float64(n) }
		kind := "APNs-only"
		if mixed {
			kind = "mixed"
		}
		fmt.Fprintf(os.Stderr, "  %s: %.0f/s, CPU µs per delivery: queued %.0f, worker %.0f, apns-sim %.0f, fcm-sim %.0f\n", kind,
			float64(n)/last.Sub(first).Seconds(), per(cpu1.queued, cpu0.queued), per(cpu1.worker, cpu0.worker), per(cpu1.apnsSim, cpu0.apnsSim), per(cpu1.fcmSim, cpu0.fcmSim))
		return float64(n) / last.Sub(first).Seconds()
	}

	b.ResetTimer()
	var apnsRates, mixedRates []float64
	for range 3 {
		apnsRates = append(apnsRates, drain(false))
		mixedRates = append(mixedRates, drain(true))
	}
	b.StopTimer()
	median := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	b.ReportMetric(median(apnsRates), "apns_only/s")
	b.ReportMetric(median(mixedRates), "mixed/s")
	b.ReportMetric(median(mixedRates)/median(apnsRates), "mixed/apns")
	fmt.Fprintf(os.Stderr, "BenchmarkMixedDrain n=%d: APNs-only %.0f/s; mixed %.0f/s (in run order)\n", n, apnsRates, mixedRates)
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
