package apnssim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is what the simulator has answered since it started. /sim/stats
// serves it as JSON; readers must ignore fields they do not know.
type Stats struct {
	// Accepted counts 200 responses.
	Accepted int64 `json:"accepted"`
	// Rejected counts error responses (and GOAWAYs) by reason.
	Rejected map[string]int64 `json:"rejected"`
	// Tokens counts 200 responses per device token (lowercase hex).
	Tokens map[string]int64 `json:"tokens"`
	// Connections counts accepted TCP connections; OpenConnections is
	// how many are open now.
	Connections     int64 `json:"connections"`
	OpenConnections int64 `json:"open_connections"`
	// TokenUpdates counts provider-token changes accepted on a connection.
	TokenUpdates int64 `json:"token_updates"`
	// MaxStreams is the most streams one connection had in the handler
	// at once; MaxStreamsBeforeToken the same before the connection's
	// first valid provider token (1 when the one-stream rule holds).
	MaxStreams            int64 `json:"max_streams"`
	MaxStreamsBeforeToken int64 `json:"max_streams_before_token"`
	// Uptime is how long the simulator has run, in seconds.
	Uptime float64 `json:"uptime_seconds"`
}

type counters struct {
	connections           atomic.Int64
	tokenUpdates          atomic.Int64
	maxStreams            maxGauge
	maxStreamsBeforeToken maxGauge
	start                 time.Time

	mu       sync.Mutex
	accepted int64
	rejected map[string]int64
	tokens   map[string]int64
}

func newCounters() *counters {
	return &counters{start: time.Now(), rejected: map[string]int64{}, tokens: map[string]int64{}}
}

func (c *counters) accept(token string) {
	c.mu.Lock()
	c.accepted++
	c.tokens[token]++
	c.mu.Unlock()
}

func (c *counters) reject(reason string) {
	c.mu.Lock()
	c.rejected[reason]++
	c.mu.Unlock()
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats { return s.snapshot(true) }

// snapshot copies the counters, the per-token counts only when withTokens
// (a load test polling the totals must not copy a map of every token).
func (s *Server) snapshot(withTokens bool) Stats {
	s.mu.Lock()
	open := int64(len(s.conns))
	s.mu.Unlock()
	c := s.stats
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Stats{
		Accepted:              c.accepted,
		Rejected:              make(map[string]int64, len(c.rejected)),
		Connections:           c.connections.Load(),
		OpenConnections:       open,
		TokenUpdates:          c.tokenUpdates.Load(),
		MaxStreams:            c.maxStreams.Load(),
		MaxStreamsBeforeToken: c.maxStreamsBeforeToken.Load(),
		Uptime:                time.Since(c.start).Seconds(),
	}
	for k, v := range c.rejected {
		st.Rejected[k] = v
	}
	if withTokens {
		st.Tokens = make(map[string]int64, len(c.tokens))
		for k, v := range c.tokens {
			st.Tokens[k] = v
		}
	}
	return st
}

// serveStats answers GET /sim/stats; ?tokens=0 leaves out the per-token
// counts, which grow with every distinct token a load test sends.
func (s *Server) serveStats(w http.ResponseWriter, withTokens bool) {
	st := s.snapshot(withTokens)
	b, err := json.Marshal(st)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("content-type", "application/json")
	_, _ = w.Write(b)
}

// WriteSummary prints a human summary of the stats: totals and rejections
// by reason (tokens are summarised, not listed).
func (st Stats) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "apns-sim: accepted %d notifications for %d device tokens over %d connections in %.1fs\n",
		st.Accepted, len(st.Tokens), st.Connections, st.Uptime)
	reasons := make([]string, 0, len(st.Rejected))
	for r := range st.Rejected {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "apns-sim: rejected %d %s\n", st.Rejected[r], r)
	}
}

// maxGauge keeps the largest value it was raised to.
type maxGauge struct{ atomic.Int64 }

func (g *maxGauge) raise(v int64) {
	for {
		cur := g.Load()
		if v <= cur || g.CompareAndSwap(cur, v) {
			return
		}
	}
}
