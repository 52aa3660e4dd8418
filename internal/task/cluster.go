package task

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/task/record"
)

// Cluster connects the manager to the other replicas (internal/cluster). Nil means a
// single node: every task is local.
type Cluster interface {
	// ReserveTask takes cluster-wide concurrency slots for a new task. It returns a
	// *QuotaError when a bound is reached; release gives the slots back.
	ReserveTask(ctx context.Context, tenant, user, taskID string, userLimit, tenantLimit int) (release func(), err error)
	// Publish mirrors t's events to the cluster, in seq order, for subscribers elsewhere.
	Publish(t *Task)
	// Follow replays a task's events with seq > afterSeq from the cluster and follows them
	// until the task's final event (task_complete) or ctx ends. sink gets them in order.
	Follow(ctx context.Context, taskID string, afterSeq int64, sink func(seq int64, frame []byte)) error
	// Cancel asks the node running a task to cancel it.
	Cancel(ctx context.Context, node, taskID string) error
	// Hold tells the node running a task that its owner is watching from another node, so
	// the task is not cancelled as detached.
	Hold(ctx context.Context, node, taskID string) error
	// LastSeq is the newest seq published for a task (0 when none).
	LastSeq(ctx context.Context, taskID string) (int64, error)
	// TaskReserved reports whether a task of tenant holds its concurrency slot on some
	// replica: it was created and has not ended, though its row may not be stored yet.
	TaskReserved(ctx context.Context, tenant, taskID string) (bool, error)
}

// ErrClusterUnavailable is a swarm refused because the cluster cannot guarantee its
// limits (Redis is unreachable): fail closed.
var ErrClusterUnavailable = errors.New("cluster coordination is unavailable")

// Watch subscribes a system subscriber (the cluster publisher) from the first event. It is
// exempt from backpressure: a slow Redis never holds the engine back.
func (m *Manager) Watch(t *Task, sub Subscriber) *Subscription {
	s := m.attach(t, &auth.Principal{}, 0, sub)
	s.exempt = true
	return s
}

// lookup finds a task p may see anywhere: in memory, or as a stored record.
func (m *Manager) lookup(ctx context.Context, p *auth.Principal, id string) (*Task, *record.Task, error) {
	if t, ok := m.Get(p, id); ok {
		return t, nil, nil
	}
	rec, err := m.opts.Store.GetTask(ctx, p.Tenant, id)
	if errors.Is(err, record.ErrNotFound) && m.opts.Cluster != nil {
		rec, err = m.awaitRow(ctx, p.Tenant, id)
	}
	if errors.Is(err, record.ErrNotFound) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	if !visible(p, rec.Tenant, rec.Owner) {
		return nil, nil, ErrNotFound
	}
	return nil, &rec, nil
}

// rowPoll is how often lookup looks for the row of a task another replica has just created.
const rowPoll = 10 * time.Millisecond

// awaitRow waits for the row of a task another replica has created and not yet stored: its
// creator replies task_created before the insert (run writes it), and the client may
// subscribe here at once. It waits only while the task holds its reservation, and at most
// the persist timeout, the bound of the creator's insert: an id no replica knows is answered
// at once. A failed insert ends the task, which frees the reservation.
func (m *Manager) awaitRow(ctx context.Context, tenant, id string) (record.Task, error) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.PersistTimeout)
	defer cancel()
	tick := time.NewTicker(rowPoll)
	defer tick.Stop()
	for {
		live, err := m.opts.Cluster.TaskReserved(ctx, tenant, id)
		if err != nil || !live {
			// Unreachable Redis: answer as the store does, as before there was a wait.
			return record.Task{}, record.ErrNotFound
		}
		select {
		case <-ctx.Done():
			return record.Task{}, record.ErrNotFound
		case <-tick.C:
		}
		rec, err := m.opts.Store.GetTask(ctx, tenant, id)
		switch {
		case err != nil && ctx.Err() != nil:
			return record.Task{}, record.ErrNotFound // the wait ran out mid-read
		case !errors.Is(err, record.ErrNotFound):
			return rec, err
		}
	}
}

