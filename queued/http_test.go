package queued

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// listenCapture is a slog handler that reports the addr of every
// "listening" record by service, so a test learns the ports chosen for
// 127.0.0.1:0 without polling.
type listenCapture struct {
	addrs chan [2]string
}

func (h listenCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h listenCapture) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h listenCapture) WithGroup(string) slog.Handler            { return h }
func (h listenCapture) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "listening" {
		return nil
	}
	var svc, addr string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "service":
			svc = a.Value.String()
		case "addr":
			addr = a.Value.String()
		}
		return true
	})
	h.addrs <- [2]string{svc, addr}
	return nil
}

type adminFixture struct {
	srv   *Server
	addr  string // memcache protocol
	admin string // http://host:port
	stop  func()
}

// startAdminServer runs a real server through ListenAndServe with both
// listeners on 127.0.0.1:0.
func startAdminServer(t *testing.T, configure ...func(*Config)) *adminFixture {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.AdminListen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.EnableShutdown = true
	for _, f := range configure {
		f(&cfg)
	}
	lc := listenCapture{addrs: make(chan [2]string, 4)}
	s, err := NewServer(cfg, slog.New(lc))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx) }()
	f := &adminFixture{srv: s}
	for f.addr == "" || f.admin == "" {
		select {
		case a := <-lc.addrs:
			switch a[0] {
			case "queued":
				f.addr = a[1]
			case "admin":
				f.admin = "http://" + a[1]
			}
		case err := <-done:
			cancel()
			t.Fatalf("ListenAndServe returned before listening: %v", err)
		case <-time.After(10 * time.Second):
			cancel()
			t.Fatal("no listening lines for queued and admin within 10s")
		}
	}
	stopped := false
	f.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	}
	t.Cleanup(f.stop)
	return f
}

// memcacheClient is a minimal raw protocol client for the tests.
type memcacheClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialMemcache(t *testing.T, addr string) *memcacheClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	return &memcacheClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *memcacheClient) send(req string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *memcacheClient) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *memcacheClient) expect(req, want string) {
	c.t.Helper()
	c.send(req)
	if got := c.line(); got != want {
		c.t.Fatalf("%q: reply %q, want %q", req, got, want)
	}
}

// stats returns the `stats` command's numbers by name.
func (c *memcacheClient) stats() map[string]string {
	c.t.Helper()
	c.send("stats\r\n")
	m := map[string]string{}
	for {
		l := c.line()
		if l == "END" {
			return m
		}
		f := strings.SplitN(l, " ", 3)
		if len(f) != 3 || f[0] != "STAT" {
			c.t.Fatalf("bad stats line %q", l)
		}
		m[f[1]] = f[2]
	}
}

func httpGet(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, hdr, body := httpGet(t, base+"/metrics")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %q", code, hdr.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v\n%s", err, body)
	}
	return fams
}

// metricValue finds the sample of family name whose labels include want.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range fam.GetMetric() {
		for k, v := range want {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func TestAdminMetrics(t *testing.T) {
	f := startAdminServer(t)
	c := dialMemcache(t, f.addr)
	for i := range 3 {
		c.expect(fmt.Sprintf("set jobs 0 0 5\r\nitem%d\r\n", i), "STORED")
	}
	c.expect("set other 0 0 1\r\nx\r\n", "STORED")
	c.send("get jobs\r\n")
	if l := c.line(); l != "VALUE jobs 0 5" {
		t.Fatalf("get: %q", l)
	}
	c.line() // data
	if l := c.line(); l != "END" {
		t.Fatalf("get: %q", l)
	}
	c.expect("get empty\r\n", "END")
	c.expect("get other/open\r\n", "VALUE other 0 1")
	c.line()
	c.line()

	fams := scrape(t, f.admin)
	jobs := map[string]string{"queue": "jobs"}
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"kpush_queued_queue_items", jobs, 2},
		{"kpush_queued_queue_bytes", jobs, 10},
		{"kpush_queued_queue_items_added_total", jobs, 3},
		{"kpush_queued_queue_items", map[string]string{"queue": "other"}, 0},
		{"kpush_queued_queue_open_transactions", map[string]string{"queue": "other"}, 1},
		{"kpush_queued_queue_transactions_total", map[string]string{"queue": "other"}, 1},
		{"kpush_queued_queue_items", map[string]string{"queue": "empty"}, 0},
		{"kpush_queued_queue_unavailable", jobs, 0},
		{"kpush_queued_items", nil, 2},
		{"kpush_queued_items_added_total", nil, 4},
		{"kpush_queued_commands_total", map[string]string{"command": "set"}, 4},
		{"kpush_queued_commands_total", map[string]string{"command": "get"}, 3},
		{"kpush_queued_get_hits_total", nil, 2},
		{"kpush_queued_get_misses_total", nil, 1},
		{"kpush_queued_connections", nil, 1},
		{"kpush_queued_status", map[string]string{"status": "UP"}, 1},
		{"kpush_queued_status", map[string]string{"status": "QUIESCENT"}, 0},
		{"kpush_queued_info", map[string]string{"version": Version, "build": Build}, 1},
	}
	for _, tt := range tests {
		got, ok := metricValue(fams, tt.name, tt.labels)
		if !ok {
			t.Errorf("%s%v: missing", tt.name, tt.labels)
			continue
		}
		if got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if fams["kpush_queued_queue_items_added_total"].GetType() != dto.MetricType_COUNTER ||
		fams["kpush_queued_queue_items"].GetType() != dto.MetricType_GAUGE {
		t.Errorf("wrong metric types")
	}
	if _, ok := metricValue(fams, "process_resident_memory_bytes", nil); !ok {
		t.Errorf("no process metrics")
	}

	// A deleted queue's series disappear at the next scrape.
	c.expect("delete jobs\r\n", "DELETED")
	if _, ok := metricValue(scrape(t, f.admin), "kpush_queued_queue_items", jobs); ok {
		t.Errorf("series for deleted queue jobs still exported")
	}
}

