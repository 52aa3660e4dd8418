package tenant

import (
	"errors"
	"time"
)

// Statuses of a tenant.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
)

// ErrNotFound is a tenant that does not exist; the store's errors match it.
var ErrNotFound = errors.New("tenant not found")

// ErrExists is a tenant id already taken; the store's errors match it.
var ErrExists = errors.New("tenant already exists")

// Limits overrides the server defaults for one tenant; nil / empty means "use the default".
type Limits struct {
	ConcurrentTasks   *int     `json:"concurrentTasks,omitempty"`
	SwarmsPerMinute   *int     `json:"swarmsPerMinute,omitempty"`
	SwarmBurst        *int     `json:"swarmBurst,omitempty"`
	MaxAgents         *int     `json:"maxAgents,omitempty"`
	AllowedStrategies []string `json:"allowedStrategies,omitempty"`
	// BudgetUSDPerDay and TokensPerDay cap what the tenant's engines may spend in a UTC day
	// (DESIGN §18); nil or 0: no cap.
	BudgetUSDPerDay *float64 `json:"budgetUsdPerDay,omitempty"`
	TokensPerDay    *int64   `json:"tokensPerDay,omitempty"`
}

// Tenant is one customer. KeyRef optionally overrides the Secrets Manager id of its key.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	Limits    Limits    `json:"limits"`
	KeyRef    string    `json:"keyRef,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Active reports whether t may be used.
func Active(t Tenant) bool { return t.Status == StatusActive }