// mirror returns the in-memory stand-in of a task known only from the store, holding its
// events after afterSeq: fed from the event log, then (in a cluster, while the task runs
// elsewhere) from the task's cluster stream, and ended by its task_complete. Subscribers
// starting at or after an existing mirror's first event share it; one starting earlier gets
// a mirror of its own, so nobody is replayed from 1 or misses events (DESIGN §17).
func (m *Manager) mirror(rec record.Task, afterSeq int64) *Task {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.tasks[rec.ID]
	if ok && (!cur.remote || afterSeq >= cur.base) {
		return cur
	}
	t := &Task{
		ID: rec.ID, Tenant: rec.Tenant, Owner: rec.Owner, Objective: rec.Objective, CreatedAt: rec.CreatedAt,
		m: m, remote: true, node: rec.Node, done: make(chan struct{}), status: rec.Status, exitCode: -1,
		cancel: func(error) {}, base: afterSeq,
	}
	t.headSeq.Store(afterSeq)
	if rec.StartedAt != nil {
		t.startedAt = *rec.StartedAt
	}
	if !ok {
		m.tasks[rec.ID] = t
	}
	if m.opts.Cluster == nil && m.opts.Events == nil {
		t.finalFromRecord(rec)
		return t
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.follow = cancel
	m.followers[t] = cancel
	m.wg.Add(1)
	go m.runMirror(ctx, t, rec)
	return t
}

// tail is the newest seq known for a task that is not in memory: the store's record, its
// event log and (in a cluster) its stream; -1 when a source could not be asked, so that the
// caller does not clamp a resume point it cannot check.
func (m *Manager) tail(ctx context.Context, rec record.Task) int64 {
	tail := rec.LastSeq
	if m.opts.Events != nil {
		seq, err := m.opts.Events.LastEventSeq(ctx, rec.ID)
		if err != nil {
			return -1
		}
		tail = max(tail, seq)
	}
	if m.opts.Cluster != nil && !protocol.Terminal(rec.Status) {
		seq, err := m.opts.Cluster.LastSeq(ctx, rec.ID)
		if err != nil {
			return -1
		}
		tail = max(tail, seq)
	}
	return tail
}

// runMirror feeds a mirror until its final event: what the event log holds, then the
// cluster stream while the task runs elsewhere, then the stored record once it has ended.
// It keeps the owner node informed while the task's owner watches from here.
func (m *Manager) runMirror(ctx context.Context, t *Task, rec record.Task) {
	defer m.wg.Done()
	defer func() {
		m.mu.Lock()
		delete(m.followers, t)
		m.mu.Unlock()
	}()
	holdCtx, stopHold := context.WithCancel(ctx)
	defer stopHold()
	if m.opts.Cluster != nil && !protocol.Terminal(rec.Status) {
		go m.holdLoop(holdCtx, t)
	}
	for {
		if err := m.replayStored(ctx, t); err != nil && ctx.Err() == nil {
			m.log.Warn("task events could not be read from the event log", "task", t.ID, "err", err)
		}
		if ctx.Err() != nil || t.isDone() {
			return
		}
		if m.opts.Cluster != nil {
			err := m.opts.Cluster.Follow(ctx, t.ID, t.Snapshot().LastSeq, t.appendMirrored)
			if ctx.Err() != nil || t.isDone() {
				return
			}
			if err != nil {
				m.log.Debug("task stream unavailable", "task", t.ID, "err", err)
			}
		}
		// No final event yet: when the task has ended, its last events (and the final one)
		// are in the log by now, or the record says how it ended; otherwise look again.
		if fresh, err := m.opts.Store.GetTask(ctx, t.Tenant, t.ID); err == nil && protocol.Terminal(fresh.Status) {
			_ = m.replayStored(ctx, t)
			t.finalFromRecord(fresh)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.opts.HoldInterval):
		}
	}
}

