package audit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/flowgate/flowgate/internal/tenant"
)

// Actions. Callers may use others of the same shape (lowercase dotted words).
const (
	ActionAuthFailure        = "auth.failure"
	ActionSessionOpen        = "session.open"
	ActionSessionClose       = "session.close"
	ActionSessionTerminate   = "session.terminate"
	ActionAuthzDenied        = "authz.denied"
	ActionValidationRejected = "validation.rejected"
	ActionRateLimitDenied    = "ratelimit.denied"
	ActionQuotaDenied        = "quota.denied"
	ActionBudgetDenied       = "budget.denied"
	ActionTaskCreate         = "task.create"
	ActionTaskComplete       = "task.complete"
	ActionTaskCancel         = "task.cancel"
	ActionTenantCreate       = "tenant.create"
	ActionTenantUpdate       = "tenant.update"
	ActionKeySet             = "key.set"
	// ActionKeySetRequested is written before a key is stored: it keeps key.set fail-closed
	// while key.set itself, written after the write, carries the outcome (DESIGN §16).
	ActionKeySetRequested    = "key.set.requested"
	ActionKeyDelete          = "key.delete"
	ActionKeyFetchFailed     = "key.fetch_failed"
	ActionTokenIssue         = "token.issue"
	ActionTokenRevoke        = "token.revoke"
	ActionAuditExport        = "audit.export"
	ActionAuditRetention     = "audit.retention"
	ActionServerStart        = "server.start"
	ActionServerStop         = "server.stop"
	ActionEgressDenied       = "egress.denied"
	ActionAuthFailureSummary = "auth.failure.summary"
)

// Outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeDenied  = "denied"
)

// Length caps, in bytes, of the string fields. Longer values are cut on a rune boundary and end
// with TruncatedMarker, so the cut is visible to a reviewer.
const (
	MaxIDBytes        = 64
	MaxActionBytes    = 64
	MaxReasonBytes    = 1024
	MaxSubBytes       = 256
	MaxTokenFPBytes   = 128
	MaxTargetTypeLen  = 64
	MaxTargetIDBytes  = 256
	MaxIPBytes        = 64
	MaxOriginBytes    = 512
	MaxUserAgentBytes = 512
	MaxRequestIDBytes = 128
	MaxSessionIDBytes = 128

	// Details: each string value and key is cut like the fields above; the whole map may hold
	// at most MaxDetailsNodes values, nest MaxDetailsDepth deep and encode to MaxDetailsBytes.
	// Beyond a structural limit the whole map is replaced by
	// {"truncated":true,"reason":"…"} (a partial map could mislead).
	MaxDetailsStringBytes = 1024
	MaxDetailsKeyBytes    = 128
	MaxDetailsNodes       = 256
	MaxDetailsDepth       = 8
	MaxDetailsBytes       = 16 << 10
)

// TruncatedMarker ends every value that was cut to its cap.
const TruncatedMarker = "…[truncated]"

// ErrInvalidRecord reports a record that cannot be logged as given (unknown outcome, malformed
// action or tenant, unsupported detail type). It is a caller bug, not a storage failure.
var ErrInvalidRecord = errors.New("audit: invalid record")

var (
	actionRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)
)

// Record is one audit event. Callers fill the descriptive fields; Seq, PrevHash and Hash are
// set by the Recorder, ID (a UUIDv7) and Time (when Record is called) if left empty.
type Record struct {
	Seq       int64
	ID        string
	Time      time.Time // UTC, millisecond precision
	Action    string
	Outcome   string
	Reason    string
	Tenant    string // "" = the platform chain
	Actor     Actor
	Target    Target
	Source    Source
	RequestID string
	SessionID string
	// Details holds only JSON values: nil, bool, string, numbers, map[string]any-like maps and
	// slices. Never put an objective, a token or a key here: use ObjectiveDigest and
	// fingerprints.
	Details  map[string]any
	PrevHash string
	Hash     string
}

// Actor is who acted.
type Actor struct {
	Sub     string // subject (user id)
	TokenFP string // fingerprint of the token used, computed by the caller; never the token
}

// Target is what was acted on.
type Target struct {
	Type string // e.g. "task", "tenant", "key", "token"
	ID   string
}

// Source is where the request came from.
type Source struct {
	IP        string
	Origin    string
	UserAgent string
}

// ObjectiveDigest describes an objective without its text: its length in bytes and its SHA-256.
func ObjectiveDigest(obj string) map[string]any {
	sum := sha256.Sum256([]byte(obj))
	return map[string]any{"len": len(obj), "sha256": hex.EncodeToString(sum[:])}
}

// timeLayout is the record time format: RFC 3339, UTC, exactly three fraction digits (years
// 1970…9999).
const timeLayout = "2006-01-02T15:04:05.000Z"

