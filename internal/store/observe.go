package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Observer receives the latency and outcome of store operations (the server's metrics).
type Observer interface {
	// Observe reports one operation, op one of Ops. err is nil on success and for the
	// outcomes callers expect (not found, conflict, invalid input, a caller that gave up):
	// only the database's own failures count.
	Observe(op string, d time.Duration, err error)
}

// The operations an Observer is told about: a fixed set, each a metric label.
const (
	OpQuery        = "query"         // a statement returning rows (reads, and the few writes with RETURNING outside task writes)
	OpExec         = "exec"          // one write outside a transaction
	OpTx           = "tx"            // a transaction through InTx, begin to commit
	OpTaskWrite    = "task_write"    // a task created or updated (on SQLite: the wait for its group commit too)
	OpAppendEvents = "append_events" // a batch of task events into the event log
	OpAppendAudit  = "append_audit"  // a batch of audit records, sealed and appended
	OpPing         = "ping"          // the readiness check
)

// Ops lists every operation name an Observer receives.
func Ops() []string {
	return []string{OpQuery, OpExec, OpTx, OpTaskWrite, OpAppendEvents, OpAppendAudit, OpPing}
}

// observerRef boxes the interface for the atomic pointer.
type observerRef struct{ o Observer }

// SetObserver sets where operations are reported (nil: nowhere). It may be called while the
// store is in use: the audit recorder and the group committer are already writing by the
// time the server's metrics exist.
func (db *DB) SetObserver(o Observer) {
	if o == nil {
		db.obs.Store(nil)
		return
	}
	db.obs.Store(&observerRef{o})
}

// clock starts timing an operation: the zero time when nobody observes, which spares the
// clock read.
func (db *DB) clock() time.Time {
	if db.obs.Load() == nil {
		return time.Time{}
	}
	return time.Now()
}

// done reports an operation started at start (by clock).
func (db *DB) done(op string, start time.Time, err error) {
	ref := db.obs.Load()
	if ref == nil || start.IsZero() {
		return
	}
	ref.o.Observe(op, time.Since(start), db.failure(err))
}

// track is done for a deferred call over a named error result:
// defer db.track(op, db.clock(), &err).
func (db *DB) track(op string, start time.Time, err *error) { db.done(op, start, *err) }

// failure is err unless it is an outcome the caller asked about rather than a fault of the
// database: a missing row, a constraint the store uses to detect conflicts, invalid input,
// or a caller that cancelled. A deadline that ran out does count: the database was too slow
// for its caller.
func (db *DB) failure(err error) error {
	switch {
	case err == nil,
		errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrInvalid),
		errors.Is(err, sql.ErrNoRows), errors.Is(err, context.Canceled),
		db.dialect.isUniqueViolation(err), db.dialect.isForeignKeyViolation(err):
		return nil
	}
	return err
}

// read runs a read (already rebound) on the read pool, unprepared: for statements too rare
// to cache. It is timed to its first row.
func (db *DB) read(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	start := db.clock()
	rows, err := db.db.QueryContext(ctx, query, args...)
	db.done(OpQuery, start, err)
	return rows, err
}

// readRow is read for a single row.
func (db *DB) readRow(ctx context.Context, query string, args ...any) *sql.Row {
	start := db.clock()
	row := db.db.QueryRowContext(ctx, query, args...)
	db.done(OpQuery, start, row.Err())
	return row
}

// write runs a write (already rebound) on the writer outside a transaction, unprepared.
func (db *DB) write(ctx context.Context, query string, args ...any) (sql.Result, error) {
	start := db.clock()
	res, err := db.w.ExecContext(ctx, query, args...)
	db.done(OpExec, start, err)
	return res, err
}
