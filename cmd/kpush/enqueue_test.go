package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kpush/kpush/internal/testdns"
	"github.com/kpush/kpush/internal/testproc"
	"github.com/kpush/kpush/push"
)

// enqueueSummaryLine is the documented summary format of kpush enqueue.
var enqueueSummaryLine = regexp.MustCompile(`^sent=(\d+) rejected=(\d+) failed=(\d+) elapsed=\d+\.\d\ds rate=\d+/s\n$`)

func enqueueStartQueued(t *testing.T) string {
	t.Helper()
	return testproc.Start(t, "queued", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--sync", "never").Addr("queued")
}

// enqueueDrain takes every item off queue and parses each as a message.
func enqueueDrain(t *testing.T, addr, queue string) []*push.Message {
	t.Helper()
	mc := memcache.New(addr)
	mc.Timeout = 5 * time.Second
	defer mc.Close()
	var msgs []*push.Message
	for {
		it, err := mc.Get(queue)
		if errors.Is(err, memcache.ErrCacheMiss) {
			return msgs
		}
		if err != nil {
			t.Fatalf("get %s from %s: %v", queue, addr, err)
		}
		m, err := push.ParseMessage(it.Value)
		if err != nil {
			t.Fatalf("stored item %q is not a valid message: %v", it.Value, err)
		}
		msgs = append(msgs, m)
	}
}

func enqueueCheckSummary(t *testing.T, stdout string, sent, rejected, failed int) {
	t.Helper()
	m := enqueueSummaryLine.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("stdout %q is not one summary line", stdout)
	}
	if want := []string{fmt.Sprint(sent), fmt.Sprint(rejected), fmt.Sprint(failed)}; !slices.Equal(m[1:], want) {
		t.Fatalf("summary %q, want sent=%d rejected=%d failed=%d", stdout, sent, rejected, failed)
	}
}

const (
	enqueueTestToken  = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	enqueueTestToken2 = "00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff"
)

