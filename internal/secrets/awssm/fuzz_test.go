package awssm

import (
	"strings"
	"testing"

	"github.com/flowgate/flowgate/internal/secrets"
)

func FuzzParseValue(f *testing.F) {
	f.Add(`{"apiKey":"sk-ant-api03-abc"}`)
	f.Add("sk-ant-api03-abc\n")
	f.Add(`{"apiKey":"sk-ant-api03-abc`)
	f.Add(`{"apiKey":null}`)
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseValue(&s)
		if err == nil && secrets.ValidateAPIKey(v) != nil {
			t.Fatalf("returned an invalid key from %q", s)
		}
		if err != nil && len(s) >= 16 && strings.Contains(err.Error(), s) {
			t.Fatalf("error quotes the secret: %v", err)
		}
		if err != nil && strings.Contains(err.Error(), "sk-ant") {
			t.Fatalf("error contains key material: %v", err)
		}
	})
}
