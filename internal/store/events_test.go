package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
	"github.com/flowgate/flowgate/internal/task/record"
)

func ev(task string, seq int64) record.Event {
	return record.Event{TaskID: task, Seq: seq, Frame: []byte(fmt.Sprintf(`{"type":"x","taskId":%q,"seq":%d}`, task, seq))}
}

// evSeqs lists the seqs of events, and fails the test if one is not the frame ev wrote.
func evSeqs(t *testing.T, events []record.Event) []int64 {
	t.Helper()
	seqs := make([]int64, 0, len(events))
	for _, e := range events {
		if want := ev(e.TaskID, e.Seq); !bytes.Equal(e.Frame, want.Frame) {
			t.Fatalf("event %s/%d frame = %s, want %s", e.TaskID, e.Seq, e.Frame, want.Frame)
		}
		seqs = append(seqs, e.Seq)
	}
	return seqs
}

func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestTaskEventsAppendRead(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.Open(t, driver)

		// Out of order, two tasks interleaved.
		if err := db.AppendEvents(ctx, []record.Event{ev("a", 3), ev("b", 1), ev("a", 1), ev("a", 2), ev("b", 2), ev("a", 5)}); err != nil {
			t.Fatalf("append: %v", err)
		}
		// A replay with a different frame is skipped: the first write stays.
		if err := db.AppendEvents(ctx, []record.Event{{TaskID: "a", Seq: 1, Frame: []byte("other")}, ev("a", 4), ev("a", 4)}); err != nil {
			t.Fatalf("append replay: %v", err)
		}
		if err := db.AppendEvents(ctx, nil); err != nil {
			t.Fatalf("append nothing: %v", err)
		}

		tests := []struct {
			name     string
			task     string
			afterSeq int64
			limit    int
			want     []int64
		}{
			{"all", "a", 0, 0, seqRange(1, 5)},
			{"after", "a", 2, 0, []int64{3, 4, 5}},
			{"limit", "a", 1, 2, []int64{2, 3}},
			{"negative after", "a", -5, 1, []int64{1}},
			{"after the last", "a", 5, 10, nil},
			{"other task", "b", 0, 100, []int64{1, 2}},
			{"no such task", "c", 0, 10, nil},
		}
		for _, tc := range tests {
			got, err := db.TaskEvents(ctx, tc.task, tc.afterSeq, tc.limit)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			for _, e := range got {
				if e.TaskID != tc.task {
					t.Fatalf("%s: event of task %q", tc.name, e.TaskID)
				}
			}
			if seqs := evSeqs(t, got); !slices.Equal(seqs, tc.want) {
				t.Errorf("%s: seqs %v, want %v", tc.name, seqs, tc.want)
			}
		}
		for task, want := range map[string]int64{"a": 5, "b": 2, "c": 0} {
			if got, err := db.LastEventSeq(ctx, task); err != nil || got != want {
				t.Errorf("LastEventSeq(%s) = %d, %v; want %d", task, got, err, want)
			}
		}
	})
}

func TestTaskEventsRefused(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.Open(t, driver)
		tests := []struct {
			name string
			bad  record.Event
		}{
			{"empty task id", record.Event{Seq: 1, Frame: []byte("x")}},
			{"long task id", record.Event{TaskID: strings.Repeat("t", store.MaxTaskIDBytes+1), Seq: 1, Frame: []byte("x")}},
			{"task id not UTF-8", record.Event{TaskID: "t\xff", Seq: 1, Frame: []byte("x")}},
			{"zero seq", record.Event{TaskID: "t", Seq: 0, Frame: []byte("x")}},
			{"negative seq", record.Event{TaskID: "t", Seq: -1, Frame: []byte("x")}},
			{"empty frame", record.Event{TaskID: "t", Seq: 1}},
			{"huge frame", record.Event{TaskID: "t", Seq: 1, Frame: make([]byte, store.MaxEventFrameBytes+1)}},
		}
		for _, tc := range tests {
			// The bad event last, after good ones of its own task and of another: nothing of
			// the batch is written.
			batch := []record.Event{ev("good", 1), ev(cmpOr(tc.bad.TaskID, "t"), 7), tc.bad}
			if err := db.AppendEvents(ctx, batch); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
			}
		}
		for _, task := range []string{"good", "t"} {
			if got, err := db.TaskEvents(ctx, task, 0, 0); err != nil || len(got) != 0 {
				t.Errorf("task %s after refused batches: %d events, %v", task, len(got), err)
			}
		}
		// The largest frame allowed is stored whole.
		big := bytes.Repeat([]byte("z"), store.MaxEventFrameBytes)
		if err := db.AppendEvents(ctx, []record.Event{{TaskID: "big", Seq: 1, Frame: big}}); err != nil {
			t.Fatalf("largest frame: %v", err)
		}
		if got, err := db.TaskEvents(ctx, "big", 0, 1); err != nil || len(got) != 1 || !bytes.Equal(got[0].Frame, big) {
			t.Fatalf("largest frame read back: %d events, %v", len(got), err)
		}
	})
}