func TestAdminHealthz(t *testing.T) {
	f := startAdminServer(t)
	c := dialMemcache(t, f.addr)
	steps := []struct {
		status   string
		wantCode int
		wantBody string
	}{
		{"", 200, "ok\n"},
		{"READONLY", 200, "readonly\n"},
		{"QUIESCENT", 503, "quiescent\n"},
		{"UP", 200, "ok\n"},
	}
	for _, st := range steps {
		if st.status != "" {
			c.expect("status "+st.status+"\r\n", "END")
		}
		code, hdr, body := httpGet(t, f.admin+"/healthz")
		if code != st.wantCode || body != st.wantBody {
			t.Errorf("status %q: /healthz = %d %q, want %d %q", st.status, code, body, st.wantCode, st.wantBody)
		}
		if hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("/healthz may be cached")
		}
	}
}

func TestAdminHealthzShuttingDown(t *testing.T) {
	// The admin listener closes with the server, so "shutting down" is
	// observable only in the handler; drive it directly on a real server.
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	s, err := NewServer(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := NewAdminHandler(s)
	if code, body := health(s); code != 200 || body != "ok" {
		t.Fatalf("before shutdown: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 503 || rec.Body.String() != "shutting down\n" {
		t.Errorf("after shutdown: %d %q", rec.Code, rec.Body.String())
	}
}

func TestAdminStatsJSONMatchesStats(t *testing.T) {
	f := startAdminServer(t)
	c := dialMemcache(t, f.addr)
	c.expect("set a_queue 0 0 3\r\nabc\r\n", "STORED")
	c.expect("set b 0 0 1\r\nz\r\n", "STORED")
	c.expect("get nothing\r\n", "END")

	fetch := func() map[string]any {
		t.Helper()
		code, hdr, body := httpGet(t, f.admin+"/stats.json")
		if code != 200 || hdr.Get("Content-Type") != "application/json" {
			t.Fatalf("/stats.json: %d %q", code, hdr.Get("Content-Type"))
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("/stats.json: %v\n%s", err, body)
		}
		return m
	}
	before := fetch()
	stats := c.stats()
	after := fetch()

	// Every `stats` number lies between the JSON taken before and after it
	// (counters only grow; the rest do not change here).
	lookup := func(m map[string]any, name string) (any, bool) {
		if v, ok := m[name]; ok {
			return v, true
		}
		queues, _ := m["queues"].(map[string]any)
		for q, qm := range queues {
			if stat, ok := strings.CutPrefix(name, "queue_"+q+"_"); ok {
				v, ok := qm.(map[string]any)[stat]
				return v, ok
			}
		}
		return nil, false
	}
	if len(stats) < 19 {
		t.Fatalf("stats returned only %d numbers", len(stats))
	}
	for name, sv := range stats {
		b, ok1 := lookup(before, name)
		a, ok2 := lookup(after, name)
		if !ok1 || !ok2 {
			t.Errorf("stats.json lacks %s", name)
			continue
		}
		if name == "version" || name == "build" {
			if b != sv {
				t.Errorf("%s: json %v, stats %v", name, b, sv)
			}
			continue
		}
		n, err := strconv.ParseFloat(sv, 64)
		if err != nil {
			t.Errorf("stats %s = %q is not a number", name, sv)
			continue
		}
		lo, hi := b.(float64), a.(float64)
		if n < lo || n > hi {
			t.Errorf("%s: stats %v not within json %v..%v", name, n, lo, hi)
		}
	}
	if after["status"] != "UP" {
		t.Errorf("status = %v", after["status"])
	}
	q := after["queues"].(map[string]any)["a_queue"].(map[string]any)
	if q["items"] != 1.0 || q["bytes"] != 3.0 {
		t.Errorf("a_queue = %v", q)
	}
	// "unavailable" is there only for a queue whose journal could not be opened.
	if v, ok := q["unavailable"]; ok {
		t.Errorf("a_queue: unavailable = %q for a working queue", v)
	}
}

func TestAdminRoutes(t *testing.T) {
	f := startAdminServer(t)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/nope", 404},
		{"POST", "/metrics", 405},
		{"DELETE", "/healthz", 405},
		{"HEAD", "/healthz", 200},
		// Profiles only with --pprof (TestAdminPprofOnlyWhenAsked).
		{"GET", "/debug/pprof/goroutine?debug=1", 404},
		{"GET", "/debug/pprof/cmdline", 404},
	}
	checkRoutes(t, f.admin, tests)
}

func TestAdminPprofOnlyWhenAsked(t *testing.T) {
	f := startAdminServer(t, func(c *Config) { c.Pprof = true })
	checkRoutes(t, f.admin, []struct {
		method, path string
		want         int
	}{
		{"GET", "/debug/pprof/goroutine?debug=1", 200},
		{"GET", "/debug/pprof/cmdline", 200},
		{"GET", "/healthz", 200},
	})
}

func checkRoutes(t *testing.T, admin string, tests []struct {
	method, path string
	want         int
}) {
	t.Helper()
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, admin+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
		}
	}
}
