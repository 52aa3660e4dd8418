package task

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowgate/flowgate/internal/task/record"
)

// EventLog keeps every task's events durably (the store, DESIGN §17): the persister writes
// them behind the live stream, and tasks no longer in memory are replayed from it.
type EventLog interface {
	// AppendEvents writes the events in one transaction; an event already stored (same task
	// and seq) is skipped, so a retried batch is harmless.
	AppendEvents(ctx context.Context, events []record.Event) error
	// TaskEvents returns up to limit events of a task with seq > afterSeq, in seq order.
	TaskEvents(ctx context.Context, taskID string, afterSeq int64, limit int) ([]record.Event, error)
	// LastEventSeq is the newest stored seq of a task (0 when none).
	LastEventSeq(ctx context.Context, taskID string) (int64, error)
}

// ErrEventLogBehind is a swarm refused because the event log has fallen too far behind the
// live streams (a slow or failing store): what is already running keeps streaming and keeps
// every event in memory until it is written; new work waits until the store catches up.
var ErrEventLogBehind = errors.New("task event log is behind")

// Batching of the write-behind log: a batch is written when it holds persistBatchEvents
// events or its first event is persistWindow old, whichever comes first; a crash loses at
// most that batch.
const (
	persistBatchEvents = 1000
	persistBatchBytes  = 8 << 20
	persistWindow      = 50 * time.Millisecond
	persistBackoffMax  = 5 * time.Second
)

// persister copies the events of this node's tasks into the event log. Like the cluster
// publisher it reads each task's log through an exempt subscription, so a slow store never
// holds an engine or a client back: the task's own in-memory log is the queue. A finished
// task stays in memory until its last event is written (Task.durable); the backlog is
// bounded by refusing new swarms past backlogMax (ErrEventLogBehind).
type persister struct {
	m          *Manager
	log        EventLog
	backlogMax int64

	wake chan struct{} // something is dirty
	full chan struct{} // a whole batch is waiting: do not wait out the window
	quit chan struct{}
	done chan struct{}

	pending atomic.Int64 // notifications since the last batch: a cheap estimate of events waiting

	mu    sync.Mutex
	all   map[*persistSub]struct{}
	dirty map[*persistSub]struct{}

	// Owned by run.
	frames [][]byte
	events []record.Event
	failed bool // the last write failed: the next success is logged
}

type persistSub struct {
	p      *persister
	t      *Task
	sub    *Subscription // set by track under p.mu once Watch returns
	queued atomic.Bool   // in p.dirty: a notification needs no lock until flush takes it
}

func newPersister(m *Manager, log EventLog, backlogMax int64) *persister {
	p := &persister{m: m, log: log, backlogMax: backlogMax,
		wake: make(chan struct{}, 1), full: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		all: map[*persistSub]struct{}{}, dirty: map[*persistSub]struct{}{}}
	go p.run()
	return p
}

// Notify runs on the engine's output path, once per event: when the task is already
// queued it costs two atomics.
func (s *persistSub) Notify() {
	p := s.p
	if p.pending.Add(1) == persistBatchEvents {
		signal(p.full)
	}
	if s.queued.Swap(true) {
		return
	}
	p.mu.Lock()
	p.dirty[s] = struct{}{}
	p.mu.Unlock()
	signal(p.wake)
}

func (s *persistSub) SlowConsumer() {} // exempt: never slow

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// track starts persisting t's events from the first one.
func (p *persister) track(t *Task) {
	ps := &persistSub{p: p, t: t}
	sub := p.m.Watch(t, ps)
	p.mu.Lock()
	ps.sub = sub
	ps.queued.Store(true)
	p.all[ps] = struct{}{}
	p.dirty[ps] = struct{}{}
	p.mu.Unlock()
	signal(p.wake)
}

// backlog is the bytes logged by tracked tasks and not yet written.
func (p *persister) backlog() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for ps := range p.all {
		if ps.sub != nil {
			n += ps.t.headBytes.Load() - ps.sub.cursorBytes.Load()
		}
	}
	return n
}

// behind reports whether new swarms must wait for the event log.
func (p *persister) behind() bool { return p.backlogMax > 0 && p.backlog() > p.backlogMax }

// close writes what is still waiting, for at most until ctx ends, and stops run.
func (p *persister) close(ctx context.Context) {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.m.log.Error("task events not all written before shutdown", "backlog_bytes", p.backlog())
	}
}

func (p *persister) run() {
	defer close(p.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-p.wake:
		case <-p.quit:
			p.drain()
			return
		}
		if p.pending.Load() < persistBatchEvents {
			timer.Reset(persistWindow)
			select {
			case <-timer.C:
			case <-p.full:
				timer.Stop()
			case <-p.quit:
				timer.Stop()
				p.drain()
				return
			}
		}
		for p.hasDirty() {
			if err := p.flush(); err != nil {
				select {
				case <-p.quit:
					p.drain()
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, persistBackoffMax)
				continue
			}
			backoff = 100 * time.Millisecond
		}
	}
}

