package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/tenant"
)

// TenantStore is where tenants live (internal/store).
type TenantStore interface {
	GetTenant(ctx context.Context, id string) (tenant.Tenant, error)
	CreateTenant(ctx context.Context, t tenant.Tenant) (tenant.Tenant, error)
	UpdateTenant(ctx context.Context, id string, fn func(*tenant.Tenant) error) (tenant.Tenant, error)
}

// storeReason is the audit reason of a failed store call: generic, error texts stay in the log.
func storeReason(err error) string {
	switch {
	case errors.Is(err, tenant.ErrExists):
		return "conflict"
	case errors.Is(err, tenant.ErrNotFound):
		return "not found"
	}
	return "storage error"
}

// CreateTenant creates t (active). A tenant that already exists is refused before anything is
// recorded (tenant.ErrExists); then tenant.create is recorded (fail-closed), the tenant
// stored (a racing create is recorded as a failure), and TenantChanged runs.
func (s *Service) CreateTenant(ctx context.Context, a Actor, t tenant.Tenant) (tenant.Tenant, error) {
	switch _, err := s.o.Tenants.GetTenant(ctx, t.ID); {
	case err == nil:
		return tenant.Tenant{}, fmt.Errorf("tenant %s: %w", t.ID, tenant.ErrExists)
	case !errors.Is(err, tenant.ErrNotFound):
		return tenant.Tenant{}, err
	}
	t.Status = tenant.StatusActive
	target := audit.Target{Type: "tenant", ID: t.ID}
	if err := s.record(ctx, a, t.ID, audit.ActionTenantCreate, audit.OutcomeSuccess, "", target,
		map[string]any{"name": t.Name, "status": t.Status, "limits": LimitsDetails(t.Limits)}); err != nil {
		return tenant.Tenant{}, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	ctx = context.WithoutCancel(ctx)
	created, err := s.o.Tenants.CreateTenant(ctx, t)
	if err != nil {
		s.recordFailure(ctx, a, t.ID, audit.ActionTenantCreate, target, storeReason(err))
		return tenant.Tenant{}, err
	}
	s.tenantChanged(ctx, created)
	return created, nil
}

// UpdateTenant applies change to tenant id: tenant.update is recorded first with the fields
// that change and their new values (fail-closed), then the change is stored and TenantChanged
// runs (closing a suspended tenant's sessions, cancelling its tasks).
func (s *Service) UpdateTenant(ctx context.Context, a Actor, id string, change func(*tenant.Tenant)) (tenant.Tenant, error) {
	current, err := s.o.Tenants.GetTenant(ctx, id)
	if err != nil {
		return tenant.Tenant{}, err
	}
	next := current
	change(&next)
	target := audit.Target{Type: "tenant", ID: id}
	if err := s.record(ctx, a, id, audit.ActionTenantUpdate, audit.OutcomeSuccess, "", target, TenantChanges(current, next)); err != nil {
		return tenant.Tenant{}, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	ctx = context.WithoutCancel(ctx)
	updated, err := s.o.Tenants.UpdateTenant(ctx, id, func(t *tenant.Tenant) error {
		change(t)
		return nil
	})
	if err != nil {
		s.recordFailure(ctx, a, id, audit.ActionTenantUpdate, target, storeReason(err))
		return tenant.Tenant{}, err
	}
	s.tenantChanged(ctx, updated)
	return updated, nil
}

func (s *Service) recordFailure(ctx context.Context, a Actor, tenant, action string, target audit.Target, reason string) {
	if err := s.record(ctx, a, tenant, action, audit.OutcomeFailure, reason, target, nil); err != nil {
		s.o.Logger.Error("audit write failed", "action", action, "err", err)
	}
}

func (s *Service) tenantChanged(ctx context.Context, t tenant.Tenant) {
	if s.o.Notify != nil {
		s.o.Notify.TenantChanged(ctx, t)
	}
}

// TenantChanges is the tenant.update record's details: which fields change and their new
// values (a status change appears as details.status).
func TenantChanges(before, after tenant.Tenant) map[string]any {
	changed := []string{}
	details := map[string]any{}
	if before.Name != after.Name {
		changed = append(changed, "name")
		details["name"] = after.Name
	}
	if before.Status != after.Status {
		changed = append(changed, "status")
		details["status"] = after.Status
	}
	if !sameLimits(before.Limits, after.Limits) {
		changed = append(changed, "limits")
		details["limits"] = LimitsDetails(after.Limits)
	}
	details["changed"] = changed
	return details
}

func sameLimits(a, b tenant.Limits) bool {
	eq := func(x, y *int) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	if !eq(a.ConcurrentTasks, b.ConcurrentTasks) || !eq(a.SwarmsPerMinute, b.SwarmsPerMinute) ||
		!eq(a.SwarmBurst, b.SwarmBurst) || !eq(a.MaxAgents, b.MaxAgents) ||
		len(a.AllowedStrategies) != len(b.AllowedStrategies) {
		return false
	}
	for i := range a.AllowedStrategies {
		if a.AllowedStrategies[i] != b.AllowedStrategies[i] {
			return false
		}
	}
	return true
}

// LimitsDetails is limits as audit details (plain JSON values, unset limits left out).
func LimitsDetails(l tenant.Limits) map[string]any {
	out := map[string]any{}
	for name, v := range map[string]*int{
		"concurrentTasks": l.ConcurrentTasks, "swarmsPerMinute": l.SwarmsPerMinute,
		"swarmBurst": l.SwarmBurst, "maxAgents": l.MaxAgents,
	} {
		if v != nil {
			out[name] = *v
		}
	}
	if len(l.AllowedStrategies) > 0 {
		out["allowedStrategies"] = append([]string(nil), l.AllowedStrategies...)
	}
	if l.BudgetUSDPerDay != nil {
		out["budgetUsdPerDay"] = *l.BudgetUSDPerDay
	}
	if l.TokensPerDay != nil {
		out["tokensPerDay"] = *l.TokensPerDay
	}
	return out
}
