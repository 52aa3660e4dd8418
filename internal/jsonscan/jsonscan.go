package jsonscan

import "unicode/utf8"

// SkipSpace returns the index of the first non-whitespace byte of b at or after i.
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// StringEnd returns the index after the closing quote of the string starting at b[i] == '"',
// and whether the string holds an escape. An unterminated string gives (len(b), esc, false).
func StringEnd(b []byte, i int) (end int, escaped, ok bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped, true
		}
	}
	return len(b), escaped, false
}

// ValueEnd returns the index after the value starting at b[i]. Nested values are skipped by
// bracket depth, not validated. A value cut off by the end of b gives (len(b), false).
func ValueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return len(b), false
	}
	switch b[i] {
	case '"':
		end, _, ok := StringEnd(b, i)
		return end, ok
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, ok := StringEnd(b, j)
				if !ok {
					return len(b), false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return len(b), false
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return j, true
		}
		j++
	}
	return j, true
}

const hexDigits = "0123456789abcdef"

// escapes[html][c] says whether ASCII byte c must be escaped in a JSON string: control
// characters, '"' and '\\'; with html also '<', '>' and '&' (the frame is then safe to embed
// in HTML, as encoding/json's default).
var escapes = func() (t [2][utf8.RuneSelf]bool) {
	for c := 0; c < utf8.RuneSelf; c++ {
		plain := c < 0x20 || c == '"' || c == '\\'
		t[0][c] = plain
		t[1][c] = plain || c == '<' || c == '>' || c == '&'
	}
	return t
}()

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as encoding/json
// does; U+2028 and U+2029 are escaped so the result is also safe inside JavaScript; html also
// escapes <, > and &.
func AppendString(dst []byte, s string, html bool) []byte {
	return appendString(dst, s, html, utf8.DecodeRuneInString)
}

// AppendBytes is AppendString for a byte slice.
func AppendBytes(dst []byte, s []byte, html bool) []byte {
	return appendString(dst, s, html, utf8.DecodeRune)
}

func appendString[S ~string | ~[]byte](dst []byte, s S, html bool, decode func(S) (rune, int)) []byte {
	esc := &escapes[0]
	if html {
		esc = &escapes[1]
	}
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if !esc[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := decode(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
