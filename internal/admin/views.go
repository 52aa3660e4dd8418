package admin

import (
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/tenant"
)

// TenantView is a tenant as the admin API answers it and `flowgate tenant list --json`
// prints it: one shape for both.
type TenantView struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Status    string        `json:"status"`
	Limits    tenant.Limits `json:"limits"`
	KeyRef    string        `json:"keyRef,omitempty"`
	CreatedAt string        `json:"createdAt"`
	UpdatedAt string        `json:"updatedAt"`
}

// ViewTenant is t as a TenantView.
func ViewTenant(t tenant.Tenant) TenantView {
	v := TenantView{ID: t.ID, Name: t.Name, Status: t.Status, Limits: t.Limits, KeyRef: t.KeyRef}
	if !t.CreatedAt.IsZero() {
		v.CreatedAt = protocol.Time(t.CreatedAt)
	}
	if !t.UpdatedAt.IsZero() {
		v.UpdatedAt = protocol.Time(t.UpdatedAt)
	}
	return v
}
