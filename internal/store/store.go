package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
)

// Sentinel errors callers branch on. Validation failures wrap ErrInvalid.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid input")
)

// kindError is a store error of one kind (ErrNotFound, ErrConflict) that also matches the
// domain package's own sentinel (tenant.ErrNotFound, task.ErrNotFound, …): the packages that
// use the store through their own interfaces branch on their sentinels without importing it.
type kindError struct {
	msg          string
	kind, domain error
}

func (e *kindError) Error() string { return e.msg }

// Is reports whether target is the store's kind or the domain's sentinel.
func (e *kindError) Is(target error) bool { return target == e.kind || target == e.domain }

func kindErr(kind, domain error, format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...) + ": " + kind.Error(), kind: kind, domain: domain}
}

// Drivers accepted in Config.Driver.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// List bounds applied to every List* call: a limit ≤ 0 means DefaultListLimit, more than
// MaxListLimit is cut to MaxListLimit.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

const (
	defaultSQLiteConns   = 8
	defaultPostgresConns = 10
	// sqliteBusyTimeout is how long a writer waits for the write lock before SQLITE_BUSY. Writes
	// are short, so reaching it means something is stuck, not that the load is high.
	sqliteBusyTimeout = 10 * time.Second
)

// Config selects and configures the driver.
type Config struct {
	Driver       string // DriverSQLite or DriverPostgres
	DSN          string // postgres URL or keyword/value string (pgx syntax); postgres only
	Path         string // database file; sqlite only; its directory is created (0700) if missing
	MaxOpenConns int    // 0 = driver default (sqlite 8, postgres 10)

	// SkipMigrations leaves the schema alone at Open, for `flowgate migrate status`.
	SkipMigrations bool
	// Now is the clock used for the timestamps the store sets itself; nil = time.Now.
	Now func() time.Time
}

// DB is the store: database/sql pools plus the dialect they speak. Safe for concurrent use.
type DB struct {
	db *sql.DB
	// w runs every write. On SQLite it is a pool of one connection: SQLite has one writer
	// at a time, and writers contending inside SQLite wait in its busy handler, which polls
	// with sleeps of 1, 2, 5, 10, 15, 20… ms — tens of milliseconds lost on a lock held for
	// a fraction of one. Queued here they are handed the connection the moment it is free.
	// On PostgreSQL it is db.
	w        *sql.DB
	wstmts   stmtCache
	group    *committer // SQLite only: group commit of the hot task writes
	dialect  dialect
	logger   *slog.Logger
	now      func() time.Time
	provider *goose.Provider
	stmts    stmtCache
	obs      atomic.Pointer[observerRef] // SetObserver
}

// Open opens the database, checks it answers and, unless cfg.SkipMigrations, applies pending
// migrations.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*DB, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var (
		d        dialect
		sqlDB    *sql.DB
		writer   *sql.DB
		maxConns = cfg.MaxOpenConns
		err      error
	)
	switch cfg.Driver {
	case DriverSQLite:
		d = sqliteDialect{}
		if maxConns <= 0 {
			maxConns = defaultSQLiteConns
		}
		sqlDB, err = openSQLite(cfg.Path)
		if err == nil {
			if writer, err = openSQLite(cfg.Path); err != nil {
				sqlDB.Close()
			}
		}
	case DriverPostgres:
		d = postgresDialect{}
		if maxConns <= 0 {
			maxConns = defaultPostgresConns
		}
		sqlDB, err = openPostgres(cfg.DSN)
	default:
		return nil, fmt.Errorf("store: unknown driver %q (want %q or %q)", cfg.Driver, DriverSQLite, DriverPostgres)
	}
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(maxConns)
	sqlDB.SetMaxIdleConns(maxConns)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	if cfg.Driver == DriverPostgres {
		// Lets connections move to a new primary after a failover.
		sqlDB.SetConnMaxLifetime(30 * time.Minute)
	}
	if writer == nil {
		writer = sqlDB
	} else {
		writer.SetMaxOpenConns(1)
		writer.SetMaxIdleConns(1)
		writer.SetConnMaxIdleTime(0)
	}
	closeAll := func() {
		if writer != sqlDB {
			writer.Close()
		}
		sqlDB.Close()
	}

	db := &DB{db: sqlDB, w: writer, dialect: d, logger: logger, now: cfg.Now}
	if db.now == nil {
		db.now = time.Now
	}
	if err := db.Ping(ctx); err != nil {
		closeAll()
		return nil, fmt.Errorf("store: ping %s: %w", cfg.Driver, err)
	}
	if db.provider, err = newProvider(ctx, writer, d, logger); err != nil {
		closeAll()
		return nil, err
	}
	if !cfg.SkipMigrations {
		if err := db.Migrate(ctx); err != nil {
			closeAll()
			return nil, err
		}
	}
	if cfg.Driver == DriverSQLite {
		db.group = newCommitter(db)
	}
	return db, nil
}