func cmpOr(s, def string) string {
	if s == "" || len(s) > store.MaxTaskIDBytes {
		return def
	}
	return s
}

// Batches of every shape the writer cuts: one statement, full statements (prepared once, then
// reused) and a rest, replays across statements, and pages of reads.
func TestTaskEventsBatches(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.Open(t, driver)
		batch := func(task string, from, to int64) []record.Event {
			var b []record.Event
			for s := from; s <= to; s++ {
				b = append(b, ev(task, s))
			}
			return b
		}
		for _, n := range []int64{1, 255, 256, 257, 512, 513, 1000} {
			task := fmt.Sprint("n", n)
			for range 2 { // the second time every row is a replay, and full statements are prepared
				if err := db.AppendEvents(ctx, batch(task, 1, n)); err != nil {
					t.Fatalf("append %d: %v", n, err)
				}
			}
			got, err := db.TaskEvents(ctx, task, 0, store.MaxEventsPage)
			if err != nil {
				t.Fatal(err)
			}
			if seqs := evSeqs(t, got); !slices.Equal(seqs, seqRange(1, n)) {
				t.Fatalf("batch of %d: read back %d events (%v…)", n, len(seqs), seqs[:min(len(seqs), 5)])
			}
		}

		// 1,000 events of 4 tasks in one call, half of them already stored.
		var mixed []record.Event
		for i := range int64(250) {
			for _, task := range []string{"w", "x", "y", "z"} {
				mixed = append(mixed, ev(task, i+1))
			}
		}
		if err := db.AppendEvents(ctx, mixed[:500]); err != nil {
			t.Fatal(err)
		}
		if err := db.AppendEvents(ctx, mixed); err != nil {
			t.Fatal(err)
		}
		for _, task := range []string{"w", "x", "y", "z"} {
			var seqs []int64
			after := int64(0)
			for { // pages of 100
				page, err := db.TaskEvents(ctx, task, after, 100)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				if len(page) > 100 {
					t.Fatalf("page of %d events, want at most 100", len(page))
				}
				seqs = append(seqs, evSeqs(t, page)...)
				after = page[len(page)-1].Seq
			}
			if !slices.Equal(seqs, seqRange(1, 250)) {
				t.Fatalf("task %s: %d events", task, len(seqs))
			}
		}

		// A page never exceeds MaxEventsPage.
		if err := db.AppendEvents(ctx, batch("n1000", 1001, 1500)); err != nil {
			t.Fatal(err)
		}
		for _, limit := range []int{0, -1, store.MaxEventsPage + 1, 1 << 30} {
			got, err := db.TaskEvents(ctx, "n1000", 0, limit)
			if err != nil || len(got) != store.MaxEventsPage {
				t.Errorf("limit %d: %d events, %v; want %d", limit, len(got), err, store.MaxEventsPage)
			}
		}
		if got, err := db.LastEventSeq(ctx, "n1000"); err != nil || got != 1500 {
			t.Errorf("LastEventSeq = %d, %v; want 1500", got, err)
		}
	})
}

