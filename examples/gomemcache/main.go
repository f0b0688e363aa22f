// Command gomemcache enqueues one push message on a queued server with
// nothing but a stock memcache client: a queued `set` is an enqueue. The
// message is the JSON documented in docs/message.md.
//
//	go run ./examples/gomemcache -servers 127.0.0.1:22133 -queue push
//
// The servers can also come from $KPUSH_SERVERS (comma-separated). With
// several, gomemcache picks one by hashing the key, the queue name: use
// kpush's producer package to spread one queue over many servers.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

func main() {
	servers := flag.String("servers", envOr("KPUSH_SERVERS", envOr("KPUSH_SERVER", "127.0.0.1:22133")), "queued servers, host:port, comma-separated")
	flag.Var(stringAlias{servers}, "server", "old spelling of -servers")
	queue := flag.String("queue", "push", "queue name")
	flag.Parse()

	msg, err := json.Marshal(map[string]any{
		"id":     "example-gomemcache-1",
		"tokens": []string{"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"},
		"topic":  "com.example.app",
		"alert":  "Hello from plain gomemcache",
		"badge":  1,
	})
	if err != nil {
		log.Fatal(err)
	}

	mc := memcache.New(strings.Split(*servers, ",")...)
	mc.Timeout = 2 * time.Second
	// The key is the queue name; flags are ignored; Expiration 0 = never.
	// Set returns nil only on STORED, memcache.ErrNotStored when the queue
	// is full.
	if err := mc.Set(&memcache.Item{Key: *queue, Value: msg}); err != nil {
		log.Fatalf("enqueue on %s: %v", *servers, err)
	}
	fmt.Printf("stored 1 message on queue %s at %s\n", *queue, *servers)
}

// stringAlias is a second flag name for a string flag.
type stringAlias struct{ p *string }

func (a stringAlias) String() string {
	if a.p == nil {
		return ""
	}
	return *a.p
}

func (a stringAlias) Set(v string) error { *a.p = v; return nil }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
