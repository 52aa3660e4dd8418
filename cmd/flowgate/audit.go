package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/flowgate/flowgate/internal/admin"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/store"
)

const auditUsage = `usage: flowgate audit verify [--tenant ID|@platform] [--json]
       flowgate audit export [--tenant ID|@platform] [--since 24h|7d|2026-12-01|RFC3339] [--until …]
                             [--actor SUB] [--action A] [--outcome success|failure|denied]
each also takes --config FILE or --dev [--data-dir D]

verify checks every chain (or the one named): hashes, links, seqs and every signed checkpoint,
with the public half of audit.checkpoint_key_file. It exits 0 only when everything verifies;
otherwise it names the first bad record on stderr and exits 1.
export writes the matching records to stdout as NDJSON, chain by chain in seq order, after
recording the export itself in the audit log (nothing is exported if that fails).`

// runAudit verifies or exports the audit log straight from the store, so it works while a
// server runs and without one. verify only reads: it never signs a checkpoint (that could
// launder a tampered tail) and never creates a database or a key.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stdout, auditUsage)
		return nil
	}
	if len(args) == 0 || (args[0] != "verify" && args[0] != "export") {
		fmt.Fprintln(stderr, auditUsage)
		return usageError("audit: want verify or export")
	}
	sub := args[0]
	fs := newFlagSet("audit "+sub, stderr)
	var cf configFlags
	cf.register(fs)
	var (
		tenant                        string
		asJSON                        bool
		since, until                  string
		actor, action, outcome        string
		hasTenant, hasSince, hasUntil bool
		sinceT, untilT                time.Time
	)
	fs.StringVar(&tenant, "tenant", "", "only this tenant's chain (@platform: the platform chain); default: every chain")
	if sub == "verify" {
		fs.BoolVar(&asJSON, "json", false, "print the full report as JSON on stdout")
	} else {
		fs.StringVar(&since, "since", "", "only records at or after this: a duration back from now (24h, 7d), a date (UTC) or an RFC 3339 time")
		fs.StringVar(&until, "until", "", "only records before this: a duration back from now, a date (through its end, UTC) or an RFC 3339 time")
		fs.StringVar(&actor, "actor", "", "only records of this actor (subject)")
		fs.StringVar(&action, "action", "", "only records of this action, e.g. key.set")
		fs.StringVar(&outcome, "outcome", "", "only records with this outcome: success, failure or denied")
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("audit %s takes no arguments (got %q)", sub, fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "tenant":
			hasTenant = true
		case "since":
			hasSince = true
		case "until":
			hasUntil = true
		}
	})
	if hasTenant && tenant != audit.ScopePlatform && !store.ValidTenantID(tenant) {
		return usageError("--tenant %q is not a tenant id (^[a-z0-9][a-z0-9-]{1,62}$) or @platform", tenant)
	}
	var err error
	now := time.Now().UTC()
	if hasSince {
		if sinceT, err = parseSince(since, now); err != nil {
			return usageError("--since: %v", err)
		}
	}
	if hasUntil {
		if untilT, err = parseUntil(until, now); err != nil {
			return usageError("--until: %v", err)
		}
	}
	if hasSince && hasUntil && untilT.Before(sinceT) {
		return usageError("--until is before --since")
	}
	switch outcome {
	case "", audit.OutcomeSuccess, audit.OutcomeFailure, audit.OutcomeDenied:
	default:
		return usageError("--outcome %q: want success, failure or denied", outcome)
	}
	cfg, err := cf.load(getenv)
	if err != nil {
		return err
	}
	if sub == "verify" {
		var only *string
		if hasTenant {
			only = &tenant
		}
		return auditVerify(ctx, cfg, only, asJSON, stdout)
	}
	f := audit.Filter{Tenant: audit.ScopeAll, Actor: actor, Action: action, Outcome: outcome, Since: sinceT, Until: untilT}
	if hasTenant {
		f.Tenant = tenant
	}
	return auditExport(ctx, cfg, f, stdout, stderr)
}

