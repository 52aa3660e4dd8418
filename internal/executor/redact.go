package executor

import (
	"bytes"
	"slices"
)

// Redacted replaces every secret in forwarded or logged text.
const Redacted = "[REDACTED]"

// MinSecretLen is the shortest secret a Redactor replaces verbatim: shorter strings would
// shred ordinary output and are not keys anyway.
const MinSecretLen = 8

// anthropicPrefix starts every Anthropic API key. Anything shaped like one ("sk-ant-" and a
// run of [A-Za-z0-9_-]) is redacted whoever it belongs to.
const anthropicPrefix = "sk-ant-"

// minPartial is the shortest tail of a truncated line that is redacted as the beginning of a
// cut secret.
const minPartial = 4

// Redactor replaces secrets with [REDACTED]. It is immutable and safe for concurrent use; a nil
// *Redactor redacts only key-shaped strings.
type Redactor struct {
	verbatim [][]byte // secrets the key pattern would not fully cover, longest first
	all      [][]byte // every secret, for cut tails
}

// NewRedactor returns a Redactor for the given secrets (those shorter than MinSecretLen are
// ignored) plus anything shaped like an Anthropic key.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		if len(s) < MinSecretLen {
			continue
		}
		b := []byte(s)
		r.all = append(r.all, b)
		if !coveredByPattern(b) {
			r.verbatim = append(r.verbatim, b)
		}
	}
	slices.SortFunc(r.verbatim, func(a, b []byte) int { return len(b) - len(a) })
	return r
}

// coveredByPattern: a real Anthropic key is itself key-shaped, so the one prefix search the
// pattern needs anyway finds it; this keeps the common case at one bytes.Index per line.
func coveredByPattern(s []byte) bool {
	if !bytes.HasPrefix(s, []byte(anthropicPrefix)) || len(s) == len(anthropicPrefix) {
		return false
	}
	for _, c := range s {
		if !isKeyChar(c) {
			return false
		}
	}
	return true
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// Redact returns src with every secret replaced. When src holds none, src itself is returned
// and changed is false (no copy, no allocation); otherwise the result is built in dst's storage
// (dst[:0], grown as needed).
func (r *Redactor) Redact(dst, src []byte) (out []byte, changed bool) {
	return r.redact(dst, src, false)
}

// RedactTruncated is Redact for a line that was cut: a tail that is the beginning of a secret
// (at least 4 bytes) is redacted too.
func (r *Redactor) RedactTruncated(dst, src []byte) (out []byte, changed bool) {
	return r.redact(dst, src, true)
}

// RedactString is Redact for log text.
func (r *Redactor) RedactString(s string) string {
	out, changed := r.Redact(nil, []byte(s))
	if !changed {
		return s
	}
	return string(out)
}

func (r *Redactor) redact(dst, src []byte, truncated bool) ([]byte, bool) {
	if !r.mayContain(src) && !(truncated && r.cutTail(src) > 0) {
		return src, false
	}
	var small [8][2]int
	spans := r.spans(small[:0], src, truncated)
	if len(spans) == 0 {
		return src, false
	}
	out := dst[:0]
	last := 0
	for _, sp := range spans {
		out = append(out, src[last:sp[0]]...)
		out = append(out, Redacted...)
		last = sp[1]
	}
	return append(out, src[last:]...), true
}

// indexKeyPrefix finds "sk-ant-" in src. bytes.Index would anchor on 's', one of the most
// common bytes of English and JSON; anchoring on '-' (IndexByte, vectorised) is several times
// faster on real lines.
func indexKeyPrefix(src []byte) int {
	const dash = 2 // offset of the first '-' in "sk-ant-"
	for off := 0; ; {
		i := bytes.IndexByte(src[off:], '-')
		if i < 0 {
			return -1
		}
		j := off + i - dash
		if j >= 0 && bytes.HasPrefix(src[j:], []byte(anthropicPrefix)) {
			return j
		}
		off += i + 1
	}
}

// mayContain is the hot path: one vectorised scan per pattern, no allocation.
func (r *Redactor) mayContain(src []byte) bool {
	if indexKeyPrefix(src) >= 0 {
		return true
	}
	if r == nil {
		return false
	}
	for _, s := range r.verbatim {
		if bytes.Contains(src, s) {
			return true
		}
	}
	return false
}

// cutTail returns the length of the longest tail of src that begins a secret or the key prefix.
func (r *Redactor) cutTail(src []byte) int {
	// The whole key prefix counts too: its key characters are what was cut off.
	best := tailOf(src, []byte(anthropicPrefix), len(anthropicPrefix))
	if r != nil {
		for _, s := range r.all {
			best = max(best, tailOf(src, s, len(s)-1))
		}
	}
	return best
}

// tailOf returns the length of the longest tail of src, at most upTo bytes, that begins secret.
func tailOf(src, secret []byte, upTo int) int {
	for k := min(upTo, len(src)); k >= minPartial; k-- {
		if bytes.HasSuffix(src, secret[:k]) {
			return k
		}
	}
	return 0
}

// spans appends to sp the merged [start,end) ranges to replace, in order.
func (r *Redactor) spans(sp [][2]int, src []byte, truncated bool) [][2]int {
	for pos := 0; pos < len(src); {
		i := indexKeyPrefix(src[pos:])
		if i < 0 {
			break
		}
		start := pos + i
		end := start + len(anthropicPrefix)
		for end < len(src) && isKeyChar(src[end]) {
			end++
		}
		if end > start+len(anthropicPrefix) {
			sp = append(sp, [2]int{start, end})
			pos = end
		} else {
			pos = start + 1
		}
	}
	if r != nil {
		for _, s := range r.verbatim {
			// Advance by one, not by len(s): overlapping occurrences must all be covered.
			for pos := 0; pos < len(src); {
				i := bytes.Index(src[pos:], s)
				if i < 0 {
					break
				}
				sp = append(sp, [2]int{pos + i, pos + i + len(s)})
				pos += i + 1
			}
		}
	}
	if truncated {
		if k := r.cutTail(src); k > 0 {
			sp = append(sp, [2]int{len(src) - k, len(src)})
		}
	}
	if len(sp) < 2 {
		return sp
	}
	slices.SortFunc(sp, func(a, b [2]int) int { return a[0] - b[0] })
	merged := sp[:1]
	for _, s := range sp[1:] {
		lastSp := &merged[len(merged)-1]
		if s[0] <= lastSp[1] {
			lastSp[1] = max(lastSp[1], s[1])
			continue
		}
		merged = append(merged, s)
	}
	return merged
}
