package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/audit/audittest"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

// sqlTamperer edits the audit tables with plain SQL, as an attacker with database access would.
type sqlTamperer struct{ db *store.DB }

var _ audittest.Tamperer = sqlTamperer{}

func (s sqlTamperer) exec(ctx context.Context, q string, args ...any) error {
	_, err := s.db.SQL().ExecContext(ctx, s.db.Rebind(q), args...)
	return err
}

func (s sqlTamperer) PutRecord(ctx context.Context, r audit.StoredRecord) error {
	if err := s.DeleteRecord(ctx, r.Chain, r.Seq); err != nil {
		return err
	}
	return s.exec(ctx, `INSERT INTO audit_records (chain, seq, id, time_ms, action, outcome, actor_sub, prev_hash, hash, body)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Chain, r.Seq, r.ID, r.TimeMS, r.Action, r.Outcome, r.ActorSub, r.PrevHash, r.Hash, string(r.Body))
}

func (s sqlTamperer) DeleteRecord(ctx context.Context, chain string, seq int64) error {
	return s.exec(ctx, "DELETE FROM audit_records WHERE chain = ? AND seq = ?", chain, seq)
}

func (s sqlTamperer) SetHead(ctx context.Context, chain string, h audit.Head) error {
	return s.exec(ctx, "UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ?", h.Seq, h.Hash, chain)
}

func (s sqlTamperer) PutCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	if err := s.exec(ctx, "DELETE FROM audit_checkpoints WHERE chain = ? AND kind = ? AND seq = ?", c.Chain, c.Kind, c.Seq); err != nil {
		return err
	}
	return s.exec(ctx, `INSERT INTO audit_checkpoints (chain, kind, seq, hash, time_ms, key_id, signature)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, c.Chain, c.Kind, c.Seq, c.Hash, c.Time.UnixMilli(), c.KeyID, c.Signature)
}

// BreakWrites installs a trigger that makes every insert into audit_records fail. (Revoking
// INSERT would not do: the tests connect as a superuser.)
func (s sqlTamperer) BreakWrites(ctx context.Context) (func() error, error) {
	db := s.db.SQL()
	var install, remove []string
	switch s.db.Driver() {
	case store.DriverSQLite:
		install = []string{`CREATE TRIGGER audit_block BEFORE INSERT ON audit_records
			BEGIN SELECT RAISE(ABORT, 'audit writes blocked'); END`}
		remove = []string{"DROP TRIGGER audit_block"}
	case store.DriverPostgres:
		install = []string{
			`CREATE FUNCTION audit_block() RETURNS trigger LANGUAGE plpgsql AS
				'BEGIN RAISE EXCEPTION ''audit writes blocked''; END'`,
			`CREATE TRIGGER audit_block BEFORE INSERT ON audit_records FOR EACH ROW EXECUTE FUNCTION audit_block()`,
		}
		remove = []string{"DROP TRIGGER audit_block ON audit_records", "DROP FUNCTION audit_block()"}
	}
	for _, q := range install {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, err
		}
	}
	return func() error {
		for _, q := range remove {
			if _, err := db.ExecContext(context.Background(), q); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

func auditEnv(driver string) func(t *testing.T) audittest.Env {
	return func(t *testing.T) audittest.Env {
		cfg := storetest.Config(t, driver)
		db := storetest.OpenConfig(t, cfg)
		return audittest.Env{
			Storage: db,
			Tamper:  sqlTamperer{db},
			// Another pool on the same database: a second gateway process.
			Replica: func(t *testing.T) audit.Storage { return storetest.OpenConfig(t, cfg) },
		}
	}
}

func TestAuditSuite(t *testing.T) {
	storetest.Each(t, func(t *testing.T, driver string) {
		audittest.Run(t, auditEnv(driver))
	})
}

// TestAuditSQLiteTableGone: the other way a SQLite audit table becomes unwritable.
func TestAuditSQLiteTableGone(t *testing.T) {
	db := storetest.Open(t, store.DriverSQLite)
	r := audittest.NewRecorder(t, db, audit.Options{})
	ctx := context.Background()
	if err := r.Record(ctx, audittest.Rec("acme", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().ExecContext(ctx, "ALTER TABLE audit_records RENAME TO audit_records_gone"); err != nil {
		t.Fatal(err)
	}
	if err := r.Record(ctx, audittest.Rec("acme", 2)); !errors.Is(err, audit.ErrWriteFailed) {
		t.Fatalf("record into a missing table: %v", err)
	}
}

func TestAuditStorageValidation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, driver string) {
		db := storetest.Open(t, driver)
		ctx := context.Background()
		seal := func(map[string]audit.Head) ([]audit.StoredRecord, error) { return nil, nil }
		if err := db.AppendAudit(ctx, []string{"b", "a"}, seal); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("unsorted chains: %v", err)
		}
		// A seal that does not extend the head is refused and nothing is written.
		bad := func(h map[string]audit.Head) ([]audit.StoredRecord, error) {
			return []audit.StoredRecord{{Chain: "a", Seq: 7, PrevHash: h["a"].Hash, Hash: audit.GenesisHash, Body: []byte("{}")}}, nil
		}
		if err := db.AppendAudit(ctx, []string{"a"}, bad); err == nil {
			t.Fatal("a record that skips seqs was accepted")
		}
		states, err := db.AuditChains(ctx)
		if err != nil || len(states) != 0 {
			t.Fatalf("after a refused append: %+v %v", states, err)
		}
		if _, err := db.QueryAudit(ctx, audit.StoredQuery{Chain: "a"}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("zero limit: %v", err)
		}
	})
}

func BenchmarkRecord(b *testing.B) {
	for _, driver := range storetest.Drivers {
		b.Run(driver, func(b *testing.B) {
			audittest.Bench(b, storetest.Open(b, driver), audit.Options{})
		})
	}
}
