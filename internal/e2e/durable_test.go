package e2e

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/client"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

// storeBackends are the two stores a gateway runs on: --dev's SQLite in the data dir, and
// PostgreSQL (a schema of its own).
func storeBackends(t *testing.T) map[string]func(t *testing.T) map[string]string {
	return map[string]func(t *testing.T) map[string]string{
		"sqlite": func(t *testing.T) map[string]string { return nil },
		"postgres": func(t *testing.T) map[string]string {
			return map[string]string{"FLOWGATE_STORE_DRIVER": "postgres", "FLOWGATE_STORE_DSN": storetest.PostgresDSN(t)}
		},
	}
}

// collect reads the frames of task id until its task_complete, or until the connection
// fails (a killed gateway); it returns them and the error that ended the read, if any.
func collect(c *client.Conn, id string, d time.Duration) ([]client.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var got []client.Message
	for {
		m, err := c.Read(ctx)
		if err != nil {
			return got, err
		}
		if m.TaskID != id || m.Seq == 0 {
			if m.Type == "error" {
				return got, fmt.Errorf("error frame: %s", m.Raw)
			}
			continue
		}
		got = append(got, m)
		if m.Type == "task_complete" {
			return got, nil
		}
	}
}

// readEvents reads until it has n event frames of task id (frames with a seq), and returns
// them; other frames are skipped.
func readEvents(t *testing.T, c *client.Conn, id string, n int) []client.Message {
	t.Helper()
	var got []client.Message
	readUntil(t, c, 60*time.Second, func(m client.Message) bool {
		if m.TaskID == id && m.Seq > 0 {
			got = append(got, m)
		}
		return len(got) >= n
	})
	return got
}

func subscribeFrom(t *testing.T, c *client.Conn, id string, afterSeq int64) []client.Message {
	t.Helper()
	if err := c.Send(map[string]any{"type": "subscribe", "taskId": id, "afterSeq": afterSeq}); err != nil {
		t.Fatal(err)
	}
	got, err := collect(c, id, 60*time.Second)
	if err != nil {
		t.Fatalf("subscribe{afterSeq:%d}: %v after %d frames", afterSeq, err, len(got))
	}
	return got
}

// checkSeqs fails unless frames carry exactly the seqs from..to, in order.
func checkSeqs(t *testing.T, frames []client.Message, from, to int64) {
	t.Helper()
	if int64(len(frames)) != to-from+1 {
		t.Fatalf("got %d frames, want seqs %d..%d", len(frames), from, to)
	}
	for i, m := range frames {
		if m.Seq != from+int64(i) {
			t.Fatalf("frame %d has seq %d, want %d: gap or duplicate", i, m.Seq, from+int64(i))
		}
	}
}

