package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of a client frame. The deepest legitimate message is
// {"options":{…}} — two levels; a little headroom costs nothing and stops stack games.
const MaxDepth = 8

// MaxKeys bounds the number of object members in one frame, whatever their nesting.
const MaxKeys = 256

// DecodeError is a frame the gateway cannot understand. Its message is safe to send to the
// client: it names the problem, never echoes the frame.
type DecodeError struct {
	Code string // CodeInvalidMessage or CodeUnknownType
	Msg  string
}

func (e *DecodeError) Error() string { return e.Msg }

func invalid(format string, args ...any) error {
	return &DecodeError{Code: CodeInvalidMessage, Msg: fmt.Sprintf(format, args...)}
}

// Decode parses one client frame strictly: a single JSON object, valid UTF-8, no duplicate
// keys at any level, bounded depth and size, no unknown top-level fields for its type, the
// right JSON type for every known field. It returns one of *Swarm, *TaskRef (status, cancel,
// subscribe), *Reauth or *Simple (tasks, ping), or a *DecodeError.
//
// The caller enforces the frame size limit before calling (the WebSocket read limit).
func Decode(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, invalid("message is not valid UTF-8")
	}
	typ, err := scan(data)
	if err != nil {
		return nil, err
	}
	var msg any
	switch typ {
	case TypeSwarm:
		msg = new(Swarm)
	case TypeStatus, TypeCancel, TypeSubscribe:
		msg = new(TaskRef)
	case TypeReauth:
		msg = new(Reauth)
	case TypeTasks, TypePing:
		msg = new(Simple)
	case "":
		return nil, invalid("message has no \"type\"")
	default:
		return nil, &DecodeError{Code: CodeUnknownType, Msg: "unknown message type"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(msg); err != nil {
		return nil, translate(err)
	}
	// afterSeq belongs to subscribe only; accepting it elsewhere would hide client bugs.
	if ref, ok := msg.(*TaskRef); ok {
		ref.Type = typ
		if ref.AfterSeq != nil && typ != TypeSubscribe {
			return nil, invalid("unknown field \"afterSeq\" for %s", typ)
		}
		// A seq is never negative: such a resume point is a client bug, not "from the start".
		// One beyond the task's newest event is its current tail (docs/protocol.md).
		if ref.AfterSeq != nil && *ref.AfterSeq < 0 {
			return nil, invalid("afterSeq must not be negative")
		}
	}
	return msg, nil
}

// translate turns encoding/json's errors into client-safe messages.
func translate(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			return invalid("wrong JSON type")
		}
		return invalid("field %q has the wrong JSON type (got %s)", field, typeErr.Value)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return invalid("malformed JSON at offset %d", syntaxErr.Offset)
	}
	const unknownPrefix = "json: unknown field "
	if msg := err.Error(); len(msg) > len(unknownPrefix) && msg[:len(unknownPrefix)] == unknownPrefix {
		return invalid("unknown field %s", msg[len(unknownPrefix):])
	}
	return invalid("malformed message")
}

// scan walks the token stream once to enforce what encoding/json does not: one top-level
// object, no duplicate keys, bounded depth and member count. It returns the top-level "type"
// when that is a string.
func scan(data []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	first, err := dec.Token()
	if err != nil {
		return "", invalid("malformed JSON")
	}
	if d, ok := first.(json.Delim); !ok || d != '{' {
		return "", invalid("message must be a JSON object")
	}
	var (
		typ   string
		keys  int
		stack = []scope{{seen: map[string]struct{}{}, expectKey: true}}
		key   string // the top-level key whose value comes next
	)
	for len(stack) > 0 {
		tok, err := dec.Token()
		if err != nil {
			return "", invalid("malformed JSON")
		}
		top := &stack[len(stack)-1]
		if top.seen != nil && top.expectKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].seen != nil {
					stack[len(stack)-1].expectKey = true
				}
				continue
			}
			k, _ := tok.(string)
			if _, dup := top.seen[FoldKey(k)]; dup {
				return "", invalid("duplicate key %q", k)
			}
			if keys++; keys > MaxKeys {
				return "", invalid("too many fields")
			}
			top.seen[FoldKey(k)] = struct{}{}
			top.expectKey = false
			if len(stack) == 1 {
				key = k
			}
			continue
		}
		// A value (or the end of an array).
		if len(stack) == 1 && key == "type" {
			if s, ok := tok.(string); ok {
				typ = s
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= MaxDepth {
				return "", invalid("message is nested too deeply")
			}
			if tok == json.Delim('{') {
				stack = append(stack, scope{seen: map[string]struct{}{}, expectKey: true})
			} else {
				stack = append(stack, scope{})
			}
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			top = &stack[len(stack)-1]
		}
		if top.seen != nil {
			top.expectKey = true
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", invalid("trailing data after the JSON object")
	}
	return typ, nil
}

// scope is one open object (seen != nil) or array while scanning.
type scope struct {
	seen      map[string]struct{}
	expectKey bool
}

// FoldKey is the form in which encoding/json matches an object key to a field: it ignores
// case, including the Kelvin sign (K, U+212A) and the long s (ſ, U+017F). Keys that fold
// alike are duplicates: {"objective":"a","OBJECTIVE":"b"} would otherwise decode as "b"
// while a reader of the raw frame sees "a".
func FoldKey(k string) string { return strings.ToLower(strings.ToUpper(k)) }
