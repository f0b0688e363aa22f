package queued

import (
	"errors"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
)

// A stock memcache client (gomemcache, as the producer uses) works
// unchanged: set, get (it sends gets), reliable reads through key options,
// delete.
func TestGomemcacheClient(t *testing.T) {
	_, addr := startServer(t, nil)
	mc := memcache.New(addr)
	for _, v := range []string{"one", "two", "three"} {
		if err := mc.Set(&memcache.Item{Key: "stock", Value: []byte(v)}); err != nil {
			t.Fatalf("Set: %v", err)
		}
	}
	it, err := mc.Get("stock")
	if err != nil || string(it.Value) != "one" {
		t.Fatalf("Get: %v %v", it, err)
	}
	it, err = mc.Get("stock/open")
	if err != nil || string(it.Value) != "two" {
		t.Fatalf("Get open: %v %v", it, err)
	}
	// The open read belongs to the pooled connection that made it; abort it
	// there (gomemcache reuses one idle connection).
	if _, err := mc.Get("stock/abort"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("abort: %v, want a miss (END)", err)
	}
	it, err = mc.Get("stock/close/open")
	if err != nil || string(it.Value) != "two" {
		t.Fatalf("Get close/open after abort: %v %v", it, err)
	}
	if _, err := mc.Get("stock/close"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("close: %v", err)
	}
	if err := mc.Delete("stock"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := mc.Get("stock"); !errors.Is(err, memcache.ErrCacheMiss) {
		t.Fatalf("Get after delete: %v, want ErrCacheMiss", err)
	}
}
