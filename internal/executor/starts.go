package executor

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// startHold bounds how long one engine holds a start slot without a word: an engine that
// never writes (or writes only at the end) must not keep the others from starting.
const startHold = 2 * time.Second

// startGate bounds how many engines are starting at once (engine.max_starting). A start —
// the sandbox's namespaces, its init and the engine's own runtime coming up until its first
// line — is the most CPU a task takes in one go (docs/performance.md, "Spawn cost"); when a
// burst of swarms starts them all together they saturate the cores for seconds and every
// running task's events wait for a CPU. Queued here, the starts run back to back instead
// and the streams already flowing keep their latency; a task waits in this queue between
// task_created and its engine's start, cancellable like the executor queue before it.
type startGate struct {
	slots   chan struct{}
	hold    time.Duration
	waiting atomic.Int64
}

func newStartGate(n int, hold time.Duration) *startGate {
	return &startGate{slots: make(chan struct{}, n), hold: hold}
}

// acquire waits for a start slot. The returned release is idempotent and safe from any
// goroutine; it also runs by itself after the gate's hold.
func (g *startGate) acquire(ctx context.Context) (release func(), err error) {
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var once sync.Once
	free := func() { once.Do(func() { <-g.slots }) }
	timer := time.AfterFunc(g.hold, free)
	release = func() {
		timer.Stop()
		free()
	}
	return release, nil
}

// counts reports the engines starting now and the tasks waiting for a slot.
func (g *startGate) counts() (starting, waiting int) {
	return len(g.slots), int(g.waiting.Load())
}

// startedOn wraps deliver so that the first line (on either stream) ends the start.
func startedOn(release func(), spoke *atomic.Bool, deliver func([]byte, bool)) func([]byte, bool) {
	return func(line []byte, truncated bool) {
		if !spoke.Load() && spoke.CompareAndSwap(false, true) {
			release()
		}
		deliver(line, truncated)
	}
}
