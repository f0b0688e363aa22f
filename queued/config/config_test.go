package config

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/queued"
	"github.com/kpush/kpush/queued/journal"
)

// parseCapturing parses src and returns the config and everything logged
// at debug level and above, as text.
func parseCapturing(t *testing.T, src, name string) (queued.Config, string, error) {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := parseConfig(strings.NewReader(src), name, log)
	return c, logs.String(), err
}

func loadFixture(t *testing.T, file string) (queued.Config, string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	c, logs, err := parseCapturing(t, string(src), file)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return c, logs
}

func TestKestrelProductionConf(t *testing.T) {
	c, logs := loadFixture(t, "kestrel-1.2.9-production.conf")
	if c.Listen != "0.0.0.0:22133" {
		t.Errorf("Listen = %q, want 0.0.0.0:22133", c.Listen)
	}
	if c.DataDir != "/var/spool/kestrel" {
		t.Errorf("DataDir = %q", c.DataDir)
	}
	if c.LogFile != "/var/log/kestrel/kestrel.log" || c.LogLevel != "info" {
		t.Errorf("log = %q %q", c.LogFile, c.LogLevel)
	}
	if c.ClientTimeout != 0 {
		t.Errorf("ClientTimeout = %v, want 0 (timeout = 0)", c.ClientTimeout)
	}
	if c.Defaults.MaxJournalSize != 16277216 || c.Defaults.MaxMemorySize != 134217728 || c.Defaults.MaxJournalOverflow != 10 {
		t.Errorf("defaults = %+v", c.Defaults)
	}
	// The commented-out expiration_timer_frequency_seconds leaves ours.
	if c.ExpirationTimerFrequency != queued.DefaultConfig().ExpirationTimerFrequency {
		t.Errorf("ExpirationTimerFrequency = %v", c.ExpirationTimerFrequency)
	}
	if len(c.Queues) != 2 {
		t.Fatalf("queues = %v, want weather_updates and transient_events", c.Queues)
	}
	w := c.QueueConfig("weather_updates")
	if w.MaxAge != 30*time.Minute || w.MaxItems != 1500000 {
		t.Errorf("weather_updates = %+v", w)
	}
	// Inherited from the top level.
	if w.MaxMemorySize != 134217728 || w.MaxJournalSize != 16277216 || !w.Journal {
		t.Errorf("weather_updates did not inherit the defaults: %+v", w)
	}
	te := c.QueueConfig("transient_events")
	if te.Journal {
		t.Errorf("transient_events: journal off was not applied")
	}
	if te.MaxItems != 0 || te.MaxMemorySize != 134217728 {
		t.Errorf("transient_events = %+v", te)
	}
	if strings.Contains(logs, "level=WARN") {
		t.Errorf("Kestrel's production.conf produced warnings:\n%s", logs)
	}
}

func TestKestrelDevelopmentConf(t *testing.T) {
	c, logs := loadFixture(t, "kestrel-1.2.9-development.conf")
	if c.ClientTimeout != 30*time.Second {
		t.Errorf("ClientTimeout = %v, want 30s (Kestrel 1.x timeout is in seconds)", c.ClientTimeout)
	}
	if c.ExpirationTimerFrequency != time.Second {
		t.Errorf("ExpirationTimerFrequency = %v, want 1s", c.ExpirationTimerFrequency)
	}
	if c.MaxOpenTransactions != 100 {
		t.Errorf("MaxOpenTransactions = %d", c.MaxOpenTransactions)
	}
	if len(c.Queues) != 5 {
		t.Errorf("got %d queues, want 5", len(c.Queues))
	}
	jp := c.QueueConfig("jobs_pending")
	if jp.ExpireToQueue != "jobs_ready" || jp.Sync.Mode != journal.SyncAlways || jp.MaxAge != 30*time.Millisecond {
		t.Errorf("jobs_pending = %+v", jp)
	}
	if c.QueueConfig("jobs_ready").Sync.Mode != journal.SyncAlways {
		t.Errorf("jobs_ready sync = %v", c.QueueConfig("jobs_ready").Sync)
	}
	// spam { multifile on }: a Kestrel key queued does not use, so the
	// queue is just the defaults, with a debug line and no warning.
	if got := c.QueueConfig("spam"); !reflect.DeepEqual(got, c.Defaults) {
		t.Errorf("spam = %+v, want the defaults", got)
	}
	if !strings.Contains(logs, "key=multifile") || strings.Contains(logs, "level=WARN") {
		t.Errorf("want multifile logged at debug and no warning; logs:\n%s", logs)
	}
}

