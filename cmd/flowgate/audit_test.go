package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/store"
)

// auditDataDir builds a --dev data dir whose acme chain holds n records, with a signed
// checkpoint after the first half, as a server would leave it, and returns the dir and the
// loaded configuration. before, when set, runs on the open app before it closes.
func auditDataDir(t *testing.T, n int, before func(a *app)) (string, func(args ...string) (int, string, string)) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := (&configFlags{dev: true, dataDir: dir}).load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler), appOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := a.recorder.Record(ctx, audit.Record{
			Action: audit.ActionTaskCreate, Outcome: audit.OutcomeSuccess, Tenant: "acme", Reason: fmt.Sprintf("record %d", i+1),
			Actor: audit.Actor{Sub: "alice", TokenFP: "sha256:0123456789ab"}, Target: audit.Target{Type: "task", ID: fmt.Sprint(i)},
		}); err != nil {
			t.Fatal(err)
		}
		if i+1 == n/2 {
			if _, err := a.recorder.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.recorder.Record(ctx, audit.Record{Action: audit.ActionServerStart, Outcome: audit.OutcomeSuccess, Actor: audit.Actor{Sub: "system"}}); err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(a)
	}
	a.close(ctx) // signs the final checkpoint
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errb strings.Builder
		full := append([]string{"flowgate", "audit"}, args...)
		full = append(full, "--dev", "--data-dir", dir)
		err := run(ctx, full, func(string) string { return "" }, &out, &errb)
		return exitCode(err, &errb), out.String(), errb.String()
	}
	return dir, cli
}

