package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/s2"

	"github.com/flowgate/flowgate/internal/task/record"
)

// The task event log (migrations 00008_task_events.sql, DESIGN §17): every event frame of a
// task, written behind the live stream in batches by package task, served from here once the
// task has left memory, and pruned after tasks.event_retention. Rows carry no tenant: callers
// reach a task's events only through its tasks row, where the tenant is checked.
//
// A row holds a run of one task's consecutive events (first_seq..last_seq), their frames
// packed as uvarint length + bytes and compressed as one S2 block (Snappy's format, from
// github.com/klauspost/compress): what a batch brings of a task is one row, not one per event.
// Per-row costs (the B-tree insert, the statement, the driver's argument conversion)
// dominated at a row per event — on the order of the gateway's whole CPU per streamed event —
// and are paid per run instead; and the store's own cost is its bytes (SQLite writes each page
// to the WAL and again at the checkpoint), which JSON frames, repeating their keys event after
// event, shrink to a fifth to a tenth of at some 3 GB/s. Readers skip what they already have,
// so overlapping runs (a reaper copying a dead node's stream) are harmless.

// Input bounds of the event log.
const (
	// MaxEventFrameBytes bounds one stored frame. A frame is an engine line
	// (engine.max_line_bytes, 1 MiB by default) in the gateway's envelope, and a line that is
	// not JSON is escaped as a string, up to six bytes per byte (\u0000): 1 MiB of control
	// bytes makes a 6 MiB frame. The bound is the default task log bound
	// (tasks.max_task_log_bytes), past which the task ends anyway.
	MaxEventFrameBytes = 64 << 20
	// MaxEventsPage bounds the events TaskEvents returns at once.
	MaxEventsPage = 1000
	// maxRunBytes bounds the frames packed in one row (a single larger frame gets a row of
	// its own), so that reading from the middle of a task decodes little it does not need.
	maxRunBytes = 256 << 10
	// eventRowsPage is how many rows TaskEvents reads per query.
	eventRowsPage = 32
	// defaultPruneTasks and maxPruneTasks bound the tasks PruneTaskEvents empties in one call,
	// so that one call is one short transaction.
	defaultPruneTasks = 100
	maxPruneTasks     = 1000
)

const (
	eventInsert = "INSERT INTO task_events (task_id, first_seq, last_seq, frames) VALUES (?, ?, ?, ?)"
	// A batch retried after a failure that had in fact committed starts at the same seq, and
	// may carry more events than the first try: the longer run wins, so a retry is harmless
	// and loses nothing.
	eventsKeepLonger = " ON CONFLICT (task_id, first_seq) DO UPDATE SET last_seq = excluded.last_seq, frames = excluded.frames" +
		" WHERE excluded.last_seq > task_events.last_seq"
	// The final event of an interrupted task replaces whatever a reaped node that was not
	// quite dead wrote at that seq meanwhile: the task's last_seq must name its end.
	eventsReplace = " ON CONFLICT (task_id, first_seq) DO UPDATE SET last_seq = excluded.last_seq, frames = excluded.frames"
)

// AppendEvents writes events in one transaction; an event already stored (same task and seq)
// is kept, so writing a batch again is harmless. Every event is checked first: a task id of
// 1 to MaxTaskIDBytes bytes of UTF-8, a seq > 0 and a frame of 1 to MaxEventFrameBytes bytes,
// or nothing is written and the error wraps ErrInvalid.
func (db *DB) AppendEvents(ctx context.Context, events []record.Event) error {
	if len(events) == 0 {
		return nil
	}
	if err := checkEvents(events); err != nil {
		return err
	}
	var err error
	start := db.clock()
	if db.group != nil {
		// SQLite: the batch joins the task writes' group transaction on the one writer
		// instead of queueing for the connection behind them.
		err = db.group.do(ctx, func(ctx context.Context, tx *sql.Tx) error {
			return db.insertEvents(ctx, tx, events, eventsKeepLonger)
		})
	} else {
		err = db.inTx(ctx, func(tx *sql.Tx) error {
			return db.insertEvents(ctx, tx, events, eventsKeepLonger)
		})
	}
	db.done(OpAppendEvents, start, err)
	if err != nil {
		return fmt.Errorf("store: append task events: %w", err)
	}
	return nil
}

func checkEvents(events []record.Event) error {
	prev := ""
	for i := range events {
		e := &events[i]
		// A batch holds runs of one task's events: its id is checked once per run.
		if e.TaskID != prev || i == 0 {
			if e.TaskID == "" || len(e.TaskID) > MaxTaskIDBytes || !utf8.ValidString(e.TaskID) {
				return kindErr(ErrInvalid, record.ErrInvalidEvent, "task event %d: task id must be 1 to %d bytes of UTF-8", i, MaxTaskIDBytes)
			}
			prev = e.TaskID
		}
		if e.Seq <= 0 {
			return kindErr(ErrInvalid, record.ErrInvalidEvent, "task event %d: seq must be positive", i)
		}
		if len(e.Frame) == 0 || len(e.Frame) > MaxEventFrameBytes {
			return kindErr(ErrInvalid, record.ErrInvalidEvent, "task event %d: frame must be 1 to %d bytes", i, MaxEventFrameBytes)
		}
	}
	return nil
}

