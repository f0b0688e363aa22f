package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rawSyncNs measures a plain write(100 B)+fdatasync loop on the same disk:
// the reference every journal number is compared with.
func rawSyncNs(b *testing.B, dir string, n int) float64 {
	return writeSyncNs(b, filepath.Join(dir, "raw"), n, false)
}

// overZerosSyncNs is rawSyncNs over zeros written and fsynced before, as
// the writer's zeroAhead leaves the active file: the file's size does not
// change and every block written already holds data.
func overZerosSyncNs(b *testing.B, dir string, n int) float64 {
	return writeSyncNs(b, filepath.Join(dir, "zeros"), n, true)
}

func writeSyncNs(b *testing.B, path string, n int, overZeros bool) float64 {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 100)
	if overZeros {
		if _, err := f.Write(make([]byte, n*len(buf))); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := f.WriteAt(buf, int64(i*len(buf))); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// BenchmarkFdatasyncOverZeros is what zeroAhead buys on this disk: a
// 100-byte write+fdatasync that extends the file against one over zeros,
// alternating in the same run. x-extend above 1: the fsync over zeros is
// that many times cheaper.
func BenchmarkFdatasyncOverZeros(b *testing.B) {
	dir := b.TempDir()
	var extend, zeros float64
	for i := 0; i < b.N; i++ {
		extend += rawSyncNs(b, dir, 200)
		zeros += overZerosSyncNs(b, dir, 200)
	}
	b.ReportMetric(extend/float64(b.N), "extend-ns/fsync")
	b.ReportMetric(zeros/float64(b.N), "zeros-ns/fsync")
	b.ReportMetric(extend/zeros, "x-extend")
}

// BenchmarkAppendSyncAlways appends 100-byte items, each waiting for its
// fsync, from 1, 10 and 50 goroutines. x-raw is journal items/s divided
// by raw write+fdatasync/s measured in the same run: above 1 means group
// commit beats one-fsync-per-item.
func BenchmarkAppendSyncAlways(b *testing.B) {
	for _, g := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			dir := b.TempDir()
			raw := rawSyncNs(b, dir, 200)
			j := openT(b, dir, Options{Sync: SyncAlways})
			defer j.Close()
			data := make([]byte, 100)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < g; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						c, err := j.Append([]Item{{Data: data}})
						if err == nil {
							err = c.Wait()
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			// The disk is shared: measure the reference again and average.
			raw = (raw + rawSyncNs(b, dir, 200)) / 2
			st := j.Stats()
			perOp := float64(el.Nanoseconds()) / float64(b.N)
			b.ReportMetric(raw/perOp, "x-raw")
			b.ReportMetric(float64(st.Syncs)/float64(b.N), "fsyncs/op")
			b.ReportMetric(raw, "raw-ns/fsync")
		})
	}
}

// BenchmarkCompactionPause measures the worst Append+Wait latency while a
// compaction rewrites a stuck head's segments in the background, against
// the worst latency of the same appends with no compaction (same run).
// One iteration takes seconds: run it with -benchtime=1x.
func BenchmarkCompactionPause(b *testing.B) {
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		const seg = 1 << 20
		j := openT(b, dir, Options{SegmentSize: seg, Sync: SyncNever})
		data := make([]byte, 200)
		// 8 segments where every 10th item stays live: a compaction must
		// copy ~10% and drop the rest.
		var dead []uint64
		for n := 0; n < 8*seg/(addFrameSize(len(data))); n++ {
			items := []Item{{Data: data}}
			c, err := j.Append(items)
			if err != nil {
				b.Fatal(err)
			}
			if n%10 != 0 {
				dead = append(dead, items[0].ID)
			}
			if n%1000 == 999 {
				c.Wait()
			}
		}
		if err := j.Sync(); err != nil {
			b.Fatal(err)
		}
		measure := func(until func(k int) bool) (worst, p99 time.Duration, n int) {
			var lat []time.Duration
			for k := 0; !until(k); k++ {
				t0 := time.Now()
				c, err := j.Append([]Item{{Data: data}})
				if err == nil {
					err = c.Wait()
				}
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			return lat[len(lat)-1], lat[len(lat)*99/100], len(lat)
		}
		base, baseP99, _ := measure(func(k int) bool { return k >= 2000 })
		rewrites := j.Stats().Rewrites
		b.StartTimer()
		c, err := j.Remove(dead...)
		if err != nil {
			b.Fatal(err)
		}
		c.Wait()
		deadline := time.Now().Add(30 * time.Second)
		worst, p99, n := measure(func(k int) bool {
			return (k >= 100 && j.Stats().Rewrites > rewrites) || time.Now().After(deadline)
		})
		b.StopTimer()
		if j.Stats().Rewrites == rewrites {
			b.Fatal("no compaction happened")
		}
		b.ReportMetric(float64(worst.Microseconds()), "worst-pause-us")
		b.ReportMetric(float64(p99.Microseconds()), "p99-us")
		b.ReportMetric(float64(worst)/float64(max(base, 1)), "x-baseline-worst")
		b.ReportMetric(float64(baseP99.Microseconds()), "baseline-p99-us")
		b.ReportMetric(float64(n), "appends-during")
		j.Close()
	}
}

