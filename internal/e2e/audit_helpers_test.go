package e2e

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/store"
)

// auditRecords reads every audit record of a chain straight from the gateway's SQLite file,
// as a reviewer with database access would.
func auditRecords(t *testing.T, g *gateway, tenant string) []audit.Record {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{Driver: "sqlite", Path: filepath.Join(g.dataDir, "flowgate.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := audit.NewReader(audit.ReaderOptions{Storage: db})
	if err != nil {
		t.Fatal(err)
	}
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
