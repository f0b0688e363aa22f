package kestrel_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kpush/kpush/internal/kestrel"
	"github.com/kpush/kpush/internal/testqueued"
	"github.com/kpush/kpush/queued"
)

// startQueued runs a real queued server (the queue "small" holds one
// item) and returns its address.
func startQueued(t *testing.T) string {
	return testqueued.Start(t, func(cfg *queued.Config) {
		small := cfg.Defaults
		small.MaxItems = 1
		cfg.Queues = map[string]queued.QueueConfig{"small": small}
	})
}

func dial(t *testing.T, addr string, opts kestrel.Options) *kestrel.Conn {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	c, err := kestrel.Dial(context.Background(), addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func flush(t *testing.T, c *kestrel.Conn) {
	t.Helper()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

func mustValue(t *testing.T, c *kestrel.Conn, want string) {
	t.Helper()
	data, ok, err := c.ReadValue(true)
	if err != nil || !ok || string(data) != want {
		t.Fatalf("ReadValue = %q, %v, %v; want %q", data, ok, err, want)
	}
}

func mustEnd(t *testing.T, c *kestrel.Conn) {
	t.Helper()
	if data, ok, err := c.ReadValue(true); err != nil || ok {
		t.Fatalf("ReadValue = %q, %v, %v; want END", data, ok, err)
	}
}

// TestAgainstQueued runs every request of the client against the real
// daemon: pipelined sets, plain and reliable gets, monitor and confirm,
// and the round trips.
func TestAgainstQueued(t *testing.T) {
	addr := startQueued(t)
	c := dial(t, addr, kestrel.Options{})

	for _, v := range []string{"one", "two", "three", "four"} {
		c.Set("q", 0, []byte(v))
	}
	flush(t, c)
	for i := 0; i < 4; i++ {
		if stored, err := c.ReadStored(); !stored || err != nil {
			t.Fatalf("set %d: %v, %v", i, stored, err)
		}
	}

	c.Get("q", "")
	c.Get("q", "/open")
	flush(t, c)
	mustValue(t, c, "one")
	mustValue(t, c, "two")
	// abort puts "two" back at the head; close/open confirms nothing (none
	// open) and opens it again; close confirms it.
	c.Get("q", "/abort")
	c.Get("q", "/close/open")
	c.Get("q", "/close")
	c.Get("q", "/peek")
	flush(t, c)
	mustEnd(t, c)
	mustValue(t, c, "two")
	mustEnd(t, c)
	mustValue(t, c, "three")

	c.Monitor("q", 1, 10)
	flush(t, c)
	var got []string
	n, err := c.ReadMonitor("q", 1, func(data []byte, oversize int64) {
		if oversize != 0 {
			t.Errorf("oversize %d", oversize)
		}
		got = append(got, string(data))
	})
	if err != nil || n != 2 || !slices.Equal(got, []string{"three", "four"}) {
		t.Fatalf("ReadMonitor = %d, %v, items %q", n, err, got)
	}
	c.Confirm("q", 2)
	c.Confirm("q", 1) // none left open: the server answers ERROR
	flush(t, c)
	if err := c.ReadConfirm("q", 2); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadConfirm("q", 1); !errors.Is(err, kestrel.ErrProtocol) {
		t.Fatalf("confirm of reads not open: %v, want ErrProtocol", err)
	}
	c.Get("q", "")
	flush(t, c)
	mustEnd(t, c)

	// A full queue answers NOT_STORED; a bad name an error reply that
	// leaves the stream in step.
	c.Set("small", 0, []byte("a"))
	c.Set("small", 0, []byte("b"))
	flush(t, c)
	for i, want := range []bool{true, false} {
		if stored, err := c.ReadStored(); stored != want || err != nil {
			t.Fatalf("set small %d: %v, %v; want %v", i, stored, err, want)
		}
	}
	c.Set("bad/name", 0, []byte("c"))
	c.Set("small", 0, nil)
	flush(t, c)
	var re *kestrel.ReplyError
	if _, err := c.ReadStored(); !errors.As(err, &re) || !strings.HasPrefix(re.Line, "CLIENT_ERROR") {
		t.Fatalf("set with a bad name: %v, want a ReplyError with CLIENT_ERROR", err)
	}
	if stored, err := c.ReadStored(); stored || err != nil {
		t.Fatalf("set after the error reply: %v, %v; want NOT_STORED", stored, err)
	}

	if v, err := c.Version(); err != nil || v == "" {
		t.Fatalf("Version = %q, %v", v, err)
	}
	stats, err := c.Stats()
	st := map[string]string{}
	for _, s := range stats {
		st[s.Name] = s.Value
	}
	if err != nil || st["queue_q_items"] != "0" || st["queue_small_items"] != "1" || st["cmd_set"] == "" {
		t.Fatalf("Stats = %v, %v", stats, err)
	}
	if err := c.SetStatus("readonly"); err != nil {
		t.Fatal(err)
	}
	c.Set("q", 0, []byte("refused"))
	flush(t, c)
	if _, err := c.ReadStored(); !errors.As(err, &re) || !strings.Contains(re.Line, "READONLY") {
		t.Fatalf("set while READONLY: %v", err)
	}
	if err := c.SetStatus("sideways"); !errors.As(err, &re) {
		t.Fatalf("status sideways: %v, want a ReplyError", err)
	}
	if err := c.SetStatus("up"); err != nil {
		t.Fatal(err)
	}
	lines, err := c.DumpConfig()
	if err != nil || !slices.Contains(lines, "queue 'small' {") || !slices.Contains(lines, "  max_items=1") {
		t.Fatalf("DumpConfig = %q, %v", lines, err)
	}
}

// An item over MaxItemSize is read past and reported by its size; the
// stream stays in step.
func TestMonitorOversize(t *testing.T) {
	addr := startQueued(t)
	c := dial(t, addr, kestrel.Options{MaxItemSize: 10})
	c.Set("big", 0, []byte(strings.Repeat("x", 11)))
	c.Set("big", 0, []byte("small"))
	flush(t, c)
	for range 2 {
		if _, err := c.ReadStored(); err != nil {
			t.Fatal(err)
		}
	}
	c.Monitor("big", 1, 2)
	flush(t, c)
	var sizes []int64
	var datas []string
	n, err := c.ReadMonitor("big", 1, func(data []byte, oversize int64) {
		sizes = append(sizes, oversize)
		datas = append(datas, string(data))
	})
	if err != nil || n != 2 || !slices.Equal(sizes, []int64{11, 0}) || !slices.Equal(datas, []string{"", "small"}) {
		t.Fatalf("ReadMonitor = %d, %v; oversize %v, data %q", n, err, sizes, datas)
	}
}

// script serves one connection: for each request line it reads, it writes
// the next reply verbatim.
func script(t *testing.T, replies ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := bufio.NewReader(nc)
		for _, reply := range replies {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			if _, err := io.WriteString(nc, reply); err != nil {
				return
			}
		}
		_, _ = io.Copy(io.Discard, r) // until the client hangs up
	}()
	return ln.Addr().String()
}

// Replies the client cannot trust, each answered with the right error.
func TestBadReplies(t *testing.T) {
	tests := []struct {
		name  string
		reply string
		read  func(c *kestrel.Conn) error
		want  error
	}{
		{"monitor unsupported", "ERROR\r\n", func(c *kestrel.Conn) error {
			c.Monitor("q", 1, 1)
			_ = c.Flush()
			_, err := c.ReadMonitor("q", 1, func([]byte, int64) {})
			return err
		}, kestrel.ErrMonitorUnsupported},
		{"item without CRLF", "VALUE q 0 3\r\nabcXY", func(c *kestrel.Conn) error {
			c.Monitor("q", 1, 1)
			_ = c.Flush()
			_, err := c.ReadMonitor("q", 1, func([]byte, int64) {})
			return err
		}, kestrel.ErrProtocol},
		{"bad item length", "VALUE q 0 -4\r\n", func(c *kestrel.Conn) error {
			c.Get("q", "")
			_ = c.Flush()
			_, _, err := c.ReadValue(true)
			return err
		}, kestrel.ErrProtocol},
		{"no END after an item", "VALUE q 0 1\r\nx\r\nVALUE q 0 1\r\n", func(c *kestrel.Conn) error {
			c.Get("q", "")
			_ = c.Flush()
			_, _, err := c.ReadValue(false)
			return err
		}, kestrel.ErrProtocol},
		{"reply line too long", strings.Repeat("x", 300) + "\r\n", func(c *kestrel.Conn) error {
			c.Get("q", "")
			_ = c.Flush()
			_, _, err := c.ReadValue(true)
			return err
		}, kestrel.ErrProtocol},
		{"no dump_config", "ERROR\r\n", func(c *kestrel.Conn) error {
			_, err := c.DumpConfig()
			return err
		}, kestrel.ErrProtocol},
		{"bad stats line", "STAT\r\nEND\r\n", func(c *kestrel.Conn) error {
			_, err := c.Stats()
			return err
		}, kestrel.ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, script(t, tt.reply), kestrel.Options{ReadBuffer: 256})
			if err := tt.read(c); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// With Options.Timeout a silent server is given up on: the read fails
// with a timeout instead of waiting forever.
func TestTimeout(t *testing.T) {
	c := dial(t, script(t), kestrel.Options{Timeout: 50 * time.Millisecond})
	c.Get("q", "")
	flush(t, c)
	_, _, err := c.ReadValue(true)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
}
