package secrets

import (
	"strings"
	"testing"
)

func FuzzDecodeKey(f *testing.F) {
	f.Add([]byte(strings.Repeat("ab", 32)))
	f.Add([]byte("q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=\n"))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31})
	f.Fuzz(func(t *testing.T, raw []byte) {
		key, err := decodeKey(raw)
		if err == nil && len(key) != KeyFileBytes {
			t.Fatalf("decoded %d bytes", len(key))
		}
		if err != nil && len(raw) >= 16 && strings.Contains(err.Error(), string(raw)) {
			t.Fatalf("error quotes the key file: %v", err)
		}
	})
}

func FuzzValidateAPIKey(f *testing.F) {
	f.Add("sk-ant-api03-abc")
	f.Add("a b")
	f.Add("\u202e")
	f.Fuzz(func(t *testing.T, v string) {
		err := ValidateAPIKey(v)
		if err == nil && (v == "" || len(v) > MaxKeyBytes || strings.ContainsAny(v, " \t\r\n\x00")) {
			t.Fatalf("accepted %q", v)
		}
		if err != nil && len(v) >= 16 && strings.Contains(err.Error(), v) {
			t.Fatalf("error quotes the value: %v", err)
		}
	})
}
