package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/flowgate/flowgate/internal/auth/authtest"
	"github.com/flowgate/flowgate/internal/clocktest"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwksServer is a local identity provider's key set endpoint whose answer the test changes.
type jwksServer struct {
	*httptest.Server
	requests atomic.Int64

	mu     sync.Mutex
	body   []byte
	status int
	ctype  string
	delay  time.Duration
}

func newJWKSServer(t *testing.T) *jwksServer {
	t.Helper()
	s := &jwksServer{status: 200, ctype: "application/json"}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		body, status, ctype, delay := s.body, s.status, s.ctype, s.delay
		s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(body []byte, status int, ctype string, delay time.Duration) {
	s.mu.Lock()
	s.body, s.status, s.ctype, s.delay = body, status, ctype, delay
	s.mu.Unlock()
}

func (s *jwksServer) set(keys ...map[string]any) {
	s.serve(jwkSetJSON(keys...), 200, "application/json", 0)
}

func jwkSetJSON(keys ...map[string]any) []byte {
	if keys == nil {
		keys = []map[string]any{}
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

var b64 = base64.RawURLEncoding.EncodeToString

func edJWK(kid string, pub crypto.PublicKey) map[string]any {
	return map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(pub.(ed25519.PublicKey)), "use": "sig", "alg": "EdDSA"}
}

func rsaJWK(kid string, pub *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()), "alg": "RS256"}
}

func ecJWK(kid string, pub *ecdsa.PublicKey) map[string]any {
	raw, _ := pub.Bytes() // 0x04 || X || Y
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(raw[1:33]), "y": b64(raw[33:])}
}

