package admin

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
)

// Exporter streams and pages audit records (audit.Reader).
type Exporter interface {
	Export(ctx context.Context, f audit.Filter, w io.Writer) error
	Query(ctx context.Context, f audit.Filter) ([]audit.Record, string, error)
}

// ExportAudit writes the records f selects to w as NDJSON. audit.export is on record before a
// single line leaves (fail-closed, ErrNotRecorded): on the exported tenant's chain, so that
// tenant's reviewers see who read their log, or the platform chain for @platform and @all.
// actorTenant is the asker's own tenant ("" from the CLI), which that chain may not show. An
// export that fails part-way is recorded as a failure with the lines already sent.
func (s *Service) ExportAudit(ctx context.Context, a Actor, f audit.Filter, actorTenant string, w io.Writer) error {
	if s.o.AuditLog == nil {
		return ErrUnavailable
	}
	chain := f.Tenant
	if chain == audit.ScopePlatform || chain == audit.ScopeAll {
		chain = ""
	}
	target := audit.Target{Type: "audit_chain", ID: f.Tenant}
	details := exportDetails(f, actorTenant)
	if a.Via == "" {
		details["via"] = "api"
	}
	if err := s.record(ctx, a, chain, audit.ActionAuditExport, audit.OutcomeSuccess, "", target, details); err != nil {
		return fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	lc := &lineCounter{w: w}
	err := s.o.AuditLog.Export(ctx, f, lc)
	if err == nil {
		return nil
	}
	failed := exportDetails(f, actorTenant)
	failed["lines"] = lc.lines
	if a.Via == "" {
		failed["via"] = "api"
	}
	if rerr := s.record(context.WithoutCancel(ctx), a, chain, audit.ActionAuditExport, audit.OutcomeFailure, "export interrupted", target, failed); rerr != nil {
		s.o.Logger.Error("audit write failed", "action", audit.ActionAuditExport, "err", rerr)
	}
	return fmt.Errorf("audit export: %w", err)
}

// exportDetails describes an export for its audit record: the scope, the asker's own tenant
// and the filters.
func exportDetails(f audit.Filter, actorTenant string) map[string]any {
	filters := map[string]any{}
	for k, v := range map[string]string{"actor": f.Actor, "action": f.Action, "outcome": f.Outcome} {
		if v != "" {
			filters[k] = v
		}
	}
	if !f.Since.IsZero() {
		filters["since"] = f.Since.UTC().Format(time.RFC3339Nano)
	}
	if !f.Until.IsZero() {
		filters["until"] = f.Until.UTC().Format(time.RFC3339Nano)
	}
	d := map[string]any{"scope": f.Tenant, "filters": filters}
	if actorTenant != "" {
		d["actorTenant"] = actorTenant
	}
	return d
}

type lineCounter struct {
	w     io.Writer
	lines int
}

func (c *lineCounter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	for _, ch := range b[:n] {
		if ch == '\n' {
			c.lines++
		}
	}
	return n, err
}
