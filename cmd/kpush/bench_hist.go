package main

import (
	"math/bits"
	"time"
)

// latencyHist is a log-linear histogram of durations in nanoseconds, in the
// manner of HdrHistogram: every power of two is split into 2^histSubBits
// equal buckets, so any recorded value is known to within 1/64 (1.6%)
// across the whole int64 range, in a fixed 30 KiB with no allocation per
// record. Each bench connection owns one and they are merged at the end, so
// recording takes no lock.
type latencyHist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    uint64
	max    uint64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	// Values below 2*histSub map to themselves (two groups); each further
	// shift adds a group of histSub buckets, up to a shift of
	// 64-histSubBits-1 for the largest uint64.
	histBuckets = (64 - histSubBits + 1) * histSub
)

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - (histSubBits + 1)
	mantissa := v >> shift // in [histSub, 2*histSub)
	return (shift+1)*histSub + int(mantissa-histSub)
}

// histValue is a representative value of bucket i: its midpoint.
func histValue(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := i/histSub - 1
	mantissa := uint64(i%histSub + histSub)
	lo := mantissa << shift
	return lo + (uint64(1)<<shift)/2
}

func (h *latencyHist) record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[histIndex(v)]++
	h.n++
	h.sum += v
	h.max = max(h.max, v)
}

func (h *latencyHist) merge(o *latencyHist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q (0..1): the smallest bucket
// value with at least ceil(q*n) recorded values at or below it.
func (h *latencyHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++
	}
	rank = max(rank, 1)
	if rank >= h.n {
		return time.Duration(h.max)
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histValue(i), h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *latencyHist) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}
