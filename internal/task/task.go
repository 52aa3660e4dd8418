package task

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/protocol"
)

// Causes of a task's context cancellation; finish maps them to a status.
var (
	errCancelled = errors.New("cancelled")
	errTimeout   = errors.New("timeout")
	errShutdown  = errors.New("server shutting down")
	errDetached  = errors.New("owner disconnected")
	// errSuspended: the tenant was suspended (tenants.suspend_cancels_tasks); task_complete
	// says so in its error.
	errSuspended    = errors.New("tenant_suspended")
	errRevoked      = errors.New("token_revoked")
	errOutputLimit  = errors.New("output limit exceeded")
	errLogLimit     = errors.New("event log limit exceeded")
	errOwnerAbandon = errors.New("owner disconnected and tasks.on_disconnect is cancel")
)

// errNotStored: the task's row could not be written, so its engine never starts.
var errNotStored = errors.New("task not stored")

// entry is one event of a task's log: the frame every subscriber receives and the
// cumulative byte count through it (for the slow-consumer byte bound).
type entry struct {
	frame []byte
	end   int64
}

// Task is one swarm run. Identity fields never change after creation; the rest is guarded
// by mu, except the head counters that subscribers poll without locking.
type Task struct {
	ID     string
	Tenant string
	Owner  string
	// JTI is the id of the token that started the task ("" when it had none): revoking
	// that token can cancel the task (auth.revoke_cancels_tasks).
	JTI       string
	Objective string
	Request   engine.Request
	CreatedAt time.Time

	m      *Manager
	remote bool   // a mirror of a task running on another node, fed from the cluster
	node   string // the node running the task
	// base is the seq before log[0]. A local task starts at 0 and moves base up as its
	// stored events leave memory (trim): those are read back from the event log. A mirror
	// may start later when the cluster stream was trimmed; its events before base are gone.
	base int64
	// baseEnd is the cumulative frame bytes through seq base.
	baseEnd        int64
	clusterRelease func()
	follow         context.CancelFunc // stops a mirror's follower
	cancel         context.CancelCauseFunc
	stop           <-chan struct{} // the task context's Done: ends backpressure waits
	done           chan struct{}   // closed once the task is terminal and task_complete is logged

	headSeq   atomic.Int64
	headBytes atomic.Int64
	// stored is base for a local task (0 for a mirror): a subscriber whose cursor is below
	// it reads from the event log (Subscription.Stored) without taking mu.
	stored    atomic.Int64
	persisted atomic.Int64 // the seq the event log holds through; set by the persister only
	trimDue   atomic.Bool  // a subscriber held trim back: its next Advance trims again
	trimHeld  atomic.Int64 // the cursor that held it: only a subscriber there tries again
	ended     atomic.Int64 // unix ns when the task ended; read by eviction without mu
	durable   atomic.Bool  // every event, task_complete included, is in the event log
	budget    Budget       // the tenant's daily cap when the task was created (zero: none)

	mu        sync.RWMutex
	status    string
	startedAt time.Time
	endedAt   time.Time
	exitCode  int
	result    string
	isError   bool
	hasResult bool
	errMsg    string
	eng       engineState
	retained  int64 // frame bytes kept after the end (Manager.retainedBytes); guarded by Manager.mu
	counted   spend // what this task's live usage adds to its tenant's spend (spendBook)
	log       []entry
	block     []byte          // frame memory being filled (see build)
	subs      []*Subscription // copy-on-write: readers take the slice under mu and iterate freely
	ownerSubs int
	detach    *time.Timer
	lastOwner time.Time // last time an owner session was subscribed
}

// Snapshot is a consistent view of a task's state.
type Snapshot struct {
	ID        string
	Tenant    string
	Owner     string
	Objective string
	Status    string
	CreatedAt time.Time
	StartedAt time.Time
	EndedAt   time.Time
	ExitCode  int
	LastSeq   int64
	Error     string
	Usage     *protocol.Usage
}

// Snapshot returns the task's current state.
func (t *Task) Snapshot() Snapshot {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return Snapshot{
		ID: t.ID, Tenant: t.Tenant, Owner: t.Owner, Objective: t.Objective, Status: t.status,
		CreatedAt: t.CreatedAt, StartedAt: t.startedAt, EndedAt: t.endedAt, ExitCode: t.exitCode,
		LastSeq: t.lastSeqLocked(), Error: t.errMsg, Usage: t.eng.snapshot(),
	}
}

