package kestrel

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestExpireTarget(t *testing.T) {
	ours := []string{
		"queue 'push' {",
		"  max_items=0",
		"  expire_to_queue=(none)",
		"}",
		"queue 'push_retry' {",
		"  max_items=0",
		"  expire_to_queue=push",
		"}",
	}
	kestrel := []string{
		"queue 'push_retry' {",
		"  maxItems=2147483647",
		"  expireToQueue=Some(push)",
		"}",
	}
	tests := []struct {
		name      string
		lines     []string
		queue     string
		want      string
		wantFound bool
	}{
		{"ours, configured", ours, "push_retry", "push", true},
		{"ours, none", ours, "push", "", true},
		{"kestrel camelCase", kestrel, "push_retry", "push", true},
		{"absent", ours, "other_retry", "", false},
		{"empty dump", nil, "push_retry", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := ExpireTarget(tt.lines, tt.queue)
			if got != tt.want || found != tt.wantFound {
				t.Fatalf("ExpireTarget = %q, %v; want %q, %v", got, found, tt.want, tt.wantFound)
			}
		})
	}
}

func TestValueSize(t *testing.T) {
	tests := []struct {
		line    string
		want    int64
		wantErr bool
	}{
		{"VALUE push 0 12", 12, false},
		{"VALUE push 0 0", 0, false},
		{"VALUE push 0", 0, true},
		{"VALUE push 0 -1", 0, true},
		{"VALUE push 0 99999999999", 99999999999, false},
		{"VALUE push 0 9999999999999999", 0, true},
		{"SERVER_ERROR out of disk", 0, true},
		{"VALUE push 0 x", 0, true},
		{"VALUE push 0 1x", 0, true},
		{"VALUE push 0 ", 0, true},
		{"VALUE  push\t0  12 99", 12, false}, // gets' cas unique, extra spaces
		{"VALUES push 0 12", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := valueSize([]byte(tt.line))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("valueSize(%q) = %d, %v; want %d, error %v", tt.line, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
		})
	}
}

var kept []byte

// The hot paths cost what the protocol does and no more: formatting
// requests allocates nothing, a monitor item one slice (the caller's), a
// get whose data is not kept nothing.
func TestAllocations(t *testing.T) {
	c := &Conn{addr: "test", w: bufio.NewWriter(io.Discard)}
	data := []byte("data")
	if n := testing.AllocsPerRun(100, func() {
		c.Confirm("push", 12)
		c.Monitor("push", 1, 100)
		c.Set("push", 0, data)
		c.Get("push", "/close/open")
	}); n != 0 {
		t.Errorf("formatting requests: %v allocations, want 0", n)
	}

	var stream bytes.Buffer
	const items = 50
	for range items {
		stream.WriteString("VALUE push 0 5\r\nhello\r\n")
	}
	stream.WriteString("END\r\n")
	raw := stream.Bytes()
	rd := bytes.NewReader(raw)
	c.r = bufio.NewReaderSize(rd, 64<<10)
	if n := testing.AllocsPerRun(20, func() {
		rd.Reset(raw)
		c.r.Reset(rd)
		if n, err := c.ReadMonitor("push", 1, func(data []byte, _ int64) { kept = data }); n != items || err != nil {
			panic(err)
		}
	}); n != items {
		t.Errorf("monitor of %d items: %v allocations, want %d", items, n, items)
	}

	one := []byte("VALUE push 0 5\r\nhello\r\nEND\r\n")
	if n := testing.AllocsPerRun(100, func() {
		rd.Reset(one)
		c.r.Reset(rd)
		if _, ok, err := c.ReadValue(false); !ok || err != nil {
			panic(err)
		}
	}); n != 0 {
		t.Errorf("get, data not kept: %v allocations, want 0", n)
	}
}