func TestPruneTaskEvents(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		db := storetest.OpenWithTenants(t, driver, "acme")
		now := time.Now().UTC()
		mk := func(id string, ended *time.Time, events int64) {
			t.Helper()
			if _, err := db.CreateTask(ctx, newTask(id, "acme", "alice")); err != nil {
				t.Fatal(err)
			}
			if ended != nil {
				if _, err := db.UpdateTask(ctx, "acme", id, store.TaskUpdate{Status: store.TaskSuccess, EndedAt: ended}); err != nil {
					t.Fatal(err)
				}
			}
			var b []record.Event
			for s := range events {
				b = append(b, ev(id, s+1))
			}
			if err := db.AppendEvents(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		const oldTasks = 7
		oldEvents := 0
		for i := range oldTasks {
			mk(fmt.Sprint("old-", i), tp(now.Add(-time.Duration(2+i)*time.Hour)), int64(10+i))
			oldEvents += 10 + i
		}
		mk("old-no-events", tp(now.Add(-3*time.Hour)), 0)
		mk("recent", tp(now.Add(-time.Minute)), 5)
		mk("running", nil, 6)
		// Events of a task the store has no record of are kept: no one can say it has ended.
		if err := db.AppendEvents(ctx, []record.Event{ev("unknown", 1)}); err != nil {
			t.Fatal(err)
		}

		// oldLeft counts the old tasks that still have events, and their events.
		oldLeft := func() (tasks, events int) {
			t.Helper()
			for i := range oldTasks {
				n, err := db.LastEventSeq(ctx, fmt.Sprint("old-", i))
				if err != nil {
					t.Fatal(err)
				}
				if n > 0 {
					tasks++
					events += int(n)
				}
			}
			return tasks, events
		}
		cutoff := now.Add(-time.Hour)
		total := 0
		for _, wantTasksLeft := range []int{4, 1, 0} { // 3 tasks a call
			n, err := db.PruneTaskEvents(ctx, cutoff, 3)
			if err != nil {
				t.Fatalf("prune: %v", err)
			}
			tasksLeft, eventsLeft := oldLeft()
			total += n
			if tasksLeft != wantTasksLeft || eventsLeft != oldEvents-total {
				t.Fatalf("after pruning %d events: %d old tasks with %d events left; want %d tasks with %d",
					total, tasksLeft, eventsLeft, wantTasksLeft, oldEvents-total)
			}
		}
		if total != oldEvents {
			t.Fatalf("pruned %d events; want %d", total, oldEvents)
		}
		for id, want := range map[string]int64{"old-0": 0, "old-6": 0, "recent": 5, "running": 6, "unknown": 1} {
			if got, err := db.LastEventSeq(ctx, id); err != nil || got != want {
				t.Errorf("%s: last seq %d, %v; want %d", id, got, err, want)
			}
		}
		// Nothing left: 0, however often it is asked, and with the default limit.
		for _, limit := range []int{3, 0, -1} {
			if n, err := db.PruneTaskEvents(ctx, cutoff, limit); n != 0 || err != nil {
				t.Fatalf("prune when done (limit %d) = %d, %v; want 0", limit, n, err)
			}
		}
		// A later cutoff takes the recent task too, never the running one.
		if n, err := db.PruneTaskEvents(ctx, now, 0); n != 5 || err != nil {
			t.Fatalf("prune recent = %d, %v; want 5", n, err)
		}
		if got, _ := db.LastEventSeq(ctx, "running"); got != 6 {
			t.Fatalf("running task lost its events: last seq %d", got)
		}
	})
}

