// Package testproc runs the real kpush binary in tests: it builds
// cmd/kpush once per test binary, starts processes with the given
// arguments and learns their addresses from the "listening" log lines every
// daemon writes at start (so tests can use port 0 and never sleep to wait
// for readiness).
//
// Processes are ended by PID when the test finishes, so a failing test
// leaves nothing behind; they are also killed by the kernel if the test
// binary dies first (a timeout, a SIGKILL), which runs no cleanup.
package testproc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the path of a kpush binary built from this checkout,
// building it on first use. Set KPUSH_BIN to test a prebuilt binary.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("KPUSH_BIN"); p != "" {
			binPath = p
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "kpush-testbin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "kpush")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/kpush")
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/kpush: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Proc is a running kpush process.
type Proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	name string

	mu        sync.Mutex
	log       bytes.Buffer
	addrs     map[string]string
	addrReady chan struct{} // closed and replaced whenever addrs changes
	lines     []string

	done    chan struct{}
	waitErr error
}

var listenLine = regexp.MustCompile(`msg=listening\b.*?\bservice=(\S+).*?\baddr=(\S+)`)

// Start runs `kpush args...` and returns once the process has started. Its
// output is kept and shown if the test fails.
func Start(t testing.TB, args ...string) *Proc {
	t.Helper()
	p := &Proc{t: t, addrs: map[string]string{}, addrReady: make(chan struct{}), done: make(chan struct{})}
	p.name = "kpush " + strings.Join(args, " ")
	p.cmd = exec.Command(Binary(t), args...)
	p.cmd.SysProcAttr = diesWithParent()
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	var scanning sync.WaitGroup
	scanning.Add(2)
	go p.scan(stdout, &scanning)
	go p.scan(stderr, &scanning)
	go func() {
		// Wait must follow the end of both pipes (os/exec's rule).
		scanning.Wait()
		p.waitErr = p.cmd.Wait()
		p.mu.Lock()
		close(p.addrReady)
		p.addrReady = nil
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", p.name, p.Output())
		}
	})
	return p
}

// scan collects the lines of one output stream (stdout or stderr; both
// are searched by Addr and WaitLog).
func (p *Proc) scan(r io.Reader, scanning *sync.WaitGroup) {
	defer scanning.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.log.WriteString(line)
		p.log.WriteByte('\n')
		p.lines = append(p.lines, line)
		if m := listenLine.FindStringSubmatch(line); m != nil {
			p.addrs[strings.Trim(m[1], `"`)] = strings.Trim(m[2], `"`)
		}
		close(p.addrReady)
		p.addrReady = make(chan struct{})
		p.mu.Unlock()
	}
	// Drain the rest so the process never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

// Addr waits until the process has logged that service is listening and
// returns its address. It fails the test if the process exits first or
// nothing is logged within a minute.
func (p *Proc) Addr(service string) string {
	p.t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		addr, ok := p.addrs[service]
		ready := p.addrReady
		p.mu.Unlock()
		if ok {
			return addr
		}
		if ready == nil {
			p.t.Fatalf("%s exited before listening as %s: %v\n%s", p.name, service, p.waitErr, p.Output())
		}
		select {
		case <-ready:
		case <-deadline.C:
			p.t.Fatalf("%s did not log that %s is listening within a minute\n%s", p.name, service, p.Output())
		}
	}
}

// WaitLog waits until a line of output (stdout or stderr) matching re appears (or has appeared) and
// returns it.
func (p *Proc) WaitLog(re *regexp.Regexp, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		lines := p.lines[seen:]
		seen = len(p.lines)
		ready := p.addrReady
		p.mu.Unlock()
		for _, l := range lines {
			if re.MatchString(l) {
				return l
			}
		}
		if ready == nil {
			p.t.Fatalf("%s exited before logging %v: %v\n%s", p.name, re, p.waitErr, p.Output())
		}
		select {
		case <-ready:
		case <-deadline.C:
			p.t.Fatalf("%s did not log %v within %v\n%s", p.name, re, timeout, p.Output())
		}
	}
}

// Output returns everything the process wrote so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// PID returns the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for the process to exit,
// returning its exit error (nil for exit status 0).
func (p *Proc) Stop(timeout time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return p.Wait(timeout)
}

// Wait waits up to timeout for the process to exit by itself.
func (p *Proc) Wait(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	select {
	case <-p.done:
		return p.waitErr
	case <-ctx.Done():
		p.Kill()
		return fmt.Errorf("%s did not exit within %v", p.name, timeout)
	}
}

// Run runs `kpush args...` to completion with stdin and returns its stdout,
// stderr and exit error.
func Run(t testing.TB, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.SysProcAttr = diesWithParent()
	cmd.Stdin = stdin
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// diesWithParent makes the kernel SIGKILL the child when the thread that
// started it exits, which for a Go test binary is when the process dies
// (the runtime does not end its threads).
func diesWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
