package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/task/record"
)

const usageUsage = `usage: flowgate usage [--tenant T] [--since 24h|7d|2026-12-01|RFC3339] [--by day|user|task] [--json]
what the engines reported spending, summed over the tasks that ended since then (default: the
last 30 days), per tenant (every tenant without --tenant); also takes --config FILE or --dev
[--data-dir D]`

// usageReport is one tenant's part of `flowgate usage --json`: the same rows and total as
// GET /v1/admin/usage answers for it.
type usageReport struct {
	Tenant string            `json:"tenant"`
	Rows   []record.UsageRow `json:"rows"`
	Total  struct {
		Tasks int64 `json:"tasks"`
		record.Usage
	} `json:"total"`
}

func runUsage(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("usage", stderr)
	var cf configFlags
	cf.register(fs)
	var tenantID, since, by string
	var asJSON bool
	fs.StringVar(&tenantID, "tenant", "", "one tenant (default: every tenant)")
	fs.StringVar(&since, "since", "30d", "start of the range: a duration back from now (24h, 7d), a date or an RFC 3339 time")
	fs.StringVar(&by, "by", record.UsageByDay, "group by day (UTC), user or task")
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, usageUsage)
		return usageError("usage takes no arguments (got %q)", fs.Arg(0))
	}
	if tenantID != "" && !store.ValidTenantID(tenantID) {
		return usageError("--tenant %q is not a tenant id", tenantID)
	}
	switch by {
	case record.UsageByDay, record.UsageByUser, record.UsageByTask:
	default:
		return usageError("--by must be day, user or task (got %q)", by)
	}
	now := time.Now().UTC()
	from, err := parseSince(since, now)
	if err != nil {
		return usageError("--since: %v", err)
	}
	if !from.Before(now) {
		return usageError("--since %q is not in the past", since)
	}
	a, err := openCommand(ctx, cf, getenv)
	if err != nil {
		return err
	}
	defer a.close(context.WithoutCancel(ctx))
	tenants := []string{tenantID}
	if tenantID == "" {
		if tenants, err = allTenantIDs(ctx, a); err != nil {
			return err
		}
	} else if _, err := a.db.GetTenant(ctx, tenantID); err != nil {
		return fmt.Errorf("tenant %s: %w", tenantID, err)
	}
	out := struct {
		From    string        `json:"from"`
		To      string        `json:"to"`
		GroupBy string        `json:"groupBy"`
		Tenants []usageReport `json:"tenants"`
	}{From: from.Format(time.RFC3339), To: now.Format(time.RFC3339), GroupBy: by, Tenants: []usageReport{}}
	for _, id := range tenants {
		rows, err := a.db.UsageSummary(ctx, record.UsageFilter{Tenant: id, From: from, To: now, GroupBy: by})
		if err != nil {
			return err
		}
		rep := usageReport{Tenant: id, Rows: rows}
		if rep.Rows == nil {
			rep.Rows = []record.UsageRow{}
		}
		for _, r := range rows {
			rep.Total.Tasks += r.Tasks
			rep.Total.Usage = record.AddUsage(rep.Total.Usage, r.Usage)
		}
		out.Tenants = append(out.Tenants, rep)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "TENANT\t%s\tTASKS\tINPUT\tOUTPUT\tCACHE READ\tCACHE WRITE\tCOST USD\t\n", strings.ToUpper(by))
	for _, rep := range out.Tenants {
		for _, r := range rep.Rows {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.4f\t\n", rep.Tenant, oneLine(r.Key), r.Tasks, r.InputTokens,
				r.OutputTokens, r.CacheReadInputTokens, r.CacheCreationInputTokens, r.CostUSD)
		}
		t := rep.Total
		fmt.Fprintf(tw, "%s\ttotal\t%d\t%d\t%d\t%d\t%d\t%.4f\t\n", rep.Tenant, t.Tasks, t.InputTokens, t.OutputTokens,
			t.CacheReadInputTokens, t.CacheCreationInputTokens, t.CostUSD)
	}
	return tw.Flush()
}

// allTenantIDs lists every tenant id.
func allTenantIDs(ctx context.Context, a *app) ([]string, error) {
	var ids []string
	err := eachTenant(ctx, a, func(t store.Tenant) error {
		ids = append(ids, t.ID)
		return nil
	})
	return ids, err
}
