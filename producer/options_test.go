package producer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

func TestValidateQueueName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"push", true},
		{"push_failed", true},
		{"push-1", true},
		{"parent+child", true},
		{strings.Repeat("q", 250), true},
		{"", false},
		{strings.Repeat("q", 251), false},
		{"a b", false},
		{"a/b", false},
		{"a.b", false},
		{"a~b", false},
		{"+child", false},
		{"parent+", false},
		{"a+b+c", false},
		{"tab\there", false},
		{"ünï", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20q", tt.name), func(t *testing.T) {
			err := ValidateQueueName(tt.name)
			if tt.ok && err != nil {
				t.Fatalf("ValidateQueueName(%q) = %v, want nil", tt.name, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidQueue) {
				t.Fatalf("ValidateQueueName(%q) = %v, want ErrInvalidQueue", tt.name, err)
			}
		})
	}
}

func TestExptime(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name    string
		opts    []EnqueueOption
		want    int32
		wantErr bool
	}{
		{"none", nil, 0, false},
		{"delay 30s", []EnqueueOption{Delay(30 * time.Second)}, 30, false},
		{"delay rounds up", []EnqueueOption{Delay(1500 * time.Millisecond)}, 2, false},
		{"delay zero is one second, never 'no expiry'", []EnqueueOption{Delay(0)}, 1, false},
		{"negative delay is one second", []EnqueueOption{Delay(-time.Hour)}, 1, false},
		{"long delay becomes absolute", []EnqueueOption{Delay(20 * 24 * time.Hour)}, int32(now.Unix() + 20*24*3600), false},
		{"expiry", []EnqueueOption{Expiry(now.Add(time.Hour))}, int32(now.Unix() + 3600), false},
		{"zero expiry", []EnqueueOption{Expiry(time.Time{})}, 0, true},
		{"expiry past 2038", []EnqueueOption{Expiry(time.Unix(1<<32, 0))}, 0, true},
		{"both", []EnqueueOption{Delay(time.Second), Expiry(now)}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var eo enqueueOptions
			for _, o := range tt.opts {
				o(&eo)
			}
			got, err := eo.exptime(now)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidOption) {
					t.Fatalf("exptime = %d, %v; want ErrInvalidOption", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("exptime = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		servers []string
		opts    []Option
	}{
		{"no servers", nil, nil},
		{"no port", []string{"127.0.0.1"}, nil},
		{"bad port", []string{"127.0.0.1:http"}, nil},
		{"port zero", []string{"127.0.0.1:0"}, nil},
		{"no host", []string{":22133"}, nil},
		{"duplicate", []string{"127.0.0.1:1", "127.0.0.1:1"}, nil},
		{"zero timeout", []string{"127.0.0.1:1"}, []Option{WithTimeout(0)}},
		{"zero idle conns", []string{"127.0.0.1:1"}, []Option{WithMaxIdleConns(0)}},
		{"max backoff below initial", []string{"127.0.0.1:1"}, []Option{WithRetryBackoff(time.Second, time.Millisecond)}},
		{"zero batch concurrency", []string{"127.0.0.1:1"}, []Option{WithBatchConcurrency(0)}},
		{"nil logger", []string{"127.0.0.1:1"}, []Option{WithLogger(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.servers, tt.opts...)
			if !errors.Is(err, ErrInvalidOption) {
				if p != nil {
					p.Close()
				}
				t.Fatalf("New = %v, want ErrInvalidOption", err)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want outcome
	}{
		{"stored", nil, outcomeStored},
		{"not stored", memcache.ErrNotStored, outcomeFull},
		{"connect timeout", &memcache.ConnectTimeoutError{}, outcomeNotSent},
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, outcomeNotSent},
		{"broken pipe on write", &net.OpError{Op: "write", Err: syscall.EPIPE}, outcomeNotSent},
		{"stale pooled connection", &staleConnError{err: io.EOF}, outcomeStale},
		{"server spoke first", &staleConnError{err: errUnsolicitedData}, outcomeNotSent},
		{"read timeout", &net.OpError{Op: "read", Err: errors.New("i/o timeout")}, outcomeUnknown},
		{"EOF after write", io.EOF, outcomeUnknown},
		{"server error", fmt.Errorf("memcache: unexpected response line from %q: %q", "set", "SERVER_ERROR disk full\r\n"), outcomeServerError},
		{"too many connections", fmt.Errorf("memcache: unexpected response line from %q: %q", "set", "SERVER_ERROR too many connections\r\n"), outcomeNotSent},
		{"item too large", fmt.Errorf("memcache: unexpected response line from %q: %q", "set", "SERVER_ERROR item larger than max_item_size\r\n"), outcomeTooLarge},
		{"client error", fmt.Errorf("memcache: unexpected response line from %q: %q", "set", "CLIENT_ERROR too large\r\n"), outcomeRejected},
		{"unknown command", fmt.Errorf("memcache: unexpected response line from %q: %q", "set", "ERROR\r\n"), outcomeRejected},
		{"malformed key", memcache.ErrMalformedKey, outcomeRejected},
		{"anything else is unknown", errors.New("weird"), outcomeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Fatalf("classify(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestServerReply(t *testing.T) {
	err := fmt.Errorf("memcache: unexpected response line from %q: %q", "set", "SERVER_ERROR disk full\r\n")
	if got := serverReply(err); got != "SERVER_ERROR disk full" {
		t.Fatalf("serverReply = %q", got)
	}
}