// replayStoredPage is how many events a mirror reads from the event log at once.
const replayStoredPage = 1000

// replayStored appends to a mirror the events the event log holds after its newest one.
func (m *Manager) replayStored(ctx context.Context, t *Task) error {
	if m.opts.Events == nil {
		return nil
	}
	for !t.isDone() {
		evs, err := m.opts.Events.TaskEvents(ctx, t.ID, t.Snapshot().LastSeq, replayStoredPage)
		if err != nil {
			return err
		}
		for _, e := range evs {
			t.appendMirrored(e.Seq, e.Frame)
		}
		if len(evs) < replayStoredPage {
			return nil
		}
	}
	return nil
}

// holdLoop runs beside a mirror's follower; it is cancelled with it.
func (m *Manager) holdLoop(ctx context.Context, t *Task) {
	tick := time.NewTicker(m.opts.HoldInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.mu.RLock()
			watching := t.ownerSubs > 0
			t.mu.RUnlock()
			if watching {
				if err := m.opts.Cluster.Hold(ctx, t.node, t.ID); err != nil && ctx.Err() == nil {
					m.log.Debug("hold failed", "task", t.ID, "err", err)
				}
			}
		}
	}
}

// appendMirrored adds one event received from the cluster. Duplicates are dropped; the
// first event sets the base when the stream was trimmed.
func (t *Task) appendMirrored(seq int64, frame []byte) {
	t.mu.Lock()
	if protocol.Terminal(t.status) && t.isDone() {
		t.mu.Unlock()
		return
	}
	if len(t.log) == 0 && seq > t.base+1 {
		t.base = seq - 1
	}
	if seq != t.lastSeqLocked()+1 {
		t.mu.Unlock()
		return
	}
	end := t.headBytes.Load() + int64(len(frame))
	t.log = append(t.log, entry{frame: frame, end: end})
	final := false
	var c struct {
		Type     string `json:"type"`
		Status   string `json:"status"`
		ExitCode int    `json:"exitCode"`
		Error    string `json:"error"`
	}
	if json.Unmarshal(frame, &c) == nil && c.Type == protocol.TypeTaskComplete {
		final = true
		t.status, t.exitCode, t.errMsg, t.endedAt = c.Status, c.ExitCode, c.Error, t.m.now().UTC()
		t.ended.Store(t.endedAt.UnixNano())
	} else if t.status == protocol.StatusPending {
		t.status = protocol.StatusRunning
	}
	subs := t.subs
	t.headBytes.Store(end)
	t.headSeq.Store(seq)
	t.mu.Unlock()
	if final {
		close(t.done)
	}
	for _, s := range subs {
		s.sub.Notify()
	}
	for _, s := range subs {
		t.backpressure(s)
	}
}