func openSQLite(path string) (*sql.DB, error) {
	if path == "" {
		return nil, errors.New("store: sqlite path is empty")
	}
	// The driver reads everything after '?' as its own parameters and "file:" as a URI.
	if strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("store: sqlite path %q must be a plain file path", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create sqlite directory: %w", err)
	}
	// Create the file ourselves so it is private; SQLite gives -wal and -shm the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite file: %w", err)
	}
	f.Close()
	// _txlock=immediate: a write transaction takes the write lock at BEGIN, so two writers
	// that both read first can never deadlock on the lock upgrade (which busy_timeout cannot
	// resolve); they queue on busy_timeout instead. Reads outside transactions run in parallel
	// under WAL.
	dsn := path + "?_txlock=immediate" +
		fmt.Sprintf("&_busy_timeout=%d", sqliteBusyTimeout.Milliseconds()) +
		"&_journal_mode=WAL&_synchronous=NORMAL&_foreign_keys=1"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite: %w", err)
	}
	return db, nil
}

func openPostgres(dsn string) (*sql.DB, error) {
	if dsn == "" {
		return nil, errors.New("store: postgres dsn is empty")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN, password included.
		return nil, errors.New("store: invalid postgres dsn")
	}
	return db, nil
}

// Close closes the pools.
func (db *DB) Close() error {
	if db.group != nil {
		db.group.close()
	}
	db.stmts.close()
	db.wstmts.close()
	if db.w != db.db {
		db.w.Close()
	}
	return db.db.Close()
}

// Driver is DriverSQLite or DriverPostgres.
func (db *DB) Driver() string { return db.dialect.name() }

// SQL is the underlying pool, for packages that keep their own tables. Write queries with "?"
// placeholders and pass them through Rebind; pass times through TimeArg and scan them with
// TimeDest/NullTimeDest.
func (db *DB) SQL() *sql.DB { return db.db }

// Ping checks that the database answers, for /readyz.
func (db *DB) Ping(ctx context.Context) (err error) {
	defer db.track(OpPing, db.clock(), &err)
	return db.db.PingContext(ctx)
}

// Rebind turns the "?" placeholders of query into the driver's own ("$1", "$2", … for
// PostgreSQL). Question marks inside quoted strings or identifiers are left alone; the
// PostgreSQL jsonb "?" operators cannot be used in a rebound query.
func (db *DB) Rebind(query string) string { return db.dialect.rebind(query) }

// ForUpdate is " FOR UPDATE" on PostgreSQL and "" on SQLite, to append to a SELECT inside InTx
// that reads a row it is about to change (on SQLite the transaction already holds the write lock).
func (db *DB) ForUpdate() string { return db.dialect.forUpdate() }

// TimeArg converts t into the value the driver stores: UTC, truncated to the microsecond (what
// PostgreSQL keeps), as TIMESTAMPTZ on PostgreSQL and as fixed-width TEXT on SQLite, which
// sorts and compares correctly as a string.
func (db *DB) TimeArg(t time.Time) any { return db.dialect.timeArg(t) }

// NullTimeArg is TimeArg for an optional time: nil stays SQL NULL.
func (db *DB) NullTimeArg(t *time.Time) any {
	if t == nil {
		return nil
	}
	return db.dialect.timeArg(*t)
}

// InTx runs fn in a transaction, committing if fn returns nil and rolling back otherwise (fn's
// error is returned as is). On SQLite the transaction holds the database write lock from its
// start, so keep it short.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	defer db.track(OpTx, db.clock(), &err)
	return db.inTx(ctx, fn)
}

// inTx is InTx for the operations observed under a name of their own.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	done := false
	defer func() {
		if !done { // fn failed or panicked
			_ = tx.Rollback()
		}
		// Statements first run inside this transaction are prepared now that its
		// connection is free again (see stmtCache.wanted).
		db.wstmts.prepareWanted(context.WithoutCancel(ctx), db.w)
	}()
	if err := fn(tx); err != nil {
		return err
	}
	done = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// timeNow is the store's clock, truncated like every stored time so values returned to the
// caller equal what a later read gives back.
func (db *DB) timeNow() time.Time { return normTime(db.now()) }

func normTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// clampLimit applies DefaultListLimit and MaxListLimit.
func clampLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultListLimit
	case n > MaxListLimit:
		return MaxListLimit
	}
	return n
}

// scanner is satisfied by *sql.Row and *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// queryRows runs query on h (the read pool, or the writer for a statement that writes) and
// scans every row; op names the operation in errors.
func queryRows[T any](ctx context.Context, db *DB, h *sql.DB, op, query string, scan func(scanner) (T, error), args ...any) (_ []T, err error) {
	defer db.track(OpQuery, db.clock(), &err)
	rows, err := h.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", op, err)
	}
	return out, nil
}
