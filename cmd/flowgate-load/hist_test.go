package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHistAccuracy: every reported percentile is within the histogram's bucket precision
// (1/64) of the exact percentile of the recorded samples; count, min, max and mean are exact.
func TestHistAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		gen  func() int64
	}{
		{"log-uniform 1ns..100s", func() int64 { return int64(math.Exp(rng.Float64() * math.Log(100e9))) }},
		{"tight around 2ms", func() int64 { return 2_000_000 + rng.Int64N(50_000) }},
		{"small exact", func() int64 { return rng.Int64N(128) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h hist
			vals := make([]int64, 20_000)
			var sum float64
			for i := range vals {
				vals[i] = tc.gen()
				sum += float64(vals[i])
				h.record(time.Duration(vals[i]))
			}
			slices.Sort(vals)
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.n != uint64(len(vals)) || h.min != vals[0] || h.max != vals[len(vals)-1] || math.Abs(h.sum-sum) > 1e-6*sum {
				t.Fatalf("n %d min %d max %d sum %g; want %d %d %d %g", h.n, h.min, h.max, h.sum, len(vals), vals[0], vals[len(vals)-1], sum)
			}
			for _, q := range []float64{0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1} {
				exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
				got := h.quantileLocked(q)
				if d := math.Abs(float64(got - exact)); d > float64(exact)/64+1 {
					t.Errorf("q%g = %d, exact %d (off by %.2f%%)", q, got, exact, 100*d/float64(exact))
				}
			}
		})
	}
}

func TestHistIndexMonotonic(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		i := histIndex(v)
		if i < prev || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d after %d (buckets %d)", v, i, prev, histBuckets)
		}
		if lo := histValue(i); v >= histSub && (float64(lo)-float64(v)) > float64(v)/64 {
			t.Fatalf("bucket value %d too far from %d", lo, v)
		}
		prev = i
	}
}
