package main

import (
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
)

// TestUpDeliversThroughSimulator runs `kpush up` as a newcomer would (no
// Apple credentials), enqueues one message with `kpush enqueue` and one with
// a raw memcache set, and waits for the live line to show both delivered.
func TestUpDeliversThroughSimulator(t *testing.T) {
	dir := t.TempDir()
	up := testproc.Start(t, "up", "--listen", "127.0.0.1:0", "--sim-listen", "127.0.0.1:0", "--fcm-sim-listen", "127.0.0.1:0",
		"--data-dir", dir, "--status-interval", "20ms")
	addr := up.Addr("queued")
	up.Addr("apns-sim")
	up.Addr("fcm-sim")
	up.WaitLog(regexp.MustCompile(`No Apple credentials given: pushes go to the local APNs SIMULATOR`), time.Minute)
	up.WaitLog(regexp.MustCompile(`No FCM credentials given: Android pushes go to the local FCM SIMULATOR`), time.Minute)

	token := strings.Repeat("ab", 32)
	out, stderr, err := testproc.Run(t, nil, "enqueue", "--servers", addr, "--token", token,
		"--topic", "com.example.app", "--alert", "hi")
	if err != nil {
		t.Fatalf("kpush enqueue: %v\n%s%s", err, out, stderr)
	}
	if !strings.Contains(out, "sent=1 ") {
		t.Fatalf("kpush enqueue summary = %q, want sent=1", out)
	}

	msg := fmt.Sprintf(`{"tokens":["%s"],"topic":"com.example.app","alert":"raw set"}`, strings.Repeat("cd", 32))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "set push 0 0 %d\r\n%s\r\n", len(msg), msg)
	reply := make([]byte, 8)
	if _, err := conn.Read(reply); err != nil || string(reply) != "STORED\r\n" {
		t.Fatalf("set reply %q, %v", reply, err)
	}

	// One message to an iPhone and an Android phone at once.
	fcmToken := "up1:APA91b" + strings.Repeat("f", 140)
	out, stderr, err = testproc.Run(t, nil, "enqueue", "--servers", addr, "--token", strings.Repeat("ef", 32),
		"--topic", "com.example.app", "--fcm-token", fcmToken, "--alert", "both", "--android-channel-id", "news")
	if err != nil || !strings.Contains(out, "sent=1 ") {
		t.Fatalf("kpush enqueue of a mixed message: %v\n%s%s", err, out, stderr)
	}

	up.WaitLog(regexp.MustCompile(`delivered=4 dead_tokens=0 failed=0 .*backlog=0 .*fcm_delivered=1`), time.Minute)
	if err := up.Stop(time.Minute); err != nil {
		t.Fatalf("kpush up did not exit cleanly on SIGTERM: %v", err)
	}
}

func TestPing(t *testing.T) {
	q := testproc.Start(t, "queued", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	addr := q.Addr("queued")
	out, stderr, err := testproc.Run(t, nil, "ping", addr)
	if err != nil || !strings.HasPrefix(out, "VERSION ") {
		t.Fatalf("kpush ping %s = %q, %v (%s)", addr, out, err, stderr)
	}

	// A port nobody listens on: a non-zero exit that names the address.
	dead := testproc.ReserveAddr(t)
	_, stderr, err = testproc.Run(t, nil, "ping", "--timeout", "2s", dead)
	if err == nil || !strings.Contains(stderr, dead) {
		t.Fatalf("kpush ping %s: err=%v stderr=%q, want a failure naming the address", dead, err, stderr)
	}
}

// TestPingHTTP: the compose health checks call `kpush ping URL`. A 2xx is
// success, anything else or a certificate that is not trusted is a
// failure naming the URL; --tls-ca trusts a private CA.
func TestPingHTTP(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sick" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	plain := httptest.NewServer(handler)
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(handler)
	defer tlsSrv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		ok      bool
		wantOut string // stdout on success, stderr on failure
	}{
		{"http 200", []string{plain.URL + "/healthz"}, true, "200 OK"},
		{"http 503", []string{plain.URL + "/sick"}, false, plain.URL + "/sick: 503 Service Unavailable"},
		{"https with --tls-ca", []string{"--tls-ca", ca, tlsSrv.URL + "/healthz"}, true, "200 OK"},
		{"https with an untrusted certificate", []string{tlsSrv.URL + "/healthz"}, false, "certificate signed by unknown authority"},
		{"https with a --tls-ca that holds no certificate", []string{"--tls-ca", notPEM, tlsSrv.URL}, false, "no PEM certificate"},
		{"https with a missing --tls-ca", []string{"--tls-ca", filepath.Join(dir, "missing.pem"), tlsSrv.URL}, false, "missing.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := testproc.Run(t, nil, append([]string{"ping", "--timeout", "10s"}, tc.args...)...)
			if tc.ok {
				if err != nil || !strings.Contains(stdout, tc.wantOut) {
					t.Fatalf("kpush ping %v: %v, stdout %q stderr %q; want success printing %q", tc.args, err, stdout, stderr, tc.wantOut)
				}
				return
			}
			if err == nil || !strings.Contains(stderr, tc.wantOut) {
				t.Fatalf("kpush ping %v: %v, stderr %q; want a failure saying %q", tc.args, err, stderr, tc.wantOut)
			}
		})
	}
}

