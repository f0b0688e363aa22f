package testproc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestChildDiesWithTestBinary: a kpush started by Start is killed by the
// kernel when the test binary dies without running its cleanups (the
// SIGKILL of a go test timeout or of a stopped mutation run). The helper
// is this test binary again, starting a queued and waiting on stdin.
func TestChildDiesWithTestBinary(t *testing.T) {
	if os.Getenv("TESTPROC_HELPER") == "1" {
		p := Start(t, "queued", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
		// Once listening, an idle queued writes nothing more, so the end
		// of its log pipe (a SIGPIPE at the next write) cannot kill it.
		p.Addr("queued")
		fmt.Printf("child %d\n", p.PID())
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent kills this process
		return
	}
	helper := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithTestBinary$", "-test.count=1")
	helper.Env = append(os.Environ(), "TESTPROC_HELPER=1", "KPUSH_BIN="+Binary(t))
	stdin, err := helper.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	pid := 0
	for sc := bufio.NewScanner(stdout); pid == 0 && sc.Scan(); {
		_, _ = fmt.Sscanf(sc.Text(), "child %d", &pid)
	}
	if pid == 0 {
		_ = helper.Process.Kill()
		t.Fatal("the helper test binary did not report its kpush child")
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(pidfd)
	_ = helper.Process.Kill() // SIGKILL: no cleanup of the helper runs
	_ = helper.Wait()
	// A pidfd becomes readable when its process exits.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(10 * time.Second)
	n := 0
	for {
		n, err = unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if err != unix.EINTR || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || n != 1 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("kpush %d still running 10 s after the test binary that started it died (poll: %d, %v)", pid, n, err)
	}
}