// drain writes everything still waiting at shutdown, retrying a failed write a few times.
func (p *persister) drain() {
	for failures := 0; p.hasDirty() && failures < 5; {
		if err := p.flush(); err != nil {
			failures++
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func (p *persister) hasDirty() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.dirty) > 0
}

type taken struct {
	ps        *persistSub
	last, end int64
	from, to  int // its events in p.events
}

// flush writes one batch (at most persistBatchEvents events, taken from the dirty tasks)
// and advances the cursors it covered. On failure nothing advances: the frames stay in the
// tasks' logs and the next attempt writes them again.
func (p *persister) flush() error {
	p.pending.Store(0)
	p.mu.Lock()
	subs := make([]*persistSub, 0, len(p.dirty))
	for ps := range p.dirty {
		ps.queued.Store(false) // events logged from now on queue it again
		// Watch notifies before track has stored the subscription: track marks it again.
		if ps.sub != nil {
			subs = append(subs, ps)
		}
	}
	clear(p.dirty)
	p.mu.Unlock()

	p.events = p.events[:0]
	var took []taken
	size := 0
	for i, ps := range subs {
		room := persistBatchEvents - len(p.events)
		if room <= 0 || size >= persistBatchBytes {
			p.markDirty(subs[i:]...) // next batch
			break
		}
		var last, end int64
		p.frames, last, end = ps.sub.Pending(p.frames[:0], room, persistBatchBytes-size)
		if len(p.frames) == 0 {
			p.finishIfDone(ps)
			continue
		}
		first, from := last-int64(len(p.frames))+1, len(p.events)
		for j, f := range p.frames {
			p.events = append(p.events, record.Event{TaskID: ps.t.ID, Seq: first + int64(j), Frame: f})
			size += len(f)
		}
		took = append(took, taken{ps: ps, last: last, end: end, from: from, to: len(p.events)})
	}
	clear(p.frames)
	if len(p.events) == 0 {
		return nil
	}
	n := len(p.events)
	ctx, cancel := context.WithTimeout(context.Background(), p.m.opts.PersistTimeout)
	err := p.log.AppendEvents(ctx, p.events)
	cancel()
	if errors.Is(err, record.ErrInvalidEvent) {
		err = p.appendEach(took)
	}
	clear(p.events) // drop the frame references until the next batch
	if err != nil {
		for _, w := range took {
			p.markDirty(w.ps)
		}
		if !p.failed {
			p.m.log.Error("task events not written; retrying (the live stream goes on, new swarms are refused past the backlog bound)",
				"events", len(took), "err", err)
		}
		p.failed = true
		p.m.metrics.eventPersistFailed()
		return err
	}
	if p.failed {
		p.m.log.Info("task events written again")
		p.failed = false
	}
	p.m.metrics.eventsPersisted(n)
	for _, w := range took {
		w.ps.sub.Advance(w.last, w.end)
		w.ps.t.persisted.Store(w.last)
		w.ps.t.trim()
		if w.ps.sub.HasPending() {
			p.markDirty(w.ps)
		}
		p.finishIfDone(w.ps)
	}
	return nil
}

// appendEach writes a batch the store refused task by task: a run it will never take (a
// frame past its bound, which only a hostile or misconfigured engine can cause) is dropped
// from the log, logged and counted, rather than stopping every task's persistence behind
// it. A transient error still fails the batch.
func (p *persister) appendEach(took []taken) error {
	for _, w := range took {
		ctx, cancel := context.WithTimeout(context.Background(), p.m.opts.PersistTimeout)
		err := p.log.AppendEvents(ctx, p.events[w.from:w.to])
		cancel()
		switch {
		case errors.Is(err, record.ErrInvalidEvent):
			p.m.log.Error("task events refused by the store; they stay out of the event log",
				"task", w.ps.t.ID, "first_seq", w.last-int64(w.to-w.from)+1, "last_seq", w.last, "err", err)
			p.m.metrics.eventPersistFailed()
		case err != nil:
			return err
		}
	}
	return nil
}

func (p *persister) markDirty(subs ...*persistSub) {
	p.mu.Lock()
	for _, ps := range subs {
		ps.queued.Store(true)
		p.dirty[ps] = struct{}{}
	}
	p.mu.Unlock()
}

// finishIfDone lets go of a task whose last event (task_complete) is written: from now on
// it may leave memory, and be replayed from the log.
func (p *persister) finishIfDone(ps *persistSub) {
	if !ps.sub.Finished() {
		return
	}
	ps.t.durable.Store(true)
	ps.sub.Close()
	ps.t.persisted.Store(ps.t.headSeq.Load())
	ps.t.trim()
	p.mu.Lock()
	delete(p.all, ps)
	delete(p.dirty, ps)
	p.mu.Unlock()
}
