package apnssim

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kpush/kpush/internal/simkit"
)

// ParseFailure parses "REASON=RATE" (rate 0..1, or a percentage "20%"), the
// form of kpush apns-sim --fail.
func ParseFailure(s string) (Failure, error) {
	reason, rateText, ok := strings.Cut(s, "=")
	if !ok || reason == "" {
		return Failure{}, fmt.Errorf("--fail %q: want REASON=RATE, e.g. ServiceUnavailable=0.2", s)
	}
	if !KnownReason(reason) {
		return Failure{}, fmt.Errorf("--fail %q: unknown reason %q (use Apple's reason names, e.g. ServiceUnavailable, TooManyRequests, Shutdown)", s, reason)
	}
	rate, err := simkit.ParseFraction(rateText)
	if err != nil {
		return Failure{}, fmt.Errorf("--fail %q: %v", s, err)
	}
	return Failure{Reason: reason, Rate: rate}, nil
}

// ParseLatency parses "D", "D±J" or "D+-J" (Go durations), the form of
// kpush apns-sim --latency.
func ParseLatency(s string) (base, jitter time.Duration, err error) {
	baseText, jitterText, hasJitter := strings.Cut(s, "±")
	if !hasJitter {
		baseText, jitterText, hasJitter = strings.Cut(s, "+-")
	}
	base, err = time.ParseDuration(baseText)
	if err != nil || base < 0 {
		return 0, 0, fmt.Errorf("--latency %q: want a duration, optionally ±jitter, e.g. 5ms±2ms", s)
	}
	if hasJitter {
		jitter, err = time.ParseDuration(jitterText)
		if err != nil || jitter < 0 {
			return 0, 0, fmt.Errorf("--latency %q: bad jitter, want e.g. 5ms±2ms", s)
		}
	}
	return base, jitter, nil
}

// ParseRate parses "N/s", "N/m" or a bare N (per second), the form of
// kpush apns-sim --rate-limit; it returns events per second.
func ParseRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--rate-limit %q: want N/s, e.g. 5/s", s)
	}
	switch unit {
	case "", "s":
		return n, nil
	case "m", "min":
		return n / 60, nil
	case "h":
		return n / 3600, nil
	default:
		return 0, fmt.Errorf("--rate-limit %q: unit must be s, m or h", s)
	}
}
