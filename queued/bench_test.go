package queued

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
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

// startMemcached runs memcached on a free loopback port, or returns "" if
// it is not installed.
func startMemcached(b *testing.B) string {
	path, err := exec.LookPath("memcached")
	if err != nil {
		return ""
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(path, "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-t", "2", "-u", "root", "-m", "256")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			b.Fatalf("memcached did not start on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond) // polling a process we cannot otherwise observe
	}
}

// BenchmarkFlood: set/get flood at 50 connections against queued (sync
// never) and memcached on the same loop; reports both rates and their
// ratio (x_memcached). Without memcached only our rate is reported.
func BenchmarkFlood(b *testing.B) {
	const conns = 50
	ours := startQueued(b, "never")
	mc := startMemcached(b)
	pairs := max(b.N, 2000)
	flood(b, ours, conns, 1000) // warm up
	b.ResetTimer()
	oursRate := flood(b, ours, conns, pairs)
	b.StopTimer()
	b.ReportMetric(oursRate, "queued_ops/s")
	if mc == "" {
		b.Log("memcached not installed: reporting queued only")
		return
	}
	flood(b, mc, conns, 1000)
	mcRate := flood(b, mc, conns, pairs)
	b.ReportMetric(mcRate, "memcached_ops/s")
	b.ReportMetric(oursRate/mcRate, "x_memcached")
}

// BenchmarkSyncAlwaysVsNever: the same flood at 50 connections with every
// set fsynced (group commit) and with none; reports the ratio.
func BenchmarkSyncAlwaysVsNever(b *testing.B) {
	const conns = 50
	never := startQueued(b, "never")
	always := startQueued(b, "always")
	pairs := max(b.N, 2000)
	flood(b, never, conns, 500)
	flood(b, always, conns, 500)
	b.ResetTimer()
	neverRate := flood(b, never, conns, pairs)
	alwaysRate := flood(b, always, conns, pairs)
	b.StopTimer()
	b.ReportMetric(neverRate, "never_ops/s")
	b.ReportMetric(alwaysRate, "always_ops/s")
	b.ReportMetric(alwaysRate/neverRate, "x_never")
}