func TestInterruptTasks(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		clock := newClock(time.Date(2026, 5, 5, 5, 5, 5, 0, time.UTC))
		cfg := storetest.Config(t, driver)
		cfg.Now = clock.Now
		db := storetest.OpenConfig(t, cfg)
		storetest.CreateTenant(t, db, "acme")
		mk := func(id, node, status string, seqs ...int64) {
			t.Helper()
			tk := newTask(id, "acme", "alice")
			tk.Node, tk.Status, tk.LastSeq = node, status, 99 // last_seq is replaced, not extended
			if _, err := db.CreateTask(ctx, tk); err != nil {
				t.Fatal(err)
			}
			var b []record.Event
			for _, s := range seqs {
				b = append(b, ev(id, s))
			}
			if err := db.AppendEvents(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		mk("a-run", "a", store.TaskRunning, 1, 2, 3, 7) // a gap: the end follows the highest
		mk("a-pend", "a", store.TaskPending)
		mk("a-done", "a", store.TaskSuccess, 1, 2)
		mk("a-quiet", "a", store.TaskRunning, 1)
		mk("b-run", "b", store.TaskRunning, 1, 2)
		mk("c-run", "c", store.TaskRunning)
		if _, err := db.UpdateTask(ctx, "acme", "c-run", store.TaskUpdate{Error: strp("already failing")}); err != nil {
			t.Fatal(err)
		}

		frame := func(tk record.Task) []byte {
			if tk.ID == "a-quiet" {
				return nil
			}
			return []byte(fmt.Sprintf(`{"type":"task_complete","taskId":%q,"seq":%d,"status":%q}`, tk.ID, tk.LastSeq, tk.Status))
		}
		var seen []record.Task
		final := func(tk record.Task) []byte {
			seen = append(seen, tk)
			return frame(tk)
		}
		clock.Advance(time.Minute)
		ids := func(ts []record.Task) string {
			var s []string
			for _, tk := range ts {
				s = append(s, tk.ID)
			}
			return strings.Join(s, ",")
		}
		tests := []struct {
			node    string
			want    string
			lastSeq map[string]int64
		}{
			{"a", "a-pend,a-quiet,a-run", map[string]int64{"a-run": 8, "a-pend": 1, "a-quiet": 2}},
			{"a", "", nil},
			{"", "b-run,c-run", map[string]int64{"b-run": 3, "c-run": 1}},
			{"", "", nil},
		}
		for _, tc := range tests {
			seen = nil
			got, err := db.InterruptTasks(ctx, tc.node, "node stopped", final)
			if err != nil {
				t.Fatalf("InterruptTasks(%q): %v", tc.node, err)
			}
			if ids(got) != tc.want {
				t.Fatalf("InterruptTasks(%q) = %s, want %s", tc.node, ids(got), tc.want)
			}
			// final is given each task as it is returned: ended, with its new last seq.
			slices.SortFunc(seen, func(a, b record.Task) int { return strings.Compare(a.ID, b.ID) })
			if !slices.EqualFunc(seen, got, func(a, b record.Task) bool {
				return a.ID == b.ID && a.LastSeq == b.LastSeq && a.Status == b.Status && a.Error == b.Error
			}) {
				t.Fatalf("final saw %s, want the returned tasks %s", ids(seen), ids(got))
			}
			for _, tk := range got {
				stored, err := db.GetTask(ctx, "acme", tk.ID)
				if err != nil {
					t.Fatal(err)
				}
				wantErr := "node stopped"
				if tk.ID == "c-run" {
					wantErr = "already failing"
				}
				if tk.Status != store.TaskInterrupted || tk.EndedAt == nil || !tk.EndedAt.Equal(clock.Now()) ||
					tk.LastSeq != tc.lastSeq[tk.ID] || tk.Error != wantErr {
					t.Errorf("returned %+v, want interrupted now at seq %d with error %q", tk, tc.lastSeq[tk.ID], wantErr)
				}
				if stored.Status != tk.Status || stored.LastSeq != tk.LastSeq || !stored.EndedAt.Equal(*tk.EndedAt) || stored.Error != tk.Error {
					t.Errorf("stored %+v, returned %+v", stored, tk)
				}
				last, err := db.TaskEvents(ctx, tk.ID, tk.LastSeq-1, 10)
				if err != nil {
					t.Fatal(err)
				}
				if tk.ID == "a-quiet" { // final gave no event
					if len(last) != 0 {
						t.Errorf("a-quiet: events %v after its last, want none", evSeqsRaw(last))
					}
					continue
				}
				if len(last) != 1 || last[0].Seq != tk.LastSeq || !bytes.Equal(last[0].Frame, frame(tk)) {
					t.Errorf("%s: events from seq %d = %v, want only the final event", tk.ID, tk.LastSeq, evSeqsRaw(last))
				}
			}
		}
		// Without final, tasks end at the next seq all the same, with no event there.
		mk("d-run", "d", store.TaskRunning, 1, 2)
		if got, err := db.InterruptTasks(ctx, "d", "", nil); err != nil || ids(got) != "d-run" || got[0].LastSeq != 3 || got[0].Error != "" {
			t.Fatalf("InterruptTasks without final = %+v, %v", got, err)
		}
		if n, _ := db.LastEventSeq(ctx, "d-run"); n != 2 {
			t.Fatalf("InterruptTasks without final stored an event: last seq %d", n)
		}
		if done, _ := db.GetTask(ctx, "acme", "a-done"); done.Status != store.TaskSuccess || done.EndedAt != nil || done.LastSeq != 99 {
			t.Fatalf("a task already ended was changed: %+v", done)
		}
		if n, _ := db.LastEventSeq(ctx, "a-done"); n != 2 {
			t.Fatalf("a task already ended got an event: last seq %d", n)
		}
	})
}