// openAuditStore opens the configured store for the audit commands. A SQLite file that does
// not exist is an error rather than a new empty database that would "verify".
func openAuditStore(ctx context.Context, cfg config.Config, migrate bool) (*store.DB, error) {
	path := cfg.Path(cfg.Store.Path)
	if cfg.Store.Driver == store.DriverSQLite {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	db, err := store.Open(ctx, store.Config{
		Driver: cfg.Store.Driver, DSN: cfg.Store.DSN, Path: path, MaxOpenConns: 2, SkipMigrations: !migrate,
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return db, nil
}

func auditVerify(ctx context.Context, cfg config.Config, only *string, asJSON bool, stdout io.Writer) error {
	// Only the public half is used; a public-key-only PEM works too, for offline verifiers.
	pub, err := audit.LoadPublicKey(cfg.Path(cfg.Audit.CheckpointKeyFile))
	if err != nil {
		return fmt.Errorf("audit.checkpoint_key_file: %w", err)
	}
	db, err := openAuditStore(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer db.Close()
	retired, err := previousCheckpointKeys(cfg)
	if err != nil {
		return err
	}
	r, err := audit.NewReader(audit.ReaderOptions{Storage: db, PublicKeys: append([]ed25519.PublicKey{pub}, retired...), Tenants: tenantIDs(db)})
	if err != nil {
		return err
	}
	if only != nil {
		// A chain that is not there at all (a typo, or a tenant whose whole log was removed
		// from the database) is not a chain that verifies.
		states, err := db.AuditChains(ctx)
		if err != nil {
			return err
		}
		want := *only
		if want == audit.ScopePlatform {
			want = ""
		}
		if !slices.ContainsFunc(states, func(s audit.ChainState) bool { return s.Chain == want }) {
			return fmt.Errorf("there is no audit chain for tenant %s", chainLabel(want))
		}
	}
	rep, err := r.Verify(ctx, audit.VerifyOptions{Tenant: only})
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		for _, c := range rep.Chains {
			var unsignedSince time.Time
			if signed := max(c.LastCheckpointSeq, c.StartSeq); c.Problem == nil && c.LastSeq > signed {
				if rows, err := db.AuditRecords(ctx, c.Tenant, signed, 1); err == nil && len(rows) == 1 {
					unsignedSince = time.UnixMilli(rows[0].TimeMS).UTC()
				}
			}
			fmt.Fprintln(stdout, describeChain(c, unsignedSince))
		}
	}
	if p := rep.FirstProblem; p != nil {
		return &exitError{code: 1, err: fmt.Errorf("audit verification failed: first bad record: tenant=%s seq=%d kind=%s (%s)",
			chainLabel(p.Tenant), p.Seq, p.Kind, p.Detail)}
	}
	if !rep.OK {
		return &exitError{code: 1, err: errors.New("audit verification failed")}
	}
	if !asJSON {
		fmt.Fprintf(stdout, "ok: %d chain(s) and their checkpoints verify\n", len(rep.Chains))
	}
	return nil
}

// describeChain is one line of verify's text output. unsignedSince is the time of the oldest
// record no checkpoint covers yet (zero if none or unknown).
func describeChain(c audit.ChainReport, unsignedSince time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "chain %s: ", chainLabel(c.Tenant))
	if c.Problem != nil {
		fmt.Fprintf(&b, "BROKEN at seq %d (%s): %s", c.Problem.Seq, c.Problem.Kind, c.Problem.Detail)
		return b.String()
	}
	if c.LastSeq == c.StartSeq {
		b.WriteString("ok, no records")
	} else {
		fmt.Fprintf(&b, "ok, seq %d-%d (%d records)", c.StartSeq+1, c.LastSeq, c.Records)
	}
	if c.StartSeq > 0 {
		fmt.Fprintf(&b, ", after the signed anchor at seq %d (older records pruned)", c.StartSeq)
	}
	if c.Checkpoints > 0 {
		fmt.Fprintf(&b, ", %d checkpoint(s) match", c.Checkpoints)
	}
	if c.LastSeq > max(c.LastCheckpointSeq, c.StartSeq) {
		// Not an error (the newest records are signed at the next checkpoint) but worth
		// knowing: these are protected by the hash chain alone. An old unsigned tail on a
		// chain whose server checkpoints every minute means checkpoints are missing.
		fmt.Fprintf(&b, "; seq %d-%d not yet signed", max(c.LastCheckpointSeq, c.StartSeq)+1, c.LastSeq)
		if !unsignedSince.IsZero() {
			fmt.Fprintf(&b, " (since %s)", unsignedSince.Format(time.RFC3339))
		}
	}
	return b.String()
}

func chainLabel(tenant string) string {
	if tenant == "" {
		return audit.ScopePlatform
	}
	return tenant
}

func auditExport(ctx context.Context, cfg config.Config, f audit.Filter, stdout, stderr io.Writer) (err error) {
	db, err := openAuditStore(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer db.Close()
	// The key signs the final checkpoint when the recorder closes, like every other CLI
	// command; an operator holding only the public key still exports (unsigned until the
	// server's next checkpoint). Never generated here.
	signer, kerr := audit.LoadSigningKey(cfg.Path(cfg.Audit.CheckpointKeyFile))
	if kerr != nil {
		signer = nil
	}
	// Only errors reach stderr: stdout is the export, stderr a one-line summary.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	rec, err := audit.NewRecorder(audit.Options{
		Storage: db, SigningKey: signer, FailOpen: !cfg.Audit.FailClosed, CheckpointInterval: -1, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if cerr := rec.Close(cctx); cerr != nil {
			log.Error("audit close", "err", cerr)
		}
	}()
	svc, err := admin.New(admin.Options{Audit: rec, Tenants: db, AuditLog: rec, Logger: log})
	if err != nil {
		return err
	}
	// On record before a single line is written (fail closed).
	err = svc.ExportAudit(ctx, cliActor(), f, "", stdout)
	if errors.Is(err, admin.ErrNotRecorded) {
		return fmt.Errorf("audit: the export could not be recorded; nothing exported: %w", err)
	}
	return err
}

// maxVerifiedTenants bounds the tenant list a verification cross-checks (a page at a time).
const maxVerifiedTenants = 1_000_000

// tenantIDs lists every tenant id in the store, for audit verification to cross-check that
// each has its chain.
func tenantIDs(db *store.DB) func(ctx context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		var ids []string
		after := ""
		for len(ids) < maxVerifiedTenants {
			page, err := db.ListTenants(ctx, store.MaxListLimit, after)
			if err != nil {
				return nil, err
			}
			for _, t := range page {
				ids = append(ids, t.ID)
			}
			if len(page) < store.MaxListLimit {
				break
			}
			after = page[len(page)-1].ID
		}
		return ids, nil
	}
}
