package validation

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flowgate/flowgate/internal/protocol"
)

// The fuzz bodies re-state every rule independently of rules.go, so a bug there cannot hide
// behind the same bug here.

var fuzzTaskIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// checkRejection: a refusal is a *Error with a bounded set of short, non-empty messages.
func checkRejection(t *testing.T, err error) {
	t.Helper()
	var ve *Error
	if !errors.As(err, &ve) {
		t.Fatalf("error %T %v is not a *validation.Error", err, err)
	}
	if len(ve.Fields) == 0 || len(ve.Fields) > 16 {
		t.Fatalf("%d fields reported", len(ve.Fields))
	}
	for f, msg := range ve.Fields {
		// Short messages cannot carry a large value; field names are bounded too.
		if msg == "" || len(msg) > 160 || len(f) > 64 || !utf8.ValidString(f) {
			t.Fatalf("field %q message %q", f, msg)
		}
	}
}

func checkRequestID(t *testing.T, id string) {
	t.Helper()
	if !utf8.ValidString(id) || utf8.RuneCountInString(id) > 64 {
		t.Fatalf("accepted requestId %q", id)
	}
	for _, r := range id {
		if unicode.IsControl(r) || (unicode.IsSpace(r) && r != ' ') || unicode.In(r, unicode.Cf) {
			t.Fatalf("accepted requestId %q with %U", id, r)
		}
	}
}

func FuzzSwarm(f *testing.F) {
	for _, s := range []string{
		`{"type":"swarm","objective":"write a haiku","options":{"agents":3,"strategy":"auto"}}`,
		`{"type":"swarm","objective":"x","options":{"agents":20,"strategy":"sequential","mode":"distributed","timeout":3600},"requestId":"r1"}`,
		`{"type":"swarm","objective":"$(id); rm -rf / ` + "`whoami`" + ` | cat","options":{}}`,
		`{"type":"swarm","objective":"--dangerously-skip-permissions"}`,
		`{"type":"swarm","objective":" \u00a0\u200b\u2014flag"}`,
		`{"type":"swarm","objective":"line\nnext\ttab"}`,
		`{"type":"swarm","objective":"\u001b[31mred\u202e"}`,
		`{"type":"swarm","objective":"x","options":{"agents":"5","timeout":5.5,"mode":null,"bogus":1}}`,
		`{"type":"swarm","objective":"x","options":{"agents":-0,"timeout":1e3}}`,
		`{"type":"swarm","objective":"` + strings.Repeat("😀", 1000) + `"}`,
		`{"type":"swarm","objective":"` + strings.Repeat("a", 1001) + `"}`,
	} {
		f.Add([]byte(s))
	}
	v := New()
	allowed := func(s string, set ...string) bool {
		for _, a := range set {
			if s == a {
				return true
			}
		}
		return false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := protocol.Decode(data)
		if err != nil {
			return
		}
		m, ok := msg.(*protocol.Swarm)
		if !ok {
			return
		}
		req, err := v.Swarm(m, designLimits())
		if err != nil {
			checkRejection(t, err)
			return
		}
		obj := req.Objective
		if m.Objective == nil || obj != *m.Objective {
			t.Fatal("objective changed on the way through")
		}
		if !utf8.ValidString(obj) || len(obj) > 4000 || utf8.RuneCountInString(obj) > 1000 {
			t.Fatalf("accepted objective of %d bytes / %d runes (valid %v)", len(obj), utf8.RuneCountInString(obj), utf8.ValidString(obj))
		}
		for _, r := range obj {
			if r == 0 || (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f) ||
				(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c {
				t.Fatalf("accepted objective with %U", r)
			}
		}
		rest := strings.TrimLeftFunc(obj, func(r rune) bool { return unicode.IsSpace(r) || unicode.In(r, unicode.Cf) })
		if rest == "" {
			t.Fatalf("accepted blank objective %q", obj)
		}
		if first, _ := utf8.DecodeRuneInString(rest); first == '-' || first == '\u2212' || unicode.In(first, unicode.Pd) {
			t.Fatalf("accepted objective starting with %U", first)
		}
		if req.Agents < 1 || req.Agents > 20 || req.Timeout < time.Second || req.Timeout > time.Hour || req.Timeout%time.Second != 0 {
			t.Fatalf("accepted agents %d timeout %v", req.Agents, req.Timeout)
		}
		if !allowed(req.Strategy, "auto", "parallel", "sequential") || !allowed(req.Mode, "centralized", "distributed") {
			t.Fatalf("accepted strategy %q mode %q", req.Strategy, req.Mode)
		}
		for k, raw := range m.Options {
			switch k {
			case "agents", "timeout":
				// An integer literal: json reads it into an int64 and it has no '.', 'e', 'E'.
				var n int64
				if json.Unmarshal(raw, &n) != nil || bytes.ContainsAny(raw, ".eE\"") {
					t.Fatalf("accepted %s %s", k, raw)
				}
				if (k == "agents" && n != int64(req.Agents)) || (k == "timeout" && time.Duration(n)*time.Second != req.Timeout) {
					t.Fatalf("%s %s became %+v", k, raw, req)
				}
			case "strategy", "mode":
				var s string
				if json.Unmarshal(raw, &s) != nil || (k == "strategy" && s != req.Strategy) || (k == "mode" && s != req.Mode) {
					t.Fatalf("accepted %s %s", k, raw)
				}
			default:
				t.Fatalf("accepted unknown option %q", k)
			}
		}
		if m.RequestID != nil {
			checkRequestID(t, *m.RequestID)
		}
	})
}

