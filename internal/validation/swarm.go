package validation

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowgate/flowgate/internal/protocol"
)

// Defaults of DESIGN §6 and of the seed clients' option enums, used for zero Limits fields.
// They equal config.Default's limits (TestDefaultsAgreeWithValidation pins it): the server
// always passes its configured limits, and these only serve callers that have none (the CLI).
const (
	DefaultMaxObjectiveChars = 1000
	DefaultMaxObjectiveBytes = 4000
	DefaultMaxAgents         = 20
	DefaultMaxTimeoutSeconds = 3600
	DefaultAgents            = 3
	DefaultTimeoutSeconds    = 600
	DefaultStrategy          = "auto"
	DefaultMode              = "centralized"
	seedStrategies           = "auto parallel sequential"
	seedModes                = "centralized distributed"
	maxIntegerDigits         = 18 // always fits an int64
)

// Limits bounds a swarm request: the server's configuration narrowed by the tenant's limits.
// A zero field takes the default of DESIGN §6; nil enums take the seed clients' values.
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

// WithDefaults returns l with every zero field set to its default, defaults clamped to the
// maxima and DefaultStrategy/DefaultMode replaced by the first allowed value when they are not
// allowed. These are the effective bounds (e.g. for the connection frame's limits).
func (l Limits) WithDefaults() Limits {
	setInt := func(p *int, def int) {
		if *p <= 0 {
			*p = def
		}
	}
	setInt(&l.MaxObjectiveChars, DefaultMaxObjectiveChars)
	setInt(&l.MaxObjectiveBytes, DefaultMaxObjectiveBytes)
	setInt(&l.MaxAgents, DefaultMaxAgents)
	setInt(&l.MaxTimeoutSeconds, DefaultMaxTimeoutSeconds)
	setInt(&l.DefaultAgents, DefaultAgents)
	setInt(&l.DefaultTimeoutSeconds, DefaultTimeoutSeconds)
	// A tenant allowed fewer agents or less time than the default gets its own maximum.
	l.DefaultAgents = min(l.DefaultAgents, l.MaxAgents)
	l.DefaultTimeoutSeconds = min(l.DefaultTimeoutSeconds, l.MaxTimeoutSeconds)
	if len(l.Strategies) == 0 {
		l.Strategies = strings.Fields(seedStrategies)
	}
	if len(l.Modes) == 0 {
		l.Modes = strings.Fields(seedModes)
	}
	// The default must itself be allowed; otherwise the first allowed value stands in.
	if l.DefaultStrategy == "" {
		l.DefaultStrategy = DefaultStrategy
	}
	if !slices.Contains(l.Strategies, l.DefaultStrategy) {
		l.DefaultStrategy = l.Strategies[0]
	}
	if l.DefaultMode == "" {
		l.DefaultMode = DefaultMode
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

// Swarm validates a swarm message against lim and returns the request with defaults applied,
// or an *Error naming every failing field.
func (v *Validator) Swarm(m *protocol.Swarm, lim Limits) (SwarmRequest, error) {
	lim = lim.WithDefaults()
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
