package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestCanonicalNumbers(t *testing.T) {
	// RFC 8785 Appendix B (IEEE-754 bits → ECMAScript text), plus a few everyday values.
	cases := []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
		{math.Float64bits(1), "1"},
		{math.Float64bits(-1.5), "-1.5"},
		{0x3fd3333333333334, "0.30000000000000004"}, // 0.1 + 0.2
		{math.Float64bits(1e20), "100000000000000000000"},
		{math.Float64bits(1e-7), "1e-7"},
		{math.Float64bits(123e-20), "1.23e-18"},
	}
	for _, tc := range cases {
		got, err := AppendCanonical(nil, math.Float64frombits(tc.bits))
		if err != nil || string(got) != tc.want {
			t.Errorf("%016x: got %s (%v), want %s", tc.bits, got, err, tc.want)
		}
	}
	for _, bad := range []any{math.NaN(), math.Inf(1), math.Inf(-1), int64(1<<53 + 1), uint64(math.MaxUint64)} {
		if _, err := AppendCanonical(nil, bad); !errors.Is(err, ErrNotCanonical) {
			t.Errorf("%v: %v, want ErrNotCanonical", bad, err)
		}
	}
	if got, _ := AppendCanonical(nil, int64(-(1 << 53))); string(got) != "-9007199254740992" {
		t.Errorf("-2^53: %s", got)
	}
}

