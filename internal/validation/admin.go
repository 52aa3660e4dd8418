package validation

import (
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/go-playground/validator/v10"
)

// Tags of the struct-level rules (validator reports them like field tags).
const (
	tagAtLeastOne = "atleastone"
	tagSinceUntil = "sinceuntil"
)

// Bounds of a tenant's daily budget (DESIGN §18).
const (
	MaxBudgetUSDPerDay = 1_000_000
	MaxTokensPerDay    = 1e12
)

// TenantLimits overrides server defaults for one tenant (PATCH/POST bodies). Nil means "use
// the server default". MaxAgents may not exceed the server's own maximum and every allowed
// strategy must belong to the engine profile's enum: both come from the Limits passed in.
type TenantLimits struct {
	ConcurrentTasks   *int     `json:"concurrentTasks,omitempty" validate:"omitempty,between=1:10000"`
	SwarmsPerMinute   *int     `json:"swarmsPerMinute,omitempty" validate:"omitempty,between=1:100000"`
	SwarmBurst        *int     `json:"swarmBurst,omitempty" validate:"omitempty,between=1:100000"`
	MaxAgents         *int     `json:"maxAgents,omitempty" validate:"omitempty,between=1:20,maxagents"`
	AllowedStrategies []string `json:"allowedStrategies,omitempty" validate:"omitempty,max=32,unique,dive,strategy"`
	// 0 lifts the cap.
	BudgetUSDPerDay *float64 `json:"budgetUsdPerDay,omitempty" validate:"omitempty,budgetusd"`
	TokensPerDay    *int64   `json:"tokensPerDay,omitempty" validate:"omitempty,tokensperday"`
}

// TenantCreate is the body of POST /v1/admin/tenants.
type TenantCreate struct {
	ID     string        `json:"id" validate:"required,tenantid"`
	Name   string        `json:"name" validate:"omitempty,max=200,maxbytes=200,printable,notblank"`
	Limits *TenantLimits `json:"limits"`
}

// TenantCreate validates a tenant creation against the server-wide limits (global MaxAgents
// and the engine's strategy enum). The returned value has Name defaulted to ID.
func (v *Validator) TenantCreate(in TenantCreate, global Limits) (TenantCreate, error) {
	if err := boundedBy(in.Limits, global); err != nil {
		return TenantCreate{}, err
	}
	errs := fieldErrors{}
	v.check(&params{lim: global}, &in, errs)
	if err := errs.err(); err != nil {
		return TenantCreate{}, err
	}
	if in.Name == "" {
		in.Name = in.ID
	}
	return in, nil
}

// boundedBy refuses an incomplete global when the tenant's limits are checked against it
// (max_agents, allowed_strategies). The CLI, which sets neither, has no engine to ask for the
// strategy enum and passes a zero Limits; the server passes its configured limits.
func boundedBy(l *TenantLimits, global Limits) error {
	if l == nil || (l.MaxAgents == nil && l.AllowedStrategies == nil) {
		return nil
	}
	return global.Check()
}

// TenantPatch is the body of PATCH /v1/admin/tenants/{id}; nil fields stay as they are.
type TenantPatch struct {
	Name   *string       `json:"name" validate:"omitempty,nonempty,max=200,maxbytes=200,printable,notblank"`
	Status *string       `json:"status" validate:"omitempty,oneof=active suspended"`
	Limits *TenantLimits `json:"limits"`
}

func tenantPatchRules(sl validator.StructLevel) {
	p := sl.Current().Interface().(TenantPatch)
	if p.Name == nil && p.Status == nil && p.Limits == nil {
		sl.ReportError(nil, BodyField, BodyField, tagAtLeastOne, "")
	}
}

// TenantPatch validates a tenant update; at least one field must be set (else BodyField).
// Who may change what (limits: platform:admin only) is the handler's decision.
func (v *Validator) TenantPatch(in TenantPatch, global Limits) (TenantPatch, error) {
	if err := boundedBy(in.Limits, global); err != nil {
		return TenantPatch{}, err
	}
	errs := fieldErrors{}
	v.check(&params{lim: global}, &in, errs)
	if err := errs.err(); err != nil {
		return TenantPatch{}, err
	}
	return in, nil
}

// KeyPut is the body of PUT /v1/admin/tenants/{id}/key. It never prints its key.
type KeyPut struct {
	APIKey string `json:"apiKey" validate:"required,maxbytes=4096,apikey"`
}

// String keeps the key out of %v, %s and %+v.
func (k KeyPut) String() string { return "KeyPut{apiKey:[REDACTED]}" }

// GoString keeps the key out of %#v.
func (k KeyPut) GoString() string { return k.String() }

// LogValue keeps the key out of slog.
func (k KeyPut) LogValue() slog.Value { return slog.StringValue(k.String()) }

// KeyPut validates a tenant key upload. Messages never contain the key.
func (v *Validator) KeyPut(in KeyPut) (KeyPut, error) {
	errs := fieldErrors{}
	v.check(&params{}, &in, errs)
	if err := errs.err(); err != nil {
		return KeyPut{}, err
	}
	return in, nil
}

