package audit

// Canonical JSON, the only serialisation of audit records (what is hashed, stored and exported).
//
// What is implemented (RFC 8785 "JCS", restricted to the values a record can hold):
//   - No whitespace between tokens.
//   - Object members sorted by their keys compared as arrays of UTF-16 code units (RFC 8785
//     §3.2.3); duplicate keys are rejected.
//   - Strings: must be valid UTF-8 (the record normaliser replaces invalid bytes with U+FFFD
//     before encoding). Escaped are exactly '"' as \", '\\' as \\, U+0008 \b, U+0009 \t,
//     U+000A \n, U+000C \f, U+000D \r and the other code points below U+0020 as \u00xx with
//     lowercase hex. Everything else, '/', DEL, U+2028/U+2029 and all non-ASCII included, is
//     written as its literal UTF-8 bytes. Because every line break is escaped, a canonical
//     document never contains a raw newline: one record is always exactly one NDJSON line.
//   - Numbers are IEEE-754 doubles written as ECMAScript Number.prototype.toString does
//     (RFC 8785 §3.2.2.3): the shortest digits that round-trip, plain notation for
//     1e-6 <= |x| < 1e21, otherwise d[.ddd]e±n; -0 is written 0. NaN and ±Inf are rejected.
//     Go integers are accepted when |x| <= 2^53 (exactly representable); larger ones are
//     rejected here (the record normaliser turns them into decimal strings first).
//   - Literals true, false, null.
//
// Accepted Go values: nil, bool, string, float64, float32, int, int8…int64, uint…uint64,
// json.Number, map[string]any, []any. Anything else is an error, never a guess.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrNotCanonical reports a value or document that has no canonical JSON form.
var ErrNotCanonical = errors.New("audit: value has no canonical json form")

// maxSafeInteger is 2^53: every integer of at most this magnitude is an exact double.
const maxSafeInteger = 1 << 53

// maxCanonicalDepth bounds nesting for Canonicalize (records themselves are far shallower).
const maxCanonicalDepth = 64

// AppendCanonical appends the canonical JSON encoding of v to dst.
func AppendCanonical(dst []byte, v any) ([]byte, error) {
	return appendValue(dst, v, 0)
}

// Canonicalize parses one JSON document and returns its canonical form. Duplicate object keys,
// trailing data, non-finite numbers and nesting deeper than 64 are errors.
func Canonicalize(data []byte) ([]byte, error) {
	v, err := parseJSON(data)
	if err != nil {
		return nil, err
	}
	return AppendCanonical(nil, v)
}

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxCanonicalDepth {
		return dst, fmt.Errorf("%w: nesting deeper than %d", ErrNotCanonical, maxCanonicalDepth)
	}
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		if x {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case string:
		return appendString(dst, x)
	case float64:
		return appendNumber(dst, x)
	case float32:
		return appendNumber(dst, float64(x))
	case int:
		return appendInt(dst, int64(x))
	case int8:
		return appendInt(dst, int64(x))
	case int16:
		return appendInt(dst, int64(x))
	case int32:
		return appendInt(dst, int64(x))
	case int64:
		return appendInt(dst, x)
	case uint:
		return appendUint(dst, uint64(x))
	case uint8:
		return appendUint(dst, uint64(x))
	case uint16:
		return appendUint(dst, uint64(x))
	case uint32:
		return appendUint(dst, uint64(x))
	case uint64:
		return appendUint(dst, x)
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return dst, fmt.Errorf("%w: number %q", ErrNotCanonical, truncateForError(string(x)))
		}
		return appendNumber(dst, f)
	case map[string]any:
		return appendObject(dst, x, depth)
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	}
	return dst, fmt.Errorf("%w: unsupported type %T", ErrNotCanonical, v)
}

func appendObject(dst []byte, m map[string]any, depth int) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareUTF16)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = appendString(dst, k); err != nil {
			return dst, err
		}
		dst = append(dst, ':')
		if dst, err = appendValue(dst, m[k], depth+1); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// compareUTF16 orders strings by their UTF-16 code units, as RFC 8785 requires. It differs from
// byte order only between U+E000…U+FFFF and the supplementary planes.
func compareUTF16(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			ua, ub := utf16Lead(ra), utf16Lead(rb)
			if ua != ub {
				if ua < ub {
					return -1
				}
				return 1
			}
			// Same lead unit: both are surrogate pairs with the same high surrogate.
			if ra < rb {
				return -1
			}
			return 1
		}
		a, b = a[na:], b[nb:]
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}

func utf16Lead(r rune) rune {
	if r >= 0x10000 {
		hi, _ := utf16.EncodeRune(r)
		return hi
	}
	return r
}

const hexDigits = "0123456789abcdef"

func appendString(dst []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return dst, fmt.Errorf("%w: string is not valid utf-8", ErrNotCanonical)
	}
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"'), nil
}

func appendInt(dst []byte, v int64) ([]byte, error) {
	if v > maxSafeInteger || v < -maxSafeInteger {
		return dst, fmt.Errorf("%w: integer beyond 2^53", ErrNotCanonical)
	}
	return strconv.AppendInt(dst, v, 10), nil
}

func appendUint(dst []byte, v uint64) ([]byte, error) {
	if v > maxSafeInteger {
		return dst, fmt.Errorf("%w: integer beyond 2^53", ErrNotCanonical)
	}
	return strconv.AppendUint(dst, v, 10), nil
}

// appendNumber writes f as ECMAScript's Number.prototype.toString(10).
func appendNumber(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return dst, fmt.Errorf("%w: non-finite number", ErrNotCanonical)
	}
	if f == 0 {
		return append(dst, '0'), nil // also -0
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	// Shortest round-trip digits, as d.ddde±x; Go picks the closest of the shortest, like ES.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	ePos := bytes.IndexByte(e, 'e')
	mant, expPart := e[:ePos], e[ePos+1:]
	digits := make([]byte, 0, len(mant))
	for _, c := range mant {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	exp, err := strconv.Atoi(string(expPart))
	if err != nil {
		return dst, fmt.Errorf("%w: number formatting", ErrNotCanonical)
	}
	k := len(digits)
	n := exp + 1 // the value is 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst, nil
}

// parseJSON decodes one JSON document into nil/bool/string/json.Number/map[string]any/[]any,
// rejecting duplicate keys and trailing data.
func parseJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data", ErrNotCanonical)
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxCanonicalDepth {
		return nil, fmt.Errorf("%w: nesting deeper than %d", ErrNotCanonical, maxCanonicalDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotCanonical, err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("%w: %v", ErrNotCanonical, err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("%w: object key is not a string", ErrNotCanonical)
				}
				if _, dup := m[k]; dup {
					return nil, fmt.Errorf("%w: duplicate object key", ErrNotCanonical)
				}
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, fmt.Errorf("%w: %v", ErrNotCanonical, err)
			}
			return m, nil
		case '[':
			a := []any{}
			for dec.More() {
				v, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, fmt.Errorf("%w: %v", ErrNotCanonical, err)
			}
			return a, nil
		}
		return nil, fmt.Errorf("%w: unexpected %v", ErrNotCanonical, t)
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: number out of range", ErrNotCanonical)
		}
		return t, nil
	default: // string, bool, nil
		return t, nil
	}
}

// truncateForError keeps error messages short; the value may be attacker-controlled.
func truncateForError(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
