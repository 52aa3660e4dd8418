package validation

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flowgate/flowgate/internal/tenant"
)

// ruleFunc checks one field value and says what is wrong with it, "" when nothing is. The same
// function decides (validator calls it) and explains (message calls it again on failure), so
// the verdict and the sentence cannot drift apart.
type ruleFunc func(p *params, v reflect.Value, param string) string

var (
	auditActionPattern = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*$`)
)

// Bounds of the fields the rules below check.
const (
	MaxRequestIDChars  = 64
	MaxTaskIDBytes     = 64
	MaxTokenBytes      = 8192
	MaxTenantNameChars = 200
	MaxAPIKeyBytes     = 4096
	MaxSubjectChars    = 256
	MaxPermissions     = 16
	MinTokenTTL        = time.Minute
	DefaultMaxTokenTTL = 24 * time.Hour
	MaxJTIChars        = 128
	MaxRevokeAhead     = 365 * 24 * time.Hour
	MaxAuditActorChars = 256
	MaxAuditActionLen  = 64
	MaxAuditLimit      = 1000
	DefaultAuditLimit  = 100
	MaxCursorChars     = 512
	MaxStrategies      = 32
)

// Messages shared by several rules.
const (
	msgRequired     = "is required"
	msgPrintable    = "must be printable text without control characters"
	msgLeadingDash  = "must not start with '-' or a dash (it would be read as an engine flag)"
	msgNotUTF8      = "must be valid UTF-8"
	msgBlank        = "must not be blank"
	msgUnknownPerm  = "is not a known permission (swarm:execute, task:admin, tenant:admin, audit:read, platform:admin)"
	msgTenantID     = "must be 2 to 63 characters of lowercase letters, digits and '-', starting with a letter or digit"
	msgKeyChars     = "must not contain whitespace or control characters"
	msgTaskIDChars  = "may contain only letters, digits, '_' and '-'"
	msgAuditAction  = "must be an audit action name like \"auth.failure\""
	msgCursor       = "must be the cursor returned by a previous page"
	msgExpiryFuture = "must be in the future"
	msgExpiryAhead  = "must be at most one year ahead"
	msgNUL          = "must not contain NUL characters"
	msgControl      = "must not contain control characters (only newline and tab are allowed)"
	msgBidi         = "must not contain bidirectional text control characters"
)

func ruleSet() map[string]ruleFunc {
	return map[string]ruleFunc{
		"objective": func(p *params, v reflect.Value, _ string) string {
			return objectiveProblem(str(v), p.lim.MaxObjectiveChars, p.lim.MaxObjectiveBytes)
		},
		"requestid": func(_ *params, v reflect.Value, _ string) string { return requestIDProblem(str(v)) },
		"taskid":    func(_ *params, v reflect.Value, _ string) string { return taskIDProblem(str(v)) },
		"agents": func(p *params, v reflect.Value, _ string) string {
			return intRange(v, 1, p.lim.MaxAgents, "must be an integer between %d and %d")
		},
		"timeout": func(p *params, v reflect.Value, _ string) string {
			return intRange(v, 1, p.lim.MaxTimeoutSeconds, "must be an integer number of seconds between %d and %d")
		},
		"strategy": func(p *params, v reflect.Value, _ string) string { return enum(str(v), p.lim.Strategies) },
		"mode":     func(p *params, v reflect.Value, _ string) string { return enum(str(v), p.lim.Modes) },
		"between": func(_ *params, v reflect.Value, param string) string {
			lo, hi := betweenParam(param)
			return intRange(v, lo, hi, "must be an integer between %d and %d")
		},
		"budgetusd": func(_ *params, v reflect.Value, _ string) string {
			if f := v.Float(); !(f >= 0 && f <= MaxBudgetUSDPerDay) {
				return fmt.Sprintf("must be a number of US dollars from 0 (no cap) to %d", MaxBudgetUSDPerDay)
			}
			return ""
		},
		"tokensperday": func(_ *params, v reflect.Value, _ string) string {
			if n := v.Int(); n < 0 || n > MaxTokensPerDay {
				return fmt.Sprintf("must be an integer number of tokens from 0 (no cap) to %d", int64(MaxTokensPerDay))
			}
			return ""
		},
		"maxagents": func(p *params, v reflect.Value, _ string) string {
			if v.Kind() == reflect.Int && v.Int() > int64(p.lim.MaxAgents) {
				return fmt.Sprintf("must not exceed the server's maximum of %d agents", p.lim.MaxAgents)
			}
			return ""
		},
		"nonempty": func(_ *params, v reflect.Value, _ string) string {
			if str(v) == "" {
				return "must not be empty"
			}
			return ""
		},
		"printable": func(_ *params, v reflect.Value, _ string) string {
			if !printable(str(v)) {
				return msgPrintable
			}
			return ""
		},
		"notblank": func(_ *params, v reflect.Value, _ string) string {
			if blank(str(v)) {
				return msgBlank
			}
			return ""
		},
		"maxbytes": func(_ *params, v reflect.Value, param string) string {
			n, _ := strconv.Atoi(param)
			if len(str(v)) > n {
				return fmt.Sprintf("must be at most %d bytes", n)
			}
			return ""
		},
		"tenantid": func(_ *params, v reflect.Value, _ string) string {
			if !tenant.ValidID(str(v)) {
				return msgTenantID
			}
			return ""
		},
		"apikey": func(_ *params, v reflect.Value, _ string) string {
			s := str(v)
			if !utf8.ValidString(s) {
				return msgNotUTF8
			}
			for _, r := range s {
				if unicode.IsSpace(r) || unicode.IsControl(r) || isBidi(r) {
					return msgKeyChars
				}
			}
			return ""
		},
		"knownperm": func(_ *params, v reflect.Value, _ string) string {
			switch str(v) {
			case "swarm:execute", "task:admin", "tenant:admin", "audit:read", "platform:admin":
				return ""
			}
			return msgUnknownPerm
		},
		"ttl": func(p *params, v reflect.Value, _ string) string {
			if _, ok := parseTTL(str(v), p.maxTTL); !ok {
				return fmt.Sprintf("must be a duration between %s and %s, like \"30m\" or \"2h\"",
					shortDuration(MinTokenTTL), shortDuration(p.maxTTL))
			}
			return ""
		},
		"expiry": func(p *params, v reflect.Value, _ string) string {
			t, ok := v.Interface().(time.Time)
			if !ok {
				return ""
			}
			if !t.After(p.now) {
				return msgExpiryFuture
			}
			if t.Sub(p.now) > MaxRevokeAhead {
				return msgExpiryAhead
			}
			return ""
		},
		"auditaction": func(_ *params, v reflect.Value, _ string) string {
			s := str(v)
			if len(s) > MaxAuditActionLen || !auditActionPattern.MatchString(s) {
				return msgAuditAction
			}
			return ""
		},
		"cursor": func(_ *params, v reflect.Value, _ string) string {
			s := str(v)
			if len(s) > MaxCursorChars {
				return fmt.Sprintf("must be at most %d characters", MaxCursorChars)
			}
			for i := 0; i < len(s); i++ {
				if s[i] <= ' ' || s[i] >= 0x7f {
					return msgCursor
				}
			}
			return ""
		},
	}
}

func str(v reflect.Value) string {
	if v.IsValid() && v.Kind() == reflect.String {
		return v.String()
	}
	return ""
}

func intRange(v reflect.Value, lo, hi int, format string) string {
	if v.IsValid() && v.CanInt() {
		if n := v.Int(); n >= int64(lo) && n <= int64(hi) {
			return ""
		}
	}
	return fmt.Sprintf(format, lo, hi)
}

// betweenParam reads "lo:hi" from a tag; tags are constants in this package.
func betweenParam(param string) (lo, hi int) {
	a, b, _ := strings.Cut(param, ":")
	lo, _ = strconv.Atoi(a)
	hi, _ = strconv.Atoi(b)
	return lo, hi
}

func enum(s string, allowed []string) string {
	if slices.Contains(allowed, s) {
		return ""
	}
	return "must be one of: " + strings.Join(allowed, ", ")
}

// objectiveProblem holds every rule of DESIGN §6 for an objective. The byte bound is checked
// first so no more than maxBytes are ever scanned, then one pass (ASCII fast path) counts
// runes and finds the first forbidden character; it allocates only when it fails.
func objectiveProblem(s string, maxChars, maxBytes int) string {
	if s == "" {
		return msgRequired
	}
	if len(s) > maxBytes {
		return fmt.Sprintf("must be at most %d bytes", maxBytes)
	}
	var (
		runes   int
		first   rune = -1 // first visible rune
		problem string
	)
	for i := 0; i < len(s); runes++ {
		r := rune(s[i])
		if r < utf8.RuneSelf {
			i++
			if problem == "" && (r < 0x20 && r != '\n' && r != '\t' || r == 0x7f) {
				problem = msgControl
				if r == 0 {
					problem = msgNUL
				}
			}
			if first < 0 && !(r == ' ' || r >= '\t' && r <= '\r') {
				first = r
			}
			continue
		}
		var size int
		r, size = utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return msgNotUTF8
		}
		i += size
		if problem == "" {
			if r <= 0x9f { // C1 controls
				problem = msgControl
			} else if isBidi(r) {
				problem = msgBidi
			}
		}
		if first < 0 && !invisible(r) {
			first = r
		}
	}
	switch {
	case runes > maxChars:
		return fmt.Sprintf("must be at most %d characters", maxChars)
	case problem != "":
		return problem
	case first < 0:
		return msgBlank
	case isDash(first):
		return msgLeadingDash
	}
	return ""
}

// requestIDProblem: optional, at most 64 printable characters.
func requestIDProblem(s string) string {
	if !utf8.ValidString(s) {
		return msgNotUTF8
	}
	if utf8.RuneCountInString(s) > MaxRequestIDChars {
		return fmt.Sprintf("must be at most %d characters", MaxRequestIDChars)
	}
	if !printable(s) {
		return msgPrintable
	}
	return ""
}

func taskIDProblem(s string) string {
	if s == "" {
		return msgRequired
	}
	if len(s) > MaxTaskIDBytes {
		return fmt.Sprintf("must be at most %d bytes", MaxTaskIDBytes)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return msgTaskIDChars
		}
	}
	return ""
}

// isBidi reports the bidirectional formatting characters that can make text display in a
// different order than it is read (Trojan Source): embeddings, overrides, isolates and marks.
func isBidi(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 ||
		r == 0x200E || r == 0x200F || r == 0x061C
}

// isDash reports '-' and every character a program or a person might take for one: Unicode
// category Pd (hyphens, en and em dashes, …) and U+2212 MINUS SIGN.
func isDash(r rune) bool {
	return r == '-' || r == 0x2212 || unicode.Is(unicode.Pd, r)
}

// invisible reports characters that show nothing: white space (Unicode White_Space) and format
// characters (zero-width space, joiners, BOM). A string of only these is blank, and they are
// skipped when looking for a leading dash, since a consumer may trim them.
func invisible(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || r >= '\t' && r <= '\r'
	}
	return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r)
}

func blank(s string) bool {
	for _, r := range s {
		if !invisible(r) {
			return false
		}
	}
	return true
}

// printable: valid UTF-8 made of letters, marks, numbers, punctuation, symbols and the ASCII
// space; no control, format (bidi) or other space characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// parseTTL reads a Go duration between MinTokenTTL and maxTTL.
func parseTTL(s string, maxTTL time.Duration) (time.Duration, bool) {
	if len(s) > 32 {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < MinTokenTTL || d > maxTTL {
		return 0, false
	}
	return d, true
}

// shortDuration writes 24h0m0s as 24h and 1m0s as 1m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
