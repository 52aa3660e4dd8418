package store

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStmts bounds the statement cache; queries past it run unprepared.
const maxCachedStmts = 512

// stmtCache keeps prepared statements for the hot paths (audit appends, task writes), so
// SQLite parses each statement once per connection instead of on every call — the parser
// was a fifth of the CPU of a busy gateway. database/sql re-prepares a cached statement on
// each pooled connection as needed.
type stmtCache struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
	// wanted are queries first seen inside a transaction. They are prepared after it: on
	// SQLite the writer pool has one connection, which the transaction holds, and preparing
	// on the pool would wait for it forever.
	wanted map[string]struct{}
}

// lookup returns the prepared statement for query, or nil (remembering that query is wanted).
func (c *stmtCache) lookup(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[query]; ok {
		return s
	}
	if len(c.m)+len(c.wanted) < maxCachedStmts {
		if c.wanted == nil {
			c.wanted = map[string]struct{}{}
		}
		c.wanted[query] = struct{}{}
	}
	return nil
}

// prepareWanted prepares the queries lookup was asked for; the caller holds no connection
// of pool. Failures are left for the next time (the queries run unprepared meanwhile).
func (c *stmtCache) prepareWanted(ctx context.Context, pool *sql.DB) {
	c.mu.Lock()
	if len(c.wanted) == 0 {
		c.mu.Unlock()
		return
	}
	queries := make([]string, 0, len(c.wanted))
	for q := range c.wanted {
		queries = append(queries, q)
	}
	clear(c.wanted)
	c.mu.Unlock()
	for _, q := range queries {
		_, _ = c.get(ctx, pool, q)
	}
}

// get returns the prepared statement for query, or nil when the cache is full (the caller
// then runs the query unprepared).
func (c *stmtCache) get(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	s, ok := c.m[query]
	full := len(c.m) >= maxCachedStmts
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	if full {
		return nil, nil
	}
	s, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	if prev, ok := c.m[query]; ok {
		s.Close()
		return prev, nil
	}
	c.m[query] = s
	return s, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.m {
		s.Close()
	}
	c.m = nil
}

// execTx runs query (already rebound) in tx, prepared once per connection.
func (db *DB) execTx(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	s := db.wstmts.lookup(query)
	if s == nil {
		return tx.ExecContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, s).ExecContext(ctx, args...)
}

// queryTx runs query (already rebound) in tx, prepared once per connection.
func (db *DB) queryTx(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	s := db.wstmts.lookup(query)
	if s == nil {
		return tx.QueryContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, s).QueryContext(ctx, args...)
}

// exec runs a write (already rebound) outside a transaction, on the writer, prepared once.
// Its callers (the task writes) observe it, under their own operation name.
func (db *DB) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := db.wstmts.get(ctx, db.w, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return db.w.ExecContext(ctx, query, args...)
	}
	return s.ExecContext(ctx, args...)
}

// writeRow runs a write that returns a row (UPDATE … RETURNING) on the writer. Like exec,
// it is observed by its caller.
func (db *DB) writeRow(ctx context.Context, query string, args ...any) *sql.Row {
	return rowOn(ctx, &db.wstmts, db.w, query, args...)
}

// queryRow runs a read (already rebound), prepared once per connection.
func (db *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	start := db.clock()
	row := rowOn(ctx, &db.stmts, db.db, query, args...)
	db.done(OpQuery, start, row.Err())
	return row
}

func rowOn(ctx context.Context, c *stmtCache, pool *sql.DB, query string, args ...any) *sql.Row {
	s, err := c.get(ctx, pool, query)
	if err != nil || s == nil {
		return pool.QueryRowContext(ctx, query, args...)
	}
	return s.QueryRowContext(ctx, args...)
}