// insertEvents writes checked events in tx, a row per run of one task's consecutive seqs.
// conflict is eventsKeepLonger or eventsReplace.
func (db *DB) insertEvents(ctx context.Context, tx *sql.Tx, events []record.Event, conflict string) error {
	q := db.Rebind(eventInsert + conflict)
	bufs := packBuffers.Get().(*packBuffer)
	defer packBuffers.Put(bufs)
	buf, packed := bufs.plain[:0], bufs.packed[:0]
	defer func() { bufs.plain, bufs.packed = buf[:0], packed[:0] }()
	for len(events) > 0 {
		n, size := 1, len(events[0].Frame)
		for n < len(events) && events[n].TaskID == events[0].TaskID && events[n].Seq == events[n-1].Seq+1 &&
			size+len(events[n].Frame) <= maxRunBytes {
			size += len(events[n].Frame)
			n++
		}
		run := events[:n]
		events = events[n:]
		buf = slices.Grow(buf[:0], size+n*binary.MaxVarintLen32)
		for i := range run {
			buf = binary.AppendUvarint(buf, uint64(len(run[i].Frame)))
			buf = append(buf, run[i].Frame...)
		}
		packed = s2.Encode(packed[:cap(packed)], buf)
		if _, err := db.execTx(ctx, tx, q, run[0].TaskID, run[0].Seq, run[n-1].Seq, packed); err != nil {
			return err
		}
	}
	return nil
}

// packBuffer is the memory a batch is packed and compressed in, reused: a batch is up to
// megabytes, and allocating (and zeroing) it afresh each time was a visible part of the
// event log's cost.
type packBuffer struct{ plain, packed []byte }

var packBuffers = sync.Pool{New: func() any { return new(packBuffer) }}

// TaskEvents returns the events of a task with seq > afterSeq in seq order, at most limit
// (≤ 0 or more than MaxEventsPage: MaxEventsPage). It does not check who may read them: the
// caller has found the task through its tenant first. The frames of one row share its memory.
func (db *DB) TaskEvents(ctx context.Context, taskID string, afterSeq int64, limit int) ([]record.Event, error) {
	if limit <= 0 || limit > MaxEventsPage {
		limit = MaxEventsPage
	}
	q := db.Rebind("SELECT first_seq, last_seq, frames FROM task_events WHERE task_id = ? AND last_seq > ? ORDER BY first_seq LIMIT ?")
	var out []record.Event
	next := afterSeq + 1 // the lowest seq still wanted: overlapping runs are skipped past it
	for len(out) < limit {
		type run struct {
			first, last int64
			frames      []byte
		}
		rows, err := queryRows(ctx, db, db.db, "read task events", q, func(s scanner) (run, error) {
			var r run
			if err := s.Scan(&r.first, &r.last, &r.frames); err != nil {
				return run{}, fmt.Errorf("store: read task events: %w", err)
			}
			return r, nil
		}, taskID, next-1, eventRowsPage)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			b, err := s2.Decode(nil, r.frames)
			if err != nil {
				return nil, fmt.Errorf("store: read task events: task %s run %d..%d: %w", taskID, r.first, r.last, err)
			}
			for seq := r.first; seq <= r.last && len(out) < limit; seq++ {
				size, k := binary.Uvarint(b)
				if k <= 0 || uint64(len(b)-k) < size {
					return nil, fmt.Errorf("store: read task events: task %s run %d..%d is corrupt at seq %d", taskID, r.first, r.last, seq)
				}
				frame := b[k : k+int(size) : k+int(size)]
				b = b[k+int(size):]
				if seq >= next {
					out = append(out, record.Event{TaskID: taskID, Seq: seq, Frame: frame})
					next = seq + 1
				}
			}
		}
		if len(rows) < eventRowsPage {
			break
		}
	}
	return out, nil
}

// LastEventSeq returns the highest stored seq of a task's events, 0 when it has none.
func (db *DB) LastEventSeq(ctx context.Context, taskID string) (int64, error) {
	var seq int64
	err := db.queryRow(ctx, db.Rebind("SELECT COALESCE(MAX(last_seq), 0) FROM task_events WHERE task_id = ?"), taskID).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("store: last task event seq: %w", err)
	}
	return seq, nil
}