func TestKestrelTestConfOldSectionSyntax(t *testing.T) {
	c, _ := loadFixture(t, "kestrel-1.2.9-test.conf")
	if c.LogFile != "/tmp/kestrel/kestrel.log" || c.DataDir != "/tmp/kestrel" || c.ClientTimeout != 10*time.Second {
		t.Errorf("got %+v", c)
	}
}

func TestOurConf(t *testing.T) {
	c, logs := loadFixture(t, "ours.conf")
	want := queued.DefaultConfig()
	want.Listen = "127.0.0.1:22199"
	want.DataDir = "/tmp/kpush-ours"
	want.AdminListen = "127.0.0.1:22134"
	want.ClientTimeout = 2500 * time.Millisecond
	want.MaxOpenTransactions = 10
	want.MaxConnections = 5000
	want.ExpirationTimerFrequency = 250 * time.Millisecond
	want.TotalMemorySize = 512 << 20
	want.EnableShutdown = false
	want.LogFile = "/var/log/kpush/queued.log"
	want.LogLevel = "warn"
	want.Defaults = queued.QueueConfig{
		MaxItems:               1000000,
		MaxSize:                1 << 30,
		MaxItemSize:            8 << 20,
		MaxAge:                 time.Hour,
		MaxMemorySize:          64 << 20,
		Journal:                true,
		Sync:                   queued.SyncPolicy{Mode: journal.SyncInterval, Interval: 10 * time.Millisecond},
		MaxExpireSweep:         1000,
		OpenTransactionTimeout: 30 * time.Second,
		MaxJournalSize:         16 << 20,
		MaxJournalOverflow:     10,
		MaxJournalSizeAbsolute: 1 << 30,
	}
	ready := want.Defaults
	ready.Sync = queued.SyncPolicy{Mode: journal.SyncAlways}
	ready.OpenTransactionTimeout = time.Minute
	delayed := want.Defaults
	delayed.ExpireToQueue = "apns_ready"
	delayed.MaxExpireSweep = 0
	events := want.Defaults
	events.FanoutOnly = true
	scratch := events // inherit="events"
	scratch.Journal = false
	scratch.DiscardOldWhenFull = true
	scratch.MaxItems = 10
	want.Queues = map[string]queued.QueueConfig{"apns_ready": ready, "apns_delayed": delayed, "events": events, "scratch": scratch}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v\nwant\n%+v", c, want)
	}
	if strings.Contains(logs, "level=WARN") {
		t.Errorf("unexpected warnings:\n%s", logs)
	}
}

func TestQueueConfigLookup(t *testing.T) {
	if _, _, err := parseCapturing(t, `max_items = 5
queues { parent { max_items = 7 } child+x { } }`, "t.conf"); err == nil {
		t.Fatal("a '+' in a queue block name was accepted")
	}
	c, _, err := parseCapturing(t, `max_items = 5
queues { parent { max_items = 7 } }`, "t.conf")
	if err != nil {
		t.Fatal(err)
	}
	// A default expire_to_queue does not make its target expire into
	// itself.
	d, _, err := parseCapturing(t, "expire_to_queue = \"dead\"\n", "t.conf")
	if err != nil {
		t.Fatal(err)
	}
	if d.QueueConfig("work").ExpireToQueue != "dead" || d.QueueConfig("dead").ExpireToQueue != "" {
		t.Errorf("expire_to_queue: work %q, dead %q", d.QueueConfig("work").ExpireToQueue, d.QueueConfig("dead").ExpireToQueue)
	}
	d, _, err = parseCapturing(t, "expire_to_queue = \"dead\"\nqueues { dead { max_items = 1 } }\n", "t.conf")
	if err != nil {
		t.Fatal(err)
	}
	if q := d.Queues["dead"]; q.ExpireToQueue != "" || q.MaxItems != 1 {
		t.Errorf("dead's own block inherited an expiry into itself: %+v", q)
	}

	tests := []struct {
		queue string
		want  int64
	}{
		{"parent", 7},
		{"parent+child", 7}, // fanout children use the parent's block, as in Kestrel
		{"other", 5},
		{"other+child", 5},
	}
	for _, tt := range tests {
		if got := c.QueueConfig(tt.queue).MaxItems; got != tt.want {
			t.Errorf("queued.QueueConfig(%q).MaxItems = %d, want %d", tt.queue, got, tt.want)
		}
	}
}

