package jsonscan

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// reference is encoding/json's encoding of s, with or without its HTML escaping.
func reference(t *testing.T, s string, html bool) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(html)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// checkString: both forms decode to what encoding/json decodes its own encoding to, never hold
// a raw line break, and with html never a raw <, > or &.
func checkString(t *testing.T, s string) {
	t.Helper()
	for _, html := range []bool{false, true} {
		for name, got := range map[string][]byte{"string": AppendString(nil, s, html), "bytes": AppendBytes(nil, []byte(s), html)} {
			if !json.Valid(got) {
				t.Fatalf("%s html=%v: invalid JSON for %q: %s", name, html, s, got)
			}
			var mine, std string
			if err := json.Unmarshal(got, &mine); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(reference(t, s, html), &std); err != nil {
				t.Fatal(err)
			}
			if mine != std {
				t.Fatalf("%s html=%v: %q decodes to %q, encoding/json to %q", name, html, s, mine, std)
			}
			if strings.ContainsAny(string(got), "\n\r\u2028\u2029") {
				t.Fatalf("%s: encoded string contains a line break: %q", name, got)
			}
			if html && strings.ContainsAny(string(got), "<>&") {
				t.Fatalf("%s: html-safe encoding contains <, > or &: %q", name, got)
			}
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `"quoted" \ back`, "\x00\x01\x1f\x7f", "\n\r\t\b\f",
		"日本語 🚀", "bad \xff\xfe utf8 \xe2\x82", "\u2028\u2029", "</script>&<>"} {
		checkString(t, s)
	}
	// Byte for byte what encoding/json writes, for valid input.
	for _, s := range []string{"plain", "a\"b\\c\n", "<&>", "\u2028x", "日本"} {
		if got, want := AppendString(nil, s, true), reference(t, s, true); !bytes.Equal(got, want) {
			t.Errorf("AppendString(%q, html) = %s; encoding/json %s", s, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("hello")
	f.Add("\"\\\n\u2028\xff<&>")
	f.Fuzz(func(t *testing.T, s string) { checkString(t, s) })
}

func TestValueEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		end  int
		ok   bool
		desc string
	}{
		{`"a\"b",`, 6, true, "string with an escaped quote"},
		{`{"a":[1,{"b":"}"}]} x`, 19, true, "nested, a brace inside a string"},
		{`123,`, 3, true, "number"},
		{`true}`, 4, true, "literal"},
		{`[1,2`, 4, false, "unterminated array"},
		{`"abc`, 4, false, "unterminated string"},
		{``, 0, false, "nothing"},
	} {
		end, ok := ValueEnd([]byte(tc.in), 0)
		if end != tc.end || ok != tc.ok {
			t.Errorf("%s: ValueEnd(%q) = %d, %v; want %d, %v", tc.desc, tc.in, end, ok, tc.end, tc.ok)
		}
	}
}

// FuzzValueEnd: on any input ValueEnd stays in bounds, and on a valid JSON value it ends
// exactly where the value does.
func FuzzValueEnd(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `"x"`, `[[]]`, `1e5`, `{"k":"\"}"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)
		end, ok := ValueEnd(b, 0)
		if end < 0 || end > len(b) {
			t.Fatalf("ValueEnd(%q) = %d out of bounds", s, end)
		}
		value := bytes.TrimRight(b, " \t\r\n")
		if len(b) > 0 && json.Valid(b) && (b[0] == '{' || b[0] == '[' || b[0] == '"') && (!ok || end != len(value)) {
			t.Fatalf("valid %q: ValueEnd = %d, %v; want %d, true", s, end, ok, len(value))
		}
	})
}