// finalFromRecord ends a mirror with a task_complete built from the stored record.
func (t *Task) finalFromRecord(rec record.Task) {
	if !protocol.Terminal(rec.Status) {
		return
	}
	exit := -1
	if rec.ExitCode != nil {
		exit = *rec.ExitCode
	}
	var dur int64
	if rec.StartedAt != nil && rec.EndedAt != nil {
		dur = rec.EndedAt.Sub(*rec.StartedAt).Milliseconds()
	}
	ended := t.m.now().UTC()
	if rec.EndedAt != nil {
		ended = *rec.EndedAt
	}
	t.mu.Lock()
	if t.isDone() {
		t.mu.Unlock()
		return
	}
	if rec.LastSeq > 0 && t.lastSeqLocked() >= rec.LastSeq {
		// The subscriber resumed at or after the final event: it ends with nothing to send.
		t.status, t.exitCode, t.errMsg, t.endedAt = rec.Status, exit, rec.Error, ended
		t.ended.Store(ended.UnixNano())
		subs := t.subs
		t.mu.Unlock()
		close(t.done)
		for _, s := range subs {
			s.sub.Notify()
		}
		return
	}
	// The final event follows whatever the mirror already holds; with nothing held, it
	// takes the seq the store recorded.
	seq := t.lastSeqLocked() + 1
	if len(t.log) == 0 && rec.LastSeq > seq {
		seq = rec.LastSeq
		t.base = seq - 1
	}
	frame, _ := jsonFrame(protocol.TaskComplete{
		Type: protocol.TypeTaskComplete, TaskID: rec.ID, Seq: seq, ServerTime: protocol.Time(ended),
		ExitCode: exit, Status: rec.Status, DurationMs: dur, Result: rec.ResultSummary, Error: rec.Error,
	})
	end := t.headBytes.Load() + int64(len(frame))
	t.log = append(t.log, entry{frame: frame, end: end})
	t.status, t.exitCode, t.errMsg, t.endedAt = rec.Status, exit, rec.Error, ended
	t.ended.Store(ended.UnixNano())
	subs := t.subs
	t.headBytes.Store(end)
	t.headSeq.Store(seq)
	t.mu.Unlock()
	close(t.done)
	for _, s := range subs {
		s.sub.Notify()
	}
}

func (t *Task) isDone() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// dropMirror forgets a mirror nobody watches any more and stops its follower.
func (m *Manager) dropMirror(t *Task) {
	m.mu.Lock()
	if m.tasks[t.ID] == t {
		delete(m.tasks, t.ID)
	}
	m.mu.Unlock()
	if t.follow != nil {
		t.follow()
	}
}

// CancelLocal cancels a task this node runs, on behalf of another node that has already
// authorized and recorded the request.
func (m *Manager) CancelLocal(id string) bool {
	m.mu.Lock()
	t, ok := m.tasks[id]
	m.mu.Unlock()
	if !ok || t.remote {
		return false
	}
	t.cancel(errCancelled)
	return true
}

// HoldLocal keeps a task of this node attached while its owner watches from another node:
// a pending detach timer starts over.
func (m *Manager) HoldLocal(id string) {
	m.mu.Lock()
	t, ok := m.tasks[id]
	m.mu.Unlock()
	if !ok || t.remote {
		return
	}
	t.mu.Lock()
	if t.detach != nil {
		t.detach.Reset(m.opts.DetachGrace)
	}
	t.mu.Unlock()
}

// cancelRemote records a cancel and forwards it to the node running the task.
func (m *Manager) cancelRemote(ctx context.Context, p *auth.Principal, id, node string, meta Meta) error {
	if m.opts.Cluster == nil {
		return nil // single node: a task not in memory has ended
	}
	if err := m.opts.Audit.Record(ctx, m.record(p, meta, audit.ActionTaskCancel, audit.OutcomeSuccess, id, "", map[string]any{"node": node})); err != nil {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	if err := m.opts.Cluster.Cancel(ctx, node, id); err != nil {
		return fmt.Errorf("%w: %w", ErrClusterUnavailable, err)
	}
	return nil
}

// InterruptedFrame is the task_complete of a task that a restart or a dead node ended, at
// the seq the store gave it (the last persisted seq + 1): what store.InterruptTasks records
// as the task's final event, so a client resuming with afterSeq learns how it ended.
func InterruptedFrame(rec record.Task) []byte {
	ended := time.Now().UTC()
	if rec.EndedAt != nil {
		ended = *rec.EndedAt
	}
	var dur int64
	if rec.StartedAt != nil {
		dur = max(ended.Sub(*rec.StartedAt).Milliseconds(), 0)
	}
	frame, err := jsonFrame(protocol.TaskComplete{
		Type: protocol.TypeTaskComplete, TaskID: rec.ID, Seq: rec.LastSeq, ServerTime: protocol.Time(ended),
		ExitCode: -1, Status: rec.Status, DurationMs: dur, Error: rec.Error,
	})
	if err != nil {
		return nil // a struct of strings and numbers always marshals
	}
	return frame
}