func evSeqsRaw(events []record.Event) []int64 {
	var s []int64
	for _, e := range events {
		s = append(s, e.Seq)
	}
	return s
}

// Replicas racing to reap one node, each on its own pools: every task is ended, and returned,
// exactly once, with exactly one final event.
func TestInterruptTasksConcurrent(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, driver string) {
		ctx := t.Context()
		cfg := storetest.Config(t, driver)
		const replicas, tasks = 4, 60
		dbs := make([]*store.DB, replicas)
		for i := range dbs {
			dbs[i] = storetest.OpenConfig(t, cfg)
		}
		storetest.CreateTenant(t, dbs[0], "acme")
		for i := range tasks {
			tk := newTask(fmt.Sprintf("t%02d", i), "acme", "alice")
			tk.Node, tk.Status = "dead", store.TaskRunning
			if i%3 == 0 {
				tk.Node = "alive"
			}
			if _, err := dbs[0].CreateTask(ctx, tk); err != nil {
				t.Fatal(err)
			}
			if err := dbs[0].AppendEvents(ctx, []record.Event{ev(tk.ID, 1), ev(tk.ID, 2)}); err != nil {
				t.Fatal(err)
			}
		}
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			count = map[string]int{}
		)
		for i, db := range dbs {
			node := "dead"
			if i == replicas-1 {
				node = "" // a single-node restart racing the reapers
			}
			wg.Go(func() {
				got, err := db.InterruptTasks(ctx, node, "node dead stopped responding", func(tk record.Task) []byte {
					return []byte(fmt.Sprintf(`{"by":%d}`, i))
				})
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for _, tk := range got {
					count[tk.ID]++
					if tk.LastSeq != 3 {
						t.Errorf("replica %d: %s last seq %d, want 3", i, tk.ID, tk.LastSeq)
					}
				}
			})
		}
		wg.Wait()
		for i := range tasks {
			id := fmt.Sprintf("t%02d", i)
			stored, err := dbs[0].GetTask(ctx, "acme", id)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case count[id] > 1:
				t.Errorf("%s returned %d times", id, count[id])
			case count[id] == 0 && stored.Node == "dead":
				t.Errorf("%s of the dead node returned by no one", id)
			case count[id] == 1 && stored.Status != store.TaskInterrupted:
				t.Errorf("%s returned but stored as %s", id, stored.Status)
			case count[id] == 0 && stored.Status != store.TaskRunning:
				t.Errorf("%s returned by no one but stored as %s", id, stored.Status)
			}
			if n, err := dbs[0].LastEventSeq(ctx, id); err != nil || n != int64(2+count[id]) {
				t.Errorf("%s: last event seq %d, %v; want %d", id, n, err, 2+count[id])
			}
		}
	})
}

// BenchmarkAppendEvents measures the write-behind path: batches of 1,000 events of ~200 bytes
// from 10 tasks, one call each.
func BenchmarkAppendEvents(b *testing.B) {
	for _, driver := range storetest.Drivers {
		b.Run(driver, func(b *testing.B) {
			db := storetest.Open(b, driver)
			const perCall, tasks = 1000, 10
			frame := bytes.Repeat([]byte("e"), 200)
			batch := make([]record.Event, perCall)
			for i := range batch {
				batch[i] = record.Event{TaskID: fmt.Sprint("bench-task-", i/(perCall/tasks)), Seq: int64(i%(perCall/tasks)) + 1, Frame: frame}
			}
			for b.Loop() {
				if err := db.AppendEvents(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
				for i := range batch { // new events each time, never replays
					batch[i].Seq += perCall / tasks
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perCall), "ns/event")
		})
	}
}
