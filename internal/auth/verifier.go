package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flowgate/flowgate/internal/tenant"
)

// before the tenant is even looked up.

const (
	maxSubjectLen     = 256
	maxJTILen         = 128
	maxPermissions    = 32
	maxKeysPerIssuer  = 64
	maxIssuersDefault = 64
)

// VerificationKey is one key bound to an issuer and exactly one algorithm.
type VerificationKey struct {
	KID string
	Alg string
	Key any // []byte (HS256), *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
}

// IssuerConfig is a trusted issuer with its own audience and keys.
type IssuerConfig struct {
	Issuer   string
	Audience string
	Keys     []VerificationKey
	// Algorithms, when set, is every algorithm the issuer may use: a static key outside it
	// is a configuration error, a run-time (JWKS) key outside it is refused.
	Algorithms []string
	// Permissions the issuer may grant (auth.issuers[].permissions); a token's others are
	// dropped (and reported to OnDropped). nil: DefaultIssuerPermissions. platform:admin
	// only when listed.
	Permissions []string
	// Tenants the issuer may speak for; nil or ["*"]: any.
	Tenants []string
}

// DefaultIssuerPermissions is what an external issuer may grant unless configured.
func DefaultIssuerPermissions() []string { return []string{PermSwarmExecute} }

// KeySource supplies keys fetched at run time (JWKS), looked up by (issuer, kid) only.
type KeySource interface {
	Key(ctx context.Context, issuer, kid string) (VerificationKey, error)
}

// VerifierOptions configures a Verifier.
type VerifierOptions struct {
	Issuers       []IssuerConfig
	TenantClaim   string
	Leeway        time.Duration
	MaxTokenBytes int
	// Dynamic, when set, answers (issuer, kid) pairs the static keys do not know; only for
	// issuers listed in DynamicIssuers.
	Dynamic        KeySource
	DynamicIssuers []IssuerConfig
	Now            func() time.Time
	// MaxLifetime refuses a token whose exp lies further than this from its iat, or from now
	// when it has none (auth.max_token_lifetime). 0: no bound.
	MaxLifetime time.Duration
	// OnDropped hears of permissions a token claimed and its issuer may not grant.
	OnDropped func(issuer, tenant, sub string, dropped []string)
}

// Verifier checks bearer tokens strictly (DESIGN §5). It is safe for concurrent use.
type Verifier struct {
	opts    VerifierOptions
	issuers map[string]*issuer
	algs    []string
	now     func() time.Time

	parsers sync.Pool // *jwt.Parser; parsers are cheap but not free
}

type issuer struct {
	name      string
	audience  string
	keys      map[string]VerificationKey // by kid
	algs      []string                   // allowed algorithms; nil = any of its keys'
	dynamic   bool
	validator *jwt.Validator
	perms     map[string]bool
	tenants   map[string]bool // nil: any
}

