package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/testproc"
)

// TestPushAgainstAPNsSim runs the real binary twice over: kpush apns-sim,
// and kpush push against it, checking outputs and exit codes.
func TestPushAgainstAPNsSim(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	live := strings.Repeat("a1", 32)
	dead := strings.Repeat("d0", 32)
	sim := testproc.Start(t, "apns-sim", "--listen", "127.0.0.1:0", "--tls-dir", tlsDir, "--dead-token", dead)
	addr := sim.Addr("apns-sim")
	caFile := filepath.Join(tlsDir, "ca.pem")
	sim.WaitLog(regexp.MustCompile(`listening`), time.Minute)

	// The simulator's own development key (it prints the hint to use it).
	keyFile := filepath.Join(tlsDir, "dev-key.p8")
	creds := []string{"--apns-host", "https://" + addr, "--apns-ca", caFile,
		"--auth-key", keyFile, "--key-id", "ABC123DEFG", "--team-id", "DEF123GHIJ"}
	push := func(stdin string, args ...string) (string, string, error) {
		var in io.Reader
		if stdin != "" {
			in = strings.NewReader(stdin)
		}
		return testproc.Run(t, in, append(append([]string{"push"}, creds...), args...)...)
	}

	cases := []struct {
		name    string
		stdin   string
		args    []string
		wantOK  bool
		wantOut string
		// What the case adds to the simulator's exit summary.
		accepted, unregistered int
	}{
		{"delivered", "", []string{"--token", live, "--topic", "com.example.app", "--alert", "Hello", "--badge", "3", "--sound", "default", "--data", "k=v", "--data", "n:=5"},
			true, "delivered token=" + live + " apns-id=", 1, 0},
		{"dead token", "", []string{"--token", dead, "--topic", "com.example.app", "--alert", "Hello"},
			false, "dead-token token=" + dead + " status=410 reason=Unregistered timestamp=", 0, 1},
		{"message from stdin", `{"id":"m1","tokens":["` + live + `"],"topic":"com.example.app","alert":{"title":"T","body":"B"}}`, []string{"--message", "-"},
			true, "delivered token=" + live, 1, 0},
		{"invalid message", `{"tokens":["xyz"],"topic":"com.example.app","alert":"x"}`, []string{"--message", "-"},
			false, "", 0, 0},
		{"bad token flag", "", []string{"--token", "nothex", "--topic", "com.example.app", "--alert", "x"},
			false, "", 0, 0},
		{"message with flags", `{}`, []string{"--message", "-", "--alert", "x"},
			false, "", 0, 0},
		{"bad data flag", "", []string{"--token", live, "--topic", "com.example.app", "--data", "noequals"},
			false, "", 0, 0},
	}
	// Counted as the cases run, so any one of them can run alone (-run).
	var accepted, unregistered int
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			accepted += tc.accepted
			unregistered += tc.unregistered
			out, errOut, err := push(tc.stdin, tc.args...)
			if tc.wantOK != (err == nil) {
				t.Fatalf("exit error %v, want success %v\nstdout: %s\nstderr: %s", err, tc.wantOK, out, errOut)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("stdout %q lacks %q", out, tc.wantOut)
			}
			if !tc.wantOK && !strings.Contains(errOut, "kpush:") {
				t.Errorf("stderr %q does not say what failed", errOut)
			}
		})
	}

	resp, err := http.Get("https://" + addr + "/sim/stats")
	if err == nil {
		resp.Body.Close()
		t.Fatal("plain HTTP client without the CA must fail TLS verification")
	}
	if err := sim.Stop(10 * time.Second); err != nil {
		t.Fatalf("apns-sim exit on SIGTERM: %v", err)
	}
	out := sim.Output()
	if !strings.Contains(out, "--apns-ca "+caFile) {
		t.Errorf("apns-sim did not print the --apns-ca hint:\n%s", out)
	}
	devices := min(accepted, 1) // every accepted push went to the one live token
	want := fmt.Sprintf("accepted %d notifications for %d device tokens", accepted, devices)
	if !strings.Contains(out, want) || (unregistered > 0) != strings.Contains(out, fmt.Sprintf("rejected %d Unregistered", unregistered)) {
		t.Errorf("apns-sim summary on exit is wrong: want %q and %d Unregistered\n%s", want, unregistered, out)
	}
}

func TestAPNsSimFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--fail", "Bogus=0.1"},
		{"--fail", "ServiceUnavailable=2"},
		{"--latency", "soon"},
		{"--rate-limit", "fast"},
		{"--trust-key", "/nonexistent/key.p8"},
	} {
		full := append([]string{"apns-sim", "--listen", "127.0.0.1:0", "--tls-dir", t.TempDir()}, args...)
		_, errOut, err := testproc.Run(t, nil, full...)
		if err == nil || !strings.Contains(errOut, "kpush:") {
			t.Errorf("kpush %v: err %v, stderr %q: want a clear error", full, err, errOut)
		}
	}
}

func TestAPNsSimStatsJSON(t *testing.T) {
	tlsDir := t.TempDir()
	sim := testproc.Start(t, "apns-sim", "--listen", "127.0.0.1:0", "--tls-dir", tlsDir)
	addr := sim.Addr("apns-sim")
	out, _, err := testproc.Run(t, nil, "push", "--apns-host", "https://"+addr, "--apns-ca", filepath.Join(tlsDir, "ca.pem"))
	if err == nil {
		t.Fatalf("push without credentials succeeded: %s", out)
	}
	// The stats endpoint answers over HTTP/2 with the contract's keys.
	client := simHTTPClient(t, filepath.Join(tlsDir, "ca.pem"))
	resp, err := client.Get("https://" + addr + "/sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"accepted", "rejected", "tokens"} {
		if _, ok := st[k]; !ok {
			t.Errorf("/sim/stats lacks %q: %v", k, st)
		}
	}
}