// normalize validates r and returns the bounded copy that will be hashed and stored: strings
// are valid UTF-8 and capped, the tenant and action well-formed, Details deep-copied into
// canonical-encodable values, the time UTC at millisecond precision.
func normalize(r Record) (Record, error) {
	r.Action = strings.TrimSpace(r.Action)
	if len(r.Action) > MaxActionBytes || !actionRE.MatchString(r.Action) {
		return Record{}, fmt.Errorf("%w: malformed action", ErrInvalidRecord)
	}
	switch r.Outcome {
	case OutcomeSuccess, OutcomeFailure, OutcomeDenied:
	default:
		return Record{}, fmt.Errorf("%w: outcome must be success, failure or denied", ErrInvalidRecord)
	}
	if r.Tenant != "" && !tenant.ValidID(r.Tenant) {
		return Record{}, fmt.Errorf("%w: malformed tenant", ErrInvalidRecord)
	}
	r.ID = bound(r.ID, MaxIDBytes)
	r.Reason = bound(r.Reason, MaxReasonBytes)
	r.Actor.Sub = bound(r.Actor.Sub, MaxSubBytes)
	r.Actor.TokenFP = bound(r.Actor.TokenFP, MaxTokenFPBytes)
	r.Target.Type = bound(r.Target.Type, MaxTargetTypeLen)
	r.Target.ID = bound(r.Target.ID, MaxTargetIDBytes)
	r.Source.IP = bound(r.Source.IP, MaxIPBytes)
	r.Source.Origin = bound(r.Source.Origin, MaxOriginBytes)
	r.Source.UserAgent = bound(r.Source.UserAgent, MaxUserAgentBytes)
	r.RequestID = bound(r.RequestID, MaxRequestIDBytes)
	r.SessionID = bound(r.SessionID, MaxSessionIDBytes)
	if !r.Time.IsZero() {
		r.Time = r.Time.UTC().Truncate(time.Millisecond)
		if y := r.Time.Year(); y < 1970 || y > 9999 {
			return Record{}, fmt.Errorf("%w: time out of range", ErrInvalidRecord)
		}
	}
	d, err := normalizeDetails(r.Details)
	if err != nil {
		return Record{}, err
	}
	r.Details = d
	r.Seq, r.PrevHash, r.Hash = 0, "", ""
	return r, nil
}

// bound makes s valid UTF-8 and at most max bytes, marking a cut with TruncatedMarker.
func bound(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= max {
		return s
	}
	cut := max - len(TruncatedMarker)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + TruncatedMarker
}

type detailsBudget struct {
	nodes  int
	reason string // set when a structural limit was hit
}

func normalizeDetails(in map[string]any) (map[string]any, error) {
	if len(in) == 0 {
		return map[string]any{}, nil
	}
	b := &detailsBudget{}
	v, err := normalizeValue(reflect.ValueOf(in), 1, b)
	if err != nil {
		return nil, err
	}
	if b.reason == "" {
		enc, err := AppendCanonical(nil, v)
		if err != nil {
			return nil, fmt.Errorf("%w: details: %w", ErrInvalidRecord, err)
		}
		if len(enc) > MaxDetailsBytes {
			b.reason = "size"
		}
	}
	if b.reason != "" {
		return map[string]any{"truncated": true, "reason": b.reason}, nil
	}
	return v.(map[string]any), nil
}

// normalizeValue deep-copies v into canonical-encodable values. Structural limits set
// b.reason instead of failing: an oversized detail must not refuse the audited action.
// Unsupported types are an error: they are a programming mistake that tests catch.
func normalizeValue(v reflect.Value, depth int, b *detailsBudget) (any, error) {
	if b.reason != "" {
		return nil, nil
	}
	b.nodes++
	if b.nodes > MaxDetailsNodes {
		b.reason = "count"
		return nil, nil
	}
	if !v.IsValid() {
		return nil, nil
	}
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		return v.Interface().(time.Time).UTC().Format(time.RFC3339Nano), nil
	case reflect.TypeFor[time.Duration]():
		return v.Interface().(time.Duration).String(), nil
	case reflect.TypeFor[json.Number]():
		f, err := strconv.ParseFloat(v.String(), 64)
		if err != nil {
			return nil, fmt.Errorf("%w: details: malformed json.Number", ErrInvalidRecord)
		}
		return normFloat(f), nil
	}
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return nil, nil
		}
		return normalizeValue(v.Elem(), depth, b)
	case reflect.Bool:
		return v.Bool(), nil
	case reflect.String:
		return bound(v.String(), MaxDetailsStringBytes), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := v.Int()
		if n > maxSafeInteger || n < -maxSafeInteger {
			return strconv.FormatInt(n, 10), nil
		}
		return n, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n := v.Uint()
		if n > maxSafeInteger {
			return strconv.FormatUint(n, 10), nil
		}
		return int64(n), nil
	case reflect.Float32, reflect.Float64:
		return normFloat(v.Float()), nil
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%w: details: map key type %s", ErrInvalidRecord, v.Type().Key())
		}
		if depth > MaxDetailsDepth {
			b.reason = "depth"
			return nil, nil
		}
		if v.IsNil() {
			return nil, nil
		}
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		// Sorted so that keys colliding after truncation resolve the same way every time.
		slices.Sort(keys)
		out := make(map[string]any, len(keys))
		for _, k := range keys {
			bk := bound(k, MaxDetailsKeyBytes)
			if _, dup := out[bk]; dup {
				continue
			}
			e, err := normalizeValue(v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key())), depth+1, b)
			if err != nil {
				return nil, err
			}
			out[bk] = e
		}
		return out, nil
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return nil, fmt.Errorf("%w: details: []byte is not allowed (encode it explicitly)", ErrInvalidRecord)
		}
		if depth > MaxDetailsDepth {
			b.reason = "depth"
			return nil, nil
		}
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil, nil
		}
		n := v.Len()
		if n > MaxDetailsNodes {
			b.reason = "count"
			return nil, nil
		}
		out := make([]any, 0, n)
		for i := range n {
			e, err := normalizeValue(v.Index(i), depth+1, b)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: details: unsupported type %s", ErrInvalidRecord, v.Type())
}

// normFloat keeps finite floats and spells the others, which JSON cannot hold.
func normFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return f
}

// newID returns a UUIDv7: time-ordered, 74 random bits.
func newID(now time.Time) string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails on supported platforms
	ms := uint64(now.UnixMilli())
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6] = u[6]&0x0f | 0x70
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], u[10:16])
	return string(s[:])
}