// PruneTaskEvents deletes the events of up to limit tasks that ended before endedBefore (limit
// ≤ 0: 100; at most 1000) and returns how many events it deleted; the caller repeats while it
// returns more than 0.
//
// Candidates are found from the events' side: a loose scan of the distinct task ids still
// holding events (a seek per task in the primary key), each looked up in tasks by its key. That
// costs what is retained — tasks within the retention and running ones — however long the
// history of tasks whose events are long gone; starting from tasks by ended_at would walk that
// whole history on every call that finds nothing left. The lookup is a scalar subquery so that
// PostgreSQL keeps it a per-id probe rather than joining the whole tasks table.
func (db *DB) PruneTaskEvents(ctx context.Context, endedBefore time.Time, limit int) (int, error) {
	if limit <= 0 {
		limit = defaultPruneTasks
	}
	limit = min(limit, maxPruneTasks)
	found, err := queryRows(ctx, db, db.db, "prune task events", db.Rebind(`
		WITH RECURSIVE ids(id) AS (
			SELECT MIN(task_id) FROM task_events
			UNION ALL
			SELECT (SELECT MIN(e.task_id) FROM task_events e WHERE e.task_id > ids.id) FROM ids WHERE ids.id IS NOT NULL
		)
		SELECT id FROM ids
		WHERE id IS NOT NULL AND (SELECT t.ended_at FROM tasks t WHERE t.id = ids.id) < ?
		LIMIT ?`), func(s scanner) (any, error) {
		var id string
		if err := s.Scan(&id); err != nil {
			return nil, fmt.Errorf("store: prune task events: %w", err)
		}
		return id, nil
	}, db.TimeArg(endedBefore), limit)
	if err != nil || len(found) == 0 {
		return 0, err
	}
	// The search ran outside the write transaction (on SQLite it would hold the one writer
	// for its whole scan); an ended task stays ended, so its ids are still prunable now.
	counts, err := queryRows(ctx, db, db.w, "prune task events", db.Rebind("DELETE FROM task_events WHERE task_id IN (?"+
		strings.Repeat(", ?", len(found)-1)+") RETURNING last_seq - first_seq + 1"), func(s scanner) (int64, error) {
		var n int64
		if err := s.Scan(&n); err != nil {
			return 0, fmt.Errorf("store: prune task events: %w", err)
		}
		return n, nil
	}, found...)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, c := range counts {
		n += c
	}
	return int(n), nil
}

// InterruptTasks ends the pending and running tasks of node (every node when node is "") as
// interrupted, now, with errMsg unless they already carry an error, and returns them. Each
// one's last_seq becomes its highest stored event seq + 1, and final(t) of the ended task is
// stored as the event at that seq (none when final is nil or returns nothing): a client replaying the
// log sees the task end right after the last event that survived. Several replicas may race to
// end one node's tasks: each task is ended and returned by exactly one of them.
func (db *DB) InterruptTasks(ctx context.Context, node, errMsg string, final func(t record.Task) []byte) ([]record.Task, error) {
	errMsg = truncateUTF8(errMsg, MaxTaskErrorBytes)
	// The candidates are locked in id order (on PostgreSQL; SQLite's transaction holds the
	// write lock) so that racing callers queue on the first row instead of deadlocking; the
	// status guard, re-checked on the row a winner has changed, leaves each task to one caller.
	q := db.Rebind(`UPDATE tasks SET
		status = ?, ended_at = ?,
		error_msg = CASE WHEN error_msg = '' THEN ? ELSE error_msg END,
		last_seq = COALESCE((SELECT MAX(e.last_seq) FROM task_events e WHERE e.task_id = tasks.id), 0) + 1
		WHERE id IN (SELECT id FROM tasks WHERE status IN (?, ?) AND (? = '' OR node = ?) ORDER BY id` + db.ForUpdate() + `)
		AND status IN (?, ?)
		RETURNING ` + taskCols)
	var out []Task
	err := db.InTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, q, TaskInterrupted, db.TimeArg(db.timeNow()), errMsg,
			TaskPending, TaskRunning, node, node, TaskPending, TaskRunning)
		if err != nil {
			return fmt.Errorf("store: interrupt tasks: %w", err)
		}
		out = out[:0]
		for rows.Next() {
			t, err := scanTask(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, t)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: interrupt tasks: %w", err)
		}
		events := make([]record.Event, 0, len(out))
		for _, t := range out {
			if final == nil {
				break
			}
			if f := final(t); len(f) > 0 {
				events = append(events, record.Event{TaskID: t.ID, Seq: t.LastSeq, Frame: f})
			}
		}
		if err := checkEvents(events); err != nil {
			return fmt.Errorf("store: interrupt tasks: final event: %w", err)
		}
		if err := db.insertEvents(ctx, tx, events, eventsReplace); err != nil {
			return fmt.Errorf("store: interrupt tasks: final events: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Task) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
