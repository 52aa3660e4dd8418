package main

import (
	"math"
	"math/bits"
	"sync"
	"time"
)

// hist is a log-linear histogram of non-negative durations in nanoseconds, in the manner
// of HdrHistogram: exact below 128 ns, then 64 buckets per power of two, so a percentile
// is within 1/64 (1.6 %) of the true sample whatever the count, in a fixed 30 KiB.
// Count, min, max and mean are exact. It is safe for concurrent use.
type hist struct {
	mu     sync.Mutex
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

const (
	histSub     = 128 // exact values below this; 64 sub-buckets per octave above
	histHalf    = histSub / 2
	histBuckets = histSub + 57*histHalf
)

func histIndex(v int64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - 7 // v>>shift is in [64, 128)
	return histSub + (shift-1)*histHalf + int(v>>shift) - histHalf
}

// histValue is the midpoint of bucket i.
func histValue(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	shift := (i-histSub)/histHalf + 1
	mant := int64((i-histSub)%histHalf + histHalf)
	lo := mant << shift
	return lo + (int64(1)<<shift)/2
}

func (h *hist) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.mu.Lock()
	h.counts[histIndex(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
	h.mu.Unlock()
}

// quantile returns the value at q (0..1), clamped to the exact min and max.
func (h *hist) quantileLocked(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(max(histValue(i), h.min), h.max)
		}
	}
	return h.max
}

// latency is a histogram summary in milliseconds, as it appears in the JSON output.
type latency struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

func ms(ns int64) float64 { return math.Round(float64(ns)/1e3) / 1e3 }

func (h *hist) summary() latency {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return latency{}
	}
	return latency{
		Count: h.n,
		Min:   ms(h.min),
		Mean:  ms(int64(h.sum / float64(h.n))),
		P50:   ms(h.quantileLocked(0.50)),
		P90:   ms(h.quantileLocked(0.90)),
		P99:   ms(h.quantileLocked(0.99)),
		P999:  ms(h.quantileLocked(0.999)),
		Max:   ms(h.max),
	}
}