// BenchmarkReplay opens a journal holding a 200k-item backlog of 100-byte
// items (half of them removed, out of order) and reports replay time per
// item against reading the same files raw, and the heap kept per live item.
func BenchmarkReplay(b *testing.B) {
	dir := b.TempDir()
	j := openT(b, dir, Options{Sync: SyncNever})
	data := make([]byte, 100)
	const batches, per = 200, 1000
	for n := 0; n < batches; n++ {
		items := make([]Item, per)
		for i := range items {
			items[i].Data = data
		}
		if _, err := j.Append(items); err != nil {
			b.Fatal(err)
		}
		var odd []uint64
		for i := per - 1; i >= 0; i -= 2 {
			odd = append(odd, items[i].ID)
		}
		if _, err := j.Remove(odd...); err != nil {
			b.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	rawRead := func() time.Duration {
		start := time.Now()
		buf := make([]byte, readWindow)
		for _, p := range segFiles(b, dir) {
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			for {
				n, err := f.Read(buf)
				if n == 0 || err != nil {
					break
				}
			}
			f.Close()
		}
		return time.Since(start)
	}
	var raw, replay time.Duration
	var heap int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		raw += rawRead()
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		start := time.Now()
		j := openT(b, dir, Options{})
		replay += time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heap += int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
		if st := j.Stats(); st.Items != batches*per/2 {
			b.Fatalf("replayed %d items", st.Items)
		}
		j.Close()
	}
	b.ReportMetric(float64(replay.Nanoseconds())/float64(b.N*batches*per), "ns/record")
	b.ReportMetric(float64(replay)/float64(raw), "x-raw-read")
	b.ReportMetric(float64(heap)/float64(b.N*batches*per/2), "heap-B/live-item")
}

// BenchmarkFsyncBesideBigWriter is the disk's own answer to the fairness
// question (docs/benchmarks.md, bench/fairness.sh): the latency of a raw
// write(100 B)+fdatasync on one file, alone and while another file on the
// same file system gets 8 MiB writes each followed by fdatasync (what a
// queue of 8 MiB items does under sync always). No journal is involved: it
// is the floor any journaled small set can reach beside such a writer.
// Reports p50/p99 of the small fsyncs alone and beside, and their ratio.
func BenchmarkFsyncBesideBigWriter(b *testing.B) {
	dir := b.TempDir()
	n := max(b.N, 200)
	measure := func() (p50, p99 time.Duration) {
		f, err := os.Create(filepath.Join(dir, "small"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 100)
		lat := make([]time.Duration, n)
		for i := range lat {
			start := time.Now()
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(start)
		}
		slices.Sort(lat)
		return lat[n/2], lat[n*99/100]
	}
	b.ResetTimer()
	alone50, alone99 := measure()
	stop := make(chan struct{})
	var bigWrites atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f, err := os.Create(filepath.Join(dir, "big"))
		if err != nil {
			b.Error(err)
			return
		}
		defer f.Close()
		big := make([]byte, 8<<20)
		for off := int64(0); ; off += int64(len(big)) {
			select {
			case <-stop:
				return
			default:
			}
			if off >= 256<<20 { // keep the file bounded: start over
				off = 0
			}
			if _, err := f.WriteAt(big, off); err != nil {
				b.Error(err)
				return
			}
			if err := syscall.Fdatasync(int(f.Fd())); err != nil {
				b.Error(err)
				return
			}
			bigWrites.Add(1)
		}
	}()
	for bigWrites.Load() == 0 {
		runtime.Gosched()
	}
	beside50, beside99 := measure()
	close(stop)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(alone50.Microseconds()), "alone_p50_us")
	b.ReportMetric(float64(alone99.Microseconds()), "alone_p99_us")
	b.ReportMetric(float64(beside50.Microseconds()), "beside_p50_us")
	b.ReportMetric(float64(beside99.Microseconds()), "beside_p99_us")
	b.ReportMetric(float64(beside99)/float64(alone99), "x_p99")
}