func (t *Task) lastSeqLocked() int64 { return t.base + int64(len(t.log)) }

// Manager is the manager that owns t.
func (t *Task) Manager() *Manager { return t.m }

// Done is closed when the task has ended.
func (t *Task) Done() <-chan struct{} { return t.done }

// appendFrame adds one event to the log under the lock, builds its frame with the seq it
// gets, and then wakes subscribers and applies backpressure outside the lock.
func (t *Task) appendFrame(build func(dst []byte, seq int64, now []byte) ([]byte, string), sizeHint int) {
	t.appendObserved(build, sizeHint, nil)
}

// appendObserved is appendFrame with a look at the engine's line: observe runs under the
// lock right after the frame is logged, with the event's type, and returns the events derived
// from it, logged right behind it (one lock, consecutive seqs).
func (t *Task) appendObserved(build func(dst []byte, seq int64, now []byte) ([]byte, string), sizeHint int, observe func(typ string) []derived) {
	now := t.m.clock.format(t.m.now())
	t.mu.Lock()
	if protocol.Terminal(t.status) {
		t.mu.Unlock()
		return // late output after the end (cannot happen with a reaped child, but be safe)
	}
	seq := t.lastSeqLocked() + 1
	frame, typ := t.build(build, seq, now, sizeHint+128)
	end := t.headBytes.Load() + int64(len(frame))
	if seq > int64(t.m.opts.MaxLogEvents) || end > t.m.opts.MaxLogBytes {
		t.mu.Unlock()
		t.cancel(errLogLimit)
		return
	}
	t.log = append(t.log, entry{frame: frame, end: end})
	if typ == "result" {
		t.captureResult(frame)
	}
	if observe != nil {
		for _, d := range observe(typ) {
			seq++
			f, _ := t.build(func(dst []byte, seq int64, now []byte) ([]byte, string) {
				return derivedFrame(dst, d, t.ID, seq, now), d.typ
			}, seq, now, len(d.json)+160)
			if seq > int64(t.m.opts.MaxLogEvents) || end+int64(len(f)) > t.m.opts.MaxLogBytes {
				break // the engine's own events hit the bound next and end the task
			}
			end += int64(len(f))
			t.log = append(t.log, entry{frame: f, end: end})
			t.m.metrics.event(len(f))
		}
		seq = t.lastSeqLocked()
	}
	subs := t.subs
	t.headBytes.Store(end)
	t.headSeq.Store(seq)
	t.mu.Unlock()

	t.m.metrics.event(len(frame))
	for _, s := range subs {
		s.sub.Notify()
	}
	for _, s := range subs {
		t.backpressure(s)
	}
}

// build makes a frame inside the task's current block of frame memory: frames live as
// long as the task's log, so carving them from 64 KiB blocks saves an allocation per event
// and gives the collector a few large pointer-free objects instead of many small ones.
// Called with mu held.
func (t *Task) build(f func(dst []byte, seq int64, now []byte) ([]byte, string), seq int64, now []byte, need int) ([]byte, string) {
	if cap(t.block)-len(t.block) < need {
		t.block = make([]byte, 0, max(frameBlock, need))
	}
	dst := t.block[len(t.block):len(t.block):cap(t.block)]
	frame, typ := f(dst, seq, now)
	if len(frame) > 0 && &frame[0] == &dst[:1][0] { // built in place: claim the bytes
		t.block = t.block[:len(t.block)+len(frame)]
		frame = frame[:len(frame):len(frame)]
	}
	return frame, typ
}

// frameBlock is the size of the blocks frames are carved from.
const frameBlock = 64 << 10

// compactLocked moves the frames of the last, partly filled block into memory of their exact
// size once the task has ended: a finished task is retained (tasks.retention, up to
// tasks.max_retained_tasks) and would otherwise pin up to 64 KiB for a few frames — 640 MiB
// of heap for 10,000 short tasks. The log gets a new entry array: subscribers read entries
// of the old one without the lock (appends never change an entry), and frames are immutable,
// so a reader still holding old slices keeps reading them safely. Called with mu held, after
// the last frame.
func (t *Task) compactLocked() {
	used := len(t.block)
	if used == 0 || cap(t.block)-used < frameBlock/4 {
		t.block = nil // empty, or full enough that a copy would save little
		return
	}
	// The frames carved from this block are contiguous and in order near the log's end (the
	// final task_complete is marshalled on its own): find them walking back from the end.
	in := func(f []byte, off int) bool { return len(f) > 0 && len(f) <= off && &f[0] == &t.block[off-len(f)] }
	last := len(t.log) - 1
	for last >= 0 && !in(t.log[last].frame, used) {
		last--
	}
	first, off := last+1, used
	for i := last; i >= 0 && in(t.log[i].frame, off); i-- {
		first, off = i, off-len(t.log[i].frame)
	}
	if first > last {
		t.block = nil
		return
	}
	buf := make([]byte, used-off)
	copy(buf, t.block[off:used])
	log := slices.Clone(t.log)
	pos := 0
	for i := first; i <= last; i++ {
		n := len(log[i].frame)
		log[i].frame = buf[pos : pos+n : pos+n]
		pos += n
	}
	t.log, t.block = log, nil
}