// A finished task is replayed after a restart exactly as it was streamed; a task running
// when the gateway is killed with SIGKILL is, after the restart, resumable where the client
// stopped: every persisted event after afterSeq once, then task_complete{interrupted} with the
// next seq; status agrees (DESIGN §17).
func TestDurableEventsAcrossRestart(t *testing.T) {
	for name, backend := range storeBackends(t) {
		t.Run(name, func(t *testing.T) {
			env := backend(t)
			dir := t.TempDir()
			g := startGateway(t, gwOptions{dataDir: dir, env: env})
			c := g.dial(t, g.UserToken)

			// 1. A finished task, then a clean restart.
			done := startSwarm(t, c, "finished sim:pace=0 sim:events=300", nil)
			live, err := collect(c, done, 60*time.Second)
			if err != nil || live[len(live)-1].Status != "success" {
				t.Fatalf("finished task: %v (%d frames)", err, len(live))
			}
			n := int64(len(live))

			// 2. A task streaming when the gateway is killed.
			crash := startSwarm(t, c, "crash sim:pace=1ms sim:events=20000", nil)
			seen := readEvents(t, c, crash, 2000)
			if err := g.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			rest, _ := collect(c, crash, 10*time.Second) // what was on the wire when it died
			seen = append(seen, rest...)
			lastSeen := seen[len(seen)-1].Seq
			<-g.exited

			h := startGateway(t, gwOptions{dataDir: dir, env: env})
			c2 := h.dial(t, h.UserToken)

			replay := subscribeFrom(t, c2, done, 0)
			checkSeqs(t, replay, 1, n)
			for i := range replay {
				if !bytes.Equal(replay[i].Raw, live[i].Raw) {
					t.Fatalf("replayed frame %d differs:\n got %s\nwant %s", i+1, replay[i].Raw, live[i].Raw)
				}
			}

			// The client resumes from the last event it saw before the crash, less a few.
			from := lastSeen - 500
			resumed := subscribeFrom(t, c2, crash, from)
			final := resumed[len(resumed)-1]
			if final.Type != "task_complete" || final.Status != "interrupted" {
				t.Fatalf("resume ended with %s", final.Raw)
			}
			persisted := final.Seq - 1
			checkSeqs(t, resumed, from+1, final.Seq)
			for _, m := range resumed[:len(resumed)-1] {
				if m.Seq <= lastSeen && !bytes.Equal(m.Raw, seen[m.Seq-1].Raw) {
					t.Fatalf("event %d after the restart differs from the one streamed before", m.Seq)
				}
			}
			lost := max(lastSeen-persisted, 0)
			t.Logf("%s: killed after the client saw seq %d; %d events persisted; lost at the crash: %d (bound: one batch of 1,000)",
				name, lastSeen, persisted, lost)
			if lost > 1000 {
				t.Fatalf("%d events lost at the crash; the bound is one batch (1,000)", lost)
			}

			// status and the task list agree with the stream.
			if err := c2.Send(map[string]any{"type": "status", "taskId": crash, "requestId": "st"}); err != nil {
				t.Fatal(err)
			}
			st := readUntil(t, c2, 10*time.Second, func(m client.Message) bool { return m.RequestID == "st" })
			if st.Status != "interrupted" || !bytes.Contains(st.Raw, []byte(fmt.Sprintf(`"lastSeq":%d`, final.Seq))) {
				t.Fatalf("status after the restart = %s; want interrupted, lastSeq %d", st.Raw, final.Seq)
			}
			if err := c2.Send(map[string]any{"type": "tasks", "requestId": "ls"}); err != nil {
				t.Fatal(err)
			}
			ls := readUntil(t, c2, 10*time.Second, func(m client.Message) bool { return m.RequestID == "ls" })
			if !bytes.Contains(ls.Raw, []byte(`"interrupted"`)) {
				t.Fatalf("tasks after the restart = %s", ls.Raw)
			}

			// Past the end: nothing more, and the stream stays usable.
			if err := c2.Send(map[string]any{"type": "subscribe", "taskId": crash, "afterSeq": final.Seq + 100, "requestId": "tail"}); err != nil {
				t.Fatal(err)
			}
			if err := c2.Send(map[string]any{"type": "status", "taskId": done, "requestId": "st2"}); err != nil {
				t.Fatal(err)
			}
			readUntil(t, c2, 10*time.Second, func(m client.Message) bool {
				if m.TaskID == crash && m.Seq > 0 {
					t.Fatalf("a subscribe beyond the end got %s", m.Raw)
				}
				return m.RequestID == "st2"
			})
			// A negative afterSeq is refused.
			if err := c2.Send(map[string]any{"type": "subscribe", "taskId": crash, "afterSeq": -1, "requestId": "neg"}); err != nil {
				t.Fatal(err)
			}
			if m := readUntil(t, c2, 10*time.Second, func(m client.Message) bool { return m.RequestID == "neg" }); m.Type != "error" || m.Code != "invalid_message" {
				t.Fatalf("afterSeq -1 = %s", m.Raw)
			}
		})
	}
}

