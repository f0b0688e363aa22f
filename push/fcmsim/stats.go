package fcmsim

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
	// Accepted counts 200 answers to sends (validate_only excluded).
	Accepted int64 `json:"accepted"`
	// Rejected counts error answers to sends by errorCode, or by status
	// when FCM sends no errorCode (UNAUTHENTICATED, NOT_FOUND, ...).
	Rejected map[string]int64 `json:"rejected"`
	// Tokens counts 200 answers per registration token.
	Tokens map[string]int64 `json:"tokens"`
	// AccessTokensIssued counts access tokens the token endpoint issued;
	// AccessTokensRefused the requests it refused.
	AccessTokensIssued  int64 `json:"access_tokens_issued"`
	AccessTokensRefused int64 `json:"access_tokens_refused"`
	// Validated counts validate_only sends that passed.
	Validated int64 `json:"validated"`
	// Connections counts the TCP connections accepted, to check that a
	// sender keeps to its bound.
	Connections int64 `json:"connections"`
	// Uptime is how long the simulator has run, in seconds.
	Uptime float64 `json:"uptime_seconds"`
}

type counters struct {
	issued, refused, validated, connections atomic.Int64
	start                                   time.Time

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

func (c *counters) reject(key string) {
	c.mu.Lock()
	c.rejected[key]++
	c.mu.Unlock()
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats { return s.stats.snapshot(true) }

func (c *counters) snapshot(withTokens bool) Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Stats{
		Accepted:            c.accepted,
		Rejected:            make(map[string]int64, len(c.rejected)),
		AccessTokensIssued:  c.issued.Load(),
		AccessTokensRefused: c.refused.Load(),
		Validated:           c.validated.Load(),
		Connections:         c.connections.Load(),
		Uptime:              time.Since(c.start).Seconds(),
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
	b, err := json.Marshal(s.stats.snapshot(withTokens))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// WriteSummary prints a human summary of the stats.
func (st Stats) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "fcm-sim: accepted %d messages for %d registration tokens in %.1fs; issued %d access tokens\n",
		st.Accepted, len(st.Tokens), st.Uptime, st.AccessTokensIssued)
	codes := make([]string, 0, len(st.Rejected))
	for c := range st.Rejected {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		fmt.Fprintf(w, "fcm-sim: rejected %d %s\n", st.Rejected[c], c)
	}
}