// logWindow is how many of its newest events a local task keeps in memory once they are
// in the event log: a client resuming near the head (the common reconnect) is served from
// memory, while a long run's older frames leave it and their memory is reused instead of
// growing the heap into fresh pages (docs/performance.md, "A window on a running task's log").
const logWindow = 1024

// trim drops from memory the events the event log holds (persisted) that every subscriber
// has passed, keeping the newest logWindow. It runs only when that frees at least logWindow
// events and half the log, so the copy of what stays is paid for by what goes. The kept
// entries get a new array: readers hold the old one without the lock and read it safely.
// The persister calls it after each write (it alone sets persisted); when a subscriber was
// behind, that subscriber's next Advance calls it again (a task that goes quiet still lets
// go), and only that subscriber's: a thousand others moving on cost an atomic load each.
func (t *Task) trim() {
	if t.remote {
		return
	}
	t.mu.Lock()
	ceiling := min(t.persisted.Load(), t.lastSeqLocked()-logWindow)
	low := ceiling
	for _, s := range t.subs {
		low = min(low, s.cursor.Load())
	}
	if worth := func(upTo int64) bool {
		n := upTo - t.base
		return n >= logWindow && n >= int64(len(t.log))/2
	}; !worth(low) {
		if worth(ceiling) {
			t.trimHeld.Store(low)
			t.trimDue.Store(true)
		}
		t.mu.Unlock()
		return
	}
	n := low - t.base
	kept := make([]entry, int64(len(t.log))-n, int64(len(t.log))-n+logWindow)
	copy(kept, t.log[n:])
	t.baseEnd = t.log[n-1].end
	t.base += n
	t.log = kept
	t.stored.Store(t.base)
	held := t.heldLocked()
	t.mu.Unlock()

	m := t.m
	m.mu.Lock()
	if t.retained > 0 { // finished and counted: the retained bound sees what it holds now
		m.retainedBytes += held - t.retained
		t.retained = held
	}
	m.mu.Unlock()
}

// heldLocked is the memory the task's log pins: its frames and their index.
func (t *Task) heldLocked() int64 {
	return t.headBytes.Load() - t.baseEnd + int64(cap(t.log))*int64(unsafe.Sizeof(entry{}))
}

// captureResult keeps the engine's final result line for task_complete: is_error decides
// success even when the exit code is 0. Called with mu held.
func (t *Task) captureResult(frame []byte) {
	var r resultLine
	if json.Unmarshal(frame, &r) != nil {
		return
	}
	t.hasResult = true
	t.isError = r.IsError != nil && *r.IsError
	t.eng.observeResult(&r)
	var s string
	if json.Unmarshal(r.Result, &s) != nil {
		s = string(r.Result)
	}
	if max := t.m.opts.MaxResultBytes; len(s) > max {
		s = truncateUTF8(s, max)
	}
	t.result = s
}

// backpressure holds the engine's output (and so, through the pipe, the engine) while a
// live subscriber is more than the send bound behind, for at most the write timeout; a
// subscriber still behind after that is a slow consumer and is dropped. Replays (a
// subscriber that has not yet caught up once) are exempt: they read from the log at their
// own pace.
func (t *Task) backpressure(s *Subscription) {
	if s.exempt || !s.live.Load() {
		return
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for s.behind(t.headSeq.Load(), t.headBytes.Load()) {
		if timer == nil {
			timer = time.NewTimer(t.m.opts.WriteTimeout)
		}
		select {
		case <-s.progress:
		case <-s.gone:
			return
		case <-t.stop:
			return
		case <-timer.C:
			t.m.metrics.slowConsumer()
			s.sub.SlowConsumer()
			t.m.unsubscribe(s)
			return
		}
	}
}

func truncateUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut]
}
