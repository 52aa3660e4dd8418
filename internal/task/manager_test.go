package task

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/flowgate/flowgate/internal/config"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor"
	"github.com/flowgate/flowgate/internal/executor/sandbox"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/secrets/local"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
	"github.com/flowgate/flowgate/internal/task/record"
)

// TestMain lets this test binary serve as the sandbox init of the executor it drives.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == sandbox.InitArg {
		os.Exit(sandbox.InitMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

type env struct {
	db   *store.DB
	keys *secrets.Cache
	rec  *audit.Recorder
}

func newEnv(t *testing.T) env {
	t.Helper()
	db := storetest.Open(t, store.DriverSQLite)
	for _, id := range []string{"acme", "other"} {
		storetest.CreateTenant(t, db, id)
	}
	prov, err := local.New(local.Options{MasterKey: make([]byte, 32), FingerprintKey: []byte("fp-key-for-tests-0123456789abcdef"), Store: db})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := secrets.NewCache(secrets.CacheOptions{Provider: prov, TTL: time.Minute, MaxStale: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	if _, err := keys.Set(context.Background(), "acme", "", "sk-ant-test-acme-key-0123456789"); err != nil {
		t.Fatal(err)
	}
	rec, err := audit.NewRecorder(audit.Options{Storage: db, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rec.Close(context.Background()) })
	return env{db: db, keys: keys, rec: rec}
}

// newManager runs engines as /bin/sh -c script (the objective is $1).
func newManager(t *testing.T, e env, script string, mod func(*Options)) *Manager {
	t.Helper()
	prof, err := engine.New(engine.Config{Profile: engine.ProfileCustom, Command: "/bin/sh", Args: []string{"-c", script, "sh", "{objective}"}}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := executor.New(executor.Options{Profile: prof, WorkdirRoot: t.TempDir(), KillGrace: 500 * time.Millisecond,
		Sandbox: sandbox.PGroup, InitPath: os.Args[0], Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Runner: exe, Keys: e.keys, Store: e.db, Audit: e.rec, Pool: 4, Queue: 4, UserConcurrent: 3,
		TenantConcurrent: 5, DetachGrace: time.Minute, WriteTimeout: 200 * time.Millisecond, Events: e.db}
	boundLikeDefaults(&opts)
	if mod != nil {
		mod(&opts)
	}
	m, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		m.Drain(ctx)
		m.Close(context.Background())
	})
	return m
}

// settle waits until every finished task's events are in the event log, then sweeps: what
// stays in memory is what the bounds allow.
func settle(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		pending := 0
		for _, tk := range m.finished {
			if !tk.durable.Load() {
				pending++
			}
		}
		m.mu.Unlock()
		if pending == 0 {
			m.Sweep()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d finished tasks' events still not in the event log", pending)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func principal(tenant, sub string, perms ...string) *auth.Principal {
	return &auth.Principal{Tenant: tenant, Subject: sub, Permissions: perms, ExpiresAt: time.Now().Add(time.Hour)}
}

func request(obj string) Request {
	return Request{Objective: obj, Engine: engine.Request{Objective: obj, Agents: 1, Strategy: "auto", Mode: "centralized", Timeout: time.Minute}}
}

// reader is a subscriber that drains like a session writer and records every frame.
type reader struct {
	mu     sync.Mutex
	sub    *Subscription
	frames []map[string]any
	wake   chan struct{}
	slow   chan struct{}
	stall  bool // never read: a stuck client
	done   chan struct{}
	err    error // the event log could not be read (set before done closes)
}

func newReader(stall bool) *reader {
	return &reader{wake: make(chan struct{}, 1), slow: make(chan struct{}), stall: stall, done: make(chan struct{})}
}

func (r *reader) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *reader) SlowConsumer() { close(r.slow) }

func (r *reader) run(t *testing.T, s *Subscription) {
	r.sub = s
	go func() {
		defer close(r.done)
		var buf [][]byte
		for range r.wake {
			if r.stall {
				continue
			}
			for {
				var last, end int64
				if s.Stored() {
					var err error
					if buf, last, end, err = s.ReadStored(context.Background(), buf[:0], 16, 1<<20); err != nil {
						r.err = err
						return
					}
				} else {
					buf, last, end = s.Pending(buf[:0], 16, 1<<20)
				}
				if last <= s.cursor.Load() {
					break
				}
				for _, f := range buf {
					var m map[string]any
					if err := json.Unmarshal(f, &m); err != nil {
						t.Errorf("bad frame %s", f)
					}
					r.mu.Lock()
					r.frames = append(r.frames, m)
					r.mu.Unlock()
				}
				s.Advance(last, end)
			}
			if s.Finished() {
				return
			}
		}
	}()
}

func (r *reader) wait(t *testing.T) []map[string]any {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		t.Fatal("task did not finish")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.frames
}

func run(t *testing.T, m *Manager, p *auth.Principal, obj string) []map[string]any {
	t.Helper()
	tk, err := m.Create(context.Background(), p, request(obj), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	r := newReader(false)
	r.run(t, m.Attach(tk, p, r))
	return r.wait(t)
}

const script = `
echo '{"type":"system","subtype":"init"}'
echo '{"type":"assistant","taskId":"forged","seq":99}'
echo 'plain text'
echo 'to stderr' >&2
case "$1" in
  *iserror*) echo '{"type":"result","is_error":true,"result":"bad"}' ;;
  *fail*) exit 3 ;;
  *hang*) sleep 60 ;;
  *) echo '{"type":"result","is_error":false,"result":"all done"}' ;;
esac`

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	m := newManager(t, e, script, nil)
	p := principal("acme", "alice", auth.PermSwarmExecute)
	tests := []struct {
		obj, status, result string
		exit                float64
	}{
		{"ok", protocol.StatusSuccess, "all done", 0},
		{"iserror", protocol.StatusFailed, "bad", 0},
		{"fail", protocol.StatusFailed, "", 3},
	}
	for _, tt := range tests {
		t.Run(tt.obj, func(t *testing.T) {
			frames := run(t, m, p, tt.obj)
			for i, f := range frames {
				if f["seq"] != float64(i+1) {
					t.Fatalf("frame %d has seq %v", i, f["seq"])
				}
			}
			last := frames[len(frames)-1]
			if last["type"] != "task_complete" || last["status"] != tt.status || last["exitCode"] != tt.exit {
				t.Fatalf("task_complete = %v", last)
			}
			if tt.result != "" && last["result"] != tt.result {
				t.Fatalf("result = %v", last["result"])
			}
			if frames[1]["taskId"] == "forged" {
				t.Fatal("engine overrode taskId")
			}
			types := []string{}
			for _, f := range frames {
				types = append(types, f["type"].(string))
			}
			if !strings.Contains(strings.Join(types, ","), "task_output") || !strings.Contains(strings.Join(types, ","), "task_log") {
				t.Fatalf("types = %v", types)
			}
			rec, err := e.db.GetTask(context.Background(), "acme", last["taskId"].(string))
			if err != nil || rec.Status != tt.status || rec.LastSeq != int64(len(frames)) {
				t.Fatalf("stored task = %+v, %v", rec, err)
			}
		})
	}
}

func TestQuotasAndKeys(t *testing.T) {
	e := newEnv(t)
	m := newManager(t, e, script, func(o *Options) { o.Pool, o.Queue, o.UserConcurrent, o.TenantConcurrent = 2, 1, 2, 3 })
	ctx := context.Background()
	alice, bob, carol := principal("acme", "alice"), principal("acme", "bob"), principal("acme", "carol")
	mustCreate := func(p *auth.Principal) *Task {
		t.Helper()
		tk, err := m.Create(ctx, p, request("hang"), Meta{})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	quota := func(p *auth.Principal, scope string) {
		t.Helper()
		_, err := m.Create(ctx, p, request("hang"), Meta{})
		var qe *QuotaError
		if !errors.As(err, &qe) || qe.Scope != scope {
			t.Fatalf("Create = %v; want quota %s", err, scope)
		}
	}
	a1 := mustCreate(alice)
	mustCreate(alice)
	quota(alice, "user")
	mustCreate(bob) // the pool (2) is full: queued
	quota(carol, "tenant")
	if err := m.Cancel(ctx, alice, a1.ID, Meta{}); err != nil {
		t.Fatal(err)
	}
	<-a1.Done()
	if s := a1.Snapshot(); s.Status != protocol.StatusCancelled {
		t.Fatalf("cancelled task = %+v", s)
	}
	// Another tenant without a key: nothing is created or stored.
	_, err := m.Create(ctx, principal("other", "x"), request("ok"), Meta{})
	if !errors.Is(err, ErrKeyUnavailable) {
		t.Fatalf("Create without key = %v", err)
	}
	recs, _ := e.db.ListTasks(ctx, store.TaskFilter{Tenant: "other"})
	if len(recs) != 0 {
		t.Fatalf("tasks stored for a refused swarm: %v", recs)
	}
	// Another user may not see or cancel a task; a task admin may.
	if _, ok := m.Get(bob, a1.ID); ok {
		t.Fatal("bob sees alice's task")
	}
	if err := m.Cancel(ctx, bob, a1.ID, Meta{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob's cancel = %v", err)
	}
	if _, ok := m.Get(principal("acme", "admin", auth.PermTaskAdmin), a1.ID); !ok {
		t.Fatal("task admin cannot see the task")
	}
	if _, ok := m.Get(principal("other", "admin", auth.PermTaskAdmin), a1.ID); ok {
		t.Fatal("a task admin of another tenant sees the task")
	}
}

type failingAudit struct{}

func (failingAudit) Record(context.Context, audit.Record) error { return errors.New("disk full") }

func TestAuditFailClosed(t *testing.T) {
	e := newEnv(t)
	m := newManager(t, e, script, func(o *Options) { o.Audit = failingAudit{} })
	_, err := m.Create(context.Background(), principal("acme", "alice"), request("ok"), Meta{})
	if !errors.Is(err, ErrAudit) {
		t.Fatalf("Create = %v; want ErrAudit", err)
	}
	if w, r := m.Counts(); w != 0 || r != 0 {
		t.Fatalf("counts after refusal: waiting %d running %d", w, r)
	}
}

// failingCreate is a store whose task inserts fail.
type failingCreate struct{ Store }

func (failingCreate) CreateTask(context.Context, record.Task) (record.Task, error) {
	return record.Task{}, errors.New("disk full")
}

// The task's row is written after task_created, before the engine: a failed insert ends the
// task "internal error" without starting anything, and frees its quota.
func TestTaskNotStoredNeverStarts(t *testing.T) {
	e := newEnv(t)
	m := newManager(t, e, script, func(o *Options) { o.Store = failingCreate{e.db} })
	tk, err := m.Create(context.Background(), principal("acme", "alice"), request("ok"), Meta{})
	if err != nil {
		t.Fatalf("Create = %v; the insert is not on the reply path", err)
	}
	select {
	case <-tk.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the task never ended")
	}
	snap := tk.Snapshot()
	if snap.Status != protocol.StatusFailed || snap.Error != "internal error" || snap.ExitCode != -1 || !snap.StartedAt.IsZero() {
		t.Fatalf("task = %+v; want failed, internal error, never started", snap)
	}
	if snap.LastSeq != 1 {
		t.Fatalf("%d events; want only task_complete (the engine must not run)", snap.LastSeq)
	}
	if w, r := m.Counts(); w != 0 || r != 0 {
		t.Fatalf("counts after the failure: waiting %d running %d", w, r)
	}
	// Its task_complete is not written to the event log: with no row, nothing would ever
	// prune it. Closing the writer drains whatever it tracks.
	m.events.close(context.Background())
	if evs, err := e.db.TaskEvents(context.Background(), tk.ID, 0, 0); err != nil || len(evs) != 0 {
		t.Fatalf("event log holds %d events of a task never stored (%v)", len(evs), err)
	}
	if !tk.durable.Load() {
		t.Fatal("a task never stored waits for the event log before it may leave memory")
	}
}

func TestDetach(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := principal("acme", "alice")

	m := newManager(t, e, script, func(o *Options) { o.DetachGrace = 300 * time.Millisecond })
	tk, err := m.Create(ctx, alice, request("hang"), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	r := newReader(false)
	s := m.Attach(tk, alice, r)
	r.run(t, s)
	s.Close() // the owner's session went away
	select {
	case <-tk.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("detached task not cancelled after the grace")
	}
	if snap := tk.Snapshot(); snap.Status != protocol.StatusCancelled || !strings.Contains(snap.Error, "owner disconnected") {
		t.Fatalf("snapshot = %+v", snap)
	}

	// Resubscribing within the grace keeps the task alive.
	tk2, _ := m.Create(ctx, alice, request("hang"), Meta{})
	r2 := newReader(false)
	s2 := m.Attach(tk2, alice, r2)
	r2.run(t, s2)
	s2.Close()
	r3 := newReader(false)
	s3, err := m.Subscribe(context.Background(), alice, tk2.ID, 0, r3)
	if err != nil {
		t.Fatal(err)
	}
	r3.run(t, s3)
	time.Sleep(600 * time.Millisecond)
	if snap := tk2.Snapshot(); snap.Status != protocol.StatusRunning {
		t.Fatalf("resubscribed task = %+v", snap)
	}
	_ = m.Cancel(ctx, alice, tk2.ID, Meta{})

	// tasks.on_disconnect: cancel restores the seed behaviour.
	mc := newManager(t, e, script, func(o *Options) { o.OnDisconnectCancel = true })
	tk3, _ := mc.Create(ctx, alice, request("hang"), Meta{})
	r4 := newReader(false)
	s4 := mc.Attach(tk3, alice, r4)
	r4.run(t, s4)
	s4.Close()
	select {
	case <-tk3.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("task not cancelled on disconnect")
	}
}

func TestSlowConsumerIsDroppedAndTaskContinues(t *testing.T) {
	e := newEnv(t)
	// 2,000 lines: far past the 16-message bound of this test.
	m := newManager(t, e, `i=0; while [ $i -lt 2000 ]; do echo "{\"type\":\"tick\",\"i\":$i}"; i=$((i+1)); done`,
		func(o *Options) { o.SendQueueMessages = 16 })
	p := principal("acme", "alice")
	tk, err := m.Create(context.Background(), p, request("ok"), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	stuck := newReader(true)
	s := m.Attach(tk, p, stuck)
	s.live.Store(true) // it had caught up once, then stopped reading
	stuck.run(t, s)
	select {
	case <-stuck.slow:
	case <-time.After(20 * time.Second):
		t.Fatal("a stuck subscriber was never declared slow")
	}
	select {
	case <-tk.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the task stalled behind a slow consumer")
	}
	if snap := tk.Snapshot(); snap.Status != protocol.StatusSuccess || snap.LastSeq != 2001 {
		t.Fatalf("snapshot = %+v", snap)
	}
}

func TestEvictionFallsBackToStore(t *testing.T) {
	e := newEnv(t)
	m := newManager(t, e, script, func(o *Options) { o.Retention = time.Millisecond })
	p := principal("acme", "alice")
	frames := run(t, m, p, "ok")
	id := frames[0]["taskId"].(string)
	time.Sleep(5 * time.Millisecond)
	settle(t, m)
	if _, ok := m.Get(p, id); ok {
		t.Fatal("task still in memory after retention")
	}
	snap, err := m.Status(context.Background(), p, id)
	if err != nil || snap.Status != protocol.StatusSuccess || snap.LastSeq != int64(len(frames)) {
		t.Fatalf("Status from store = %+v, %v", snap, err)
	}
	if _, err := m.Status(context.Background(), principal("acme", "bob"), id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob's status from store = %v", err)
	}
	// Resuming a task no longer in memory replays it from the event log: exactly the events
	// after the resume point, as they were sent, ending with task_complete.
	late := newReader(false)
	ls, err := m.Subscribe(context.Background(), p, id, 2, late)
	if err != nil {
		t.Fatal(err)
	}
	late.run(t, ls)
	got := late.wait(t)
	if !reflect.DeepEqual(got, frames[2:]) {
		t.Fatalf("late subscriber got %v\nwant %v", got, frames[2:])
	}
	if last := got[len(got)-1]; last["type"] != "task_complete" || last["status"] != "success" {
		t.Fatalf("replay ended with %v", last)
	}
	list, err := m.List(context.Background(), p)
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

// The per-task event log is what replay serves, so it is bounded by count and by bytes: an
// engine that talks past either bound is stopped and its task fails, and the log holds no
// more than the bound.
func TestEventLogIsBounded(t *testing.T) {
	e := newEnv(t)
	// Endless output: only the cap can end this task before its one-minute timeout.
	const chatty = `while :; do echo '{"type":"assistant","message":"0123456789012345678901234567890123456789"}'; done`
	tests := []struct {
		name string
		mod  func(*Options)
		// check gets the frames before task_complete.
		check func(t *testing.T, frames []map[string]any, bytes int)
	}{
		{"events", func(o *Options) { o.MaxLogEvents = 50 }, func(t *testing.T, frames []map[string]any, _ int) {
			if len(frames) != 50 {
				t.Errorf("%d events logged; want exactly the cap of 50", len(frames))
			}
		}},
		{"bytes", func(o *Options) { o.MaxLogBytes = 16 << 10 }, func(t *testing.T, frames []map[string]any, bytes int) {
			// Re-encoded frames are within a few bytes of the wire frames the cap counts.
			if bytes > 17<<10 || bytes < 12<<10 {
				t.Errorf("%d bytes of events logged (re-encoded); want close to the cap of 16384", bytes)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newManager(t, e, chatty, tt.mod)
			p := principal("acme", "alice", auth.PermSwarmExecute)
			frames := run(t, m, p, "talk forever")
			last := frames[len(frames)-1]
			if last["type"] != "task_complete" || last["status"] != protocol.StatusFailed || last["error"] != "output limit exceeded" {
				t.Fatalf("task_complete = %v", last)
			}
			size := 0
			for _, f := range frames[:len(frames)-1] {
				b, _ := json.Marshal(f)
				size += len(b)
			}
			tt.check(t, frames[:len(frames)-1], size)
			rec, err := e.db.GetTask(context.Background(), "acme", last["taskId"].(string))
			if err != nil || rec.Status != protocol.StatusFailed {
				t.Fatalf("stored task = %+v, %v", rec, err)
			}
		})
	}
}

// Finished tasks retained for status and replay keep their frames in memory of their size,
// not in a 64 KiB block each, and a replay after the compaction gives the same frames.
func TestFinishedTaskLogIsCompact(t *testing.T) {
	e := newEnv(t)
	m := newManager(t, e, script, func(o *Options) { o.UserConcurrent, o.TenantConcurrent, o.Pool, o.Queue = 100, 100, 32, 32 })
	p := principal("acme", "alice", auth.PermSwarmExecute)
	live := run(t, m, p, "ok")
	tk, ok := m.Get(p, live[0]["taskId"].(string))
	if !ok {
		t.Fatal("finished task not retained")
	}
	r := newReader(false)
	r.run(t, m.Attach(tk, p, r))
	if replay := r.wait(t); !reflect.DeepEqual(replay, live) {
		t.Fatalf("replay after compaction differs:\n%v\n%v", replay, live)
	}

	// Memory: more short tasks, all retained. Uncompacted, each pins a 64 KiB block.
	const n = 16
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { run(t, m, p, "ok") })
	}
	wg.Wait()
	if per := (int64(heap()) - int64(before)) / n; per > 40<<10 {
		t.Errorf("each retained short task holds %d bytes of heap; want its frames, not a 64 KiB block", per)
	} else {
		t.Logf("%d bytes of heap per retained short task", per)
	}
}

// Finished tasks keep their events in memory only up to tasks.retained_memory_max, all of them
// together: past it the oldest leave memory (their status comes from the store), whatever
// max_retained_tasks and the retention would allow.
func TestRetainedMemoryIsBounded(t *testing.T) {
	e := newEnv(t)
	// Each task prints 64 lines of 1 KiB: about 70 KiB of frames.
	big := `i=0; while [ $i -lt 64 ]; do printf '%01024d\n' 0; i=$((i+1)); done`
	const budget = 200 << 10
	m := newManager(t, e, big, func(o *Options) { o.RetainedMemoryMax = budget; o.Retention = time.Hour; o.MaxRetained = 1000 })
	p := principal("acme", "alice")
	var ids []string
	for range 6 {
		frames := run(t, m, p, "ok")
		ids = append(ids, frames[0]["taskId"].(string))
	}
	settle(t, m)
	m.mu.Lock()
	retained, kept := m.retainedBytes, len(m.finished)
	m.mu.Unlock()
	if retained > budget || kept >= len(ids) || kept == 0 {
		t.Fatalf("%d finished tasks keep %d bytes; budget %d", kept, retained, budget)
	}
	// The newest stays in memory, the oldest went, and its status still answers.
	if _, ok := m.Get(p, ids[len(ids)-1]); !ok {
		t.Error("the newest task left memory")
	}
	if _, ok := m.Get(p, ids[0]); ok {
		t.Error("the oldest task is still in memory")
	}
	if snap, err := m.Status(context.Background(), p, ids[0]); err != nil || snap.Status != protocol.StatusSuccess {
		t.Fatalf("status of an evicted task: %+v %v", snap, err)
	}
}

// boundLikeDefaults gives the bounds a test leaves zero config.Default's values (the manager
// refuses zero bounds: it has no defaults of its own).
func boundLikeDefaults(o *Options) {
	c := config.Default()
	set := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	set(&o.Pool, c.Limits.ExecutorPool)
	set(&o.UserConcurrent, c.Limits.UserConcurrentTasks)
	set(&o.TenantConcurrent, c.Limits.TenantConcurrentTasks)
	set(&o.SendQueueMessages, c.Limits.SendQueueMessages)
	set(&o.SendQueueBytes, c.Limits.SendQueueBytes)
	set(&o.MaxRetained, c.Tasks.MaxRetainedTasks)
	set(&o.MaxResultBytes, c.Tasks.MaxResultBytes)
	set(&o.MaxLogEvents, c.Tasks.MaxTaskLogEvents)
	set(&o.ListLimit, c.Tasks.ListLimit)
	if o.MaxLogBytes == 0 {
		o.MaxLogBytes = c.Tasks.MaxTaskLogBytes
	}
	for _, d := range []struct {
		p *time.Duration
		v time.Duration
	}{{&o.WriteTimeout, c.Limits.WriteTimeout}, {&o.Retention, c.Tasks.Retention}, {&o.HoldInterval, c.Cluster.HeartbeatInterval}} {
		if *d.p == 0 {
			*d.p = d.v
		}
	}
}

// TestNewManagerRefusesZeroBounds: a bound the configuration owns is never filled in here.
func TestNewManagerRefusesZeroBounds(t *testing.T) {
	for _, tt := range []struct {
		key   string
		spoil func(*Options)
	}{
		{"limits.executor_pool", func(o *Options) { o.Pool = 0 }},
		{"tasks.retention", func(o *Options) { o.Retention = 0 }},
		{"tasks.max_task_log_bytes", func(o *Options) { o.MaxLogBytes = -1 }},
		{"cluster.heartbeat_interval", func(o *Options) { o.HoldInterval = 0 }},
	} {
		// Never called: NewManager only checks what it is given.
		o := Options{Runner: struct{ Runner }{}, Keys: struct{ KeySource }{}, Store: struct{ Store }{}, Audit: struct{ Auditor }{}}
		boundLikeDefaults(&o)
		if _, err := NewManager(o); err != nil {
			t.Fatalf("complete options refused: %v", err)
		}
		tt.spoil(&o)
		if _, err := NewManager(o); err == nil || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("%s: err = %v; want it named", tt.key, err)
		}
	}
}
