package audit_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/audit/audittest"
)

func TestRecorderHooksAndCheckpointLoop(t *testing.T) {
	var (
		mu      sync.Mutex
		sizes   []int
		signed  atomic.Int64
		failed  atomic.Int64
		cpCalls atomic.Int64
	)
	m := audittest.NewMemory()
	r := audittest.NewRecorder(t, m, audit.Options{
		SigningKey:         audittest.NewKey(t),
		CheckpointInterval: 5 * time.Millisecond,
		MaxBatch:           1,
		Hooks: audit.Hooks{
			Batch: func(n int, _ time.Duration, err error) {
				mu.Lock()
				defer mu.Unlock()
				sizes = append(sizes, n)
				if err != nil {
					failed.Add(1)
				}
			},
			Checkpoint: func(n int, err error) {
				cpCalls.Add(1)
				if err == nil {
					signed.Add(int64(n))
				}
			},
		},
	})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if err := r.Record(context.Background(), audittest.Rec("acme", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	for _, n := range sizes {
		if n != 1 {
			t.Errorf("batch of %d with MaxBatch 1", n)
		}
	}
	if len(sizes) != 20 || failed.Load() != 0 {
		t.Errorf("%d batches, %d failed", len(sizes), failed.Load())
	}
	mu.Unlock()
	// The loop signs the head eventually; poll rather than guess a duration.
	deadline := time.Now().Add(20 * time.Second)
	for {
		rep := audittest.MustVerify(t, r.Reader)
		if rep.Chains[0].LastCheckpointSeq == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of seq 20 after 20s: %+v", rep.Chains[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	if signed.Load() < 1 || cpCalls.Load() < 1 || r.Stats().Checkpoints < 1 {
		t.Fatalf("hook saw %d signed in %d runs; stats %+v", signed.Load(), cpCalls.Load(), r.Stats())
	}
}

func TestRecordCanceledContext(t *testing.T) {
	r := audittest.NewRecorder(t, audittest.NewMemory(), audit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Record(ctx, audittest.Rec("acme", 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled ctx: %v", err)
	}
}

func TestRecorderWithoutKey(t *testing.T) {
	m := audittest.NewMemory()
	r := audittest.NewRecorder(t, m, audit.Options{})
	if err := r.Record(context.Background(), audittest.Rec("acme", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Checkpoint(context.Background()); !errors.Is(err, audit.ErrNoSigningKey) {
		t.Fatalf("checkpoint: %v", err)
	}
	if _, err := r.Prune(context.Background(), time.Now()); !errors.Is(err, audit.ErrNoSigningKey) {
		t.Fatalf("prune: %v", err)
	}
	// Unsigned chains still verify link by link.
	rep := audittest.MustVerify(t, r.Reader)
	if rep.Chains[0].LastCheckpointSeq != 0 || rep.Chains[0].LastSeq != 1 {
		t.Fatalf("%+v", rep.Chains[0])
	}
}

func TestNewRecorderValidates(t *testing.T) {
	if _, err := audit.NewRecorder(audit.Options{}); err == nil {
		t.Fatal("no storage accepted")
	}
	if _, err := audit.NewRecorder(audit.Options{Storage: audittest.NewMemory(), SigningKey: []byte("short")}); err == nil {
		t.Fatal("malformed key accepted")
	}
	if _, err := audit.NewReader(audit.ReaderOptions{Storage: audittest.NewMemory(), PublicKeys: []ed25519.PublicKey{{1}}}); err == nil {
		t.Fatal("malformed public key accepted")
	}
}

func TestAutomaticRetention(t *testing.T) {
	clock := audittest.NewClock(audittest.T0())
	r := audittest.NewRecorder(t, audittest.NewMemory(), audit.Options{
		SigningKey: audittest.NewKey(t), Clock: clock.Now,
		Retention: 24 * time.Hour, PruneInterval: 5 * time.Millisecond, CheckpointInterval: -1,
	})
	for i := range 5 {
		if err := r.Record(context.Background(), audittest.Rec("acme", i)); err != nil {
			t.Fatal(err)
		}
	}
	clock.Set(audittest.T0().Add(48 * time.Hour))
	deadline := time.Now().Add(20 * time.Second)
	for {
		recs, _, err := r.Query(context.Background(), audit.Filter{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 && recs[0].Action == audit.ActionAuditRetention {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not pruned after 20s: %d records", len(recs))
		}
		time.Sleep(5 * time.Millisecond)
	}
	rep := audittest.MustVerify(t, r.Reader)
	if rep.Chains[0].StartSeq != 5 || rep.Chains[0].LastSeq != 6 {
		t.Fatalf("%+v", rep.Chains[0])
	}
}