// NewVerifier checks the configuration and builds a Verifier.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	if opts.TenantClaim == "" {
		opts.TenantClaim = "tenant"
	}
	if opts.MaxTokenBytes <= 0 || opts.MaxTokenBytes > 8<<10 {
		opts.MaxTokenBytes = 8 << 10
	}
	if opts.Leeway < 0 || opts.Leeway > time.Minute {
		return nil, errors.New("auth: leeway must be between 0 and 60s")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	v := &Verifier{opts: opts, issuers: map[string]*issuer{}, now: opts.Now}
	add := func(ic IssuerConfig, dynamic bool) error {
		if ic.Issuer == "" {
			return errors.New("auth: issuer name is empty")
		}
		if _, dup := v.issuers[ic.Issuer]; dup {
			return fmt.Errorf("auth: issuer %q configured twice", ic.Issuer)
		}
		if ic.Audience == "" {
			return fmt.Errorf("auth: issuer %q has no audience", ic.Issuer)
		}
		if len(ic.Keys) > maxKeysPerIssuer {
			return fmt.Errorf("auth: issuer %q has more than %d keys", ic.Issuer, maxKeysPerIssuer)
		}
		is := &issuer{name: ic.Issuer, audience: ic.Audience, keys: map[string]VerificationKey{}, dynamic: dynamic, perms: map[string]bool{}}
		perms := ic.Permissions
		if perms == nil {
			perms = DefaultIssuerPermissions()
		}
		for _, p := range perms {
			if !KnownPermission(p) {
				return fmt.Errorf("auth: issuer %q: unknown permission %q", ic.Issuer, p)
			}
			is.perms[p] = true
		}
		for _, t := range ic.Tenants {
			if t == "*" {
				is.tenants = nil
				break
			}
			if !tenant.ValidID(t) {
				return fmt.Errorf("auth: issuer %q: %q is not a tenant id", ic.Issuer, t)
			}
			if is.tenants == nil {
				is.tenants = map[string]bool{}
			}
			is.tenants[t] = true
		}
		for _, a := range ic.Algorithms {
			switch a {
			case AlgHS256, AlgRS256, AlgES256, AlgEdDSA:
				is.algs = append(is.algs, a)
			default:
				return fmt.Errorf("auth: issuer %q: unsupported algorithm %q", ic.Issuer, a)
			}
		}
		for _, k := range ic.Keys {
			if is.algs != nil && !slices.Contains(is.algs, k.Alg) {
				return fmt.Errorf("auth: issuer %q kid %q: %s is not among the issuer's algorithms %v", ic.Issuer, k.KID, k.Alg, is.algs)
			}
			if _, dup := is.keys[k.KID]; dup {
				return fmt.Errorf("auth: issuer %q: kid %q configured twice", ic.Issuer, k.KID)
			}
			if err := checkAlgKey(k); err != nil {
				return fmt.Errorf("auth: issuer %q kid %q: %w", ic.Issuer, k.KID, err)
			}
			is.keys[k.KID] = k
			if !slices.Contains(v.algs, k.Alg) {
				v.algs = append(v.algs, k.Alg)
			}
		}
		is.validator = jwt.NewValidator(
			jwt.WithIssuer(ic.Issuer),
			jwt.WithAudience(ic.Audience),
			jwt.WithLeeway(opts.Leeway),
			jwt.WithTimeFunc(v.now),
		)
		v.issuers[ic.Issuer] = is
		return nil
	}
	for _, ic := range opts.Issuers {
		if err := add(ic, false); err != nil {
			return nil, err
		}
	}
	for _, ic := range opts.DynamicIssuers {
		if err := add(ic, true); err != nil {
			return nil, err
		}
	}
	if len(v.issuers) == 0 {
		return nil, errors.New("auth: no issuer configured")
	}
	if len(v.issuers) > maxIssuersDefault {
		return nil, fmt.Errorf("auth: more than %d issuers", maxIssuersDefault)
	}
	for _, ic := range opts.DynamicIssuers {
		// Keys fetched later may use the issuer's asymmetric algorithms; HS256 never comes
		// from a URL.
		algs := ic.Algorithms
		if len(algs) == 0 {
			algs = DefaultJWKSAlgorithms()
		}
		for _, a := range algs {
			if a != AlgHS256 && !slices.Contains(v.algs, a) {
				v.algs = append(v.algs, a)
			}
		}
	}
	v.parsers.New = func() any {
		return jwt.NewParser(
			jwt.WithValidMethods(v.algs),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(opts.Leeway),
			jwt.WithStrictDecoding(),
			jwt.WithTimeFunc(v.now),
		)
	}
	return v, nil
}

func checkAlgKey(k VerificationKey) error {
	if k.Alg == AlgHS256 {
		b, ok := k.Key.([]byte)
		if !ok || len(b) < MinHMACKeyBytes {
			return fmt.Errorf("HS256 needs a secret of at least %d bytes", MinHMACKeyBytes)
		}
		return nil
	}
	return checkKeyAlg(k.Key, k.Alg)
}

