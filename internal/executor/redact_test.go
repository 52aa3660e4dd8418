package executor

import (
	"bytes"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	const tenant = "tenant-secret-0123456789"
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{"clean", []string{tenant}, `{"type":"assistant","text":"hello"}`, `{"type":"assistant","text":"hello"}`},
		{"empty", []string{tenant}, "", ""},
		{"tenant key", []string{tenant}, "key " + tenant + " end", "key [REDACTED] end"},
		{"tenant key twice", []string{tenant}, tenant + tenant + "x" + tenant, "[REDACTED]x[REDACTED]"},
		{"key shaped", nil, `{"k":"sk-ant-api03-AbC_d-9"}`, `{"k":"[REDACTED]"}`},
		{"key shaped at end", nil, "x sk-ant-a", "x [REDACTED]"},
		{"prefix alone", nil, "sk-ant- is the prefix", "sk-ant- is the prefix"},
		{"prefix then punctuation", nil, "sk-ant-.", "sk-ant-."},
		{"two key shaped", nil, "sk-ant-a sk-ant-b", "[REDACTED] [REDACTED]"},
		{"key shaped run eats key chars only", nil, "sk-ant-abc/def", "[REDACTED]/def"},
		{"real-looking tenant key", []string{"sk-ant-api03-tenant"}, "a sk-ant-api03-tenant b", "a [REDACTED] b"},
		{"tenant key with odd chars", []string{"p@ss/w+rd=="}, "x p@ss/w+rd== y", "x [REDACTED] y"},
		{"short secret ignored", []string{"short"}, "short", "short"},
		{"overlapping secrets", []string{"abcdefgh", "efghijkl"}, "xxabcdefghijklyy", "xx[REDACTED]yy"},
		{"self-overlapping secret", []string{"aaaaaaaa"}, "aaaaaaaaaa", "[REDACTED]"},
		{"secret adjacent to pattern", []string{tenant}, tenant + "sk-ant-x", "[REDACTED]"},
		{"secret inside pattern run", []string{"ABCDEFGHIJ"}, "sk-ant-xxABCDEFGHIJyy", "[REDACTED]"},
		{"binary", []string{tenant}, "\x00\xff" + tenant + "\x00", "\x00\xff[REDACTED]\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRedactor(tt.secrets...)
			got, changed := r.Redact(nil, []byte(tt.in))
			if string(got) != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if changed != (tt.in != tt.want) {
				t.Errorf("changed = %v", changed)
			}
			if s := r.RedactString(tt.in); s != tt.want {
				t.Errorf("RedactString = %q", s)
			}
		})
	}
}

func TestRedactNoCopyWhenClean(t *testing.T) {
	r := NewRedactor("tenant-secret-0123456789")
	src := []byte("a perfectly ordinary line")
	out, changed := r.Redact(make([]byte, 0, 64), src)
	if changed || &out[0] != &src[0] {
		t.Error("clean line was copied")
	}
	if n := testing.AllocsPerRun(100, func() { r.Redact(nil, src) }); n != 0 {
		t.Errorf("%v allocations per clean line", n)
	}
	var nilR *Redactor
	if out, _ := nilR.Redact(nil, []byte("k sk-ant-x")); string(out) != "k [REDACTED]" {
		t.Errorf("nil redactor: %q", out)
	}
}

func TestRedactTruncatedTail(t *testing.T) {
	const tenant = "tenant-secret-0123456789"
	r := NewRedactor(tenant)
	tests := []struct{ in, want string }{
		{"cut in the middle of tenant-se", "cut in the middle of [REDACTED]"},
		{"cut just after ten", "cut just after ten"}, // 3 bytes: too short to mean anything
		{"cut in the key prefix sk-an", "cut in the key prefix [REDACTED]"},
		{"cut after the key prefix sk-ant-", "cut after the key prefix [REDACTED]"},
		{"no secret at the end", "no secret at the end"},
	}
	for _, tt := range tests {
		got, _ := r.RedactTruncated(nil, []byte(tt.in))
		if string(got) != tt.want {
			t.Errorf("RedactTruncated(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzRedact: whatever the input, no secret survives and clean input is returned unchanged.
func FuzzRedact(f *testing.F) {
	f.Add("hello", "tenant-secret-0123456789")
	f.Add("sk-ant-abc tenant-secret-0123456789 sk-ant-", "tenant-secret-0123456789")
	f.Add("aaaaaaaaaaaa", "aaaaaaaa")
	f.Fuzz(func(t *testing.T, in, secret string) {
		r := NewRedactor(secret)
		out, changed := r.Redact(nil, []byte(in))
		if len(secret) >= MinSecretLen && bytes.Contains(out, []byte(secret)) && !strings.Contains(Redacted, secret) {
			// A secret can only reappear if it is made of "[REDACTED]" pieces and the text
			// around it.
			if !strings.Contains(secret, "[") && !strings.Contains(secret, "]") {
				t.Fatalf("secret %q survived in %q", secret, out)
			}
		}
		if !changed && string(out) != in {
			t.Fatalf("unchanged but different")
		}
		if !strings.Contains(in, "sk-ant-") && !(len(secret) >= MinSecretLen && strings.Contains(in, secret)) && changed {
			t.Fatalf("changed %q without a secret", in)
		}
	})
}

func BenchmarkRedact(b *testing.B) {
	line := []byte(`{"type":"assistant","message":{"id":"msg_01","content":[{"type":"text","text":"Analysing the repository layout and planning the next steps for the swarm agents."}]},"session_id":"b7c1"}`)
	withKey := []byte(`{"type":"user","message":{"content":[{"type":"tool_result","content":"ANTHROPIC_API_KEY=sk-ant-api03-Xy_z0123456789abcdefghijklmnop-QRSTUV and more"}]}}`)
	cases := []struct {
		name    string
		secrets []string
		line    []byte
	}{
		{"clean/key-shaped-tenant", []string{"sk-ant-api03-tenantkey0123456789abcdef"}, line},
		{"clean/opaque-tenant", []string{"opaque/tenant+key=0123456789"}, line},
		{"with-key", []string{"sk-ant-api03-tenantkey0123456789abcdef"}, withKey},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := NewRedactor(c.secrets...)
			dst := make([]byte, 0, 1024)
			b.SetBytes(int64(len(c.line)))
			b.ReportAllocs()
			for b.Loop() {
				dst, _ = r.Redact(dst[:0], c.line)
			}
		})
	}
}