func TestCanonicalGolden(t *testing.T) {
	cases := []struct{ name, in, want string }{
		// RFC 8785 §3.2.2 sample.
		{"rfc-sample",
			`{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
			  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
			  "literals": [null, true, false]}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		// RFC 8785 §3.2.3: keys sort by UTF-16 code units (the emoji's surrogates sort before U+FB33).
		{"rfc-sort",
			`{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One",
			  "\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\"," +
				"\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{"controls", `"\u0000\u0001\b\t\n\u000b\f\r\u001f\u007f\u2028/"`, "\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f\u007f\u2028/\""},
		{"nested", ` { "b" : [ 1 , { "d":1, "c":2 } ], "a" : { } } `, `{"a":{},"b":[1,{"c":2,"d":1}]}`},
		{"injection", `{"reason":"x\n{\"action\":\"key.set\"}"}`, `{"reason":"x\n{\"action\":\"key.set\"}"}`},
		{"empty", `[]`, `[]`},
	}
	for _, tc := range cases {
		got, err := Canonicalize([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("%s:\n got %s (%v)\nwant %s", tc.name, got, err, tc.want)
		}
	}
	for _, bad := range []string{`{"a":1,"a":2}`, `[1] [2]`, `1e400`, `{`, `"\xff"`, strings.Repeat("[", 70) + strings.Repeat("]", 70)} {
		if _, err := Canonicalize([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestCompareUTF16(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"", "a", -1}, {"a", "", 1}, {"a", "b", -1}, {"ab", "a", 1},
		{"\U0001F600", "\uFB33", -1}, // surrogate D83D < FB33, although U+1F600 > U+FB33
		{"\uFB33", "\U0001F600", 1},
		{"\U0001F600", "\U0001F601", -1},
		{"\U0001F600", "\U0001F600", 0},
	}
	for _, tc := range cases {
		if got := compareUTF16(tc.a, tc.b); got != tc.want {
			t.Errorf("compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestRecordEncodingMatchesGeneric checks the hand-ordered record encoder (and the template
// the writer splices) against the generic canonical encoder.
func TestRecordEncodingMatchesGeneric(t *testing.T) {
	r, err := normalize(Record{
		Action: ActionKeySet, Outcome: OutcomeDenied, Reason: "r\n\"q\"", Tenant: "acme",
		ID: "id-1", Actor: Actor{Sub: "u€", TokenFP: "fp"}, Target: Target{Type: "key", ID: "k"},
		Source:    Source{IP: "::1", Origin: "o", UserAgent: "ua\u2028"},
		RequestID: "rq", SessionID: "ss",
		Details: map[string]any{"z": 1.5, "a": []any{true, nil, "x"}, "\U0001F600": map[string]any{}, "\uFB33": 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Time = time.Date(2025, 6, 7, 8, 9, 10, 123_000_000, time.UTC)
	tmpl, err := newTemplate(r)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := tmpl.seal(Head{Seq: 41, Hash: strings.Repeat("ab", 32)})
	if err != nil {
		t.Fatal(err)
	}
	r.Seq, r.PrevHash = 42, strings.Repeat("ab", 32)
	generic := map[string]any{
		"action": r.Action, "actor": map[string]any{"sub": r.Actor.Sub, "tokenFp": r.Actor.TokenFP},
		"details": r.Details, "id": r.ID, "outcome": r.Outcome, "prevHash": r.PrevHash, "reason": r.Reason,
		"requestId": r.RequestID, "seq": r.Seq, "sessionId": r.SessionID,
		"source": map[string]any{"ip": r.Source.IP, "origin": r.Source.Origin, "userAgent": r.Source.UserAgent},
		"target": map[string]any{"id": r.Target.ID, "type": r.Target.Type},
		"tenant": r.Tenant, "time": "2025-06-07T08:09:10.123Z",
	}
	want, err := AppendCanonical(nil, generic)
	if err != nil {
		t.Fatal(err)
	}
	got, err := appendRecordJSON(nil, &r, false)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("record encoder:\n got %s\nwant %s", got, want)
	}
	if !bytes.Equal(sr.Body, want) {
		t.Fatalf("template:\n got %s\nwant %s", sr.Body, want)
	}
	if sr.Hash != recordHash(r.PrevHash, want) || sr.Seq != 42 {
		t.Fatalf("sealed row %+v", sr)
	}
	r.Hash = sr.Hash
	generic["hash"] = sr.Hash
	want, _ = AppendCanonical(nil, generic)
	if got, err := MarshalCanonical(r); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("export form:\n got %s\nwant %s", got, want)
	}
	back, err := UnmarshalRecord(want)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := ComputeHash(back); err != nil || h != sr.Hash {
		t.Fatalf("round trip hash %s, want %s (%v)", h, sr.Hash, err)
	}
	if _, err := tmpl.seal(Head{Seq: 1, Hash: `"injected"`}); err == nil {
		t.Fatal("a corrupt head hash was spliced into a body")
	}
}

func TestNormalizeBounds(t *testing.T) {
	long := strings.Repeat("é", 2000) // 4000 bytes
	r, err := normalize(Record{
		Action: ActionAuthFailure, Outcome: OutcomeFailure, Reason: long + "\xff",
		Actor: Actor{Sub: long, TokenFP: long}, Source: Source{UserAgent: "bad \xff utf8"},
		Details: map[string]any{"s": long, strings.Repeat("k", 300): 1, "big": int64(1 << 60),
			"nan": math.NaN(), "u": uint8(7), "list": []string{"a"}, "m": map[string]int{"x": 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		s   string
		max int
	}{"reason": {r.Reason, MaxReasonBytes}, "sub": {r.Actor.Sub, MaxSubBytes}, "fp": {r.Actor.TokenFP, MaxTokenFPBytes},
		"detail": {r.Details["s"].(string), MaxDetailsStringBytes}} {
		if len(c.s) > c.max || !strings.HasSuffix(c.s, TruncatedMarker) || !utf8.ValidString(c.s) {
			t.Errorf("%s: %d bytes, valid %v", name, len(c.s), utf8.ValidString(c.s))
		}
	}
	if r.Source.UserAgent != "bad \uFFFD utf8" {
		t.Errorf("user agent %q", r.Source.UserAgent)
	}
	if r.Details["big"] != "1152921504606846976" || r.Details["nan"] != "NaN" || r.Details["u"] != int64(7) {
		t.Errorf("details %v", r.Details)
	}
	for k := range r.Details {
		if len(k) > MaxDetailsKeyBytes {
			t.Errorf("key of %d bytes", len(k))
		}
	}

	huge := map[string]any{}
	for i := range 300 {
		huge[strings.Repeat("x", i+1)] = i
	}
	deep := map[string]any{}
	for d, i := deep, 0; i < 20; i++ {
		n := map[string]any{}
		d["n"] = n
		d = n
	}
	wide := map[string]any{"a": strings.Repeat("y", 1000), "b": strings.Repeat("y", 1000)}
	for i := range 20 {
		wide[string(rune('c'+i))] = strings.Repeat("y", 1000)
	}
	for name, d := range map[string]map[string]any{"count": huge, "depth": deep, "size": wide} {
		r, err := normalize(Record{Action: ActionTaskCreate, Outcome: OutcomeSuccess, Details: d})
		if err != nil {
			t.Fatal(err)
		}
		if r.Details["truncated"] != true || r.Details["reason"] != name {
			t.Errorf("%s: details %v", name, r.Details)
		}
	}

	bad := []Record{
		{Action: "Task.Create", Outcome: OutcomeSuccess},
		{Action: "task", Outcome: OutcomeSuccess},
		{Action: ActionTaskCreate, Outcome: "ok"},
		{Action: ActionTaskCreate, Outcome: OutcomeSuccess, Tenant: "Acme"},
		{Action: ActionTaskCreate, Outcome: OutcomeSuccess, Tenant: "@platform"},
		{Action: ActionTaskCreate, Outcome: OutcomeSuccess, Details: map[string]any{"s": struct{}{}}},
		{Action: ActionTaskCreate, Outcome: OutcomeSuccess, Details: map[string]any{"b": []byte("secret")}},
		{Action: ActionTaskCreate, Outcome: OutcomeSuccess, Details: map[string]any{"m": map[int]int{1: 1}}},
	}
	for i, b := range bad {
		if _, err := normalize(b); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("bad record %d: %v", i, err)
		}
	}
	// The caller's map is copied, not kept.
	d := map[string]any{"a": 1}
	r, _ = normalize(Record{Action: ActionTaskCreate, Outcome: OutcomeSuccess, Details: d})
	d["a"] = 2
	if r.Details["a"] != int64(1) {
		t.Error("details alias the caller's map")
	}
}

func TestObjectiveDigest(t *testing.T) {
	d := ObjectiveDigest("hello")
	if d["len"] != 5 || d["sha256"] != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Fatalf("digest %v", d)
	}
	b, _ := json.Marshal(d)
	if strings.Contains(string(b), "hello") {
		t.Fatal("digest leaks the objective")
	}
}

func TestNewID(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	a, b := newID(now), newID(now)
	if a == b || len(a) != 36 || a[14] != '7' || !strings.Contains("89ab", string(a[19])) || a[:13] != b[:13] {
		t.Fatalf("ids %s %s", a, b)
	}
}

func TestCursor(t *testing.T) {
	fp := filterFingerprint(Filter{Tenant: "acme"})
	p := Position{TimeMS: 1234, Chain: "acme", Seq: 9}
	c := encodeCursor(fp, p)
	if got, err := decodeCursor(c, fp); err != nil || got != p {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if _, err := decodeCursor(c, filterFingerprint(Filter{Tenant: "other"})); !errors.Is(err, ErrInvalidCursor) {
		t.Fatalf("foreign filter: %v", err)
	}
	if _, err := decodeCursor(encodeCursor(fp, Position{Chain: "Bad Chain", Seq: 1}), fp); !errors.Is(err, ErrInvalidCursor) {
		t.Fatalf("bad chain: %v", err)
	}
	if filterFingerprint(Filter{Tenant: "a", Actor: "bc"}) == filterFingerprint(Filter{Tenant: "ab", Actor: "c"}) {
		t.Fatal("fingerprint is ambiguous")
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":[true,false,null],"c":"x"}`, `"\u2028\n"`, `1e21`, `-0.0`, `[1.5e-7, 9007199254740993]`,
		`{"\ud83d\ude00":1,"\ufb33":2}`, `{"reason":"x\n{\"action\":\"key.set\"}"}`, `[[[[]]]]`, `"\xff"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c1, err := Canonicalize(data)
		if err != nil {
			return
		}
		// Canonical output is valid JSON, one line, and a fixed point.
		if !json.Valid(c1) || bytes.ContainsAny(c1, "\n\r") {
			t.Fatalf("bad output %q", c1)
		}
		c2, err := Canonicalize(c1)
		if err != nil || !bytes.Equal(c1, c2) {
			t.Fatalf("not idempotent: %q → %q (%v)", c1, c2, err)
		}
		// Same value as encoding/json sees it (numbers compared as float64, so -0 == 0).
		var v1, v2 any
		if json.Unmarshal(data, &v1) == nil && json.Unmarshal(c1, &v2) == nil && !reflect.DeepEqual(v1, v2) {
			t.Fatalf("value changed: %v vs %v", v1, v2)
		}
	})
}

func FuzzUnmarshalRecord(f *testing.F) {
	r := Record{Action: ActionTaskCreate, Outcome: OutcomeSuccess, Tenant: "acme", Time: time.UnixMilli(1), Details: map[string]any{"x": 1.0}}
	b, _ := MarshalCanonical(r)
	f.Add(b)
	f.Add([]byte(`{"action":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := UnmarshalRecord(data)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes as exactly one line, and decodes to the same record.
		out, err := MarshalCanonical(rec)
		if err != nil {
			return // e.g. invalid UTF-8 kept in a string
		}
		if bytes.ContainsAny(out, "\n\r") {
			t.Fatalf("record encoding spans lines: %q", out)
		}
		again, err := UnmarshalRecord(out)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		out2, _ := MarshalCanonical(again)
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable: %q vs %q", out, out2)
		}
	})
}