// Verify checks raw and returns its principal, or an *Error whose Reason says why not.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	if raw == "" {
		return nil, fail(ReasonMissing, nil)
	}
	// Bound the work before any parsing: a token is a few hundred bytes, never kilobytes.
	if len(raw) > v.opts.MaxTokenBytes {
		return nil, fail(ReasonTooLong, nil)
	}
	var chosen *issuer
	keyfunc := func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			return nil, fail(ReasonBadHeader, errors.New("crit header is not supported"))
		}
		if typ, ok := t.Header["typ"]; ok {
			s, _ := typ.(string)
			switch strings.ToLower(s) {
			case "jwt", "at+jwt", "application/at+jwt":
			default:
				return nil, fail(ReasonBadHeader, errors.New("typ must be JWT or at+jwt"))
			}
		}
		// jku, x5u, jwk and x5c are never consulted: keys come from configuration only.
		claims, _ := t.Claims.(jwt.MapClaims)
		iss, _ := claims["iss"].(string)
		is, ok := v.issuers[iss]
		if !ok {
			return nil, fail(ReasonUnknownIssuer, nil)
		}
		kid, _ := t.Header["kid"].(string)
		alg := t.Method.Alg()
		key, err := v.lookup(ctx, is, kid, alg)
		if err != nil {
			return nil, err
		}
		chosen = is
		return key.Key, nil
	}
	if err := checkClaimKeys(raw); err != nil {
		return nil, err
	}
	p := v.parsers.Get().(*jwt.Parser)
	tok, err := p.Parse(raw, keyfunc)
	v.parsers.Put(p)
	if err != nil {
		return nil, classify(err)
	}
	claims := tok.Claims.(jwt.MapClaims)
	if err := chosen.validator.Validate(claims); err != nil {
		return nil, classify(err)
	}
	return v.principal(claims, chosen, raw)
}

func (v *Verifier) lookup(ctx context.Context, is *issuer, kid, alg string) (VerificationKey, error) {
	key, ok := is.keys[kid]
	if !ok && kid == "" && len(is.keys) == 1 {
		for _, k := range is.keys {
			key, ok = k, true
		}
	}
	if !ok && is.dynamic && v.opts.Dynamic != nil && kid != "" {
		k, err := v.opts.Dynamic.Key(ctx, is.name, kid)
		if err != nil {
			return VerificationKey{}, fail(ReasonUnknownKey, err)
		}
		if k.Alg == AlgHS256 {
			return VerificationKey{}, fail(ReasonAlgorithm, errors.New("HS256 keys are never taken from a key set"))
		}
		key, ok = k, true
	}
	if !ok {
		return VerificationKey{}, fail(ReasonUnknownKey, nil)
	}
	if key.Alg != alg {
		return VerificationKey{}, fail(ReasonAlgorithm, fmt.Errorf("key %q allows %s only", key.KID, key.Alg))
	}
	if is.algs != nil && !slices.Contains(is.algs, alg) {
		return VerificationKey{}, fail(ReasonAlgorithm, fmt.Errorf("issuer does not allow %s", alg))
	}
	if err := checkAlgKey(key); err != nil {
		return VerificationKey{}, fail(ReasonAlgorithm, err)
	}
	return key, nil
}