func TestInheritanceIgnoresOrder(t *testing.T) {
	// A top-level default given after the queues block still applies to
	// them: configgy resolves inheritance at lookup time.
	c, _, err := parseCapturing(t, "queues { a { max_size = 10 } }\nmax_items = 42\n", "t.conf")
	if err != nil {
		t.Fatal(err)
	}
	if a := c.QueueConfig("a"); a.MaxItems != 42 || a.MaxSize != 10 {
		t.Errorf("a = %+v", a)
	}
}

func TestSyntaxVariants(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(queued.Config) bool
	}{
		{"one line", `max_age = 1800000  max_items = 1500000`, func(c queued.Config) bool {
			return c.Defaults.MaxAge == 30*time.Minute && c.Defaults.MaxItems == 1500000
		}},
		{"toggle", "journal off\ndiscard_old_when_full on", func(c queued.Config) bool {
			return !c.Defaults.Journal && c.Defaults.DiscardOldWhenFull
		}},
		{"set if new keeps the first", "max_items = 1\nmax_items ?= 2", func(c queued.Config) bool { return c.Defaults.MaxItems == 1 }},
		{"set if new sets", "max_items ?= 2", func(c queued.Config) bool { return c.Defaults.MaxItems == 2 }},
		{"last wins", "max_items = 1\nmax_items = 3", func(c queued.Config) bool { return c.Defaults.MaxItems == 3 }},
		{"dotted key", `queues.a.max_items = 9`, func(c queued.Config) bool { return c.QueueConfig("a").MaxItems == 9 }},
		{"block given twice merges", "queues { a { max_items = 1 } }\nqueues { a { max_size = 2 } b { } }", func(c queued.Config) bool {
			return c.QueueConfig("a").MaxItems == 1 && c.QueueConfig("a").MaxSize == 2 && len(c.Queues) == 2
		}},
		{"string escapes", `queue_path = "/a\"b\\c\u0041\$"`, func(c queued.Config) bool { return c.DataDir == `/a"b\cA$` }},
		{"unquoted host", `host = 0.0.0.0`, func(c queued.Config) bool { return c.Listen == "0.0.0.0:22133" }},
		{"ipv6 host", `host = "::1"` + "\nport = 1", func(c queued.Config) bool { return c.Listen == "[::1]:1" }},
		{"sync never", `sync_journal = false`, func(c queued.Config) bool { return c.Defaults.Sync.Mode == journal.SyncNever }},
		{"sync bare ms", `sync_journal = 5`, func(c queued.Config) bool {
			return c.Defaults.Sync == queued.SyncPolicy{Mode: journal.SyncInterval, Interval: 5 * time.Millisecond}
		}},
		{"shutdown alias", `shutdown = false`, func(c queued.Config) bool { return !c.EnableShutdown }},
		{"list value on unknown key", `hosts = ["a", "b", 3,]`, func(c queued.Config) bool { return true }},
		{"old section syntax", "<queues>\n<a>\nmax_items = 4\n</a>\n</queues>", func(c queued.Config) bool { return c.QueueConfig("a").MaxItems == 4 }},
		{"crlf and comments", "# c\r\nport = 1 # trailing\r\n", func(c queued.Config) bool { return c.Listen == "127.0.0.1:1" }},
		{"empty file", "", func(c queued.Config) bool { return reflect.DeepEqual(c, queued.DefaultConfig()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := parseCapturing(t, tt.src, "t.conf")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config: %+v", c)
			}
		})
	}
}