// sqlOn opens the data dir's database as an attacker with file access would.
func sqlOn(t *testing.T, dir string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Config{Driver: store.DriverSQLite, Path: filepath.Join(dir, "flowgate.db"), SkipMigrations: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t *testing.T, db *store.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.SQL().ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestAuditVerifyCLI(t *testing.T) {
	dir, cli := auditDataDir(t, 12, nil)

	code, out, errOut := cli("verify")
	if code != 0 || errOut != "" || !strings.Contains(out, "chain acme: ok, seq 1-12 (12 records), 2 checkpoint(s) match") ||
		!strings.Contains(out, "ok: ") {
		t.Fatalf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = cli("verify", "--json", "--tenant", "acme")
	var rep audit.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.OK || len(rep.Chains) != 1 ||
		rep.Chains[0].LastCheckpointSeq != 12 {
		t.Fatalf("verify --json: exit %d, %v\n%s", code, err, out)
	}
	for _, args := range [][]string{{"verify", "--tenant", "Bad!"}, {"verify", "extra"}, {"frobnicate"}, {"export", "--since", "yesterday"},
		{"export", "--outcome", "maybe"}, {"export", "--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"}} {
		if code, _, _ := cli(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}

	// Record 4 is edited in the database file: exit 1, one line naming tenant, seq and kind.
	db := sqlOn(t, dir)
	mustExec(t, db, `UPDATE audit_records SET body = replace(body, '"record 4"', '"nothing"') WHERE chain = 'acme' AND seq = 4`)
	code, out, errOut = cli("verify")
	if code != 1 || errOut != "flowgate: audit verification failed: first bad record: tenant=acme seq=4 kind=edited (hash does not match the record content)\n" ||
		!strings.Contains(out, "chain acme: BROKEN at seq 4 (edited)") {
		t.Fatalf("edited: exit %d\nstdout: %s\nstderr: %q", code, out, errOut)
	}
	code, out, errOut = cli("verify", "--json")
	if code != 1 || !strings.Contains(out, `"kind": "edited"`) || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("edited --json: exit %d\n%s\n%s", code, out, errOut)
	}
	// A chain that does not exist does not verify.
	if code, _, errOut := cli("verify", "--tenant", "nosuch"); code != 1 || !strings.Contains(errOut, "no audit chain for tenant nosuch") {
		t.Fatalf("missing chain: exit %d: %s", code, errOut)
	}
	// The platform chain alone is still fine.
	if code, _, errOut := cli("verify", "--tenant", "@platform"); code != 0 {
		t.Fatalf("platform chain: exit %d: %s", code, errOut)
	}
}

func TestAuditVerifyNeedsItsInputs(t *testing.T) {
	dir, cli := auditDataDir(t, 2, nil)
	if err := os.Remove(filepath.Join(dir, "audit-checkpoint.key")); err != nil {
		t.Fatal(err)
	}
	// Without the key, checkpoints cannot be checked: an error, and no key is generated.
	if code, _, errOut := cli("verify"); code != 1 || !strings.Contains(errOut, "audit.checkpoint_key_file") {
		t.Fatalf("no key: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "audit-checkpoint.key")); err == nil {
		t.Fatal("verify generated a checkpoint key")
	}
	// A missing database is an error, not an empty log that verifies.
	empty := t.TempDir()
	var out, errb strings.Builder
	err := run(context.Background(), []string{"flowgate", "audit", "verify", "--dev", "--data-dir", empty}, func(string) string { return "" }, &out, &errb)
	if _, serr := os.Stat(filepath.Join(empty, "flowgate.db")); exitCode(err, &errb) != 1 || serr == nil {
		t.Fatalf("no database: %v: %s", err, errb.String())
	}
}

func TestAuditExportCLI(t *testing.T) {
	dir, cli := auditDataDir(t, 6, nil)
	code, out, errOut := cli("export")
	if code != 0 || errOut != "" {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	lines := exportedRecords(t, out)
	// The platform chain sorts first; the export's own record is on it, after server.start.
	if len(lines) != 8 || lines[1].Action != audit.ActionAuditExport || lines[1].Tenant != "" ||
		!strings.HasPrefix(lines[1].Actor.Sub, "cli:") || lines[1].Details["via"] != "cli" || lines[1].Target.ID != audit.ScopeAll {
		t.Fatalf("%d lines, second %+v", len(lines), lines[1])
	}
	for i, r := range lines[2:] {
		if r.Tenant != "acme" || r.Seq != int64(i+1) {
			t.Fatalf("line %d: %+v", i+1, r)
		}
	}

	// Scoped and filtered; the export of a tenant is recorded on that tenant's chain.
	_, out, _ = cli("export", "--tenant", "acme", "--since", "2000-01-01T00:00:00Z", "--action", "task.create")
	if lines := exportedRecords(t, out); len(lines) != 6 {
		t.Fatalf("scoped export: %d lines", len(lines))
	}
	_, out, _ = cli("export", "--tenant", "acme", "--action", "audit.export")
	if lines := exportedRecords(t, out); len(lines) != 2 || lines[1].Details["scope"] != "acme" || lines[1].Seq != 8 {
		t.Fatalf("acme export records: %+v", lines)
	}
	// --since also takes a duration or a date (DESIGN §19): the records are from just now.
	for _, since := range []string{"24h", "7d", time.Now().UTC().Format(time.DateOnly)} {
		_, out, _ = cli("export", "--tenant", "acme", "--since", since, "--action", "task.create")
		if lines := exportedRecords(t, out); len(lines) != 6 {
			t.Fatalf("export --since %s: %d lines", since, len(lines))
		}
	}
	_, out, _ = cli("export", "--tenant", "acme", "--until", "24h", "--action", "task.create")
	if lines := exportedRecords(t, out); len(lines) != 0 {
		t.Fatalf("export --until 24h: %d lines; want none", len(lines))
	}
	// Everything the CLI wrote verifies.
	if code, out, errOut := cli("verify"); code != 0 {
		t.Fatalf("verify after exports: %d\n%s%s", code, out, errOut)
	}

	// Fail closed: when the export cannot be recorded, nothing is exported.
	db := sqlOn(t, dir)
	mustExec(t, db, `CREATE TRIGGER audit_block BEFORE INSERT ON audit_records BEGIN SELECT RAISE(ABORT, 'read only'); END`)
	code, out, errOut = cli("export")
	if code != 1 || out != "" || !strings.Contains(errOut, "nothing exported") {
		t.Fatalf("unwritable audit table: exit %d\nstdout %q\nstderr %s", code, out, errOut)
	}
}

func exportedRecords(t *testing.T, ndjson string) []audit.Record {
	t.Helper()
	var out []audit.Record
	sc := bufio.NewScanner(strings.NewReader(ndjson))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		r, err := audit.UnmarshalRecord(sc.Bytes())
		if err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if h, err := audit.ComputeHash(r); err != nil || h != r.Hash {
			t.Fatalf("line %q does not hash to its hash", sc.Text())
		}
		out = append(out, r)
	}
	return out
}

// TestAuditRetentionKeepsChainVerifiable: pruning by audit.retention removes the old prefix
// behind a signed anchor; `flowgate audit verify` on the data dir still exits 0, and tampering
// with what remains is still caught.
func TestAuditRetentionKeepsChainVerifiable(t *testing.T) {
	var res audit.PruneResult
	dir, cli := auditDataDir(t, 10, func(a *app) {
		ctx := context.Background()
		old := time.Now().Add(-a.cfg.Audit.Retention - 24*time.Hour)
		for i := range 5 {
			// Records past retention, on a chain of their own (a chain's times follow its seqs).
			if err := a.recorder.Record(ctx, audit.Record{Action: audit.ActionSessionOpen, Outcome: audit.OutcomeSuccess,
				Tenant: "globex", Time: old.Add(time.Duration(i) * time.Minute), Actor: audit.Actor{Sub: "bob"}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.recorder.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := a.recorder.Record(ctx, audit.Record{Action: audit.ActionSessionClose, Outcome: audit.OutcomeSuccess,
				Tenant: "globex", Actor: audit.Actor{Sub: "bob"}}); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		if res, err = a.recorder.Prune(ctx, time.Now().Add(-a.cfg.Audit.Retention)); err != nil {
			t.Fatal(err)
		}
	})
	if len(res.Chains) != 1 || res.Chains[0].Tenant != "globex" || res.Chains[0].ThroughSeq != 5 || res.Chains[0].Removed != 5 {
		t.Fatalf("prune result %+v", res)
	}
	code, out, errOut := cli("verify")
	if code != 0 || !strings.Contains(out, "chain globex: ok, seq 6-9 (4 records), after the signed anchor at seq 5") ||
		!strings.Contains(out, "chain acme: ok, seq 1-10") {
		t.Fatalf("verify after prune: exit %d\n%s%s", code, out, errOut)
	}
	// The prune is itself on record, after the anchor.
	_, out, _ = cli("export", "--tenant", "globex", "--action", "audit.retention")
	if lines := exportedRecords(t, out); len(lines) != 1 || lines[0].Seq != 9 || lines[0].Details["throughSeq"] != float64(5) {
		t.Fatalf("retention record: %+v", lines)
	}
	// Deleting a record after the anchor is still caught.
	db := sqlOn(t, dir)
	mustExec(t, db, `DELETE FROM audit_records WHERE chain = 'globex' AND seq = 7`)
	if code, _, errOut := cli("verify"); code != 1 || !strings.Contains(errOut, "tenant=globex seq=7 kind=deleted") {
		t.Fatalf("deleted after prune: exit %d: %s", code, errOut)
	}
}
