package task

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/task/record"
)

// logLen is how many events t holds in memory, and the seq before the first.
func logLen(tk *Task) (n int, base int64) {
	tk.mu.RLock()
	defer tk.mu.RUnlock()
	return len(tk.log), tk.base
}

// waitTrimmed waits until tk holds at most 3 × logWindow events in memory, older ones having
// left it, with at least minSeq events logged. Trims follow the event log's batches and the
// subscribers' progress (and a finished task's last one comes just after it is marked
// durable), so the test waits for the state rather than catch a moment.
func waitTrimmed(t *testing.T, tk *Task, minSeq int64) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		l, base := logLen(tk)
		if base > 0 && base+int64(l) >= minSeq && l <= 3*logWindow {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task holds %d events in memory from seq %d; want at most %d, some gone", l, base+1, 3*logWindow)
		}
	}
}

// A long task keeps a window of its newest events in memory once they are stored, while it
// runs and after it ends; a subscriber resuming from before the window gets exactly the
// events a live subscriber got, from the event log and then from memory, byte for byte.
func TestLogWindowResumesFromTheEventLog(t *testing.T) {
	e := newEnv(t)
	gate := filepath.Join(t.TempDir(), "go-on")
	const n = 6 * logWindow
	// n lines, then wait for the test to resume from the start while the task runs.
	script := linesScript(n) + "\n"
	script = script[:len(script)-len("echo '{\"type\":\"result\",\"is_error\":false,\"result\":\"done\"}'\n")] +
		"while [ ! -f " + gate + " ]; do sleep 0.02; done\n" +
		`echo '{"type":"result","is_error":false,"result":"done"}'`
	m := newManager(t, e, script, nil)
	p := principal("acme", "alice")
	tk, err := m.Create(context.Background(), p, request("ok"), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	r := newReader(false)
	r.run(t, m.Attach(tk, p, r))

	// Running: once every line is logged, stored and read, the older ones leave memory.
	waitTrimmed(t, tk, n)
	// Resume from the start while it runs: the stored part, then memory, then live.
	early := newReader(false)
	es, err := m.Subscribe(context.Background(), p, tk.ID, 0, early)
	if err != nil {
		t.Fatal(err)
	}
	early.run(t, es)
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	live := r.wait(t)
	if int64(len(live)) < n+2 {
		t.Fatalf("live subscriber got %d frames, want at least %d", len(live), n+2)
	}
	if got := early.wait(t); !reflect.DeepEqual(got, live) {
		t.Fatalf("resumed while running: got %d frames, want the live subscriber's %d", len(got), len(live))
	}
	es.Close()

	// Ended and retained in memory: still a window, and every resume point is served.
	settle(t, m)
	if _, ok := m.Get(p, tk.ID); !ok {
		t.Fatal("finished task left memory; this test is about one that stays")
	}
	waitTrimmed(t, tk, n)
	total := int64(len(live))
	for _, after := range []int64{0, 1, logWindow - 1, 2*logWindow + 7, total - logWindow, total - 1, total} {
		t.Run("afterSeq="+strconv.FormatInt(after, 10), func(t *testing.T) {
			got := subscribeAll(t, m, tk.ID, after)
			if want := live[after:]; len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
				t.Fatalf("got %d frames, want %d", len(got), len(want))
			}
		})
	}
}

// failingLog is the real event log whose reads fail on demand.
type failingLog struct {
	EventLog
	fail atomic.Bool
}

func (f *failingLog) TaskEvents(ctx context.Context, id string, after int64, limit int) ([]record.Event, error) {
	if f.fail.Load() {
		return nil, errors.New("store unreachable")
	}
	return f.EventLog.TaskEvents(ctx, id, after, limit)
}

// A subscriber behind the window whose event log read fails gets the error, not a skip:
// Pending serves nothing before the window, and the cursor does not move.
func TestLogWindowStoreFailureIsAnError(t *testing.T) {
	e := newEnv(t)
	fl := &failingLog{EventLog: e.db}
	m := newManager(t, e, linesScript(4*logWindow), func(o *Options) { o.Events = fl })
	p := principal("acme", "alice")
	live := run(t, m, p, "ok")
	settle(t, m)
	tk, ok := m.Get(p, live[0]["taskId"].(string))
	if !ok {
		t.Fatal("task left memory")
	}
	waitTrimmed(t, tk, 4*logWindow)
	fl.fail.Store(true)
	s, err := m.Subscribe(context.Background(), p, tk.ID, 10, newReader(true))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Stored() {
		t.Fatal("a resume from seq 10 is not read from the event log")
	}
	if frames, last, _ := s.Pending(nil, 16, 1<<20); len(frames) != 0 || last != 10 {
		t.Fatalf("Pending served %d frames through seq %d from before the window", len(frames), last)
	}
	if _, last, _, err := s.ReadStored(context.Background(), nil, 16, 1<<20); err == nil || last != 10 {
		t.Fatalf("ReadStored = last %d, err %v; want the store's error at seq 10", last, err)
	}
	fl.fail.Store(false)
	frames, last, end, err := s.ReadStored(context.Background(), nil, 16, 1<<20)
	if err != nil || len(frames) != 16 || last != 26 {
		t.Fatalf("ReadStored after recovery = %d frames through %d, %v", len(frames), last, err)
	}
	s.Advance(last, end)
	// A byte bound below one frame still moves on one frame at a time, and never skips.
	for want := int64(27); want <= 30; want++ {
		frames, last, end, err := s.ReadStored(context.Background(), nil, 16, 1)
		if err != nil || len(frames) != 1 || last != want {
			t.Fatalf("ReadStored(maxBytes 1) = %d frames through %d, %v; want one, seq %d", len(frames), last, err, want)
		}
		s.Advance(last, end)
	}
}