func TestUnknownKeysWarnWithFileAndLine(t *testing.T) {
	src := "port = 1\njmx_port = 9999\nqueues {\n  a {\n    colour = \"blue\"\n  }\n}\nadmin { http_port = 2223 }\n"
	c, logs, err := parseCapturing(t, src, "prod.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"at=prod.conf:2 key=jmx_port", "at=prod.conf:5 key=colour", "at=prod.conf:8 key=admin"} {
		if !strings.Contains(logs, "level=WARN msg=\"unknown config key ignored\" "+want) {
			t.Errorf("no warning %q in logs:\n%s", want, logs)
		}
	}
	if c.Listen != "127.0.0.1:1" {
		t.Errorf("known keys lost beside unknown ones: %q", c.Listen)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		kind     error
		wantAt   string // file:line:col
		wantText string
	}{
		{"missing value", "port =\n", ErrSyntax, "e.conf:2:1", "expected a value"},
		{"missing equals", "port 22133", ErrSyntax, "e.conf:1:6", "expected '=', '{', on or off"},
		{"unclosed block", "queues {\n  a {\n  }\n", ErrSyntax, "e.conf:4:1", "expected '}' to close block \"queues\" opened at line 1"},
		{"stray close", "}", ErrSyntax, "e.conf:1:1", "expected a key"},
		{"unterminated string", `host = "abc`, ErrSyntax, "e.conf:1:8", "unterminated string"},
		{"newline in string", "host = \"ab\ncd\"", ErrSyntax, "e.conf:1:8", "unterminated string"},
		{"bad escape", `host = "a\qb"`, ErrSyntax, "e.conf:1:11", "unknown escape"},
		{"bad character", "port = 1;", ErrSyntax, "e.conf:1:9", "unexpected character ';'"},
		{"include", `include "other.conf"`, ErrSyntax, "e.conf:1:1", "include is not supported"},
		{"old section mismatch", "<log>\nlevel = \"info\"\n</queues>", ErrSyntax, "e.conf:3:3", "'log>'"},
		{"bad key", "a..b = 1", ErrSyntax, "e.conf:1:1", "bad key"},
		{"port not a number", `port = "http"`, ErrValue, "e.conf:1:8", "port: want an integer from 0 to 65535"},
		{"port out of range", `port = 70000`, ErrValue, "e.conf:1:8", "port: want an integer"},
		{"negative items", "queues { a { max_items = -1 } }", ErrValue, "e.conf:1:26", "max_items"},
		{"bad size unit", "max_size = 10X", ErrValue, "e.conf:1:12", "max_size: want a non-negative byte count"},
		{"bad bool", `journal = "maybe"`, ErrValue, "e.conf:1:11", "journal: want true, false, on or off"},
		{"bad sync", `sync_journal = "sometimes"`, ErrValue, "e.conf:1:16", "sync_journal"},
		{"bad duration", `max_age = "soon"`, ErrValue, "e.conf:1:11", "max_age: want a non-negative integer of milliseconds"},
		{"bad log level", `log { level = "loud" }`, ErrValue, "e.conf:1:15", "log level"},
		{"log not a block", `log = "x"`, ErrValue, "e.conf:1:1", "log: want a block"},
		{"queue value not block", "queues { a = 1 }", ErrValue, "e.conf:1:10", "want a queue block"},
		{"expire to bad name", `expire_to_queue = "a/b"`, ErrValue, "e.conf:1:19", "expire_to_queue"},
		{"list for int", `max_items = [1]`, ErrValue, "e.conf:1:13", "max_items"},
		{"block for int", `max_items { }`, ErrValue, "e.conf:1:1", "got a block"},
		{"inherit missing", `queues { a (inherit="nope") { } }`, ErrValue, "e.conf:1:10", "no such queue block"},
		{"inherit loop", `queues { a (inherit="b") { } b (inherit="a") { } }`, ErrValue, "e.conf:1:10", "inherit loop"},
		{"expire into itself", "queues {\n a {\n  expire_to_queue = \"a\"\n }\n}", ErrValue, "e.conf:3:3", "expire_to_queue names the queue itself"},
		{"admin listen without port", `admin_listen = "localhost"`, ErrValue, "e.conf:1:16", "admin_listen: want host:port"},
		{"too deep", strings.Repeat("a {", 100), ErrSyntax, "e.conf:1:", "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseCapturing(t, tt.src, "e.conf")
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.kind)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("%v is not a *Error", err)
			}
			if !strings.HasPrefix(err.Error(), tt.wantAt) || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q, want it to start with %q and contain %q", err, tt.wantAt, tt.wantText)
			}
		})
	}
}

func TestLoadConfigFileMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.conf"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.conf") {
		t.Errorf("err = %v, want a not-exist error naming the file", err)
	}
}

func TestDumpKestrelFormat(t *testing.T) {
	c, _ := loadFixture(t, "kestrel-1.2.9-production.conf")
	var b bytes.Buffer
	if err := c.Dump(&b); err != nil {
		t.Fatal(err)
	}
	want := "queue 'transient_events' {\r\n" +
		"  max_items=0\r\n  max_size=0\r\n  max_item_size=0\r\n  max_age=0\r\n" +
		"  max_journal_size=16277216\r\n  max_memory_size=134217728\r\n" +
		"  max_journal_overflow=10\r\n  max_journal_size_absolute=0\r\n" +
		"  discard_old_when_full=false\r\n  journal=false\r\n  sync_journal=always\r\n" +
		"  expire_to_queue=(none)\r\n  max_expire_sweep=0\r\n  fanout_only=false\r\n" +
		"  open_transaction_timeout=0\r\n  max_queue_age=0\r\n}\r\n"
	if !strings.Contains(b.String(), want) {
		t.Errorf("dump lacks the transient_events block; got:\n%s", b.String())
	}
	if !strings.HasPrefix(b.String(), "queue 'transient_events' {") || !strings.Contains(b.String(), "}\r\nqueue 'weather_updates' {\r\n  max_items=1500000\r\n") {
		t.Errorf("queues not in name order or values wrong:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "  max_age=1800000\r\n") {
		t.Errorf("max_age not dumped in ms:\n%s", b.String())
	}

	b.Reset()
	if err := c.DumpQueues(&b, []string{"live", "weather_updates+copy"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "queue 'live' {\r\n  max_items=0\r\n") ||
		!strings.Contains(b.String(), "queue 'weather_updates+copy' {\r\n  max_items=1500000\r\n") {
		t.Errorf("DumpQueues:\n%s", b.String())
	}
}

func TestReloadReplacesQueueSettingsOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.conf")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("port = 1000\nmax_items = 1\nqueues { a { max_size = 5 } gone { } }\n")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Listen = "127.0.0.1:2000" // as if a flag had overridden it

	write("port = 3000\nqueue_path = \"/elsewhere\"\nmax_items = 2\nqueues { a { max_size = 6 } b { } }\n")
	r, err := Reload(c, path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Listen != "127.0.0.1:2000" || r.DataDir != c.DataDir {
		t.Errorf("reload changed server settings: listen %q dir %q", r.Listen, r.DataDir)
	}
	if r.Defaults.MaxItems != 2 || r.QueueConfig("a").MaxSize != 6 || r.QueueConfig("a").MaxItems != 2 {
		t.Errorf("reload did not apply queue settings: %+v", r.Queues)
	}
	if _, ok := r.Queues["gone"]; ok {
		t.Errorf("a queue block removed from the file survived reload")
	}
	if c.QueueConfig("a").MaxSize != 5 {
		t.Errorf("Reload modified the receiver")
	}

	// A broken file: an error, and the old settings are kept.
	write("max_items = \n")
	r2, err := Reload(r, path)
	if !errors.Is(err, ErrSyntax) {
		t.Errorf("reload of a bad file: err = %v", err)
	}
	if !reflect.DeepEqual(r2, r) {
		t.Errorf("failed reload changed the config")
	}

	if same, err := Reload(r, ""); err != nil || !reflect.DeepEqual(same, r) {
		t.Errorf("Reload(\"\") = %v, %v", same, err)
	}
}

func TestParseSyncPolicy(t *testing.T) {
	tests := []struct {
		in   string
		want queued.SyncPolicy
		ok   bool
	}{
		{"always", queued.SyncPolicy{Mode: journal.SyncAlways}, true},
		{"true", queued.SyncPolicy{Mode: journal.SyncAlways}, true},
		{"never", queued.SyncPolicy{Mode: journal.SyncNever}, true},
		{"false", queued.SyncPolicy{Mode: journal.SyncNever}, true},
		{"10ms", queued.SyncPolicy{Mode: journal.SyncInterval, Interval: 10 * time.Millisecond}, true},
		{"100", queued.SyncPolicy{Mode: journal.SyncInterval, Interval: 100 * time.Millisecond}, true},
		{"0", queued.SyncPolicy{}, false},
		{"500us", queued.SyncPolicy{}, false},
		{"1ms", queued.SyncPolicy{Mode: journal.SyncInterval, Interval: time.Millisecond}, true},
		{"-5ms", queued.SyncPolicy{}, false},
		{"often", queued.SyncPolicy{}, false},
	}
	for _, tt := range tests {
		got, err := ParseSyncPolicy(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v", tt.in, got, err)
		}
		if tt.ok {
			back, err := ParseSyncPolicy(got.String())
			if err != nil || back != got {
				t.Errorf("String() %q does not parse back: %v, %v", got.String(), back, err)
			}
		}
	}
}

func TestWriteRoundTrip(t *testing.T) {
	for _, f := range []string{"ours.conf", "kestrel-1.2.9-development.conf"} {
		c, _ := loadFixture(t, f)
		var b bytes.Buffer
		if err := Write(&b, c); err != nil {
			t.Fatal(err)
		}
		back, _, err := parseCapturing(t, b.String(), "written.conf")
		if err != nil {
			t.Fatalf("%s: written file does not parse: %v\n%s", f, err, b.String())
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("%s: round trip differs:\n%+v\n%+v", f, back, c)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"kestrel-1.2.9-production.conf", "kestrel-1.2.9-development.conf", "kestrel-1.2.9-test.conf", "ours.conf"} {
		src, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(src))
	}
	f.Add(`a = "\u00e9\t\"" b = [1, "x",] c (inherit="d") { } <e> f on </e>`)
	f.Add("queues { a (inherit=\"b\") { } b { max_items ?= 3 } }")
	f.Add("expire_to_queue = \"x\"\nqueues { x { } y { } }")
	discard := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, src string) {
		c, err := parseConfig(strings.NewReader(src), "fuzz.conf", discard)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Line < 1 || ce.Col < 1 {
				t.Fatalf("error without a position: %v", err)
			}
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrValue) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		// Whatever parses can be written and read back unchanged.
		var b bytes.Buffer
		if err := Write(&b, c); err != nil {
			t.Fatalf("write: %v", err)
		}
		back, err := parseConfig(&b, "written.conf", discard)
		if err != nil {
			t.Fatalf("written config does not parse: %v\n%s", err, b.String())
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip differs:\n%+v\n%+v", back, c)
		}
	})
}

