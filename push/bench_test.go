package push_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kpush/kpush/push"
	"github.com/kpush/kpush/push/apnssim"
)

const benchConcurrency = 256 // pushes in flight, as a worker pool would keep

// BenchmarkSend measures notifications/s through one Sender with N
// connections to the simulator on this machine, and the same traffic sent
// by a bare HTTP/2 client (no apns2, no per-push token handling, a fixed
// body) as the reference: vs_raw is the sender's share of the raw rate.
func BenchmarkSend(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, conns := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			sim := startSim(b, apnssim.Config{Logger: quiet})
			s := newSender(b, sim, func(c *push.Config) { c.Connections = conns; c.Logger = quiet })
			tokens := make([]string, 1024)
			for i := range tokens {
				tokens[i] = token(i)
			}
			m := alertMessage(tokens...)
			// Warm up every connection before measuring.
			run(b, 2*benchConcurrency, func(i int) bool { return s.Send(context.Background(), m, tokens[i%len(tokens)]).OK() })

			raw := rawClient(b, sim, conns)
			body, _ := m.APNsPayload()
			bearer := s.Bearer()
			const refN = 10000
			reference := func() (time.Duration, time.Duration) {
				start, cpu0 := time.Now(), processCPU(b)
				run(b, refN, func(i int) bool { return raw.post(tokens[i%len(tokens)], bearer, body) })
				return time.Since(start), processCPU(b) - cpu0
			}
			// The machine is shared: measure the reference before and
			// after, so load changes hit both sides of the ratio.
			refTime, refCPU := reference()

			b.ResetTimer()
			start, cpu0 := time.Now(), processCPU(b)
			run(b, b.N, func(i int) bool { return s.Send(context.Background(), m, tokens[i%len(tokens)]).OK() })
			elapsed, cpu := time.Since(start), processCPU(b)-cpu0
			b.StopTimer()
			t2, c2 := reference()
			refTime, refCPU = refTime+t2, refCPU+c2
			rate := float64(b.N) / elapsed.Seconds()
			refRate := 2 * refN / refTime.Seconds()
			// CPU per notification (client and simulator together, both
			// in this process) is steadier than wall-clock rates when
			// other jobs compete for the cores.
			cpuPer := float64(cpu.Microseconds()) / float64(b.N)
			refCPUPer := float64(refCPU.Microseconds()) / (2 * refN)
			b.ReportMetric(rate, "notif/s")
			b.ReportMetric(refRate, "raw_notif/s")
			b.ReportMetric(rate/refRate, "vs_raw")
			b.ReportMetric(cpuPer, "cpu_us/notif")
			b.ReportMetric(cpuPer/refCPUPer, "cpu_vs_raw")
		})
	}
}

// run calls f(i) for i in [0, n) from benchConcurrency goroutines and fails
// the benchmark on the first false.
func run(b *testing.B, n int, f func(i int) bool) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Bool
	for range benchConcurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() {
					return
				}
				if !f(i) {
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		b.Fatal("a push was not delivered")
	}
}

type rawH2 struct {
	url     string
	clients []*http.Client
	next    atomic.Uint64
}

func rawClient(b *testing.B, sim *apnssim.Server, conns int) *rawH2 {
	caPEM, err := os.ReadFile(sim.CAFile())
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	r := &rawH2{url: sim.URL() + "/3/device/"}
	for range conns {
		protocols := new(http.Protocols)
		protocols.SetHTTP2(true)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: protocols, ForceAttemptHTTP2: true,
			MaxConnsPerHost: 1, HTTP2: &http.HTTP2Config{StrictMaxConcurrentRequests: true}}
		b.Cleanup(tr.CloseIdleConnections)
		r.clients = append(r.clients, &http.Client{Transport: tr})
	}
	return r
}

func (r *rawH2) post(tok, bearer string, body []byte) bool {
	c := r.clients[r.next.Add(1)%uint64(len(r.clients))]
	req, _ := http.NewRequest(http.MethodPost, r.url+tok, bytes.NewReader(body))
	req.Header.Set("apns-topic", "com.example.app")
	req.Header.Set("apns-push-type", "alert")
	req.Header.Set("authorization", "bearer "+bearer)
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// processCPU is the user+system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
