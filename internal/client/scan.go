package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"github.com/flowgate/flowgate/internal/jsonscan"
	"strconv"
)

// FrameInfo is what a load generator branches on in a server frame, found by ScanFrame
// without decoding the frame: a few top-level fields. Byte fields alias the scanned frame
// unless the value held escapes. A field that is absent, null or of another JSON type is
// left unset; of duplicate keys the last one counts, as with encoding/json.
type FrameInfo struct {
	Type      []byte
	TaskID    []byte
	RequestID []byte
	Status    []byte
	Code      []byte

	Seq          int64
	HasSeq       bool
	EmittedAtNs  int64 // the sim engine's write time, unix ns
	HasEmittedAt bool
	RetryAfterMs int64
	ExitCode     int64
	HasExitCode  bool
}

var errScan = errors.New("client: frame is not a JSON object")

// ScanFrame fills fi from the top level of the JSON object in data. Nested values are
// skipped, not validated: it is meant for frames from a server, not for untrusted input
// that must be rejected when malformed (it never panics on any input, though).
func ScanFrame(data []byte, fi *FrameInfo) error {
	*fi = FrameInfo{}
	i := jsonscan.SkipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errScan
	}
	i = jsonscan.SkipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return trailing(data, i+1)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return errScan
		}
		end, esc, ok := jsonscan.StringEnd(data, i)
		if !ok {
			return errScan
		}
		key := data[i+1 : end-1]
		if esc {
			key = unescape(data[i:end])
		}
		i = jsonscan.SkipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return errScan
		}
		i = jsonscan.SkipSpace(data, i+1)
		vEnd, ok := jsonscan.ValueEnd(data, i)
		if !ok {
			return errScan
		}
		fi.set(key, data[i:vEnd])
		i = jsonscan.SkipSpace(data, vEnd)
		if i >= len(data) {
			return errScan
		}
		switch data[i] {
		case ',':
			i = jsonscan.SkipSpace(data, i+1)
		case '}':
			return trailing(data, i+1)
		default:
			return errScan
		}
	}
}

func (fi *FrameInfo) set(key, val []byte) {
	switch string(key) {
	case "type":
		fi.Type = stringValue(val)
	case "taskId":
		fi.TaskID = stringValue(val)
	case "requestId":
		fi.RequestID = stringValue(val)
	case "status":
		fi.Status = stringValue(val)
	case "code":
		fi.Code = stringValue(val)
	case "seq":
		fi.Seq, fi.HasSeq = intValue(val)
	case "emittedAtNs":
		fi.EmittedAtNs, fi.HasEmittedAt = intValue(val)
	case "retryAfterMs":
		fi.RetryAfterMs, _ = intValue(val)
	case "exitCode":
		fi.ExitCode, fi.HasExitCode = intValue(val)
	}
}

func stringValue(v []byte) []byte {
	if len(v) < 2 || v[0] != '"' {
		return nil
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner
	}
	return unescape(v)
}

// intValue accepts what encoding/json would decode into an int64: an integer literal in range.
func intValue(v []byte) (int64, bool) {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

func unescape(quoted []byte) []byte {
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return nil
	}
	return []byte(s)
}

func trailing(data []byte, i int) error {
	if jsonscan.SkipSpace(data, i) != len(data) {
		return errScan
	}
	return nil
}