func TestExampleProductionConf(t *testing.T) {
	// examples/production.conf is Kestrel's production.conf plus our keys:
	// it must load without a single warning, with the documented values.
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "production.conf"))
	if err != nil {
		t.Fatal(err)
	}
	c, logs, err := parseCapturing(t, string(src), "production.conf")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs, "level=WARN") {
		t.Errorf("warnings:\n%s", logs)
	}
	if c.AdminListen != "127.0.0.1:22134" || c.MaxOpenTransactions != 100 || c.EnableShutdown || c.TotalMemorySize != 1<<30 {
		t.Errorf("server settings: %+v", c)
	}
	if d := c.Defaults; d.Sync.Mode != journal.SyncAlways || d.MaxItemSize != 1<<20 || d.OpenTransactionTimeout != time.Minute {
		t.Errorf("defaults: %+v", d)
	}
	if q := c.QueueConfig("apns_delayed"); q.ExpireToQueue != "apns_ready" || q.MaxMemorySize != 134217728 {
		t.Errorf("apns_delayed: %+v", q)
	}
	if !c.QueueConfig("events").FanoutOnly || c.QueueConfig("events+ios").FanoutOnly {
		t.Errorf("fanout_only must hold for events and not for its child events+ios")
	}
	if q := c.QueueConfig("recent_activity"); q.MaxItems != 100000 || !q.DiscardOldWhenFull || q.MaxAge != time.Hour {
		t.Errorf("recent_activity: %+v", q)
	}
	if c.QueueConfig("transient_events").Journal {
		t.Errorf("transient_events journals")
	}
}
