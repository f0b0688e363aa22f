// Command gomemcache enqueues one push message on a queued server with
// nothing but a stock memcache client: a queued `set` is an enqueue. The
// message is the JSON documented in docs/message.md.
//
//	go run ./examples/gomemcache -server 127.0.0.1:22133 -queue push
//
// The server address can also come from $KPUSH_SERVER.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

func main() {
	server := flag.String("server", envOr("KPUSH_SERVER", "127.0.0.1:22133"), "queued server, host:port")
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

	mc := memcache.New(*server)
	mc.Timeout = 2 * time.Second
	// The key is the queue name; flags are ignored; Expiration 0 = never.
	// Set returns nil only on STORED, memcache.ErrNotStored when the queue
	// is full.
	if err := mc.Set(&memcache.Item{Key: *queue, Value: msg}); err != nil {
		log.Fatalf("enqueue on %s: %v", *server, err)
	}
	fmt.Printf("stored 1 message on queue %s at %s\n", *queue, *server)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