// classify maps golang-jwt's errors onto reasons.
func classify(err error) error {
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fail(ReasonMalformed, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if strings.Contains(err.Error(), "signing method") {
			return fail(ReasonAlgorithm, err)
		}
		return fail(ReasonSignature, err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		if strings.Contains(err.Error(), "exp") {
			return fail(ReasonMissingExp, err)
		}
		if strings.Contains(err.Error(), "aud") {
			return fail(ReasonAudience, err)
		}
		if strings.Contains(err.Error(), "iss") {
			return fail(ReasonIssuer, err)
		}
		return fail(ReasonClaims, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fail(ReasonExpired, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fail(ReasonNotYetValid, err)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fail(ReasonIssuedInFuture, err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fail(ReasonAudience, err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fail(ReasonIssuer, err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return fail(ReasonUnknownKey, err)
	}
	return fail(ReasonClaims, err)
}

func (v *Verifier) principal(c jwt.MapClaims, is *issuer, raw string) (*Principal, error) {
	tenant, _ := c[v.opts.TenantClaim].(string)
	if tenant == "" || !ValidTenantID(tenant) {
		return nil, fail(ReasonTenant, nil)
	}
	if is.tenants != nil && !is.tenants[tenant] {
		return nil, fail(ReasonTenantNotAllowed, nil)
	}
	// sub must be a non-empty string; the seed's userId counts only when sub is absent (a
	// numeric or empty sub must not fall back to a userId the token also carries).
	var sub string
	if raw, present := c["sub"]; present {
		sub, _ = raw.(string)
	} else {
		sub, _ = c["userId"].(string) // the seed's claim
	}
	if !printable(sub, maxSubjectLen) {
		return nil, fail(ReasonSubject, nil)
	}
	jti, _ := c["jti"].(string)
	if jti != "" && !printable(jti, maxJTILen) {
		return nil, fail(ReasonClaims, errors.New("jti is not printable or too long"))
	}
	var perms []string
	switch raw := c["permissions"].(type) {
	case nil:
	case []any:
		if len(raw) > maxPermissions {
			return nil, fail(ReasonClaims, errors.New("too many permissions"))
		}
		for _, p := range raw {
			s, ok := p.(string)
			if !ok {
				return nil, fail(ReasonClaims, errors.New("permissions must be strings"))
			}
			perms = append(perms, s)
		}
	default:
		return nil, fail(ReasonClaims, errors.New("permissions must be an array"))
	}
	if scope, ok := c["scope"].(string); ok {
		fields := strings.Fields(scope)
		if len(fields) > maxPermissions {
			return nil, fail(ReasonClaims, errors.New("too many scopes"))
		}
		perms = append(perms, fields...)
	}
	exp, err := c.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, fail(ReasonMissingExp, err)
	}
	if max := v.opts.MaxLifetime; max > 0 {
		from := v.now()
		if iat, err := c.GetIssuedAt(); err == nil && iat != nil {
			from = iat.Time
		}
		if exp.Time.Sub(from) > max {
			return nil, fail(ReasonLifetime, fmt.Errorf("exp is more than %s after iat", max))
		}
	}
	granted := normalizePermissions(perms)
	kept := granted[:0:0]
	var dropped []string
	for _, p := range granted {
		if is.perms[p] {
			kept = append(kept, p)
		} else {
			dropped = append(dropped, p)
		}
	}
	if len(dropped) > 0 && v.opts.OnDropped != nil {
		v.opts.OnDropped(is.name, tenant, sub, dropped)
	}
	return &Principal{
		Tenant:      tenant,
		Subject:     sub,
		Permissions: kept,
		JTI:         jti,
		Issuer:      is.name,
		ExpiresAt:   exp.Time.UTC(),
		TokenFP:     Fingerprint(raw),
	}, nil
}

func printable(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// ValidTenantID reports whether id follows the tenant id rule of DESIGN §8.
func ValidTenantID(id string) bool { return tenant.ValidID(id) }

// checkClaimKeys refuses a payload whose claims repeat a key, exactly or in another case
// ("tenant" and "Tenant", folded as protocol.FoldKey does): which copy a reader takes differs
// between parsers, and a token must mean one thing to every component that reads it.
func checkClaimKeys(raw string) error {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return fail(ReasonMalformed, nil)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return fail(ReasonMalformed, err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	type scope struct {
		seen map[string]bool // nil for arrays
		key  bool
	}
	var stack []*scope
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fail(ReasonMalformed, err)
		}
		switch tok {
		case json.Delim('{'):
			if len(stack) >= 16 {
				return fail(ReasonClaims, errors.New("claims nested too deeply"))
			}
			stack = append(stack, &scope{seen: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			if len(stack) >= 16 {
				return fail(ReasonClaims, errors.New("claims nested too deeply"))
			}
			stack = append(stack, &scope{})
			continue
		case json.Delim('}'), json.Delim(']'):
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		default:
			if n := len(stack); n > 0 && stack[n-1].seen != nil && stack[n-1].key {
				k, _ := tok.(string)
				f := strings.ToLower(strings.ToUpper(k))
				if stack[n-1].seen[f] {
					return fail(ReasonClaims, fmt.Errorf("duplicate claim %q", truncateClaim(k)))
				}
				stack[n-1].seen[f] = true
				stack[n-1].key = false
				continue
			}
		}
		// A value ended: the enclosing object expects a key next.
		if n := len(stack); n > 0 && stack[n-1].seen != nil {
			stack[n-1].key = true
		}
	}
}

func truncateClaim(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}
