package validation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/flowgate/flowgate/internal/protocol"
)

const maxIntegerDigits = 18 // always fits an int64

// Limits bounds a swarm request: the server's configuration narrowed by the tenant's limits.
// The validator has no defaults of its own: config.Default is the one source of them, and a
// Limits missing a field is refused (Check) rather than filled, so the gateway, the CLI and
// the tests cannot disagree about a swarm's bounds.
type Limits struct {
	MaxObjectiveChars     int
	MaxObjectiveBytes     int
	MaxAgents             int
	MaxTimeoutSeconds     int
	DefaultAgents         int
	DefaultTimeoutSeconds int
	Strategies            []string // the engine profile's enum, or a tenant's allowed subset
	Modes                 []string
	DefaultStrategy       string
	DefaultMode           string
}

// ErrIncompleteLimits is returned for a Limits with a zero bound or an empty enum: a wiring
// mistake, never a client's.
var ErrIncompleteLimits = errors.New("validation: incomplete limits")

// Check reports the first missing bound of l.
func (l Limits) Check() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxObjectiveChars", l.MaxObjectiveChars}, {"MaxObjectiveBytes", l.MaxObjectiveBytes},
		{"MaxAgents", l.MaxAgents}, {"MaxTimeoutSeconds", l.MaxTimeoutSeconds},
		{"DefaultAgents", l.DefaultAgents}, {"DefaultTimeoutSeconds", l.DefaultTimeoutSeconds},
	} {
		if f.v <= 0 {
			return fmt.Errorf("%w: %s is %d", ErrIncompleteLimits, f.name, f.v)
		}
	}
	switch {
	case len(l.Strategies) == 0:
		return fmt.Errorf("%w: no strategies", ErrIncompleteLimits)
	case len(l.Modes) == 0:
		return fmt.Errorf("%w: no modes", ErrIncompleteLimits)
	case l.DefaultStrategy == "":
		return fmt.Errorf("%w: no default strategy", ErrIncompleteLimits)
	case l.DefaultMode == "":
		return fmt.Errorf("%w: no default mode", ErrIncompleteLimits)
	}
	return nil
}

// effective returns l with its defaults made consistent with its bounds: a tenant allowed
// fewer agents or less time than the default gets its own maximum, and a default strategy or
// mode the tenant may not use gives way to the first allowed one.
func (l Limits) effective() Limits {
	l.DefaultAgents = min(l.DefaultAgents, l.MaxAgents)
	l.DefaultTimeoutSeconds = min(l.DefaultTimeoutSeconds, l.MaxTimeoutSeconds)
	if !slices.Contains(l.Strategies, l.DefaultStrategy) {
		l.DefaultStrategy = l.Strategies[0]
	}
	if !slices.Contains(l.Modes, l.DefaultMode) {
		l.DefaultMode = l.Modes[0]
	}
	return l
}

// SwarmRequest is a swarm message that passed validation, with defaults applied. Objective is
// exactly what the client sent (not trimmed): it becomes one argv element, never shell text.
type SwarmRequest struct {
	Objective string
	Agents    int
	Strategy  string
	Mode      string
	Timeout   time.Duration
	RequestID string
}

// swarmInput is the shape the rules see: options already turned from raw JSON into typed
// values (nil when absent or not of the right JSON type, which is reported separately).
type swarmInput struct {
	Objective *string      `json:"objective" validate:"required,objective"`
	Options   swarmOptions `json:"options"`
	RequestID *string      `json:"requestId" validate:"omitempty,requestid"`
}

type swarmOptions struct {
	Agents   *int    `json:"agents" validate:"omitempty,agents"`
	Strategy *string `json:"strategy" validate:"omitempty,strategy"`
	Mode     *string `json:"mode" validate:"omitempty,mode"`
	Timeout  *int    `json:"timeout" validate:"omitempty,timeout"`
}

// Swarm validates a swarm message against lim and returns the request with lim's defaults
// applied, or an *Error naming every failing field (ErrIncompleteLimits for an incomplete lim).
func (v *Validator) Swarm(m *protocol.Swarm, lim Limits) (SwarmRequest, error) {
	if err := lim.Check(); err != nil {
		return SwarmRequest{}, err
	}
	lim = lim.effective()
	p := &params{lim: lim}
	errs := fieldErrors{}
	in := swarmInput{Objective: m.Objective, RequestID: m.RequestID}

	var unknown []string
	for key, raw := range m.Options {
		switch key {
		case "agents":
			in.Options.Agents = v.jsonInt(p, raw, "agents", "options.agents", errs)
		case "timeout":
			in.Options.Timeout = v.jsonInt(p, raw, "timeout", "options.timeout", errs)
		case "strategy":
			in.Options.Strategy = v.jsonString(p, raw, "strategy", "options.strategy", errs)
		case "mode":
			in.Options.Mode = v.jsonString(p, raw, "mode", "options.mode", errs)
		default:
			unknown = append(unknown, key)
		}
	}
	errs.addUnknown("options.", "options", "option", unknown)
	v.check(p, &in, errs)
	if err := errs.err(); err != nil {
		return SwarmRequest{}, err
	}

	req := SwarmRequest{
		Objective: *in.Objective,
		Agents:    lim.DefaultAgents,
		Strategy:  lim.DefaultStrategy,
		Mode:      lim.DefaultMode,
		Timeout:   time.Duration(lim.DefaultTimeoutSeconds) * time.Second,
	}
	if in.Options.Agents != nil {
		req.Agents = *in.Options.Agents
	}
	if in.Options.Strategy != nil {
		req.Strategy = *in.Options.Strategy
	}
	if in.Options.Mode != nil {
		req.Mode = *in.Options.Mode
	}
	if in.Options.Timeout != nil {
		req.Timeout = time.Duration(*in.Options.Timeout) * time.Second
	}
	if in.RequestID != nil {
		req.RequestID = *in.RequestID
	}
	return req, nil
}

// jsonInt reads a JSON integer: an optional minus and digits, no fraction, no exponent, no
// quotes ("5", 5.5, 5.0 and 1e9 are not integers). A value too large for an int comes back
// saturated, so the range rule reports it. Anything else is reported with the rule's message.
func (v *Validator) jsonInt(p *params, raw json.RawMessage, rule, field string, errs fieldErrors) *int {
	b := bytes.TrimSpace(raw)
	digits := b
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	ok := len(digits) > 0 && (digits[0] != '0' || len(digits) == 1)
	for _, c := range digits {
		ok = ok && c >= '0' && c <= '9'
	}
	if !ok {
		errs.add(field, v.rules[rule](p, reflect.Value{}, ""))
		return nil
	}
	n := math.MaxInt
	if len(digits) <= maxIntegerDigits {
		n, _ = strconv.Atoi(string(digits))
	}
	if len(b) > len(digits) {
		n = -n
	}
	return &n
}

// jsonString reads a JSON string; null, numbers, arrays and objects are reported.
func (v *Validator) jsonString(p *params, raw json.RawMessage, rule, field string, errs fieldErrors) *string {
	var s string
	b := bytes.TrimSpace(raw)
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		errs.add(field, v.rules[rule](p, reflect.Value{}, ""))
		return nil
	}
	// The decoder has checked the JSON: without escapes the text between the quotes is the
	// string. Escaped strings take the slow path.
	if inner := b[1 : len(b)-1]; bytes.IndexByte(inner, '\\') < 0 && bytes.IndexByte(inner, '"') < 0 {
		s = string(inner)
	} else if json.Unmarshal(b, &s) != nil {
		errs.add(field, v.rules[rule](p, reflect.Value{}, ""))
		return nil
	}
	return &s
}