func TestEnqueueOneMessageFromFlags(t *testing.T) {
	addr := enqueueStartQueued(t)
	stdout, stderr, err := testproc.Run(t, nil, "enqueue", "--servers", addr, "--queue", "flags",
		"--token", enqueueTestToken, "--token", enqueueTestToken2, "--topic", "com.example.app", "--id", "f1",
		"--title", "Hi", "--body", "there", "--badge", "0", "--sound", "default",
		"--data", "kind=greeting", "--data", "n:=5", "--data", "s=5", "--data-json", "order=1234", "--data", `tags:=["a","b"]`)
	if err != nil {
		t.Fatalf("enqueue: %v\n%s", err, stderr)
	}
	enqueueCheckSummary(t, stdout, 1, 0, 0)
	msgs := enqueueDrain(t, addr, "flags")
	if len(msgs) != 1 {
		t.Fatalf("queue holds %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	body, err := m.APNsPayload()
	if err != nil {
		t.Fatal(err)
	}
	// --data k:=JSON stores the JSON value (the number 5), k=v a string,
	// as kpush push does; --data-json k=JSON is the old spelling of k:=JSON.
	for _, want := range []string{`"title":"Hi"`, `"body":"there"`, `"badge":0`, `"sound":"default"`, `"kind":"greeting"`, `"n":5,`, `"s":"5"`, `"order":1234`, `"tags":["a","b"]`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("payload %s lacks %s", body, want)
		}
	}
	if m.ID != "f1" || !slices.Equal(m.Tokens, []string{enqueueTestToken, enqueueTestToken2}) || m.EnqueuedAt == 0 {
		t.Errorf("stored message %+v", m)
	}
}

// TestEnqueueFindsServersThroughDNS: --servers dns:NAME:PORT with
// --dns-server sends to every address NAME resolves to.
func TestEnqueueFindsServersThroughDNS(t *testing.T) {
	a, b := enqueueStartQueued(t), enqueueStartQueued(t)
	_, portA, _ := net.SplitHostPort(a)
	_, portB, _ := net.SplitHostPort(b)
	d := testdns.Start(t)
	d.SetSRV("_kestrel._tcp.queued.kpush.test", testdns.TargetOf(t, "qa.kpush.test:"+portA), testdns.TargetOf(t, "qb.kpush.test:"+portB))
	path := enqueueTestFile(t, 10, nil)
	stdout, stderr, err := testproc.Run(t, nil, "enqueue", "--servers", "dns+srv:_kestrel._tcp.queued.kpush.test", "--dns-server", d.Addr,
		"--queue", "dns", "--file", path)
	if err != nil {
		t.Fatalf("enqueue: %v\n%s", err, stderr)
	}
	enqueueCheckSummary(t, stdout, 10, 0, 0)
	if na, nb := len(enqueueDrain(t, a, "dns")), len(enqueueDrain(t, b, "dns")); na != 5 || nb != 5 {
		t.Fatalf("%d and %d messages on the two servers, want 5 and 5", na, nb)
	}
}

// TestEnqueueFCMFromFlags: --fcm-token and the --android-* flags build the
// message's fcm_tokens and android object; no topic is needed without APNs
// tokens.
func TestEnqueueFCMFromFlags(t *testing.T) {
	addr := enqueueStartQueued(t)
	fcmToken := "e1:APA91b" + strings.Repeat("q", 140)
	stdout, stderr, err := testproc.Run(t, nil, "enqueue", "--servers", addr, "--queue", "fcmflags",
		"--fcm-token", fcmToken, "--title", "Hi", "--body", "there", "--data", "kind=greeting",
		"--android-priority", "high", "--android-ttl", "90m", "--android-collapse-key", "c", "--android-channel-id", "news",
		"--android-sound", "default", "--android-tag", "t", "--android-image", "https://example.com/i.png")
	if err != nil {
		t.Fatalf("enqueue: %v\n%s", err, stderr)
	}
	enqueueCheckSummary(t, stdout, 1, 0, 0)
	msgs := enqueueDrain(t, addr, "fcmflags")
	if len(msgs) != 1 {
		t.Fatalf("queue holds %d messages, want 1", len(msgs))
	}
	body, err := msgs[0].FCMRequest(fcmToken)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"message":{"token":"` + fcmToken + `","notification":{"title":"Hi","body":"there"},"data":{"kind":"greeting"},` +
		`"android":{"priority":"HIGH","ttl":"5400s","collapse_key":"c","notification":{"channel_id":"news","sound":"default","tag":"t","image":"https://example.com/i.png"}}}}`
	if string(body) != want {
		t.Errorf("FCM request of the stored message\n got %s\nwant %s", body, want)
	}
}

// TestEnqueueInvalidFlagsSendNothing: every mistake a command line can
// hold is reported on one line before anything is sent, with no summary.
func TestEnqueueInvalidFlagsSendNothing(t *testing.T) {
	addr := enqueueStartQueued(t)
	tok := enqueueTestToken
	tests := []struct {
		name       string
		args       []string
		wantStderr string
		wantExit   int
	}{
		{"nothing to send", nil, "nothing to send", 1},
		{"file and token", []string{"--file", "x", "--token", tok}, "not both", 1},
		{"file and alert", []string{"--file", "x", "--alert", "hi"}, "not both", 1},
		{"no token", []string{"--topic", "t", "--alert", "hi"}, "no --token", 1},
		{"bad queue", []string{"--queue", "a b", "--token", tok, "--topic", "t"}, "invalid queue name", 1},
		{"bad concurrency", []string{"--file", "-", "--concurrency", "0"}, "--concurrency", 1},
		{"bad server", []string{"--servers", "127.0.0.1:1:2", "--token", tok, "--topic", "t"}, "want host:port", 1},
		{"elided token", []string{"--token", "3f1c...e9", "--topic", "t", "--alert", "a"}, "tokens[0]: not hex", 1},
		{"short token", []string{"--token", "abcd", "--topic", "t", "--alert", "a"}, "tokens[0]: 4 hex digits, too short", 1},
		{"no topic", []string{"--token", tok, "--alert", "a"}, "topic: required", 1},
		{"bad data", []string{"--token", tok, "--topic", "t", "--data", "novalue"}, "want key=value", 2},
		{"bad data json", []string{"--token", tok, "--topic", "t", "--data", "k:={"}, "one JSON value", 2},
		{"bad data json, old spelling", []string{"--token", tok, "--topic", "t", "--data-json", "k={"}, "one JSON value", 2},
		{"alert and body", []string{"--token", tok, "--topic", "t", "--alert", "a", "--body", "b"}, "give one", 1},
		{"unknown flag", []string{"--token", tok, "--topc", "t"}, "did you mean --topic?", 2},
		{"short FCM token", []string{"--fcm-token", "abc", "--alert", "a"}, "fcm_tokens[0]: 3 characters", 1},
		{"reserved FCM data key", []string{"--fcm-token", strings.Repeat("f", 120), "--alert", "a", "--data", "from=x"}, "data.from: reserved", 1},
		{"bad android priority", []string{"--fcm-token", strings.Repeat("f", 120), "--alert", "a", "--android-priority", "max"}, "android.priority", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Flags given later (tt.args) override these.
			args := append([]string{"enqueue", "--queue", "flags_bad", "--servers", addr}, tt.args...)
			stdout, stderr, err := testproc.Run(t, strings.NewReader(""), args...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tt.wantExit {
				t.Fatalf("exit %v, want status %d\nstdout: %s\nstderr: %s", err, tt.wantExit, stdout, stderr)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr %q does not mention %q", stderr, tt.wantStderr)
			}
			if n := strings.Count(stderr, "\n"); n != 1 || stdout != "" {
				t.Errorf("want one line on stderr and nothing on stdout; got stdout %q, stderr:\n%s", stdout, stderr)
			}
		})
	}
	if got := enqueueDrain(t, addr, "flags_bad"); len(got) != 0 {
		t.Fatalf("%d messages were stored by invalid invocations", len(got))
	}
}

// enqueueTestFile writes a JSON Lines file of n messages with ids l<line>;
// the lines in bad are replaced by the given text.
func enqueueTestFile(t *testing.T, n int, bad map[int]string) string {
	t.Helper()
	var b strings.Builder
	for line := 1; line <= n; line++ {
		if s, ok := bad[line]; ok {
			b.WriteString(s + "\n")
			continue
		}
		fmt.Fprintf(&b, `{"id":"l%d","tokens":["%s"],"topic":"com.example.app","alert":"line %d"}`+"\n", line, enqueueTestToken, line)
	}
	path := filepath.Join(t.TempDir(), "messages.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func enqueueIDs(msgs []*push.Message) []string {
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestEnqueueFile(t *testing.T) {
	a, b := enqueueStartQueued(t), enqueueStartQueued(t)
	bad := map[int]string{
		3:  `{"id":"l3","tokens":["nothex!!"],"topic":"com.example.app","alert":"x"}`,
		7:  `not json at all`,
		8:  ``, // blank lines are not records
		11: `{"id":"l11","tokens":["` + enqueueTestToken + `"],"topic":"com.example.app","alert":"x","tokenz":[]}`,
	}
	const n = 200
	path := enqueueTestFile(t, n, bad)
	var wantIDs []string
	for line := 1; line <= n; line++ {
		if _, isBad := bad[line]; !isBad {
			wantIDs = append(wantIDs, fmt.Sprintf("l%d", line))
		}
	}
	slices.Sort(wantIDs)

	t.Run("skips bad lines", func(t *testing.T) {
		stdout, stderr, err := testproc.Run(t, nil, "enqueue", "--servers", a+","+b, "--queue", "file", "--file", path, "--concurrency", "8")
		if err == nil {
			t.Errorf("exit status 0 although lines were rejected")
		}
		enqueueCheckSummary(t, stdout, n-4, 3, 0)
		for _, want := range []string{"line 3: tokens[0]: not hex", "line 7: ", "line 11: tokenz: unknown field"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		if strings.Contains(stderr, "\r") {
			t.Errorf("a progress bar was drawn although stderr is not a terminal:\n%q", stderr)
		}
		for _, server := range []string{a, b} {
			if !regexp.MustCompile(`msg="server summary" server=` + regexp.QuoteMeta(server) + ` state=up stored=9[87] `).MatchString(stderr) {
				t.Errorf("no summary line for %s on stderr:\n%s", server, stderr)
			}
		}
		if strings.Contains(stderr, "line 8:") {
			t.Errorf("blank line 8 reported as bad:\n%s", stderr)
		}
		msgsA, msgsB := enqueueDrain(t, a, "file"), enqueueDrain(t, b, "file")
		if got := enqueueIDs(append(msgsA, msgsB...)); !slices.Equal(got, wantIDs) {
			t.Fatalf("stored ids %v, want %v", got, wantIDs)
		}
		if len(msgsA) != len(msgsB) {
			t.Errorf("spread %d/%d over two servers, want even", len(msgsA), len(msgsB))
		}
	})

	t.Run("progress bar on request", func(t *testing.T) {
		stdout, stderr, err := testproc.Run(t, nil, "enqueue", "--servers", a, "--queue", "progress", "--file", enqueueTestFile(t, 100, nil), "--progress")
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		enqueueCheckSummary(t, stdout, 100, 0, 0)
		// The bar counts messages, and reaches 100% with the last one.
		if !strings.Contains(stderr, "\renqueue") || !strings.Contains(stderr, "100% |") || !strings.Contains(stderr, "(100/100, ") {
			t.Errorf("no progress bar counting 100 messages to 100%% on stderr with --progress:\n%q", stderr)
		}
		if got := len(enqueueDrain(t, a, "progress")); got != 100 {
			t.Errorf("stored %d, want 100", got)
		}
	})

	t.Run("stop on error", func(t *testing.T) {
		stdout, stderr, err := testproc.Run(t, nil, "enqueue", "--servers", a, "--queue", "stop", "--file", path, "--stop-on-error")
		if err == nil || !strings.Contains(stderr, "stopped at line 3") {
			t.Fatalf("err=%v, stderr:\n%s", err, stderr)
		}
		enqueueCheckSummary(t, stdout, 2, 1, 0)
		if got := enqueueIDs(enqueueDrain(t, a, "stop")); !slices.Equal(got, []string{"l1", "l2"}) {
			t.Fatalf("stored %v, want lines 1 and 2 only", got)
		}
	})

	t.Run("stdin, in order with a routing key", func(t *testing.T) {
		in, err := os.Open(enqueueTestFile(t, 50, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		stdout, stderr, err := testproc.Run(t, in, "enqueue", "--servers", a+","+b, "--queue", "stdin", "--file", "-", "--routing-key", "user-1")
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		enqueueCheckSummary(t, stdout, 50, 0, 0)
		msgs := append(enqueueDrain(t, a, "stdin"), enqueueDrain(t, b, "stdin")...)
		var ids []string
		for _, m := range msgs {
			ids = append(ids, m.ID)
		}
		var want []string
		for i := 1; i <= 50; i++ {
			want = append(want, fmt.Sprintf("l%d", i))
		}
		if !slices.Equal(ids, want) {
			t.Fatalf("ids %v, want all 50 in file order on one server", ids)
		}
	})
}

// TestEnqueueUnreachableServerOneLine: nothing running at --servers is one
// line saying so and what to check, whether one message or a file; a
// missing --file is reported before any connection is tried.
func TestEnqueueUnreachableServerOneLine(t *testing.T) {
	dead := testproc.ReserveAddr(t) // nothing listens there
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"one message", []string{"--token", enqueueTestToken, "--topic", "com.example.app", "--alert", "x"},
			"no queued server reachable (" + dead + ": connection refused): is kpush up or kpush queued running there?"},
		{"a file", []string{"--file", enqueueTestFile(t, 100, nil), "--concurrency", "4"},
			"no queued server reachable (" + dead + ": connection refused): is kpush up or kpush queued running there?"},
		{"a missing file", []string{"--file", "/nonexistent/messages.jsonl"}, "--file: open /nonexistent/messages.jsonl: no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := testproc.Run(t, nil, append([]string{"enqueue", "--servers", dead}, tc.args...)...)
			if err == nil {
				t.Fatal("exit status 0 although nothing was stored")
			}
			if stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("want one line on stderr with %q, nothing on stdout; got stdout %q, stderr:\n%s", tc.want, stdout, stderr)
			}
		})
	}
}

// TestEnqueuePrettyPrintedFile: a message spread over several lines is one
// rejection saying each line must hold a whole message; the messages on
// their own lines around it are stored.
func TestEnqueuePrettyPrintedFile(t *testing.T) {
	addr := enqueueStartQueued(t)
	one := fmt.Sprintf(`{"id":"one","tokens":["%s"],"topic":"com.example.app","alert":"x"}`, enqueueTestToken)
	pretty := fmt.Sprintf("{\n  \"id\": \"pretty\",\n  \"tokens\": [\"%s\"],\n  \"topic\": \"com.example.app\",\n  \"alert\": {\n    \"title\": \"x\"\n  }\n}", enqueueTestToken)
	two := strings.Replace(one, `"one"`, `"two"`, 1)
	stdout, stderr, err := testproc.Run(t, strings.NewReader(one+"\n"+pretty+"\n"+two+"\n"), "enqueue", "--servers", addr, "--queue", "pretty", "--file", "-", "--concurrency", "1")
	if err == nil {
		t.Fatal("exit status 0 although a message was rejected")
	}
	enqueueCheckSummary(t, stdout, 2, 1, 0)
	if !strings.HasPrefix(stderr, "line 2: ") || !strings.Contains(stderr, "one whole message per line") ||
		len(regexp.MustCompile(`(?m)^line \d+:`).FindAllString(stderr, -1)) != 1 || strings.Contains(stderr, "Go ") {
		t.Errorf("want one line about line 2 (then the server summary), got:\n%s", stderr)
	}
	if got := enqueueIDs(enqueueDrain(t, addr, "pretty")); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("stored %v, want one and two", got)
	}
}

// FuzzReadJSONLines checks the line reader against strings.Split: every
// non-blank line, trimmed and numbered from 1, and nothing else.
func FuzzReadJSONLines(f *testing.F) {
	for _, seed := range []string{"", "\n", "a\nb", "a\r\n\r\n  b  \n", "{\"x\":1}\n\n{}\n", strings.Repeat("x", 70000) + "\ny"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		type rec struct {
			num  int
			line string
		}
		var got []rec
		err := readJSONLines(t.Context(), strings.NewReader(in), func(num int, line []byte, tooLong bool) error {
			if tooLong {
				t.Fatalf("line %d reported too long", num)
			}
			got = append(got, rec{num, string(line)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var want []rec
		for i, l := range strings.Split(in, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				want = append(want, rec{i + 1, l})
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	})
}

func TestReadJSONLinesTooLong(t *testing.T) {
	in := "a\n" + strings.Repeat("x", maxLineBytes+1) + "\nb\n"
	var nums []int
	var long []int
	err := readJSONLines(t.Context(), strings.NewReader(in), func(num int, line []byte, tooLong bool) error {
		nums = append(nums, num)
		if tooLong {
			long = append(long, num)
		}
		return nil
	})
	if err != nil || !slices.Equal(nums, []int{1, 2, 3}) || !slices.Equal(long, []int{2}) {
		t.Fatalf("lines %v, too long %v, err %v; want 1,2,3 with 2 too long", nums, long, err)
	}
}
