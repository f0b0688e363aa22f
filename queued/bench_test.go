package queued

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
)

// flood runs pairs set+get of 100-byte items over conns connections
// (request/response, as a typical client does) and returns operations per
// second (a set and a get are two operations).
func flood(b *testing.B, addr string, conns, pairs int) float64 {
	b.Helper()
	item := bytes.Repeat([]byte("p"), 100)
	setReq := append([]byte("set bench 0 0 100\r\n"), append(item, '\r', '\n')...)
	getReq := []byte("get bench\r\n")
	var wg sync.WaitGroup
	errc := make(chan error, conns)
	start := time.Now()
	for c := 0; c < conns; c++ {
		n := pairs / conns
		if c < pairs%conns {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				errc <- err
				return
			}
			defer nc.Close()
			br := bufio.NewReaderSize(nc, 4096)
			for i := 0; i < n; i++ {
				if _, err := nc.Write(setReq); err != nil {
					errc <- err
					return
				}
				l, err := br.ReadSlice('\n')
				if err != nil || string(l) != "STORED\r\n" {
					errc <- fmt.Errorf("set: %q %v", l, err)
					return
				}
				if _, err := nc.Write(getReq); err != nil {
					errc <- err
					return
				}
				l, err = br.ReadSlice('\n')
				if err != nil {
					errc <- err
					return
				}
				if bytes.HasPrefix(l, []byte("VALUE ")) {
					f := bytes.Fields(l)
					size, _ := strconv.Atoi(string(f[len(f)-1]))
					if _, err := br.Discard(size + 2); err != nil {
						errc <- err
						return
					}
					if l, err = br.ReadSlice('\n'); err != nil {
						errc <- err
						return
					}
				}
				if string(l) != "END\r\n" {
					errc <- fmt.Errorf("get: %q", l)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		b.Fatal(err)
	}
	return float64(2*pairs) / time.Since(start).Seconds()
}

func startQueued(b *testing.B, sync string) string {
	p := testproc.Start(b, "queued", "--listen", "127.0.0.1:0", "--data-dir", b.TempDir(), "--sync", sync)
	return p.Addr("queued")
}

// startMemcached runs memcached on a loopback port it picks, or returns ""
// if it is not installed.
func startMemcached(b *testing.B) string {
	if _, err := exec.LookPath("memcached"); err != nil {
		return ""
	}
	return testproc.Memcached(b, "-t", "2", "-m", "256")
}

// alternate runs the flood against a and b in turns (rounds of each), so
// a change in machine load while the benchmark runs hits both alike, and
// returns their overall rates.
func alternate(b *testing.B, a, c string, conns, pairs int) (rateA, rateC float64) {
	const rounds = 4
	var opsA, opsC, secA, secC float64
	for r := 0; r < rounds; r++ {
		n := max(pairs/rounds, conns)
		ra := flood(b, a, conns, n)
		rc := flood(b, c, conns, n)
		opsA += float64(2 * n)
		opsC += float64(2 * n)
		secA += float64(2*n) / ra
		secC += float64(2*n) / rc
	}
	return opsA / secA, opsC / secC
}

// BenchmarkFlood: set/get flood at 50 connections against queued (sync
// never) and memcached on the same loop, alternating between them; reports
// both rates and their ratio (x_memcached). Without memcached only our
// rate is reported.
func BenchmarkFlood(b *testing.B) {
	const conns = 50
	ours := startQueued(b, "never")
	mc := startMemcached(b)
	pairs := max(b.N, 2000)
	flood(b, ours, conns, 1000) // warm up
	if mc == "" {
		b.Log("memcached not installed: reporting queued only")
		b.ResetTimer()
		b.ReportMetric(flood(b, ours, conns, pairs), "queued_ops/s")
		return
	}
	flood(b, mc, conns, 1000)
	b.ResetTimer()
	oursRate, mcRate := alternate(b, ours, mc, conns, pairs)
	b.StopTimer()
	b.ReportMetric(oursRate, "queued_ops/s")
	b.ReportMetric(mcRate, "memcached_ops/s")
	b.ReportMetric(oursRate/mcRate, "x_memcached")
}

// BenchmarkSyncAlwaysVsNever: the same flood at 50 connections with every
// set fsynced (group commit) and with none, alternating; reports the ratio.
func BenchmarkSyncAlwaysVsNever(b *testing.B) {
	const conns = 50
	never := startQueued(b, "never")
	always := startQueued(b, "always")
	pairs := max(b.N, 2000)
	flood(b, never, conns, 500)
	flood(b, always, conns, 500)
	b.ResetTimer()
	alwaysRate, neverRate := alternate(b, always, never, conns, pairs)
	b.StopTimer()
	b.ReportMetric(neverRate, "never_ops/s")
	b.ReportMetric(alwaysRate, "always_ops/s")
	b.ReportMetric(alwaysRate/neverRate, "x_never")
}

// pipelinedSets sets n items of size bytes on q over one connection,
// writing batch requests before reading their replies.
func pipelinedSets(b *testing.B, addr, q string, n, size, batch int) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Error(err)
		return
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	req := []byte(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", q, size, bytes.Repeat([]byte("r"), size)))
	buf := bytes.Repeat(req, batch)
	for done := 0; done < n; done += batch {
		k := min(batch, n-done)
		if _, err := nc.Write(buf[:k*len(req)]); err != nil {
			b.Error(err)
			return
		}
		for i := 0; i < k; i++ {
			if l, err := br.ReadSlice('\n'); err != nil || string(l) != "STORED\r\n" {
				b.Errorf("set: %q %v", l, err)
				return
			}
		}
	}
}

// pipelinedGets takes n items from q over one connection.
func pipelinedGets(b *testing.B, addr, q string, n, batch int) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Error(err)
		return
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	buf := bytes.Repeat([]byte("get "+q+"\r\n"), batch)
	for done := 0; done < n; done += batch {
		k := min(batch, n-done)
		if _, err := nc.Write(buf[:k*(len(q)+6)]); err != nil {
			b.Error(err)
			return
		}
		for i := 0; i < k; i++ {
			l, err := br.ReadSlice('\n')
			if err != nil || !bytes.HasPrefix(l, []byte("VALUE ")) {
				b.Errorf("get: %q %v", l, err)
				return
			}
			f := bytes.Fields(l)
			size, _ := strconv.Atoi(string(f[len(f)-1]))
			if _, err := br.Discard(size + 2 + 5); err != nil {
				b.Error(err)
				return
			}
		}
	}
}

// BenchmarkReadBehindPeakRSS is the memory target: with
// max_memory_size = 16 MiB, fill 1M x 100-byte items and drain them, each
// over 10 connections; the daemon's peak RSS (VmHWM) must stay < 64 MiB.
// Run with -benchtime 1x (it ignores b.N).
func BenchmarkReadBehindPeakRSS(b *testing.B) {
	const items, size, conns = 1000000, 100, 10
	dir := b.TempDir()
	conf := filepath.Join(dir, "queued.conf")
	if err := os.WriteFile(conf, []byte("max_memory_size = 16777216\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	p := testproc.Start(b, "queued", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--config", conf, "--sync", "never")
	addr := p.Addr("queued")
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() { defer wg.Done(); pipelinedSets(b, addr, "rb", items/conns, size, 100) }()
	}
	wg.Wait()
	filled := time.Since(start)
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() { defer wg.Done(); pipelinedGets(b, addr, "rb", items/conns, 100) }()
	}
	wg.Wait()
	hwm := procStatusKiB(b, p.PID(), "VmHWM:")
	b.ReportMetric(float64(hwm)/1024, "peak_rss_MiB")
	b.ReportMetric(float64(items)/filled.Seconds(), "fill_items/s")
	b.ReportMetric(float64(items)/(time.Since(start)-filled).Seconds(), "drain_items/s")
	if hwm > 64<<10 {
		b.Errorf("peak RSS %d KiB, want < 64 MiB", hwm)
	}
}

func procStatusKiB(b *testing.B, pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
