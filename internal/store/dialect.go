package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers database/sql driver "pgx"
	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect holds everything the two databases disagree on; every query is written once, with
// "?" placeholders, and goes through rebind.
type dialect interface {
	name() string
	gooseDialect() goose.Dialect
	migrationsDir() string
	rebind(query string) string
	forUpdate() string
	timeArg(t time.Time) any
	// utcDay is the expression of a time column's UTC day as YYYY-MM-DD.
	utcDay(col string) string
	isUniqueViolation(err error) bool
	isForeignKeyViolation(err error) bool
}

// sqliteTimeLayout is fixed-width so that TEXT comparison is time comparison.
const sqliteTimeLayout = "2006-01-02T15:04:05.000000Z"

type sqliteDialect struct{}

func (sqliteDialect) name() string                { return DriverSQLite }
func (sqliteDialect) gooseDialect() goose.Dialect { return goose.DialectSQLite3 }
func (sqliteDialect) migrationsDir() string       { return "sqlite" }
func (sqliteDialect) rebind(q string) string      { return q }
func (sqliteDialect) forUpdate() string           { return "" }
func (sqliteDialect) timeArg(t time.Time) any     { return normTime(t).Format(sqliteTimeLayout) }
func (sqliteDialect) utcDay(col string) string    { return "substr(" + col + ", 1, 10)" }

func (sqliteDialect) isUniqueViolation(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) &&
		(e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE)
}

func (sqliteDialect) isForeignKeyViolation(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

type postgresDialect struct{}

func (postgresDialect) name() string                { return DriverPostgres }
func (postgresDialect) gooseDialect() goose.Dialect { return goose.DialectPostgres }
func (postgresDialect) migrationsDir() string       { return "postgres" }
func (postgresDialect) forUpdate() string           { return " FOR UPDATE" }
func (postgresDialect) timeArg(t time.Time) any     { return normTime(t) }
func (postgresDialect) utcDay(col string) string {
	return "to_char(" + col + " AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
}

func (postgresDialect) isUniqueViolation(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505"
}

func (postgresDialect) isForeignKeyViolation(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23503"
}

// rebind numbers the "?" placeholders outside quotes: '…' strings, "…" identifiers.
func (postgresDialect) rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	var quote byte // 0, '\'' or '"'
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0 // a doubled quote re-enters on the next byte, which is harmless
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// TimeDest returns a scan destination that reads a time stored with DB.TimeArg into *dst, in UTC.
func TimeDest(dst *time.Time) sql.Scanner { return timeDest{dst: dst} }

// NullTimeDest is TimeDest for a nullable column: NULL leaves *dst nil.
func NullTimeDest(dst **time.Time) sql.Scanner { return nullTimeDest{dst: dst} }

type timeDest struct{ dst *time.Time }

func (d timeDest) Scan(src any) error {
	if src == nil {
		return errors.New("store: scan NULL into time.Time")
	}
	t, err := parseTime(src)
	if err != nil {
		return err
	}
	*d.dst = t
	return nil
}

type nullTimeDest struct{ dst **time.Time }

func (d nullTimeDest) Scan(src any) error {
	if src == nil {
		*d.dst = nil
		return nil
	}
	t, err := parseTime(src)
	if err != nil {
		return err
	}
	*d.dst = &t
	return nil
}

func parseTime(src any) (time.Time, error) {
	switch v := src.(type) {
	case time.Time:
		return v.UTC(), nil
	case string:
		return parseTimeText(v)
	case []byte:
		return parseTimeText(string(v))
	}
	return time.Time{}, fmt.Errorf("store: cannot scan %T into time.Time", src)
}

func parseTimeText(s string) (time.Time, error) {
	// RFC3339Nano parsing accepts any fraction width, so rows written by hand still read.
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: bad stored time %q", s)
	}
	return t.UTC(), nil
}
