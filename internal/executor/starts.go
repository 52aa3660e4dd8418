package executor

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// startHold bounds how long one engine counts as starting without a word: an engine that
// never writes (or writes only at the end) must not keep the others from starting.
const startHold = 2 * time.Second

// startGate tracks the engines starting now and, with engine.max_starting, bounds them. A
// start — the task directory, control groups and proxy listener, the sandbox's namespaces,
// its init and the engine's own runtime coming up until its first line — is the most CPU a task takes in one go (docs/performance.md, "Spawn cost");
// when a burst of swarms starts them all together they saturate the cores for seconds and
// every running task's events wait for a CPU. Queued here, the starts run a few at a time
// and the streams already flowing keep their latency; a task waits in this queue between
// task_created and its engine's start, cancellable like the executor queue before it.
type startGate struct {
	slots             chan struct{} // nil: no limit
	hold              time.Duration
	starting, waiting atomic.Int64
}

// newStartGate bounds starts to n at once; n = 0 only counts them.
func newStartGate(n int, hold time.Duration) *startGate {
	g := &startGate{hold: hold}
	if n > 0 {
		g.slots = make(chan struct{}, n)
	}
	return g
}

// acquire waits for a start slot. The returned release ends the start; it is idempotent and
// safe from any goroutine, and runs by itself after the gate's hold.
func (g *startGate) acquire(ctx context.Context) (release func(), err error) {
	if g.slots != nil {
		g.waiting.Add(1)
		select {
		case g.slots <- struct{}{}:
			g.waiting.Add(-1)
		case <-ctx.Done():
			g.waiting.Add(-1)
			return nil, ctx.Err()
		}
	}
	g.starting.Add(1)
	var once sync.Once
	free := func() {
		once.Do(func() {
			g.starting.Add(-1)
			if g.slots != nil {
				<-g.slots
			}
		})
	}
	timer := time.AfterFunc(g.hold, free)
	release = func() {
		timer.Stop()
		free()
	}
	return release, nil
}

// counts reports the engines starting now and the tasks waiting for a slot.
func (g *startGate) counts() (starting, waiting int) {
	return int(g.starting.Load()), int(g.waiting.Load())
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
