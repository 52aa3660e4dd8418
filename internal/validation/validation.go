package validation

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-playground/validator/v10"
)

// Error is a request that failed validation. Fields maps the wire name of every failing field
// (dotted for nested ones: "options.agents", "limits.maxAgents") to a message a person can
// act on. Messages never contain the offending value: it may be huge, hostile or secret.
type Error struct {
	Fields map[string]string
}

// Names returns the failing fields' names, sorted (what an audit record lists: names, never
// the client's values).
func (e *Error) Names() []string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (e *Error) Error() string {
	keys := e.Names()
	var b strings.Builder
	b.WriteString("validation failed")
	for i, k := range keys {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(k)
		b.WriteString(" ")
		b.WriteString(e.Fields[k])
	}
	return b.String()
}

// BodyField is the pseudo field name of a rule about the request as a whole (a PATCH that
// changes nothing).
const BodyField = "body"

// maxNamedUnknown bounds how many unknown keys (options, query parameters) are reported by
// name; the rest are summed up in one message so a hostile request cannot grow the reply.
const maxNamedUnknown = 8

// Validator validates requests. It is safe for concurrent use; build one with New and share it.
type Validator struct {
	v     *validator.Validate
	rules map[string]ruleFunc
}

// New builds a Validator with every flowgate rule registered.
func New() *Validator {
	v := validator.New(validator.WithRequiredStructEnabled())
	// Field names in errors are the wire (json) names, so the client sees "options.agents".
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			return ""
		}
		return name
	})
	rules := ruleSet()
	for tag, r := range rules {
		check := r
		err := v.RegisterValidationCtx(tag, func(ctx context.Context, fl validator.FieldLevel) bool {
			return check(paramsFrom(ctx), fl.Field(), fl.Param()) == ""
		})
		if err != nil {
			// Only an empty tag or nil function fails, both programming errors caught by tests.
			panic(fmt.Sprintf("validation: register %s: %v", tag, err))
		}
	}
	v.RegisterStructValidation(tenantPatchRules, TenantPatch{})
	v.RegisterStructValidation(auditQueryRules, AuditQuery{})
	return &Validator{v: v, rules: rules}
}

// params carries the per-call bounds (a tenant's limits, the clock, the TTL cap) to the
// rules through the context, which is how validator/v10 passes call-specific data.
type params struct {
	lim    Limits
	now    time.Time
	maxTTL time.Duration
}

type paramsKey struct{}

func paramsFrom(ctx context.Context) *params {
	if p, ok := ctx.Value(paramsKey{}).(*params); ok {
		return p
	}
	return &params{} // only check() runs the rules, and it always passes its params
}

// check runs the struct rules on s (a pointer) and adds every failure to errs.
func (v *Validator) check(p *params, s any, errs fieldErrors) {
	ctx := context.WithValue(context.Background(), paramsKey{}, p)
	err := v.v.StructCtx(ctx, s)
	if err == nil {
		return
	}
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		// InvalidValidationError: a programming error (nil or non-struct), never client input.
		panic(fmt.Sprintf("validation: %v", err))
	}
	for _, fe := range verrs {
		errs.add(wireName(fe.Namespace()), v.message(p, fe))
	}
}

// wireName drops the Go type name validator puts in front: "TenantCreate.limits.maxAgents"
// becomes "limits.maxAgents".
func wireName(ns string) string {
	if _, rest, ok := strings.Cut(ns, "."); ok {
		return rest
	}
	return ns
}

// message explains one failure. Custom rules re-run their check to say which part failed;
// baked-in rules get a fixed sentence built from the tag's parameter, never from the value.
func (v *Validator) message(p *params, fe validator.FieldError) string {
	if r, ok := v.rules[fe.Tag()]; ok {
		if msg := r(p, reflect.ValueOf(fe.Value()), fe.Param()); msg != "" {
			return msg
		}
		return "is not valid"
	}
	switch fe.Tag() {
	case "required":
		return "is required"
	case "max", "min":
		bound := "at most"
		if fe.Tag() == "min" {
			bound = "at least"
		}
		switch fe.Kind() {
		case reflect.Slice, reflect.Array, reflect.Map:
			if fe.Tag() == "min" && fe.Param() == "1" {
				return "must not be empty"
			}
			return fmt.Sprintf("must have %s %s entries", bound, fe.Param())
		case reflect.String:
			return fmt.Sprintf("must be %s %s characters", bound, fe.Param())
		}
		return fmt.Sprintf("must be %s %s", bound, fe.Param())
	case "unique":
		return "must not list the same value twice"
	case "oneof":
		return "must be one of: " + strings.Join(strings.Fields(fe.Param()), ", ")
	case tagAtLeastOne:
		return "must change at least one of name, status, limits"
	case tagSinceUntil:
		return "must not be before since"
	}
	return "is not valid"
}

// fieldErrors collects failures; the first message for a field wins.
type fieldErrors map[string]string

func (f fieldErrors) add(field, msg string) {
	if _, ok := f[field]; !ok {
		f[field] = msg
	}
}

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return &Error{Fields: f}
}

// addUnknown reports unknown keys (sorted, for a stable reply): the first few by name under
// prefix.key, when the key is a short plain name, and the rest summed up under summary.
func (f fieldErrors) addUnknown(prefix, summary, what string, keys []string) {
	sort.Strings(keys)
	named, hidden := 0, 0
	for _, k := range keys {
		if named < maxNamedUnknown && plainName(k) {
			f.add(prefix+k, "is not a known "+what)
			named++
			continue
		}
		hidden++
	}
	if hidden > 0 {
		f.add(summary, fmt.Sprintf("has %d more unknown %ss (not listed)", hidden, what))
	}
}

// plainName reports whether a client-chosen key is safe to repeat as a field name: short and
// made of letters, digits, '_' and '-' (no dots, which would read as nesting).
func plainName(k string) bool {
	if k == "" || len(k) > 32 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
