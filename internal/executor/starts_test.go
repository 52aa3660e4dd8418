package executor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flowgate/flowgate/internal/executor/sandbox"
)

func TestStartGate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newStartGate(1, time.Second)
		first, err := g.acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		// Full: a second start waits until the first speaks (release), not before.
		got := make(chan time.Time, 1)
		go func() {
			rel, err := g.acquire(t.Context())
			if err != nil {
				t.Error(err)
				return
			}
			got <- time.Now()
			rel()
		}()
		time.Sleep(300 * time.Millisecond)
		synctest.Wait()
		if len(got) != 0 {
			t.Fatal("a second start went ahead while the slot was held")
		}
		if s, w := g.counts(); s != 1 || w != 1 {
			t.Fatalf("counts while one waits: starting %d, waiting %d; want 1, 1", s, w)
		}
		t0 := time.Now()
		first()
		first() // idempotent: a second release must not free someone else's slot
		if at := <-got; !at.Equal(t0) {
			t.Fatalf("second start at +%s after the release", at.Sub(t0))
		}

		// Silent holders give the slot up after the hold.
		_, err = g.acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		rel, err := g.acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(t1); waited != time.Second {
			t.Fatalf("the hold freed the slot after %s, want 1s", waited)
		}
		rel()

		// A cancelled wait gives up.
		held, _ := g.acquire(t.Context())
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if _, err := g.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("cancelled wait: %v", err)
		}
		held()
	})
}

// Without engine.max_starting the gate only counts: nobody waits, and the count follows the
// same ends (release or hold).
func TestStartGateUnlimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newStartGate(0, time.Second)
		a, err := g.acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.acquire(t.Context()); err != nil {
			t.Fatal(err)
		}
		if s, w := g.counts(); s != 2 || w != 0 {
			t.Fatalf("counts: starting %d, waiting %d; want 2, 0", s, w)
		}
		a()
		a()
		if s, _ := g.counts(); s != 1 {
			t.Fatalf("starting %d after one release; want 1", s)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if s, _ := g.counts(); s != 0 {
			t.Fatalf("starting %d after the hold; want 0", s)
		}
	})
}

// TestMaxStarting: with engine.max_starting 1, a second engine is not started until the first
// has written its first line (real sandboxed processes).
func TestMaxStarting(t *testing.T) {
	mark := newMarker()
	// "slow" takes a second to speak; "quick" speaks at once.
	ex := newExecutor(t, sandbox.PIDNS, shProfile(t, `case "$1" in slow) sleep 1;; esac; echo "$1 speaks"; exit 0; : `+mark),
		func(o *Options) { o.MaxStarting = 1 })
	var mu sync.Mutex
	var order []string
	rec := func(stream, text string) {
		mu.Lock()
		order = append(order, text)
		mu.Unlock()
	}
	slowDone := make(chan error, 1)
	go func() {
		_, err := ex.Run(t.Context(), spec("slow", "slow"), &collector{onLine: rec})
		slowDone <- err
	}()
	// Wait until the slow engine runs (it holds the slot), then start the quick one.
	for deadline := time.Now().Add(10 * time.Second); len(survivors(mark)) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow engine never started")
		}
	}
	if _, err := ex.Run(t.Context(), spec("quick", "quick"), &collector{onLine: rec}); err != nil {
		t.Fatal(err)
	}
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
	if len(order) != 2 || order[0] != "slow speaks" {
		t.Fatalf("lines in order %q: the quick engine started before the slow one had spoken", order)
	}

	// A run cancelled while it waits for a slot starts nothing.
	held, err := ex.starts.acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	c := &collector{}
	if _, err := ex.Run(ctx, spec("queued", "quick"), c); !errors.Is(err, ErrStart) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled while queued: %v", err)
	}
	if len(c.stdout()) != 0 {
		t.Fatalf("a cancelled queued run produced output %q", c.stdout())
	}
}
