package simkit

import (
	"sync"
	"time"
)

// RateLimiter is a token bucket per device token: Rate per second, a
// burst of one second's worth (at least 1). A zero rate allows all.
type RateLimiter struct {
	rate float64
	mu   sync.Mutex
	b    map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func NewRateLimiter(rate float64) *RateLimiter {
	return &RateLimiter{rate: rate, b: map[string]*bucket{}}
}

// Allow takes one from token's bucket and reports whether there was one.
func (l *RateLimiter) Allow(token string, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	burst := max(l.rate, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.b[token]
	if !ok {
		b = &bucket{tokens: burst, last: now}
		l.b[token] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
