package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/flowgate/flowgate/internal/task/record"
)

// The usage ledger is the tasks table itself: each task's row receives what its engine
// reported spending (usage_* columns, migration 00006) in the same write that records how it
// ended, so the ledger cannot disagree with the tasks; migration 00009 indexes it by tenant and
// end time for these sums.

// MaxUsageRows bounds the groups UsageSummary returns.
const MaxUsageRows = 1000

// UsageSummary sums the usage of f.Tenant's tasks that ended in [f.From, f.To), grouped by
// f.GroupBy, in key order, at most f.Limit groups (≤ 0 or more than MaxUsageRows:
// MaxUsageRows). Tasks whose engine reported nothing count as tasks with zero usage.
func (db *DB) UsageSummary(ctx context.Context, f record.UsageFilter) ([]record.UsageRow, error) {
	var key string
	switch f.GroupBy {
	case record.UsageByDay:
		key = db.dialect.utcDay("ended_at")
	case record.UsageByUser:
		key = "owner"
	case record.UsageByTask:
		key = "id"
	default:
		return nil, fmt.Errorf("%w: usage grouping must be day, user or task", ErrInvalid)
	}
	if f.Tenant == "" || f.From.IsZero() || f.To.IsZero() || !f.From.Before(f.To) {
		return nil, fmt.Errorf("%w: usage needs a tenant and a time range with from before to", ErrInvalid)
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxUsageRows {
		limit = MaxUsageRows
	}
	// PostgreSQL sums BIGINT as NUMERIC: cast back, so both drivers scan integers.
	q := db.Rebind(`SELECT ` + key + `, COUNT(*),
		CAST(COALESCE(SUM(usage_input_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(usage_output_tokens), 0) AS BIGINT),
		CAST(COALESCE(SUM(usage_cache_read_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(usage_cache_creation_tokens), 0) AS BIGINT),
		CAST(COALESCE(SUM(usage_cost_usd), 0) AS DOUBLE PRECISION), CAST(COALESCE(SUM(usage_num_turns), 0) AS BIGINT)
		FROM tasks WHERE tenant = ? AND ended_at IS NOT NULL AND ended_at >= ? AND ended_at < ?
		GROUP BY ` + key + ` ORDER BY ` + key + ` LIMIT ?`)
	return queryRows(ctx, db, db.db, "usage summary", q, func(s scanner) (record.UsageRow, error) {
		var (
			r     record.UsageRow
			turns sql.NullInt64
		)
		if err := s.Scan(&r.Key, &r.Tasks, &r.InputTokens, &r.OutputTokens, &r.CacheReadInputTokens,
			&r.CacheCreationInputTokens, &r.CostUSD, &turns); err != nil {
			return record.UsageRow{}, fmt.Errorf("store: usage summary: %w", err)
		}
		r.NumTurns = int(turns.Int64)
		return r, nil
	}, f.Tenant, db.TimeArg(f.From), db.TimeArg(f.To), limit)
}

// TenantSpend sums what tenant's tasks that ended at or after since reported spending: the
// dollars they reported, every token, and the tokens of the tasks that reported no dollars
// (cut short before their result), which tenant budgets price themselves.
func (db *DB) TenantSpend(ctx context.Context, tenant string, since time.Time) (record.Spend, error) {
	var sp record.Spend
	unpriced := func(col string) string {
		return "CAST(COALESCE(SUM(CASE WHEN COALESCE(usage_cost_usd, 0) = 0 THEN " + col + " ELSE 0 END), 0) AS BIGINT)"
	}
	err := db.queryRow(ctx, db.Rebind(`SELECT CAST(COALESCE(SUM(usage_cost_usd), 0) AS DOUBLE PRECISION),
		CAST(COALESCE(SUM(COALESCE(usage_input_tokens, 0) + COALESCE(usage_output_tokens, 0) +
			COALESCE(usage_cache_read_tokens, 0) + COALESCE(usage_cache_creation_tokens, 0)), 0) AS BIGINT), `+
		unpriced("usage_input_tokens")+", "+unpriced("usage_output_tokens")+", "+
		unpriced("usage_cache_read_tokens")+", "+unpriced("usage_cache_creation_tokens")+`
		FROM tasks WHERE tenant = ? AND ended_at IS NOT NULL AND ended_at >= ?`), tenant, db.TimeArg(since)).Scan(
		&sp.CostUSD, &sp.Tokens, &sp.Unpriced.InputTokens, &sp.Unpriced.OutputTokens,
		&sp.Unpriced.CacheReadInputTokens, &sp.Unpriced.CacheCreationInputTokens)
	if err != nil {
		return record.Spend{}, fmt.Errorf("store: tenant spend: %w", err)
	}
	return sp, nil
}
