package task

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// objectInfo is what the frame builder needs to know about an engine line.
type objectInfo struct {
	typ         string // the last top-level "type" string value
	reserved    bool   // some top-level "type" is one of the gateway's own types
	needRebuild bool   // a top-level key is a gateway field, or a key uses escapes
}

// scanLine checks that line is exactly one valid JSON object (RFC 8259, with surrounding
// whitespace allowed) and reports its top-level facts, in a single pass. It replaces
// json.Valid followed by a second scan on the hot path of every engine event; a fuzz test
// holds it to json.Valid's verdict.
func scanLine(line []byte) (objectInfo, bool) {
	var info objectInfo
	s := scanner{b: line}
	s.skipSpace()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return info, false
	}
	s.i++
	s.skipSpace()
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			s.skipSpace()
			keyStart := s.i
			esc, ok := s.str()
			if !ok {
				return info, false
			}
			key := line[keyStart+1 : s.i-1]
			isType := false
			if esc {
				info.needRebuild = true
				k := unescape(key)
				isType = k == "type"
				if gatewayField(k) {
					info.needRebuild = true
				}
			} else {
				isType = string(key) == "type"
				if gatewayField(string(key)) {
					info.needRebuild = true
				}
			}
			s.skipSpace()
			if s.peek() != ':' {
				return info, false
			}
			s.i++
			s.skipSpace()
			valStart := s.i
			if !s.value(0) {
				return info, false
			}
			if isType {
				info.typ = ""
				if line[valStart] == '"' {
					info.typ = typeName(line[valStart+1 : s.i-1])
				}
				if reservedType(info.typ) {
					info.reserved = true
				}
			}
			s.skipSpace()
			switch s.peek() {
			case ',':
				s.i++
				continue
			case '}':
				s.i++
			default:
				return info, false
			}
			break
		}
	}
	s.skipSpace()
	return info, s.i == len(s.b)
}

// maxNesting bounds recursion; deeper engine output is forwarded as plain text.
const maxNesting = 512

type scanner struct {
	b []byte
	i int
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) skipSpace() {
	b, i := s.b, s.i
	if i < len(b) && b[i] > ' ' {
		return // compact JSON: the usual case, one comparison
	}
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	s.i = i
}

// str consumes a string (s.b[s.i] must be '"'), validating escapes and UTF-8. It reports
// whether the string used escapes. (It works on locals: through the pointer receiver the
// compiler would reload s.b and s.i on every byte.)
func (s *scanner) str() (escaped, ok bool) {
	b, i := s.b, s.i
	if i >= len(b) || b[i] != '"' {
		return false, false
	}
	i++
	for i < len(b) {
		// Eight bytes at a time, straight to the first one that needs a look.
		for i+8 <= len(b) {
			if m := special8(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(b) {
			break
		}
		c := b[i]
		if plainASCII[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			s.i = i + 1
			return escaped, true
		case c == '\\':
			escaped = true
			i++
			if i >= len(b) {
				return false, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+4 >= len(b) {
					return false, false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return false, false
					}
				}
				i += 5
			default:
				return false, false
			}
		case c < 0x20:
			return false, false
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return false, false
			}
			i += size
		}
	}
	return false, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (s *scanner) value(depth int) bool {
	if depth > maxNesting {
		return false
	}
	switch c := s.peek(); {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{':
		return s.members('}', func() bool {
			if _, ok := s.str(); !ok {
				return false
			}
			s.skipSpace()
			if s.peek() != ':' {
				return false
			}
			s.i++
			s.skipSpace()
			return s.value(depth + 1)
		})
	case c == '[':
		return s.members(']', func() bool { return s.value(depth + 1) })
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return false
}

// members reads an object's or an array's members, each by member, from its opening byte
// through end.
func (s *scanner) members(end byte, member func() bool) bool {
	s.i++
	s.skipSpace()
	if s.peek() == end {
		s.i++
		return true
	}
	for {
		s.skipSpace()
		if !member() {
			return false
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.i++
		case end:
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

func (s *scanner) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
		}
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if c := s.peek(); c < '0' || c > '9' {
			return false
		}
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if c := s.peek(); c < '0' || c > '9' {
			return false
		}
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
		}
	}
	return true
}

// plainASCII marks the bytes a JSON string may hold as they are: printable ASCII other
// than the quote and the backslash.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special8 marks, with the byte's high bit, the bytes of w (little-endian: the first byte
// lowest) that a JSON string cannot hold as they are: a quote, a backslash, a control byte
// (< 0x20), or non-ASCII (>= 0x80, which the byte loop checks as UTF-8). The borrow trick
// may also mark bytes after a marked one, never before it, so the lowest mark is exact.
func special8(w uint64) uint64 {
	quote := w ^ (ones * '"')
	backslash := w ^ (ones * '\\')
	control := (w - ones*0x20) & ^w
	return (w | (quote-ones)&^quote | (backslash-ones)&^backslash | control) & highs
}

// typeName is a "type" value as a string; the engines' usual types come without an
// allocation (this runs once per engine event).
func typeName(raw []byte) string {
	switch string(raw) { // no allocation: the compiler compares the bytes in place
	case "assistant":
		return "assistant"
	case "user":
		return "user"
	case "system":
		return "system"
	case "result":
		return "result"
	case "agent_spawn":
		return "agent_spawn"
	case "task_progress":
		return "task_progress"
	case "stream_event":
		return "stream_event"
	case "tool_use":
		return "tool_use"
	case "tool_result":
		return "tool_result"
	}
	return unescape(raw)
}
