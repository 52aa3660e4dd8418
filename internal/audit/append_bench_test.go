package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/audit/audittest"
)

// BenchmarkComputeHash is the CPU every append pays before storage: the record's canonical
// JSON and its chained SHA-256.
func BenchmarkComputeHash(b *testing.B) {
	r := audittest.Rec("acme", 7)
	r.Seq, r.ID, r.Time = 42, "0195f1e2-7a3b-7c4d-8e5f-60718293a4b5", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r.PrevHash = "9440481cfd1a9329287cbf8bdd4d4eef2a96ac3e8f9276a8af724d244172239d"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := audit.ComputeHash(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordSerial is one append as a single handshake sees it (the parallel
// BenchmarkRecordMemory measures throughput with batching): latency, not records/s.
func BenchmarkRecordSerial(b *testing.B) {
	r := audittest.NewRecorder(b, audittest.NewMemory(), audit.Options{SigningKey: audittest.NewKey(b)})
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		if err := r.Record(ctx, audittest.Rec("acme", i)); err != nil {
			b.Fatal(err)
		}
	}
}