func FuzzTaskRef(f *testing.F) {
	for _, s := range []string{
		`{"type":"status","taskId":"t-1_A"}`,
		`{"type":"cancel","taskId":"../../etc/passwd","requestId":"r"}`,
		`{"type":"subscribe","taskId":"abc","afterSeq":4}`,
		`{"type":"subscribe","taskId":"abc","afterSeq":-1}`,
		`{"type":"status","taskId":"` + strings.Repeat("a", 65) + `"}`,
		`{"type":"reauth","token":"a.b.c","requestId":"` + strings.Repeat("é", 64) + `"}`,
		`{"type":"ping","requestId":"\u202e"}`,
		`{"type":"tasks"}`,
	} {
		f.Add([]byte(s))
	}
	v := New()
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := protocol.Decode(data)
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *protocol.TaskRef:
			req, err := v.TaskRef(m)
			if err != nil {
				checkRejection(t, err)
				return
			}
			if !fuzzTaskIDPattern.MatchString(req.TaskID) || m.TaskID == nil || *m.TaskID != req.TaskID {
				t.Fatalf("accepted taskId %q", req.TaskID)
			}
			if req.AfterSeq < 0 || (m.AfterSeq != nil && *m.AfterSeq != req.AfterSeq) || req.Type != m.Type {
				t.Fatalf("accepted %+v from %+v", req, m)
			}
			if m.RequestID != nil {
				checkRequestID(t, *m.RequestID)
			}
		case *protocol.Reauth:
			req, err := v.Reauth(m)
			if err != nil {
				checkRejection(t, err)
				if m.Token != nil && len(*m.Token) >= 8 && strings.Contains(err.Error(), *m.Token) {
					t.Fatal("error echoes the token")
				}
				return
			}
			if req.Token == "" || len(req.Token) > 8192 {
				t.Fatalf("accepted token of %d bytes", len(req.Token))
			}
			if m.RequestID != nil {
				checkRequestID(t, *m.RequestID)
			}
		case *protocol.Simple:
			if _, err := v.Simple(m); err != nil {
				checkRejection(t, err)
				return
			}
			if m.RequestID != nil {
				checkRequestID(t, *m.RequestID)
			}
		}
	})
}
