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
	s, err := db.stmts.get(ctx, db.db, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return tx.ExecContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, s).ExecContext(ctx, args...)
}

// queryTx runs query (already rebound) in tx, prepared once per connection.
func (db *DB) queryTx(ctx context.Context, tx *sql.Tx, query string, args ...any) (*sql.Rows, error) {
	s, err := db.stmts.get(ctx, db.db, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return tx.QueryContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, s).QueryContext(ctx, args...)
}

// exec runs query (already rebound) outside a transaction, prepared once per connection.
func (db *DB) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := db.stmts.get(ctx, db.db, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return db.db.ExecContext(ctx, query, args...)
	}
	return s.ExecContext(ctx, args...)
}

// queryRow runs query (already rebound), prepared once per connection.
func (db *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	s, err := db.stmts.get(ctx, db.db, query)
	if err != nil || s == nil {
		return db.db.QueryRowContext(ctx, query, args...)
	}
	return s.QueryRowContext(ctx, args...)
}
