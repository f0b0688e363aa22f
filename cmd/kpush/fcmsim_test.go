package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
)

// TestPushAgainstFCMSim runs kpush fcm-sim and kpush push against it (and
// against it and apns-sim at once for a mixed message), as a user would.
func TestPushAgainstFCMSim(t *testing.T) {
	dir := t.TempDir()
	fcmDir, apnsDir := filepath.Join(dir, "fcm"), filepath.Join(dir, "apns")
	live := "c1:APA91b" + strings.Repeat("L", 140)
	dead := "c2:APA91b" + strings.Repeat("D", 140)
	fsim := testproc.Start(t, "fcm-sim", "--listen", "127.0.0.1:0", "--tls-dir", fcmDir, "--dead-token", dead)
	faddr := fsim.Addr("fcm-sim")
	fsim.WaitLog(regexp.MustCompile(`--fcm-credentials`), time.Minute)
	asim := testproc.Start(t, "apns-sim", "--listen", "127.0.0.1:0", "--tls-dir", apnsDir)
	aaddr := asim.Addr("apns-sim")

	fcmCreds := []string{"--fcm-endpoint", "https://" + faddr, "--fcm-ca", filepath.Join(fcmDir, "ca.pem"),
		"--fcm-credentials", filepath.Join(fcmDir, "service-account.json")}
	apnsCreds := []string{"--apns-host", "https://" + aaddr, "--apns-ca", filepath.Join(apnsDir, "ca.pem"),
		"--auth-key", filepath.Join(apnsDir, "dev-key.p8"), "--key-id", "ABC123DEFG", "--team-id", "DEF123GHIJ"}
	apnsToken := strings.Repeat("b2", 32)
	cases := []struct {
		name    string
		args    []string
		wantOK  bool
		wantOut []string
		// What the case adds to the simulator's counts: messages accepted
		// (all for the live token), UNREGISTERED answers, access tokens
		// issued (one per push process that reaches FCM).
		accepted, unregistered, accessTokens int64
	}{
		{"delivered", append([]string{"--fcm-token", live, "--alert", "Hello", "--data", "n:=5", "--android-priority", "high",
			"--android-ttl", "1h", "--android-channel-id", "orders"}, fcmCreds...), true, []string{"delivered fcm-token=" + live + " name=projects/kpush-dev/messages/"}, 1, 0, 1},
		{"dead token", append([]string{"--fcm-token", dead, "--alert", "Hello"}, fcmCreds...), false, []string{"dead-token fcm-token=" + dead + " status=404 reason=UNREGISTERED"}, 0, 1, 1},
		{"mixed message", append(append([]string{"--fcm-token", live, "--token", apnsToken, "--topic", "com.example.app", "--alert", "Hi"}, fcmCreds...), apnsCreds...),
			true, []string{"delivered token=" + apnsToken, "delivered fcm-token=" + live}, 1, 0, 1},
		{"FCM token without FCM credentials", append([]string{"--fcm-token", live, "--alert", "Hello"}, apnsCreds...), false, nil, 0, 0, 0},
		{"malformed FCM token", append([]string{"--fcm-token", "short", "--alert", "Hello"}, fcmCreds...), false, nil, 0, 0, 0},
		{"bad android priority", append([]string{"--fcm-token", live, "--alert", "Hello", "--android-priority", "urgent"}, fcmCreds...), false, nil, 0, 0, 0},
	}
	// Counted as the cases run, so any one of them can run alone (-run).
	var accepted, unregistered, accessTokens int64
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			accepted += tc.accepted
			unregistered += tc.unregistered
			accessTokens += tc.accessTokens
			out, errOut, err := testproc.Run(t, nil, append([]string{"push"}, tc.args...)...)
			if tc.wantOK != (err == nil) {
				t.Fatalf("exit error %v, want success %v\nstdout: %s\nstderr: %s", err, tc.wantOK, out, errOut)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout %q lacks %q", out, w)
				}
			}
			if !tc.wantOK && !strings.Contains(errOut, "kpush:") {
				t.Errorf("stderr %q does not say what failed", errOut)
			}
		})
	}

	client := simHTTPClient(t, filepath.Join(fcmDir, "ca.pem"))
	resp, err := client.Get("https://" + faddr + "/sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Accepted           int64            `json:"accepted"`
		Rejected           map[string]int64 `json:"rejected"`
		Tokens             map[string]int64 `json:"tokens"`
		AccessTokensIssued int64            `json:"access_tokens_issued"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if st.Accepted != accepted || st.Tokens[live] != accepted || st.Rejected["UNREGISTERED"] != unregistered || st.AccessTokensIssued != accessTokens {
		t.Errorf("fcm-sim stats = %+v, want %d accepted for the live token, %d UNREGISTERED, %d access tokens (one per push process)", st, accepted, unregistered, accessTokens)
	}
	if err := fsim.Stop(10 * time.Second); err != nil {
		t.Fatalf("fcm-sim exit on SIGTERM: %v", err)
	}
	want := fmt.Sprintf("accepted %d messages for %d registration tokens", accepted, min(accepted, 1))
	if out := fsim.Output(); !strings.Contains(out, want) || (unregistered > 0) != strings.Contains(out, fmt.Sprintf("rejected %d UNREGISTERED", unregistered)) {
		t.Errorf("fcm-sim summary on exit is wrong: want %q and %d UNREGISTERED\n%s", want, unregistered, out)
	}
}

func TestFCMSimFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--fail", "Bogus=0.1"},
		{"--fail", "UNAVAILABLE=2"},
		{"--fail-rate", "lots"},
		{"--latency", "soon"},
		{"--rate-limit", "fast"},
		{"--trust-key", "/nonexistent/sa.json"},
	} {
		full := append([]string{"fcm-sim", "--listen", "127.0.0.1:0", "--tls-dir", t.TempDir()}, args...)
		_, errOut, err := testproc.Run(t, nil, full...)
		if err == nil || !strings.Contains(errOut, "kpush:") {
			t.Errorf("kpush %v: err %v, stderr %q: want a clear error", full, err, errOut)
		}
	}
}