// TestSecondServerOnOneDataDir: a second kpush up (or queued) on a data
// directory in use stops at once with one line naming the holder and
// --data-dir, even on another port; one on a taken port names --listen and
// --data-dir.
func TestSecondServerOnOneDataDir(t *testing.T) {
	dir := t.TempDir()
	first := testproc.Start(t, "up", "--listen", "127.0.0.1:0", "--sim-listen", "127.0.0.1:0", "--data-dir", dir, "--status-interval", "0")
	addr := first.Addr("queued")
	first.Addr("apns-sim")
	holder := fmt.Sprintf("is in use by another process (pid %d)", first.PID())

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"up on the same data dir", []string{"up", "--listen", "127.0.0.1:0", "--sim-listen", "127.0.0.1:0", "--data-dir", dir},
			[]string{holder, "give this kpush up another --data-dir"}},
		{"queued on the same data dir", []string{"queued", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "queued")},
			[]string{holder, "give this kpush queued another --data-dir"}},
		{"up on the same port", []string{"up", "--listen", addr, "--sim-listen", "127.0.0.1:0", "--data-dir", t.TempDir()},
			[]string{"address already in use", "another --listen", "--data-dir"}},
		{"queued on the same port", []string{"queued", "--listen", addr, "--data-dir", t.TempDir()},
			[]string{"address already in use", "another --listen", "--data-dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			second := testproc.Start(t, tc.args...)
			if err := second.Wait(time.Minute); err == nil {
				t.Fatalf("exit status 0, want a failure")
			}
			out := second.Output()
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "kpush up:") || strings.Contains(out, "the whole pipeline in one process") {
				t.Errorf("the second server printed its banner before failing:\n%s", out)
			}
		})
	}

	// The first one is unharmed: it still stores.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := fmt.Sprintf(`{"tokens":["%s"],"topic":"com.example.app","alert":"hi"}`, strings.Repeat("ab", 32))
	fmt.Fprintf(conn, "set push 0 0 %d\r\n%s\r\n", len(msg), msg)
	reply := make([]byte, 8)
	if _, err := io.ReadFull(conn, reply); err != nil || string(reply) != "STORED\r\n" {
		t.Fatalf("the first server answered %q, %v to a set", reply, err)
	}
}

// TestPingWait: with --wait, ping tries again until the target answers (a
// server still starting), and gives up with the last error after --wait.
func TestPingWait(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/never" || calls.Add(1) <= 3 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer srv.Close()
	stdout, stderr, err := testproc.Run(t, nil, "ping", "--wait", "30s", srv.URL)
	if err != nil || !strings.Contains(stdout, "200 OK") || calls.Load() != 4 {
		t.Fatalf("ping --wait: %v, stdout %q, stderr %q, %d requests; want success on the 4th", err, stdout, stderr, calls.Load())
	}
	_, stderr, err = testproc.Run(t, nil, "ping", "--wait", "300ms", srv.URL+"/never", "--timeout", "1s")
	if err == nil || !strings.Contains(stderr, "still failing after --wait 300ms") {
		t.Fatalf("ping --wait against a failing target: %v, stderr %q", err, stderr)
	}
}
