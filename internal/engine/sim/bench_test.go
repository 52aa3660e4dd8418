package sim

import (
	"io"
	"testing"
	"time"
)

// BenchmarkUnpaced measures the unpaced event rate (the load tool needs > 200k events/s).
func BenchmarkUnpaced(b *testing.B) {
	const events = 200_000
	args := []string{"swarm", "benchmark objective", "--pace", "0", "--events", "200000", "--agents", "5"}
	var total int
	start := time.Now()
	for b.Loop() {
		if err := Main(b.Context(), args, nil, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
		total += events
	}
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
}
