package task

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
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
// store again: on a single node, what other processes' tasks spent reaches this one within it.
const spendRefresh = 2 * time.Second

// SharedSpend keeps each tenant's spend today where every replica adds to it at once (Redis
// in a cluster: internal/cluster), so a budget holds across replicas within one round trip
// instead of within a store refresh.
type SharedSpend interface {
	// AddSpend adds add to tenant's total for day and returns the total. A day with no
	// total yet starts from base (the store's ledger: what reconciles a fresh or lost total).
	AddSpend(ctx context.Context, tenant string, day time.Time, add, base DaySpend) (DaySpend, error)
}

// DaySpend is a tenant's spend in whole units, so that replicas' additions are exact.
type DaySpend struct {
	NanoUSD int64
	Tokens  int64
}

func (a spend) day() DaySpend {
	return DaySpend{NanoUSD: int64(math.Round(a.usd * 1e9)), Tokens: a.tokens}
}

func (d DaySpend) spend() spend { return spend{usd: float64(d.NanoUSD) / 1e9, tokens: d.Tokens} }

func (a spend) max(b spend) spend { return spend{math.Max(a.usd, b.usd), max(a.tokens, b.tokens)} }

// spendBook keeps, per tenant with a budget, today's spend: the ended tasks' (from the store,
// plus this node's since) and the running tasks' of this node (live, from their assistant
// messages). In a cluster it also keeps the shared total and this node's additions not yet
// sent to it (a flusher sends them as they come, one round trip at a time, and stops this
// node's tasks of a tenant the total shows over budget). Only tasks of tenants with a budget
// are counted; the others cost nothing here.
type spendBook struct {
	store  SpendStore
	shared SharedSpend // nil: a single node
	now    func() time.Time
	log    *slog.Logger
	// overBudget stops this node's running tasks of a tenant that the shared total shows
	// over its budget.
	overBudget func(tenant string)

	mu      sync.Mutex
	tenants map[string]*tenantSpend

	wake       chan struct{}
	quit, done chan struct{}
}

type tenantSpend struct {
	day       time.Time // the UTC day the figures are for
	ended     spend
	refreshed time.Time
	live      spend  // this node's running tasks
	tasks     int    // this node's running tasks counted in live
	budget    Budget // the newest budget a task of the tenant started or was admitted with

	shared  spend // the cluster's total as last answered (this node's sent additions included)
	pending spend // this node's additions not yet sent to the shared total
	sending bool  // the flusher holds additions in flight (the entry must stay)
}

// total is what a check compares with the budget: the cluster's figure with what this node
// has not sent yet, or the store's with this node's live spend when that is more (the shared
// total was lost and started again from an older ledger).
func (ts *tenantSpend) total() spend {
	return ts.shared.add(ts.pending).max(ts.ended.add(ts.live))
}

