package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flowgate/flowgate/internal/tenant"
)

// SignerOptions configures flowgate's own issuer.
type SignerOptions struct {
	Issuer   string
	Audience string
	// Key signs new tokens; Previous keys are still published and accepted, for rotation.
	Key         ed25519.PrivateKey
	Previous    []ed25519.PrivateKey
	TenantClaim string
	DefaultTTL  time.Duration
	MaxTTL      time.Duration
	Now         func() time.Time
}

// Signer mints Ed25519 tokens. Every token it issues has a jti, so it can be revoked.
type Signer struct {
	opts SignerOptions
	kid  string
}

// NewSigner checks the options.
func NewSigner(opts SignerOptions) (*Signer, error) {
	if len(opts.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("auth: signer needs an Ed25519 private key")
	}
	if opts.Issuer == "" || opts.Audience == "" {
		return nil, errors.New("auth: signer needs an issuer and an audience")
	}
	// auth.tenant_claim and auth.signing.*_ttl come from config.Default: none is filled here.
	switch {
	case opts.TenantClaim == "":
		return nil, errors.New("auth: signer needs auth.tenant_claim")
	case opts.MaxTTL <= 0:
		return nil, errors.New("auth: auth.signing.max_ttl must be positive")
	case opts.DefaultTTL <= 0 || opts.DefaultTTL > opts.MaxTTL:
		return nil, errors.New("auth: auth.signing.default_ttl must be positive and at most auth.signing.max_ttl")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Signer{opts: opts, kid: KeyID(opts.Key.Public().(ed25519.PublicKey))}, nil
}

// IssueRequest describes a token to mint.
type IssueRequest struct {
	Tenant      string
	Subject     string
	Permissions []string
	TTL         time.Duration // 0 = default
}

// Issued is a minted token and what it says.
type Issued struct {
	Token     string
	JTI       string
	ExpiresAt time.Time
	KID       string
}

// Issue mints a token. Unknown permissions are an error, not silently dropped: an operator
// typo must not produce a token that quietly lacks what was asked for.
func (s *Signer) Issue(req IssueRequest) (Issued, error) {
	if !ValidTenantID(req.Tenant) {
		return Issued{}, fmt.Errorf("auth: tenant %q does not match %s", req.Tenant, tenant.IDRule)
	}
	if !printable(req.Subject, maxSubjectLen) {
		return Issued{}, errors.New("auth: subject must be 1-256 printable characters")
	}
	if len(req.Permissions) == 0 || len(req.Permissions) > maxPermissions {
		return Issued{}, errors.New("auth: a token needs 1-32 permissions")
	}
	for _, p := range req.Permissions {
		if !KnownPermission(p) {
			return Issued{}, fmt.Errorf("auth: unknown permission %q", p)
		}
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = s.opts.DefaultTTL
	}
	if ttl < 0 || ttl > s.opts.MaxTTL {
		return Issued{}, fmt.Errorf("auth: ttl must be between 1s and %s", s.opts.MaxTTL)
	}
	now := s.opts.Now().UTC().Truncate(time.Second)
	exp := now.Add(ttl)
	jti, err := newJTI()
	if err != nil {
		return Issued{}, err
	}
	claims := jwt.MapClaims{
		"iss":              s.opts.Issuer,
		"aud":              s.opts.Audience,
		"sub":              req.Subject,
		s.opts.TenantClaim: req.Tenant,
		"permissions":      normalizePermissions(req.Permissions),
		"iat":              now.Unix(),
		"nbf":              now.Unix(),
		"exp":              exp.Unix(),
		"jti":              jti,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = s.kid
	signed, err := tok.SignedString(s.opts.Key)
	if err != nil {
		return Issued{}, fmt.Errorf("auth: sign: %w", err)
	}
	return Issued{Token: signed, JTI: jti, ExpiresAt: exp, KID: s.kid}, nil
}

// MaxTTL is the longest lifetime the signer grants.
func (s *Signer) MaxTTL() time.Duration { return s.opts.MaxTTL }

// IssuerConfig is what a Verifier needs to accept this signer's tokens, current and
// previous keys alike.
func (s *Signer) IssuerConfig() IssuerConfig {
	// flowgate's own tokens: what it grants is checked when it issues them.
	ic := IssuerConfig{Issuer: s.opts.Issuer, Audience: s.opts.Audience, Permissions: AllPermissions()}
	for _, k := range append([]ed25519.PrivateKey{s.opts.Key}, s.opts.Previous...) {
		pub := k.Public().(ed25519.PublicKey)
		ic.Keys = append(ic.Keys, VerificationKey{KID: KeyID(pub), Alg: AlgEdDSA, Key: pub})
	}
	return ic
}

// JWKS is the public key set served at /.well-known/jwks.json.
func (s *Signer) JWKS() []byte {
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	for _, k := range s.IssuerConfig().Keys {
		pub := k.Key.(ed25519.PublicKey)
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: k.KID, Alg: AlgEdDSA, Use: "sig"})
	}
	out, _ := json.Marshal(set)
	return out
}

func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: jti: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
