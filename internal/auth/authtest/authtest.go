// Package authtest signs the tokens tests present to a gateway: any method, any key, any
// claims and headers, so a test can forge exactly the token it means to refuse.
package authtest

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// Sign signs claims with key under method, with kid as the "kid" header (none when empty)
// and hdr as further headers (which may override it). A signing error fails the test.
func Sign(t testing.TB, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims, hdr map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	for k, v := range hdr {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