func newEd(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// jwksFixture is a Verifier whose issuers take their keys from local JWKS servers.
type jwksFixture struct {
	clock *clocktest.Clock
	jwks  *JWKS
	v     *Verifier
}

func newJWKSFixture(t *testing.T, issuers map[string]*jwksServer, static ...IssuerConfig) *jwksFixture {
	t.Helper()
	clock := clocktest.New(testNow)
	var cfgs []JWKSIssuer
	var dyn []IssuerConfig
	for name, srv := range issuers {
		cfgs = append(cfgs, JWKSIssuer{Issuer: name, URL: srv.URL + "/jwks.json", Refresh: time.Hour})
		dyn = append(dyn, IssuerConfig{Issuer: name, Audience: "flowgate"})
	}
	j, err := NewJWKS(JWKSOptions{Issuers: cfgs, MinInterval: 30 * time.Second, Timeout: 2 * time.Second, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Stop)
	opts := VerifierOptions{Issuers: static, Dynamic: j, DynamicIssuers: dyn, Leeway: 30 * time.Second, Now: clock.Now}
	if len(static) == 0 {
		opts.Issuers = nil
	}
	v, err := NewVerifier(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &jwksFixture{clock: clock, jwks: j, v: v}
}

func jwksClaims(iss string) jwt.MapClaims {
	return claims(func(c jwt.MapClaims) { c["iss"] = iss })
}

func (f *jwksFixture) verify(t *testing.T, tok string) string {
	t.Helper()
	_, err := f.v.Verify(context.Background(), tok)
	if err == nil {
		return ""
	}
	return ReasonOf(err)
}

// TestJWKSRotation: a new kid verifies once the set is refreshed; a kid that left the set
// stops verifying.
func TestJWKSRotation(t *testing.T) {
	srv := newJWKSServer(t)
	k1, k2 := newEd(t), newEd(t)
	srv.set(edJWK("k1", k1.Public()))
	f := newJWKSFixture(t, map[string]*jwksServer{"https://idp.example/": srv})
	tok1 := authtest.Sign(t, jwt.SigningMethodEdDSA, "k1", k1, jwksClaims("https://idp.example/"), nil)
	tok2 := authtest.Sign(t, jwt.SigningMethodEdDSA, "k2", k2, jwksClaims("https://idp.example/"), nil)

	if r := f.verify(t, tok1); r != "" {
		t.Fatalf("k1: %s", r)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Fatalf("%d fetches for the first token; want 1", n)
	}
	if r := f.verify(t, tok1); r != "" || srv.requests.Load() != 1 {
		t.Fatalf("cached k1: %s, %d fetches", r, srv.requests.Load())
	}

	// The provider rotates to k2 and drops k1.
	srv.set(edJWK("k2", k2.Public()))
	if r := f.verify(t, tok2); r != ReasonUnknownKey || srv.requests.Load() != 1 {
		t.Fatalf("k2 within the refresh interval: %q, %d fetches; want unknown_key and no fetch", r, srv.requests.Load())
	}
	f.clock.Advance(31 * time.Second)
	if r := f.verify(t, tok2); r != "" {
		t.Fatalf("k2 after the interval: %s", r)
	}
	if n := srv.requests.Load(); n != 2 {
		t.Fatalf("%d fetches; want 2", n)
	}
	if r := f.verify(t, tok1); r != ReasonUnknownKey {
		t.Fatalf("k1 after it left the set: %q; want unknown_key", r)
	}
	if got := f.jwks.KIDs("https://idp.example/"); !slices.Equal(got, []string{"k2"}) {
		t.Fatalf("kids = %v", got)
	}
}

// TestJWKSIssuerBinding: keys are cached by (issuer, kid). A kid of issuer A presented with
// iss B is looked up in B's set only.
func TestJWKSIssuerBinding(t *testing.T) {
	srvA, srvB := newJWKSServer(t), newJWKSServer(t)
	kA, kB, kShared := newEd(t), newEd(t), newEd(t)
	srvA.set(edJWK("a1", kA.Public()), edJWK("shared", kShared.Public()))
	srvB.set(edJWK("b1", kB.Public()), edJWK("shared", newEd(t).Public()))
	static := IssuerConfig{Issuer: "static", Audience: "flowgate", Keys: []VerificationKey{{KID: "s1", Alg: AlgEdDSA, Key: newEd(t).Public()}}}
	f := newJWKSFixture(t, map[string]*jwksServer{"A": srvA, "B": srvB}, static)

	tests := []struct {
		name, iss, kid string
		key            ed25519.PrivateKey
		want           string
	}{
		{"A's key as A", "A", "a1", kA, ""},
		{"B's key as B", "B", "b1", kB, ""},
		{"A's kid presented as B", "B", "a1", kA, ReasonUnknownKey},
		{"B's kid presented as A", "A", "b1", kB, ReasonUnknownKey},
		{"same kid, other issuer's key", "B", "shared", kShared, ReasonSignature},
		{"A's kid presented as a static issuer", "static", "a1", kA, ReasonUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := authtest.Sign(t, jwt.SigningMethodEdDSA, tt.kid, tt.key, jwksClaims(tt.iss), nil)
			if got := f.verify(t, tok); got != tt.want {
				t.Fatalf("reason = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestJWKSHeadersNeverFetched: jku, x5u, jwk and x5c are never consulted; no request ever
// reaches a URL a token names.
func TestJWKSHeadersNeverFetched(t *testing.T) {
	trap := newJWKSServer(t)
	attacker := newEd(t)
	trap.set(edJWK("evil", attacker.Public()))
	srv := newJWKSServer(t)
	srv.set(edJWK("good", newEd(t).Public()))
	f := newJWKSFixture(t, map[string]*jwksServer{"https://idp.example/": srv})

	der, _ := x509.MarshalPKIXPublicKey(attacker.Public())
	for name, hdr := range map[string]map[string]any{
		"jku": {"jku": trap.URL + "/jwks.json"},
		"x5u": {"x5u": trap.URL + "/cert.pem"},
		"jwk": {"jwk": edJWK("evil", attacker.Public())},
		"x5c": {"x5c": []string{base64.StdEncoding.EncodeToString(der)}},
		"all": {"jku": trap.URL + "/a", "x5u": trap.URL + "/b", "jwk": edJWK("evil", attacker.Public())},
	} {
		t.Run(name, func(t *testing.T) {
			for _, kid := range []string{"evil", "good", ""} {
				f.clock.Advance(time.Minute) // an on-demand refresh is allowed each time
				tok := authtest.Sign(t, jwt.SigningMethodEdDSA, kid, attacker, jwksClaims("https://idp.example/"), hdr)
				if r := f.verify(t, tok); r == "" {
					t.Fatalf("kid %q: a token carrying its own key location was accepted", kid)
				}
			}
		})
	}
	if n := trap.requests.Load(); n != 0 {
		t.Fatalf("%d requests reached the URL named by a token; want 0", n)
	}
	if srv.requests.Load() == 0 {
		t.Fatal("the configured JWKS URL was never fetched (test is not exercising the dynamic path)")
	}
}

// TestJWKSUnknownKidFlood: any number of tokens with made-up kids cost at most one fetch per
// interval per issuer.
func TestJWKSUnknownKidFlood(t *testing.T) {
	srv := newJWKSServer(t)
	key := newEd(t)
	srv.set(edJWK("real", key.Public()))
	f := newJWKSFixture(t, map[string]*jwksServer{"https://idp.example/": srv})

	flood := func(round int) {
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Go(func() {
				tok := authtest.Sign(t, jwt.SigningMethodEdDSA, fmt.Sprintf("made-up-%d-%d", round, i), key, jwksClaims("https://idp.example/"), nil)
				if r := f.verify(t, tok); r != ReasonUnknownKey {
					t.Errorf("made-up kid: %q; want unknown_key", r)
				}
			})
		}
		wg.Wait()
	}
	flood(0)
	if n := srv.requests.Load(); n != 1 {
		t.Fatalf("first flood: %d fetches; want 1", n)
	}
	for round := 1; round <= 3; round++ {
		f.clock.Advance(9 * time.Second) // still within the 30 s interval
		flood(round)
	}
	if n := srv.requests.Load(); n != 1 {
		t.Fatalf("floods within the interval: %d fetches; want 1", n)
	}
	f.clock.Advance(time.Minute)
	flood(4)
	if n := srv.requests.Load(); n != 2 {
		t.Fatalf("flood after the interval: %d fetches; want 2", n)
	}
	// The real key still verifies without another fetch.
	if r := f.verify(t, authtest.Sign(t, jwt.SigningMethodEdDSA, "real", key, jwksClaims("https://idp.example/"), nil)); r != "" || srv.requests.Load() != 2 {
		t.Fatalf("real kid: %q, %d fetches", r, srv.requests.Load())
	}
}

// TestJWKSFailureKeepsLastGood: error statuses, garbage, oversize and slow answers fail the
// refresh and leave the last good set in use.
func TestJWKSFailureKeepsLastGood(t *testing.T) {
	srv := newJWKSServer(t)
	key := newEd(t)
	good := jwkSetJSON(edJWK("k1", key.Public()))
	srv.serve(good, 200, "application/json", 0)
	clock := clocktest.New(testNow)
	j, err := NewJWKS(JWKSOptions{
		Issuers: []JWKSIssuer{{Issuer: "idp", URL: srv.URL, Refresh: time.Hour}},
		Timeout: 500 * time.Millisecond, Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Stop()
	ctx := context.Background()
	if err := j.Refresh(ctx, "idp"); err != nil {
		t.Fatal(err)
	}
	many := make([]map[string]any, 65)
	for i := range many {
		many[i] = edJWK(fmt.Sprint("k", i), newEd(t).Public())
	}
	tests := []struct {
		name   string
		body   []byte
		status int
		ctype  string
		delay  time.Duration
	}{
		{"500", []byte(`{"keys":[]}`), 500, "application/json", 0},
		{"404 html", []byte("<html>not found</html>"), 404, "text/html", 0},
		{"html with 200", []byte("<html>login</html>"), 200, "text/html", 0},
		{"no content type", good, 200, "", 0},
		{"not json", []byte("{{{"), 200, "application/json", 0},
		{"json array", []byte("[1,2]"), 200, "application/json", 0},
		{"no keys member", []byte(`{"kids":[]}`), 200, "application/json", 0},
		{"empty set", []byte(`{"keys":[]}`), 200, "application/json", 0},
		{"only unusable keys", jwkSetJSON(map[string]any{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}), 200, "application/json", 0},
		{"too many keys", jwkSetJSON(many...), 200, "application/json", 0},
		{"oversize", []byte(`{"keys":[],"pad":"` + strings.Repeat("a", 300<<10) + `"}`), 200, "application/json", 0},
		{"slow", good, 200, "application/json", 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.serve(tt.body, tt.status, tt.ctype, tt.delay)
			start := time.Now()
			if err := j.Refresh(ctx, "idp"); err == nil {
				t.Fatal("refresh succeeded")
			}
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Fatalf("refresh took %v; the 500ms timeout was not applied", d)
			}
			if got := j.KIDs("idp"); !slices.Equal(got, []string{"k1"}) {
				t.Fatalf("kids after a failed refresh = %v; want the last good [k1]", got)
			}
			if _, err := j.Key(ctx, "idp", "k1"); err != nil {
				t.Fatalf("k1 lost: %v", err)
			}
		})
	}
	// A redirect is not followed: a key set that moved must be reconfigured.
	target := newJWKSServer(t)
	target.set(edJWK("moved", newEd(t).Public()))
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	defer redirect.Close()
	j2, err := NewJWKS(JWKSOptions{Issuers: []JWKSIssuer{{Issuer: "idp", URL: redirect.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Stop()
	if err := j2.Refresh(ctx, "idp"); err == nil || target.requests.Load() != 0 {
		t.Fatalf("redirect followed: err=%v, %d requests at the target", err, target.requests.Load())
	}
}

// TestJWKSBackgroundRefresh: the refresher picks up rotation on its own, retries failures
// while keeping the last good set, and stops with Stop.
func TestJWKSBackgroundRefresh(t *testing.T) {
	srv := newJWKSServer(t)
	k1, k2 := newEd(t), newEd(t)
	srv.set(edJWK("k1", k1.Public()))
	j, err := NewJWKS(JWKSOptions{
		Issuers:        []JWKSIssuer{{Issuer: "idp", URL: srv.URL, Refresh: time.Second}},
		Timeout:        time.Second,
		InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	j.Start(t.Context())
	waitKIDs := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(j.KIDs("idp"), want) {
			if time.Now().After(deadline) {
				t.Fatalf("kids = %v; want %v", j.KIDs("idp"), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitKIDs("k1")
	srv.set(edJWK("k2", k2.Public()))
	waitKIDs("k2")

	srv.serve([]byte("down"), 503, "text/plain", 0)
	before := srv.requests.Load()
	deadline := time.Now().Add(10 * time.Second)
	for srv.requests.Load() < before+3 { // the refresh and at least two retries
		if time.Now().After(deadline) {
			t.Fatalf("no retries after a failure: %d requests", srv.requests.Load()-before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := j.KIDs("idp"); !slices.Equal(got, []string{"k2"}) {
		t.Fatalf("kids while failing = %v; want the last good [k2]", got)
	}
	j.Stop()
	after := srv.requests.Load()
	time.Sleep(500 * time.Millisecond)
	if n := srv.requests.Load(); n != after {
		t.Fatalf("%d requests after Stop", n-after)
	}
}

func TestJWKSBackoff(t *testing.T) {
	j, err := NewJWKS(JWKSOptions{Issuers: []JWKSIssuer{{Issuer: "idp", URL: "https://idp.example/jwks", Refresh: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	is := j.issuers["idp"]
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 9: 256 * time.Second, 10: 5 * time.Minute, 50: 5 * time.Minute} {
		for range 20 {
			d := j.backoff(is, n)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v; want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

func TestParseJWKS(t *testing.T) {
	k := newKeys(t)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	with := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for key, v := range m {
			out[key] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(out, kv[i].(string))
				continue
			}
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	ed := edJWK("ed", k.ed.Public())
	rs := rsaJWK("rs", &k.rsa.PublicKey)
	ec := ecJWK("ec", &k.ec.PublicKey)
	raw, _ := k.ec.PublicKey.Bytes()
	offCurve := append([]byte{}, raw[33:]...)
	offCurve[31] ^= 1
	all := DefaultJWKSAlgorithms()
	tests := []struct {
		name string
		key  map[string]any
		algs []string
		alg  string // "" = skipped
	}{
		{"Ed25519", ed, all, AlgEdDSA},
		{"RSA", rs, all, AlgRS256},
		{"EC P-256 without alg", ec, all, AlgES256},
		{"RSA without alg", with(rs, "alg", nil), all, AlgRS256},
		{"alg not allowed for issuer", ed, []string{AlgRS256}, ""},
		{"oct never", map[string]any{"kty": "oct", "kid": "h", "k": b64([]byte(strings.Repeat("s", 32))), "alg": "HS256"}, all, ""},
		{"HS256 alg on an RSA key", with(rs, "alg", "HS256"), all, ""},
		{"alg does not match kty", with(rs, "alg", "ES256"), all, ""},
		{"PS256 RSA", with(rs, "alg", "PS256"), all, ""},
		{"RSA 1024", rsaJWK("weak", &weak.PublicKey), all, ""},
		{"EC P-384", map[string]any{"kty": "EC", "crv": "P-384", "kid": "p384", "x": b64(p384.X.Bytes()), "y": b64(p384.Y.Bytes())}, all, ""},
		{"EC point off the curve", with(ec, "y", b64(offCurve)), all, ""},
		{"Ed448", with(ed, "crv", "Ed448"), all, ""},
		{"private material", with(ed, "d", b64(k.ed.Seed())), all, ""},
		{"use enc", with(ed, "use", "enc"), all, ""},
		{"key_ops sign only", with(ed, "key_ops", []string{"sign"}), all, ""},
		{"key_ops verify", with(ed, "key_ops", []string{"verify"}), all, AlgEdDSA},
		{"no kid", with(ed, "kid", nil), all, ""},
		{"padded base64", with(ed, "x", base64.URLEncoding.EncodeToString(k.ed.Public().(ed25519.PublicKey))), all, ""},
		{"short Ed25519", with(ed, "x", b64([]byte("short"))), all, ""},
		{"unknown kty", map[string]any{"kty": "XYZ", "kid": "x"}, all, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A usable sentinel keeps the set valid so a skipped key shows as skipped.
			sentinel := edJWK("sentinel", newEd(t).Public())
			keys, skipped, err := ParseJWKS(jwkSetJSON(tt.key, sentinel), tt.algs)
			if tt.alg == "" && slices.Equal(tt.algs, []string{AlgRS256}) {
				if err == nil {
					t.Fatalf("a set with no allowed key parsed: %v", keys)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			kid, _ := tt.key["kid"].(string)
			got, ok := keys[kid]
			if tt.alg == "" {
				if ok || skipped != 1 {
					t.Fatalf("key accepted (%v) or skipped=%d", got, skipped)
				}
				return
			}
			if !ok || got.Alg != tt.alg || skipped != 0 {
				t.Fatalf("key = %+v, %v, skipped=%d; want alg %s", got, ok, skipped, tt.alg)
			}
		})
	}
	// A kid that appears twice is dropped entirely.
	keys, skipped, err := ParseJWKS(jwkSetJSON(edJWK("dup", k.ed.Public()), edJWK("dup", k.otherEd.Public()), edJWK("ok", k.ed.Public())), all)
	if err != nil || len(keys) != 1 || skipped != 2 {
		t.Fatalf("duplicate kid: keys=%v skipped=%d err=%v", keys, skipped, err)
	}
}

func TestNewJWKSRefusesInsecureConfig(t *testing.T) {
	for name, ic := range map[string]JWKSIssuer{
		"http to a remote host": {Issuer: "i", URL: "http://idp.example/jwks"},
		"ftp":                   {Issuer: "i", URL: "ftp://idp.example/jwks"},
		"relative":              {Issuer: "i", URL: "/jwks"},
		"only HS256":            {Issuer: "i", URL: "https://idp.example/jwks", Algorithms: []string{AlgHS256}},
		"unknown alg":           {Issuer: "i", URL: "https://idp.example/jwks", Algorithms: []string{"none"}},
		"no issuer":             {URL: "https://idp.example/jwks"},
	} {
		if _, err := NewJWKS(JWKSOptions{Issuers: []JWKSIssuer{ic}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, u := range []string{"https://idp.example/jwks", "http://127.0.0.1:8080/jwks", "http://localhost/jwks", "http://[::1]:9/jwks"} {
		if _, err := NewJWKS(JWKSOptions{Issuers: []JWKSIssuer{{Issuer: "i", URL: u}}}); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// TestJWKSWithStaticHS256: an issuer with a static HS256 secret and a JWKS: the secret
// verifies HS256 only under its own kid, and an HS256 token can never use a key-set kid (the
// classic RSA-public-key-as-HMAC-secret confusion).
func TestJWKSWithStaticHS256(t *testing.T) {
	srv := newJWKSServer(t)
	k := newKeys(t)
	srv.set(rsaJWK("rs", &k.rsa.PublicKey))
	clock := clocktest.New(testNow)
	j, err := NewJWKS(JWKSOptions{Issuers: []JWKSIssuer{{Issuer: "idp", URL: srv.URL, Algorithms: []string{AlgHS256, AlgRS256}}}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Stop()
	v, err := NewVerifier(VerifierOptions{
		DynamicIssuers: []IssuerConfig{{Issuer: "idp", Audience: "flowgate", Algorithms: []string{AlgHS256, AlgRS256},
			Keys: []VerificationKey{{KID: "hs", Alg: AlgHS256, Key: k.hs}}}},
		Dynamic: j, Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	c := jwksClaims("idp")
	for _, tt := range []struct {
		name, tok, want string
	}{
		{"HS256 static", authtest.Sign(t, jwt.SigningMethodHS256, "hs", k.hs, c, nil), ""},
		{"RS256 from the set", authtest.Sign(t, jwt.SigningMethodRS256, "rs", k.rsa, c, nil), ""},
		{"HS256 with the set's kid, RSA public key as secret", authtest.Sign(t, jwt.SigningMethodHS256, "rs", pemBytes, c, nil), ReasonAlgorithm},
		{"HS256 with the set's kid, modulus as secret", authtest.Sign(t, jwt.SigningMethodHS256, "rs", k.rsa.N.Bytes(), c, nil), ReasonAlgorithm},
	} {
		_, err := v.Verify(context.Background(), tt.tok)
		got := ""
		if err != nil {
			got = ReasonOf(err)
		}
		if got != tt.want {
			t.Errorf("%s: %q (%v); want %q", tt.name, got, err, tt.want)
		}
	}
	// A static key outside the issuer's algorithms is a configuration error.
	if _, err := NewVerifier(VerifierOptions{Issuers: []IssuerConfig{{Issuer: "x", Audience: "a", Algorithms: []string{AlgRS256},
		Keys: []VerificationKey{{KID: "hs", Alg: AlgHS256, Key: k.hs}}}}}); err == nil {
		t.Fatal("HS256 key accepted for an RS256-only issuer")
	}
}
