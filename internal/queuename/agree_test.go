package queuename_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/queuename"
	"github.com/kpush/kpush/internal/testqueued"
	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/queued"
	"github.com/kpush/kpush/queued/journal"
	"github.com/kpush/kpush/worker"
)

// names is the one table of queue names every user of the rule is
// checked against.
var names = []struct {
	name  string
	valid bool
}{
	{"a", true},
	{"A-b_9", true},
	{"push", true},
	{"push_failed", true},
	{"push-1", true},
	{"p+c", true},
	{"parent+child", true},
	{strings.Repeat("n", 235), true}, // the longest plain name the worker takes (+ "_invalid_tokens" = 250)
	{strings.Repeat("n", 236), true},
	{strings.Repeat("n", 250), true},
	{strings.Repeat("n", 120) + "+" + strings.Repeat("c", 129), true},
	{"", false},
	{strings.Repeat("n", 251), false},
	{string(make([]byte, 251)), false},
	{"../x", false},
	{"a/b", false},
	{"push/open", false},
	{".", false},
	{"a.b", false},
	{"a b", false},
	{"sp ace", false},
	{"tab\there", false},
	{"a\x00", false},
	{"a\r\nb", false},
	{"+a", false},
	{"+child", false},
	{"a+", false},
	{"parent+", false},
	{"a+b+c", false},
	{"é", false},
	{"ünï", false},
	{"a~", false},
	{"a~b", false},
	{"~tmp", false},
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func label(name string) string { return fmt.Sprintf("%.24q", name) }

// TestRule: Check and Valid (on a string and on a []byte) say the same.
func TestRule(t *testing.T) {
	for _, tc := range names {
		err := queuename.Check(tc.name)
		if (err == nil) != tc.valid {
			t.Errorf("Check(%s) = %v, want valid=%v", label(tc.name), err, tc.valid)
		}
		if err != nil && !errors.Is(err, queuename.ErrInvalid) {
			t.Errorf("Check(%s) = %v, does not wrap ErrInvalid", label(tc.name), err)
		}
		if queuename.Valid(tc.name) != tc.valid || queuename.Valid([]byte(tc.name)) != tc.valid {
			t.Errorf("Valid(%s) != %v", label(tc.name), tc.valid)
		}
	}
}

// TestUsersAgree runs the table through every user's own check: the
// daemon's config (NewServer) and protocol (set), the journal (Open), the
// producer (ValidateQueueName) and the worker (Config.Validate, which also
// needs its outcome queues, <queue>_invalid_tokens the longest, to be
// valid plain names).
func TestUsersAgree(t *testing.T) {
	t.Run("queued config", func(t *testing.T) {
		for _, tc := range names {
			cfg := queued.DefaultConfig()
			cfg.DataDir = t.TempDir()
			cfg.Queues = map[string]queued.QueueConfig{tc.name: cfg.Defaults}
			s, err := queued.NewServer(cfg, quiet())
			if (err == nil) != tc.valid {
				t.Errorf("NewServer with queue block %s: err = %v, want valid=%v", label(tc.name), err, tc.valid)
			}
			if s != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := s.Shutdown(ctx); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
				cancel()
			}
		}
	})

	t.Run("queued protocol", func(t *testing.T) {
		addr := testqueued.Start(t, nil)
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		for _, tc := range names {
			if tc.name == "" || strings.ContainsAny(tc.name, " \t\r\n") {
				continue // cannot be framed as one token of a request line
			}
			if _, err := fmt.Fprintf(nc, "set %s 0 0 1\r\nx\r\n", tc.name); err != nil {
				t.Fatal(err)
			}
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("set %s: %v", label(tc.name), err)
			}
			want := "CLIENT_ERROR bad queue name: " + queuename.Rule + "\r\n"
			if tc.valid {
				want = "STORED\r\n"
			}
			if line != want {
				t.Errorf("set %s: %q, want %q", label(tc.name), line, want)
			}
		}
	})

	t.Run("journal", func(t *testing.T) {
		dir := t.TempDir()
		for _, tc := range names {
			j, err := journal.Open(dir, tc.name, journal.Options{Logger: quiet()})
			if tc.valid && err != nil || !tc.valid && !errors.Is(err, journal.ErrBadName) {
				t.Errorf("journal.Open(%s): err = %v, want valid=%v", label(tc.name), err, tc.valid)
			}
			if j != nil {
				if err := j.Delete(); err != nil {
					t.Errorf("Delete: %v", err)
				}
			}
		}
	})

	t.Run("producer", func(t *testing.T) {
		for _, tc := range names {
			err := producer.ValidateQueueName(tc.name)
			if tc.valid && err != nil || !tc.valid && !errors.Is(err, producer.ErrInvalidQueue) {
				t.Errorf("producer.ValidateQueueName(%s) = %v, want valid=%v", label(tc.name), err, tc.valid)
			}
		}
	})

	t.Run("worker", func(t *testing.T) {
		for _, tc := range names {
			_, fanout := queuename.Parent(tc.name)
			want := tc.valid && !fanout && queuename.Valid(tc.name+"_invalid_tokens")
			err := worker.Config{Servers: []string{"127.0.0.1:1"}, Queue: tc.name}.Validate()
			if want && err != nil || !want && !errors.Is(err, worker.ErrBadConfig) {
				t.Errorf("worker Config{Queue: %s}.Validate() = %v, want ok=%v", label(tc.name), err, want)
			}
		}
	})
}
