package main

import (
	"fmt"
	"net"
	"regexp"
	"strings"
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