func dayOf(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

func newSpendBook(store SpendStore, shared SharedSpend, now func() time.Time, log *slog.Logger, overBudget func(string)) *spendBook {
	b := &spendBook{store: store, shared: shared, now: now, log: log, overBudget: overBudget, tenants: map[string]*tenantSpend{}}
	if shared != nil {
		b.wake, b.quit, b.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go b.flushLoop()
	}
	return b
}

// current returns tenant's spend today, asking the store when its figure is stale and, in a
// cluster, the shared total every time. Called without b.mu.
func (b *spendBook) current(ctx context.Context, tenant string, budget Budget) (spend, error) {
	now := b.now()
	b.mu.Lock()
	ts := b.entry(tenant, now)
	ts.budget = budget
	fresh := !ts.refreshed.IsZero() && now.Sub(ts.refreshed) < spendRefresh
	base := ts.ended
	b.mu.Unlock()
	day := dayOf(now)
	if !fresh {
		sp, err := b.store.TenantSpend(ctx, tenant, day)
		if err != nil {
			return spend{}, fmt.Errorf("task: tenant spend: %w", err)
		}
		u := sp.Unpriced
		base = spend{sp.CostUSD + estimateUSD(u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens), sp.Tokens}
	}
	var shared DaySpend
	if b.shared != nil {
		var err error
		if shared, err = b.shared.AddSpend(ctx, tenant, day, DaySpend{}, base.day()); err != nil {
			return spend{}, fmt.Errorf("task: shared tenant spend: %w", err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ts = b.entry(tenant, now)
	if ts.day.Equal(day) {
		if !fresh {
			ts.ended, ts.refreshed = base, now
		}
		if b.shared != nil {
			ts.shared = shared.spend()
		}
	}
	total := ts.total()
	b.forget(tenant, ts)
	return total, nil
}

// entry returns tenant's figures, starting them afresh on a new day. Called with b.mu held.
func (b *spendBook) entry(tenant string, now time.Time) *tenantSpend {
	ts := b.tenants[tenant]
	if ts == nil {
		ts = &tenantSpend{day: dayOf(now)}
		b.tenants[tenant] = ts
	}
	if day := dayOf(now); !ts.day.Equal(day) {
		// Running tasks keep counting on the day they are in now; what ended is yesterday's,
		// and so is the shared total (additions not sent yet go to the new day's).
		*ts = tenantSpend{day: day, live: ts.live, tasks: ts.tasks, budget: ts.budget, pending: ts.pending, sending: ts.sending}
	}
	return ts
}

// forget drops a tenant with nothing running here and nothing to send: the store (and the
// shared total) alone know its figures from now on. Called with b.mu held.
func (b *spendBook) forget(tenant string, ts *tenantSpend) {
	if ts.tasks <= 0 && !ts.sending && ts.pending == (spend{}) {
		delete(b.tenants, tenant)
	}
}

// add moves tenant's spend by d, live (a running task's usage so far) or ended (a task's
// final figure replacing its live one), and returns the tenant's spend today as last known:
// the check on the engine's output path never waits for the store or Redis.
func (b *spendBook) add(tenant string, live, ended spend) spend {
	b.mu.Lock()
	ts := b.entry(tenant, b.now())
	ts.live = ts.live.add(live)
	ts.ended = ts.ended.add(ended)
	if b.shared != nil {
		ts.pending = ts.pending.add(live).add(ended)
	}
	total := ts.total()
	b.mu.Unlock()
	if b.shared != nil {
		signal(b.wake)
	}
	return total
}

func (b *spendBook) liveDelta(tenant string, d spend) spend { return b.add(tenant, d, spend{}) }

// started and ended bracket a task's life in live; ended moves its final spend into the
// ended figures.
func (b *spendBook) started(tenant string, budget Budget) {
	b.mu.Lock()
	ts := b.entry(tenant, b.now())
	ts.tasks++
	ts.budget = budget
	b.mu.Unlock()
}

func (b *spendBook) ended(tenant string, live, final spend) {
	b.add(tenant, spend{}.sub(live), final)
	b.mu.Lock()
	defer b.mu.Unlock()
	ts := b.entry(tenant, b.now())
	ts.tasks--
	b.forget(tenant, ts)
}

// close sends what is left to the shared total (for at most until ctx ends) and stops the
// flusher.
func (b *spendBook) close(ctx context.Context) {
	if b.shared == nil {
		return
	}
	select {
	case <-b.quit:
	default:
		close(b.quit)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
	}
}

// flushLoop sends the additions to the shared total as they come: one AddSpend per tenant
// with something pending, and again at once if more came meanwhile. A failure keeps the
// additions pending and retries with backoff; checks meanwhile count them locally.
func (b *spendBook) flushLoop() {
	defer close(b.done)
	backoff := 100 * time.Millisecond
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-b.wake:
		case <-retry.C:
		case <-b.quit:
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			b.flush(ctx)
			cancel()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := b.flush(ctx)
		cancel()
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		b.log.Warn("tenant spend not added to the cluster total; retrying", "err", err, "retry_in", backoff)
		retry.Reset(backoff)
		backoff = min(2*backoff, 5*time.Second)
	}
}

// flush sends every tenant's pending additions, then stops the local tasks of each tenant
// the answer shows over budget.
func (b *spendBook) flush(ctx context.Context) error {
	type out struct {
		tenant string
		day    time.Time
		add    spend
		base   spend
	}
	b.mu.Lock()
	var batch []out
	for tenant, ts := range b.tenants {
		if ts.pending == (spend{}) {
			continue
		}
		batch = append(batch, out{tenant, ts.day, ts.pending, ts.ended})
		ts.pending, ts.sending = spend{}, true
	}
	b.mu.Unlock()
	var over []string
	var firstErr error
	for _, o := range batch {
		total, err := b.shared.AddSpend(ctx, o.tenant, o.day, o.add.day(), o.base.day())
		b.mu.Lock()
		ts := b.entry(o.tenant, b.now())
		ts.sending = false
		switch {
		case err != nil:
			ts.pending = ts.pending.add(o.add)
			if firstErr == nil {
				firstErr = err
			}
		case ts.day.Equal(o.day):
			ts.shared = total.spend()
			if ts.tasks > 0 && ts.budget.over(ts.total()) {
				over = append(over, o.tenant)
			}
		}
		b.forget(o.tenant, ts)
		b.mu.Unlock()
	}
	for _, tenant := range over {
		b.overBudget(tenant)
	}
	return firstErr
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

// stopOverBudget cancels this node's running tasks of tenant that count against its budget:
// the shared total shows the tenant over it (a task elsewhere may have taken it there).
func (m *Manager) stopOverBudget(tenant string) {
	m.mu.Lock()
	var stop []*Task
	for _, t := range m.tasks {
		if t.Tenant == tenant && t.budget.set() {
			stop = append(stop, t)
		}
	}
	m.mu.Unlock()
	for _, t := range stop {
		t.cancel(errBudget)
	}
}
