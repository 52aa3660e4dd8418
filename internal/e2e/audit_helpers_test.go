package e2e

import (
	"path/filepath"
	"testing"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/store"
)

// auditReader opens the gateway's SQLite file as a reviewer with database access would (the
// server may be running: SQLite in WAL mode lets another process read) and returns a reader
// of its audit log, and the function that closes the file.
func auditReader(t *testing.T, dataDir string) (*audit.Reader, func()) {
	t.Helper()
	db, err := store.Open(t.Context(), store.Config{Driver: store.DriverSQLite, Path: filepath.Join(dataDir, "flowgate.db"), SkipMigrations: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.NewReader(audit.ReaderOptions{Storage: db})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return r, func() { db.Close() }
}

// auditRecords reads every audit record of a chain straight from the gateway's SQLite file.
func auditRecords(t *testing.T, g *gateway, tenant string) []audit.Record {
	t.Helper()
	ctx := t.Context()
	r, done := auditReader(t, g.dataDir)
	defer done()
	var out []audit.Record
	cursor := ""
	for {
		recs, next, err := r.Query(ctx, audit.Filter{Tenant: tenant, Limit: 1000, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recs...)
		if next == "" {
			return out
		}
		cursor = next
	}
}

func auditHas(t *testing.T, g *gateway, action string) bool {
	t.Helper()
	for _, r := range auditRecords(t, g, "demo") {
		if r.Action == action {
			return true
		}
	}
	return false
}
