package testproc

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ReserveAddr returns a loopback TCP address that stays this test's until
// it ends: a socket is bound to it (with SO_REUSEADDR) but never listens.
// Connections to it are refused, the kernel hands its port to nobody
// else's port-0 bind or dial, and a server told to listen on it
// explicitly (Go's net.Listen sets SO_REUSEADDR) can, as often as the
// test restarts it. It replaces "listen on :0, close, use the port",
// which races with every other process picking a port meanwhile.
func ReserveAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("reserve a port: socket: %v", err)
	}
	syscall.CloseOnExec(fd)
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		t.Fatalf("reserve a port: SO_REUSEADDR: %v", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("reserve a port: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("reserve a port: getsockname: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// Memcached starts memcached on a port of its choosing (-p -1) and returns
// its address, read from the file memcached names its ports in
// (MEMCACHED_PORT_FILENAME), so no port is picked beforehand. extra are
// more memcached flags. It fails the test when memcached is not
// installed: scripts/test installs it.
func Memcached(t testing.TB, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("memcached")
	if err != nil {
		t.Fatal("memcached not installed: run the tests with scripts/test, which installs it (or apt-get install memcached)")
	}
	// memcached drops to user nobody before it writes the file, and
	// t.TempDir's parent is private.
	dir, err := os.MkdirTemp("", "kpush-memcached-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	ports := filepath.Join(dir, "ports")
	cmd := exec.Command(bin, append([]string{"-l", "127.0.0.1", "-p", "-1", "-U", "0", "-u", "nobody"}, extra...)...)
	cmd.Env = append(os.Environ(), "MEMCACHED_PORT_FILENAME="+ports)
	var out bytes.Buffer // os/exec writes it from one goroutine at a time
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	// memcached writes "TCP INET: <port>" once it listens (to a .lck file
	// renamed into place), and has no other way to say it is ready.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(ports); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if port, ok := strings.CutPrefix(line, "TCP INET: "); ok {
					return net.JoinHostPort("127.0.0.1", strings.TrimSpace(port))
				}
			}
		}
		select {
		case <-exited:
			t.Fatalf("memcached exited before listening: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("memcached did not write its port to %s within 30s: %s", ports, out.String())
		}
		time.Sleep(5 * time.Millisecond) // polling a file: nothing to wait on
	}
}
