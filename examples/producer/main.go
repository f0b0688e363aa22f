// Command producer enqueues push messages with kpush's producer package:
// validated before sending, spread over several queued servers, failed
// over when one is down, with typed errors for a full queue.
//
//	go run ./examples/producer -servers 127.0.0.1:22133,127.0.0.1:22134 -queue push
//
// The servers can also come from $KPUSH_SERVERS (comma-separated).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/push"
)

func main() {
	servers := flag.String("servers", envOr("KPUSH_SERVERS", "127.0.0.1:22133"), "comma-separated queued servers")
	queue := flag.String("queue", "push", "queue name")
	count := flag.Int("n", 10, "how many messages to enqueue")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	p, err := producer.New(strings.Split(*servers, ","), producer.WithTimeout(2*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	const token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	badge := 1
	for i := range *count {
		msg := &push.Message{
			ID:     fmt.Sprintf("example-producer-%d", i),
			Tokens: []string{token},
			Topic:  "com.example.app",
			Alert:  &push.Alert{Title: "Hello", Body: fmt.Sprintf("message %d from the producer package", i)},
			Badge:  &badge,
		}
		// RoutingKey keeps one user's messages on one server, in order.
		err := p.Enqueue(ctx, *queue, msg, producer.RoutingKey("user-42"))
		switch {
		case err == nil:
		case errors.Is(err, producer.ErrQueueFull):
			log.Fatalf("back-pressure, the queue is full everywhere: %v", err)
		case errors.Is(err, push.ErrInvalidMessage):
			log.Fatalf("bad message, not sent: %v", err)
		default:
			log.Fatalf("not enqueued: %v", err)
		}
	}

	// A message that can never be delivered is refused before sending.
	bad := &push.Message{Tokens: []string{"not-a-token"}, Topic: "com.example.app", Alert: &push.Alert{Text: "x"}}
	var ve *push.ValidationError
	if err := p.Enqueue(ctx, *queue, bad); errors.As(err, &ve) {
		fmt.Printf("refused before sending: %s: %s\n", ve.Field, ve.Reason)
	}

	// A server nothing was sent to is in rotation but was never reached:
	// say "untried" rather than calling it healthy.
	stats := p.Stats()
	for _, addr := range p.Servers() {
		st := stats[addr]
		state := "up"
		switch {
		case !st.Healthy:
			state = "down (" + st.LastError + ")"
		case st.Stored+st.NotStored+st.Failed+st.Unknown+st.Rejected == 0:
			state = "untried"
		}
		fmt.Printf("%s: stored=%d %s\n", addr, st.Stored, state)
	}
	fmt.Printf("stored %d messages on queue %s\n", *count, *queue)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
