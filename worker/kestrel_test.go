package worker

import (
	"errors"
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
			got, found := expireTarget(tt.lines, tt.queue)
			if got != tt.want || found != tt.wantFound {
				t.Fatalf("expireTarget = %q, %v; want %q, %v", got, found, tt.want, tt.wantFound)
			}
		})
	}
}

func TestParseValueLine(t *testing.T) {
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
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := parseValueLine([]byte(tt.line))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseValueLine(%q) = %d, %v; want %d, error %v", tt.line, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
		})
	}
}
