package producer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kpush/kpush/queued"
)

// BenchmarkEnqueue measures Enqueue (validate, encode, place, set) and
// EnqueueRaw from one process over 1 and 3 in-process queued servers, with
// 1, 8 and 64 goroutines, beside a reference: a bare gomemcache Set loop of
// the same encoded bytes, round-robin over the same servers and the same
// pooled connections (the Producer's own clients). The reported ratios,
// x-set (Enqueue) and raw-x-set (EnqueueRaw), are the library's cost: 1.0
// means free. sync=never measures the library; sync=always is what a
// durable deployment sees (there fsync dominates both).
//
//	go test -run '^$' -bench Enqueue -benchtime 2000x ./producer
func BenchmarkEnqueue(b *testing.B) {
	msg := testMessage(1)
	data, err := encodeMessage(msg)
	if err != nil {
		b.Fatal(err)
	}
	for _, sync := range []queued.SyncMode{queued.SyncNever, queued.SyncAlways} {
		syncName := map[queued.SyncMode]string{queued.SyncNever: "never", queued.SyncAlways: "always"}[sync]
		for _, nServers := range []int{1, 3} {
			var servers []string
			for range nServers {
				servers = append(servers, startQueued(b, func(c *queued.Config) {
					c.Defaults.Sync = queued.SyncPolicy{Mode: sync}
				}))
			}
			p := newTestProducer(b, servers, WithMaxIdleConns(128), WithTimeout(10*time.Second),
				WithLogger(slog.New(slog.DiscardHandler)))
			for _, g := range []int{1, 8, 64} {
				name := fmt.Sprintf("sync=%s/servers=%d/goroutines=%d", syncName, nServers, g)
				b.Run(name, func(b *testing.B) {
					var rr atomic.Uint64
					item := &memcache.Item{Key: "bench_set", Value: data}
					ops := []func() error{
						func() error { return p.servers[rr.Add(1)%uint64(nServers)].mc.Set(item) },
						func() error { return p.EnqueueRaw(context.Background(), "bench_raw", data) },
						func() error { return p.Enqueue(context.Background(), "bench_msg", msg) },
					}
					// Interleave the three in rounds, so load from
					// elsewhere on the machine hits them alike.
					var took [3]time.Duration
					const rounds = 5
					b.ResetTimer()
					for r := range rounds {
						n := b.N/rounds + boolInt(r < b.N%rounds)
						for i, op := range ops {
							took[i] += timeOps(b, n, g, op)
						}
					}
					b.StopTimer()
					set, raw, lib := took[0], took[1], took[2]
					// ns/op counts all three loops; the per-loop costs:
					b.ReportMetric(float64(lib.Nanoseconds())/float64(b.N), "enqueue-ns/op")
					b.ReportMetric(float64(set.Nanoseconds())/float64(b.N), "set-ns/op")
					b.ReportMetric(float64(raw.Nanoseconds())/float64(b.N), "raw-ns/op")
					b.ReportMetric(float64(lib)/float64(set), "x-set")
					b.ReportMetric(float64(raw)/float64(set), "raw-x-set")
				})
			}
		}
	}
}

// timeOps runs op n times from g goroutines and returns the wall time.
func timeOps(b *testing.B, n, g int, op func() error) time.Duration {
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for range g {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := op(); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return took
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