// A replica that never followed a task honours afterSeq: a client resuming there gets
// exactly the events after it, whether they come from the event log or the live stream.
func TestClusterResumeOnAnotherReplica(t *testing.T) {
	gs, _ := startCluster(t, 3, nil)
	a, c := gs[0], gs[2]
	ca := a.dial(t, a.UserToken)
	id := startSwarm(t, ca, "resume elsewhere sim:pace=10ms sim:events=400", nil)
	var last int64
	readUntil(t, ca, 30*time.Second, func(m client.Message) bool {
		if m.TaskID == id && m.Seq > 0 {
			last = m.Seq
		}
		return last >= 40
	})
	ca.Abort() // the client moves to C
	cc := c.dial(t, c.UserToken)
	got := subscribeFrom(t, cc, id, last)
	checkSeqs(t, got, last+1, got[len(got)-1].Seq)
	if final := got[len(got)-1]; final.Type != "task_complete" || final.Status != "success" {
		t.Fatalf("resume on C ended with %s", final.Raw)
	}
	// And again once the task has ended, from the middle.
	cc2 := gs[1].dial(t, gs[1].UserToken)
	again := subscribeFrom(t, cc2, id, 100)
	checkSeqs(t, again, 101, got[len(got)-1].Seq)
}

// A replica killed with SIGKILL and restarted under the same node id (a container restarted
// in its pod) ends the tasks its previous incarnation left running, at start: a subscriber on
// another replica gets task_complete{interrupted} right after the last event it saw. The
// heartbeat TTL is long here, so no other replica's reaper can be what ends them.
func TestClusterSameNodeRestartInterruptsItsTasks(t *testing.T) {
	cl := newClusterSetup(t, map[string]string{"FLOWGATE_CLUSTER_HEARTBEAT_TTL": "10m"})
	a := cl.start(t, "node-a")
	b := cl.start(t, "node-b")
	ca := a.dial(t, a.UserToken)
	id := startSwarm(t, ca, "doomed sim:pace=2ms sim:events=100000", nil)
	cb := b.dial(t, b.UserToken)
	if err := cb.Send(map[string]any{"type": "subscribe", "taskId": id, "afterSeq": 0}); err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	readUntil(t, cb, 30*time.Second, func(m client.Message) bool {
		if m.Type == "error" {
			// node-a's task_created came before its row was stored: node-b cannot see it.
			t.Fatalf("subscribe on node-b right after task_created on node-a: %s", m.Raw)
		}
		if m.TaskID == id && m.Seq > 0 {
			seqs = append(seqs, m.Seq)
		}
		return len(seqs) >= 500
	})
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.exited
	restarted := time.Now()
	cl.start(t, "node-a")
	final := readUntil(t, cb, 30*time.Second, func(m client.Message) bool {
		if m.TaskID == id && m.Seq > 0 {
			seqs = append(seqs, m.Seq)
		}
		return m.TaskID == id && m.Type == "task_complete"
	})
	t.Logf("task_complete{%s} seq %d on node-b %v after node-a's restart began", final.Status, final.Seq, time.Since(restarted).Round(time.Millisecond))
	if final.Status != "interrupted" {
		t.Fatalf("after node-a restarted: %s", final.Raw)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("node-b's seq %d at position %d: gap or duplicate", s, i)
		}
	}
	// The event log has everything node-b saw: a resume on node-b from the start agrees.
	replay := subscribeFrom(t, b.dial(t, b.UserToken), id, 0)
	checkSeqs(t, replay, 1, final.Seq)
}