// TokenIssue is the body of POST /v1/admin/tenants/{id}/tokens.
type TokenIssue struct {
	Sub         string   `json:"sub" validate:"required,max=256,printable,notblank"`
	Permissions []string `json:"permissions" validate:"required,min=1,max=16,unique,dive,knownperm"`
	TTL         string   `json:"ttl" validate:"required,ttl"`
}

// TokenRequest is a TokenIssue that passed validation, its TTL parsed.
type TokenRequest struct {
	Sub         string
	Permissions []string
	TTL         time.Duration
}

// TokenIssue validates a token request; maxTTL (the signer's auth.signing.max_ttl, which
// must be positive) caps the ttl. Which permissions the caller may grant (only its own, never
// platform:admin) is authorization.
func (v *Validator) TokenIssue(in TokenIssue, maxTTL time.Duration) (TokenRequest, error) {
	if maxTTL <= 0 {
		return TokenRequest{}, fmt.Errorf("validation: token ttl cap is %v", maxTTL)
	}
	errs := fieldErrors{}
	v.check(&params{maxTTL: maxTTL}, &in, errs)
	if err := errs.err(); err != nil {
		return TokenRequest{}, err
	}
	ttl, _ := parseTTL(in.TTL, maxTTL)
	return TokenRequest{Sub: in.Sub, Permissions: in.Permissions, TTL: ttl}, nil
}

// TokenRevoke is the body of POST /v1/admin/tokens/revoke: the revocation is kept until the
// token's own expiry when given, else as long as any token accepted now may live.
type TokenRevoke struct {
	JTI       string    `json:"jti" validate:"required,max=128,printable"`
	ExpiresAt time.Time `json:"expiresAt" validate:"omitempty,expiry"`
	// CancelTasks, when set, overrides auth.revoke_cancels_tasks for this revocation.
	CancelTasks *bool `json:"cancelTasks"`
}

// TokenRevoke validates a revocation at time now: expiresAt, when given, in the future, at
// most a year on.
func (v *Validator) TokenRevoke(in TokenRevoke, now time.Time) (TokenRevoke, error) {
	errs := fieldErrors{}
	v.check(&params{now: now}, &in, errs)
	if err := errs.err(); err != nil {
		return TokenRevoke{}, err
	}
	return in, nil
}

// AuditQuery is the filter set of GET /v1/admin/audit (and export), read from the URL query.
// Tenant is for platform admins choosing a tenant; the handler decides whether it applies.
type AuditQuery struct {
	Tenant  string     `json:"tenant" validate:"omitempty,tenantid"`
	Actor   string     `json:"actor" validate:"omitempty,max=256,printable"`
	Action  string     `json:"action" validate:"omitempty,auditaction"`
	Outcome string     `json:"outcome" validate:"omitempty,oneof=success failure denied"`
	Since   *time.Time `json:"since"`
	Until   *time.Time `json:"until"`
	Limit   int        `json:"limit" validate:"between=1:1000"`
	Cursor  string     `json:"cursor" validate:"omitempty,cursor"`
}

func auditQueryRules(sl validator.StructLevel) {
	q := sl.Current().Interface().(AuditQuery)
	if q.Since != nil && q.Until != nil && q.Until.Before(*q.Since) {
		sl.ReportError(q.Until, "until", "Until", tagSinceUntil, "")
	}
}

const msgTime = "must be an RFC 3339 time like 2026-01-02T15:04:05Z"

// AuditQuery reads and validates audit filters from URL query values. Unknown or repeated
// parameters are errors; Limit defaults to DefaultAuditLimit.
func (v *Validator) AuditQuery(q url.Values) (AuditQuery, error) {
	errs := fieldErrors{}
	out := AuditQuery{Limit: DefaultAuditLimit}
	var unknown []string
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vals := q[k]
		switch k {
		case "tenant", "actor", "action", "outcome", "since", "until", "limit", "cursor":
		default:
			unknown = append(unknown, k)
			continue
		}
		if len(vals) != 1 {
			errs.add(k, "must be given once")
			continue
		}
		val := vals[0]
		switch k {
		case "tenant":
			out.Tenant = val
		case "actor":
			out.Actor = val
		case "action":
			out.Action = val
		case "outcome":
			out.Outcome = val
		case "cursor":
			out.Cursor = val
		case "since", "until":
			t, ok := parseTime(val)
			if !ok {
				errs.add(k, msgTime)
				continue
			}
			if k == "since" {
				out.Since = &t
			} else {
				out.Until = &t
			}
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || len(val) > 9 {
				errs.add(k, fmt.Sprintf("must be an integer between 1 and %d", MaxAuditLimit))
				continue
			}
			out.Limit = n
		}
	}
	errs.addUnknown("", "query", "filter", unknown)
	v.check(&params{}, &out, errs)
	if err := errs.err(); err != nil {
		return AuditQuery{}, err
	}
	return out, nil
}

func parseTime(s string) (time.Time, bool) {
	if len(s) > 64 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}
