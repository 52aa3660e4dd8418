package task

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/task/record"
)

// Budget is a tenant's daily cap on what its engines spend (DESIGN §18: tenant limits
// budgetUsdPerDay and tokensPerDay, per UTC day); a zero field is no cap.
type Budget struct {
	USDPerDay    float64
	TokensPerDay int64
}

func (b Budget) set() bool { return b.USDPerDay > 0 || b.TokensPerDay > 0 }

// over reports whether spent reaches the budget.
func (b Budget) over(s spend) bool {
	return b.USDPerDay > 0 && s.usd >= b.USDPerDay || b.TokensPerDay > 0 && s.tokens >= b.TokensPerDay
}

// BudgetError is a swarm refused because its tenant has spent its budget for the day.
type BudgetError struct {
	Budget      Budget
	SpentUSD    float64
	SpentTokens int64
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("the tenant's daily budget is spent ($%.4f and %d tokens today)", e.SpentUSD, e.SpentTokens)
}

// errBudget cancels a running task whose usage took its tenant over budget.
var errBudget = errors.New("budget exceeded")

// SpendStore sums what a tenant's tasks that ended since a time reported spending (the
// store's usage ledger): shared by every replica, it is what makes a budget hold across them.
type SpendStore interface {
	TenantSpend(ctx context.Context, tenant string, since time.Time) (record.Spend, error)
}

// List prices used to estimate a running task's cost from its tokens, in US dollars per
// million tokens (Claude Sonnet's). Engines report a cost only in their final result, which
// then replaces the estimate; the estimate is what lets a running task be stopped in time.
const (
	estInputPerMTok       = 3.0
	estOutputPerMTok      = 15.0
	estCacheReadPerMTok   = 0.30
	estCacheCreatePerMTok = 3.75
)

// spendOf is what a usage counts against a budget: every token the engine reported, and its
// cost (the engine's own when it gave one, else the list-price estimate).
func spendOf(u protocol.Usage) spend {
	s := spend{tokens: u.InputTokens + u.OutputTokens + u.CacheReadInputTokens + u.CacheCreationInputTokens, usd: u.CostUSD}
	if s.usd == 0 {
		s.usd = estimateUSD(u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens)
	}
	return s
}

func estimateUSD(input, output, cacheRead, cacheCreate int64) float64 {
	return (float64(input)*estInputPerMTok + float64(output)*estOutputPerMTok +
		float64(cacheRead)*estCacheReadPerMTok + float64(cacheCreate)*estCacheCreatePerMTok) / 1e6
}

type spend struct {
	usd    float64
	tokens int64
}

func (a spend) add(b spend) spend { return spend{a.usd + b.usd, a.tokens + b.tokens} }
func (a spend) sub(b spend) spend { return spend{a.usd - b.usd, a.tokens - b.tokens} }

// spendRefresh is how old the ended-task figures of a tenant may be before a check asks the
// store again: what other replicas' tasks spent reaches this one within it.
const spendRefresh = 2 * time.Second

// spendBook keeps, per tenant with a budget, today's spend: the ended tasks' (from the store,
// plus this node's since) and the running tasks' of this node (live, from their assistant
// messages). Only tasks of tenants with a budget are counted; the others cost nothing here.
type spendBook struct {
	store SpendStore
	now   func() time.Time

	mu      sync.Mutex
	tenants map[string]*tenantSpend
}

type tenantSpend struct {
	day       time.Time // the UTC day the figures are for
	ended     spend
	refreshed time.Time
	live      spend // this node's running tasks
	tasks     int   // this node's running tasks counted in live
}

func dayOf(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// current returns tenant's spend today, asking the store when its figure is stale. Called
// without b.mu.
func (b *spendBook) current(ctx context.Context, tenant string) (spend, error) {
	now := b.now()
	b.mu.Lock()
	ts := b.entry(tenant, now)
	fresh := !ts.refreshed.IsZero() && now.Sub(ts.refreshed) < spendRefresh
	total := ts.ended.add(ts.live)
	b.mu.Unlock()
	if fresh {
		return total, nil
	}
	day := dayOf(now)
	sp, err := b.store.TenantSpend(ctx, tenant, day)
	if err != nil {
		return spend{}, fmt.Errorf("task: tenant spend: %w", err)
	}
	u := sp.Unpriced
	usd := sp.CostUSD + estimateUSD(u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens)
	tokens := sp.Tokens
	b.mu.Lock()
	defer b.mu.Unlock()
	ts = b.entry(tenant, now)
	if ts.day.Equal(day) {
		ts.ended, ts.refreshed = spend{usd, tokens}, now
	}
	return ts.ended.add(ts.live), nil
}

// entry returns tenant's figures, starting them afresh on a new day. Called with b.mu held.
func (b *spendBook) entry(tenant string, now time.Time) *tenantSpend {
	ts := b.tenants[tenant]
	if ts == nil {
		ts = &tenantSpend{day: dayOf(now)}
		b.tenants[tenant] = ts
	}
	if day := dayOf(now); !ts.day.Equal(day) {
		// Running tasks keep counting on the day they are in now; what ended is yesterday's.
		*ts = tenantSpend{day: day, live: ts.live, tasks: ts.tasks}
	}
	return ts
}

// liveDelta moves a running task's contribution by d and returns the tenant's spend today
// (ended figures as last known: the check on the engine's output path never waits for the
// store).
func (b *spendBook) liveDelta(tenant string, d spend) spend {
	b.mu.Lock()
	defer b.mu.Unlock()
	ts := b.entry(tenant, b.now())
	ts.live = ts.live.add(d)
	return ts.ended.add(ts.live)
}

// started and ended bracket a task's life in live; ended moves its final spend into the
// ended figures, and forgets a tenant with nothing running whose figures the store has.
func (b *spendBook) started(tenant string) {
	b.mu.Lock()
	b.entry(tenant, b.now()).tasks++
	b.mu.Unlock()
}

func (b *spendBook) ended(tenant string, live, final spend) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ts := b.entry(tenant, b.now())
	ts.live = ts.live.sub(live)
	ts.ended = ts.ended.add(final)
	if ts.tasks--; ts.tasks <= 0 {
		// Nothing of this tenant runs here: the store alone knows its figures from now on.
		delete(b.tenants, tenant)
	}
}

// chargeLive counts the task's usage so far against its tenant's budget, and stops the task
// when it takes the tenant over. Called with t.mu held, after an assistant event.
func (t *Task) chargeLive() {
	now := spendOf(t.eng.usage)
	d := now.sub(t.counted)
	if d == (spend{}) {
		return
	}
	t.counted = now
	if t.budget.over(t.m.book.liveDelta(t.Tenant, d)) {
		t.cancel(errBudget)
	}
}
