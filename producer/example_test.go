package producer_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/kpush/kpush/producer"
	"github.com/kpush/kpush/push"
)

// Enqueue one message on a cluster of three queued servers and act on the
// typed errors. (Compiled, not run: it needs servers; see examples/.)
func Example() {
	p, err := producer.New([]string{"q1:22133", "q2:22133", "q3:22133"}, producer.WithTimeout(time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	msg := &push.Message{
		Tokens: []string{"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"},
		Topic:  "com.example.app",
		Alert:  &push.Alert{Title: "Shipped", Body: "Your order is on its way"},
	}
	err = p.Enqueue(context.Background(), "push", msg, producer.RoutingKey("user-42"))
	switch {
	case err == nil:
		// Stored: a server answered STORED.
	case errors.Is(err, push.ErrInvalidMessage):
		// Never sent: fix the message.
	case errors.Is(err, producer.ErrQueueFull):
		// Back-pressure: nothing stored; slow down and retry later.
	case errors.Is(err, producer.ErrOutcomeUnknown):
		// Maybe stored: retrying is at-least-once.
	default:
		// ErrNoServers, ErrRejected, ...: not stored.
	}
}
