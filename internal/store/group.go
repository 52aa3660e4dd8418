package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// maxGroup bounds the writes committed together, so one transaction stays short.
const maxGroup = 128

// errClosed is returned for writes submitted after Close.
var errClosed = errors.New("store: closed")

// committer runs the hot task writes (create, status updates) of many goroutines in shared
// transactions on SQLite's one writer connection: group commit. Handed the connection one
// statement at a time, as database/sql does, a burst of a thousand swarms becomes a thousand
// transactions and a thousand goroutine hand-offs (to a waiter database/sql picks at random),
// and under load the last waiters time out; grouped, a burst costs a few commits.
//
// Each write runs under a savepoint, so one failing write (a duplicate id) is undone alone
// and the others of its group still commit. A write whose context has ended before its turn
// is not run; once running, it finishes (interrupting a statement inside a transaction would
// make SQLite roll back the whole group).
type committer struct {
	db   *DB
	ops  chan *groupOp // unbuffered: a send succeeds only while run is receiving
	quit chan struct{}
	done chan struct{}
}

type groupOp struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	err  error
	done chan struct{}
}

func newCommitter(db *DB) *committer {
	c := &committer{db: db, ops: make(chan *groupOp), quit: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// do runs fn in a group transaction and returns its error, or the commit's.
func (c *committer) do(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	op := &groupOp{ctx: ctx, fn: fn, done: make(chan struct{})}
	select {
	case c.ops <- op:
	case <-c.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Taken: wait for the outcome, which is at most one group's work away.
	<-op.done
	return op.err
}

// close stops run once the writes it has taken are committed.
func (c *committer) close() {
	close(c.quit)
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	batch := make([]*groupOp, 0, maxGroup)
	for {
		select {
		case op := <-c.ops:
			batch = append(batch[:0], op)
		case <-c.quit:
			return
		}
		// Everyone already waiting joins this group.
	fill:
		for len(batch) < maxGroup {
			select {
			case op := <-c.ops:
				batch = append(batch, op)
			default:
				break fill
			}
		}
		c.commit(batch)
		clear(batch)
	}
}

func (c *committer) commit(batch []*groupOp) {
	ctx := context.Background()
	defer func() {
		for _, op := range batch {
			close(op.done)
		}
		// Statements first run in the group are prepared now that the writer is free.
		c.db.wstmts.prepareWanted(ctx, c.db.w)
	}()
	tx, err := c.db.w.BeginTx(ctx, nil)
	if err != nil {
		for _, op := range batch {
			op.err = fmt.Errorf("store: begin: %w", err)
		}
		return
	}
	ran := false
	for _, op := range batch {
		if err := op.ctx.Err(); err != nil {
			op.err = err
			continue
		}
		if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
			op.err = fmt.Errorf("store: savepoint: %w", err)
			continue
		}
		op.err = op.fn(context.WithoutCancel(op.ctx), tx)
		if op.err != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO w"); err != nil {
				// The transaction is in an unknown state: fail the group.
				_ = tx.Rollback()
				for _, o := range batch {
					if o.err == nil {
						o.err = fmt.Errorf("store: rollback to savepoint: %w", err)
					}
				}
				return
			}
		} else {
			ran = true
		}
		_, _ = tx.ExecContext(ctx, "RELEASE w")
	}
	if !ran {
		_ = tx.Rollback()
		return
	}
	if err := tx.Commit(); err != nil {
		for _, op := range batch {
			if op.err == nil {
				op.err = fmt.Errorf("store: commit: %w", err)
			}
		}
	}
}

// rowTx runs a query returning one row (already rebound) in tx, prepared once per connection.
func (db *DB) rowTx(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	s := db.wstmts.lookup(query)
	if s == nil {
		return tx.QueryRowContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, s).QueryRowContext(ctx, args...)
}