// TestThousandFinishedTasksKeepHeapBounded: 1,000 finished tasks of about 1 MiB of output
// each (1 GiB in all) leave the live heap within tasks.retained_memory_max of its baseline:
// memory is a bounded cache; the event log has them all, and the oldest replays from it.
func TestThousandFinishedTasksKeepHeapBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test streams 1 GiB through the gateway (about 80 s); run it without -short")
	}
	const budget = 64 << 20
	const tasks, workers = 1000, 8
	g := startGateway(t, gwOptions{env: map[string]string{
		"FLOWGATE_TASKS_RETAINED_MEMORY_MAX":    "64MiB",
		"FLOWGATE_LIMITS_USER_CONCURRENT_TASKS": "16",
		"FLOWGATE_LIMITS_SWARMS_PER_MINUTE":     "100000",
		"FLOWGATE_LIMITS_MESSAGES_PER_SECOND":   "1000",
	}})
	base := heapAfterGC(t, g)
	start := time.Now()
	ids := make(chan string, tasks)
	var total atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := g.dial(t, g.UserToken)
			for i := w; i < tasks; i += workers {
				id := startSwarm(t, c, fmt.Sprintf("mib %d sim:pace=0 sim:events=2200", i), map[string]any{"agents": 1})
				frames, err := collect(c, id, 120*time.Second)
				if err != nil || frames[len(frames)-1].Status != "success" {
					t.Errorf("task %d: %v", i, err)
					return
				}
				var n int64
				for _, f := range frames {
					n += int64(len(f.Raw))
				}
				total.Add(n)
				ids <- id
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	close(ids)
	first := <-ids
	heap := heapAfterGC(t, g)
	t.Logf("%d tasks streamed %.0f MiB in %v; live heap %.1f MiB before, %.1f MiB after (budget %d MiB)",
		tasks, float64(total.Load())/(1<<20), time.Since(start).Round(time.Second), float64(base)/(1<<20), float64(heap)/(1<<20), budget>>20)
	if total.Load() < 900<<20 {
		t.Fatalf("the tasks produced only %d MiB; the test needs about 1 MiB each", total.Load()>>20)
	}
	if heap-base > budget+16<<20 {
		t.Fatalf("live heap grew by %.1f MiB after %d finished 1 MiB tasks; want at most the %d MiB budget plus slack",
			float64(heap-base)/(1<<20), tasks, budget>>20)
	}
	// One of the first tasks left memory long ago: it replays whole from the event log.
	c := g.dial(t, g.UserToken)
	replay := subscribeFrom(t, c, first, 0)
	checkSeqs(t, replay, 1, replay[len(replay)-1].Seq)
	if replay[len(replay)-1].Status != "success" || len(replay) < 2200 {
		t.Fatalf("replay of an early task: %d frames ending %s", len(replay), replay[len(replay)-1].Raw)
	}
}

// Past tasks.event_retention a finished task's events are pruned (at start, then every few
// minutes): a resume gets just its task_complete, with the task's final seq.
func TestEventRetentionPrunes(t *testing.T) {
	const retention = time.Second
	dir := t.TempDir()
	env := map[string]string{"FLOWGATE_TASKS_EVENT_RETENTION": retention.String()}
	g := startGateway(t, gwOptions{dataDir: dir, env: env})
	c := g.dial(t, g.UserToken)
	id := startSwarm(t, c, "short-lived sim:pace=0 sim:events=50", nil)
	live, err := collect(c, id, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	final := live[len(live)-1]
	var ended struct{ ServerTime time.Time }
	if err := jsonUnmarshal(final.Raw, &ended); err != nil || ended.ServerTime.IsZero() {
		t.Fatalf("task_complete without serverTime: %s", final.Raw)
	}
	g.stop()
	// The pruner's test is the wall clock: a task whose ended_at is more than the retention
	// ago, when it runs at start. task_complete's serverTime is that ended_at (rounded down to
	// the millisecond): restart once it is more than the retention ago. Usually nothing is
	// left to wait: the stop took longer.
	time.Sleep(time.Until(ended.ServerTime.Add(retention + time.Millisecond)))
	h := startGateway(t, gwOptions{dataDir: dir, env: env})
	h.waitLog(t, "pruning after the restart", `"msg":"task events pruned"`)
	got := subscribeFrom(t, h.dial(t, h.UserToken), id, 0)
	if len(got) != 1 || got[0].Type != "task_complete" || got[0].Seq != final.Seq || got[0].Status != "success" {
		t.Fatalf("resume after pruning: %d frames, first %s; want only task_complete seq %d", len(got), got[0].Raw, final.Seq)
	}
}
