package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kpush/kpush/internal/testproc"
)

// TestDrain: drain makes the server refuse sets, waits while items are
// left (naming them), and exits 0 once a consumer took everything; --undo
// makes it take items again.
func TestDrain(t *testing.T) {
	addr := enqueueStartQueued(t)
	mc := memcache.New(addr)
	mc.Timeout = 5 * time.Second
	for _, q := range []string{"push", "push", "push_failed"} {
		if err := mc.Set(&memcache.Item{Key: q, Value: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}

	// With items left it does not finish: the timeout ends it, status 1,
	// naming what is left.
	stdout, stderr, err := testproc.Run(t, nil, "drain", addr, "--interval", "20ms", "--timeout", "500ms")
	if err == nil || !strings.Contains(stderr, "left: push=2 push_failed=1") {
		t.Fatalf("drain of a server with items: err %v\nstdout %s\nstderr %s", err, stdout, stderr)
	}
	if !strings.Contains(stdout, "status READONLY") {
		t.Errorf("stdout %q does not say the server is READONLY", stdout)
	}
	if err := mc.Set(&memcache.Item{Key: "push", Value: []byte("y")}); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("set on a draining server = %v, want the read-only refusal", err)
	}

	done := make(chan string, 1)
	go func() {
		out, errOut, err := testproc.Run(t, nil, "drain", addr, "--interval", "20ms", "--timeout", "60s")
		if err != nil {
			out += "\nerror: " + err.Error() + "\n" + errOut
		}
		done <- out
	}()
	for range 3 { // a consumer empties it, application records included
		for _, q := range []string{"push", "push_failed"} {
			if _, err := mc.Get(q); err != nil && !errors.Is(err, memcache.ErrCacheMiss) {
				t.Fatal(err)
			}
		}
	}
	select {
	case out := <-done:
		if !strings.Contains(out, "empty: no item waiting, no read open") || strings.Contains(out, "error:") {
			t.Fatalf("drain of an emptied server: %s", out)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("drain did not finish once the server was empty")
	}

	if _, stderr, err := testproc.Run(t, nil, "drain", "--undo", addr); err != nil {
		t.Fatalf("drain --undo: %v\n%s", err, stderr)
	}
	if err := mc.Set(&memcache.Item{Key: "push", Value: []byte("z")}); err != nil {
		t.Fatalf("set after --undo: %v", err)
	}
}

func TestDrainUnreachable(t *testing.T) {
	_, stderr, err := testproc.Run(t, nil, "drain", "127.0.0.1:1")
	if err == nil || !strings.Contains(stderr, "is kpush queued running there?") {
		t.Fatalf("drain of nothing: %v\n%s", err, stderr)
	}
}
