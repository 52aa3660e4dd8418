package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// JWKS defaults. The refresh period is what an identity provider expects of a relying
// party; the on-demand interval is what a flood of made-up kids can cost it: one request.
const (
	DefaultJWKSRefresh     = 10 * time.Minute
	DefaultJWKSMinInterval = 30 * time.Second
	DefaultJWKSTimeout     = 10 * time.Second
	DefaultJWKSMaxBytes    = 256 << 10
	DefaultJWKSMaxBackoff  = 5 * time.Minute
	defaultJWKSBackoff     = time.Second
	minJWKSRefresh         = time.Second
	maxKIDLen              = 128
	maxRSABits             = 8192
)

// DefaultJWKSAlgorithms are what a JWKS issuer may use when its configuration names none.
// HS256 is never among them, whatever the configuration says: a shared secret published at
// a URL is no secret.
func DefaultJWKSAlgorithms() []string { return []string{AlgRS256, AlgES256, AlgEdDSA} }

// ErrUnknownKID is a kid the issuer's key set does not hold, even after the refresh it was
// allowed to trigger.
var ErrUnknownKID = errors.New("auth: kid not in the issuer's key set")

// errRefreshLimited is an on-demand refresh refused because one ran too recently.
var errRefreshLimited = errors.New("auth: jwks refreshed too recently")

// JWKSIssuer is one issuer whose keys come from a JWKS URL. The URL comes from
// configuration only: jku, x5u, jwk and x5c token headers are never consulted.
type JWKSIssuer struct {
	Issuer string
	URL    string // https; http only for a loopback host
	// Algorithms the issuer may use; empty = DefaultJWKSAlgorithms. HS256 is dropped.
	Algorithms []string
	// Refresh is the background refresh period (0 = DefaultJWKSRefresh, at least 1s).
	Refresh time.Duration
}

// JWKSOptions configures a JWKS key source.
type JWKSOptions struct {
	Issuers []JWKSIssuer
	// MinInterval bounds refreshes triggered by an unknown kid: at most one fetch per issuer
	// per MinInterval, counting background fetches too (0 = DefaultJWKSMinInterval, capped
	// at the issuer's Refresh).
	MinInterval time.Duration
	// Timeout bounds one fetch: connect, TLS, headers and body (0 = DefaultJWKSTimeout).
	Timeout time.Duration
	// MaxBytes bounds a response body (0 = DefaultJWKSMaxBytes).
	MaxBytes int64
	// InitialBackoff and MaxBackoff shape the retry delays after a failed background fetch:
	// doubling from InitialBackoff (0 = 1s) up to MaxBackoff (0 = 5m, never above Refresh),
	// each with jitter.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Client overrides the HTTP client (tests); nil = a dedicated client that follows no
	// redirects and uses Timeout.
	Client *http.Client
	Logger *slog.Logger
	Now    func() time.Time
}

// JWKS fetches each issuer's key set in the background and answers (issuer, kid) lookups
// for a Verifier. Keys are held per issuer: a kid of one issuer never verifies a token of
// another. A failed fetch keeps the last good set. Start runs the refresher; Stop ends it.
type JWKS struct {
	opts    JWKSOptions
	client  *http.Client
	issuers map[string]*jwksIssuer

	stop     chan struct{}
	stopOnce sync.Once
	startMu  sync.Mutex
	started  bool
	wg       sync.WaitGroup
}

var _ KeySource = (*JWKS)(nil)

type jwksIssuer struct {
	cfg         JWKSIssuer
	url         *url.URL
	algs        []string
	minInterval time.Duration

	keys atomic.Pointer[jwkSet]

	mu          sync.Mutex
	inflight    *jwksCall
	lastAttempt time.Time
}

type jwkSet struct {
	keys      map[string]VerificationKey // by kid
	fetchedAt time.Time
}

type jwksCall struct {
	done chan struct{}
	err  error
}

// NewJWKS checks the options. It makes no request: the first fetch happens in Start or on
// the first lookup.
func NewJWKS(opts JWKSOptions) (*JWKS, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultJWKSTimeout
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultJWKSMaxBytes
	}
	if opts.MinInterval <= 0 {
		opts.MinInterval = DefaultJWKSMinInterval
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = defaultJWKSBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultJWKSMaxBackoff
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	j := &JWKS{opts: opts, client: opts.Client, issuers: map[string]*jwksIssuer{}, stop: make(chan struct{})}
	if j.client == nil {
		j.client = newJWKSClient(opts.Timeout)
	}
	if len(opts.Issuers) > maxIssuersDefault {
		return nil, fmt.Errorf("auth: more than %d jwks issuers", maxIssuersDefault)
	}
	for _, ic := range opts.Issuers {
		if ic.Issuer == "" {
			return nil, errors.New("auth: jwks issuer name is empty")
		}
		if _, dup := j.issuers[ic.Issuer]; dup {
			return nil, fmt.Errorf("auth: jwks issuer %q configured twice", ic.Issuer)
		}
		u, err := checkJWKSURL(ic.URL)
		if err != nil {
			return nil, fmt.Errorf("auth: jwks issuer %q: %w", ic.Issuer, err)
		}
		if ic.Refresh <= 0 {
			ic.Refresh = DefaultJWKSRefresh
		}
		ic.Refresh = max(ic.Refresh, minJWKSRefresh)
		algs := ic.Algorithms
		if len(algs) == 0 {
			algs = DefaultJWKSAlgorithms()
		}
		var allowed []string
		for _, a := range algs {
			switch a {
			case AlgRS256, AlgES256, AlgEdDSA:
				if !slices.Contains(allowed, a) {
					allowed = append(allowed, a)
				}
			case AlgHS256: // allowed for the issuer's static keys, never for its JWKS
			default:
				return nil, fmt.Errorf("auth: jwks issuer %q: unsupported algorithm %q", ic.Issuer, a)
			}
		}
		if len(allowed) == 0 {
			return nil, fmt.Errorf("auth: jwks issuer %q allows no asymmetric algorithm", ic.Issuer)
		}
		j.issuers[ic.Issuer] = &jwksIssuer{cfg: ic, url: u, algs: allowed, minInterval: min(opts.MinInterval, ic.Refresh)}
	}
	return j, nil
}

// checkJWKSURL allows https, and http only to a loopback host (a local sidecar, tests).
func checkJWKSURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return nil, errors.New("jwks url must be an absolute https URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopbackHost(u.Hostname()) {
			return nil, errors.New("jwks url must use https (http only for a loopback host)")
		}
	default:
		return nil, errors.New("jwks url must use https")
	}
	return u, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// newJWKSClient is an HTTP client for key sets only: bounded in time, no redirects (a key set
// that moves must be reconfigured, not followed), no cookies, header size bounded.
func newJWKSClient(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: min(timeout, 5*time.Second)}).DialContext,
		TLSHandshakeTimeout:    min(timeout, 5*time.Second),
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 32 << 10,
		MaxIdleConns:           4,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Issuers lists the issuers this source serves.
func (j *JWKS) Issuers() []string {
	out := make([]string, 0, len(j.issuers))
	for name := range j.issuers {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Start launches one refresher per issuer: an immediate fetch, then one every Refresh
// (with jitter), retrying failures with exponential backoff. They run until ctx ends or Stop.
func (j *JWKS) Start(ctx context.Context) {
	j.startMu.Lock()
	defer j.startMu.Unlock()
	if j.started {
		return
	}
	select {
	case <-j.stop:
		return // stopped before it started
	default:
	}
	j.started = true
	for _, is := range j.issuers {
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			j.run(ctx, is)
		}()
	}
}

// Stop ends the refreshers and any fetch in flight, and waits for them.
func (j *JWKS) Stop() {
	j.stopOnce.Do(func() { close(j.stop) })
	j.startMu.Lock()
	j.startMu.Unlock() // a concurrent Start has finished its wg.Add calls
	j.wg.Wait()
}

func (j *JWKS) run(ctx context.Context, is *jwksIssuer) {
	failures := 0
	var delay time.Duration // the first fetch is immediate
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-j.stop:
			return
		case <-timer.C:
		}
		if err := j.refresh(ctx, is, false); err != nil {
			failures++
			delay = j.backoff(is, failures)
			j.opts.Logger.Warn("jwks refresh failed; keeping the last good key set",
				"issuer", is.cfg.Issuer, "url", is.url.Redacted(), "err", err, "failures", failures,
				"retry_in", delay.Round(time.Millisecond).String(), "keys", is.count(), "fetched_at", is.fetchedAt())
		} else {
			failures = 0
			delay = jitter(is.cfg.Refresh, 0.1)
		}
		timer.Reset(delay)
	}
}

// backoff is the delay before retry n (1-based): doubling from InitialBackoff, capped at
// MaxBackoff and at the refresh period, drawn from [d/2, d] so replicas do not retry in step.
func (j *JWKS) backoff(is *jwksIssuer, n int) time.Duration {
	d := j.opts.InitialBackoff
	ceiling := min(j.opts.MaxBackoff, is.cfg.Refresh)
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// jitter spreads d by ±frac.
func jitter(d time.Duration, frac float64) time.Duration {
	span := int64(float64(d) * frac)
	if span <= 0 {
		return d
	}
	return d - time.Duration(span) + time.Duration(rand.Int64N(2*span+1))
}

// Key answers a Verifier's lookup. A kid the current set lacks triggers one refresh, unless
// one ran (or started) within the issuer's MinInterval; concurrent lookups share a fetch.
func (j *JWKS) Key(ctx context.Context, issuer, kid string) (VerificationKey, error) {
	is, ok := j.issuers[issuer]
	if !ok || kid == "" || len(kid) > maxKIDLen {
		return VerificationKey{}, ErrUnknownKID
	}
	if k, ok := is.lookup(kid); ok {
		return k, nil
	}
	_ = j.refresh(ctx, is, true) // a failure is logged once, by the fetch; the last good set stays
	if k, ok := is.lookup(kid); ok {
		return k, nil
	}
	return VerificationKey{}, ErrUnknownKID
}

// Refresh fetches issuer's key set now (or waits for the fetch in flight), ignoring the
// on-demand interval: for operators and tests.
func (j *JWKS) Refresh(ctx context.Context, issuer string) error {
	is, ok := j.issuers[issuer]
	if !ok {
		return fmt.Errorf("auth: no jwks issuer %q", issuer)
	}
	return j.refresh(ctx, is, false)
}

// KIDs lists the kids currently held for issuer, sorted.
func (j *JWKS) KIDs(issuer string) []string {
	is, ok := j.issuers[issuer]
	if !ok {
		return nil
	}
	set := is.keys.Load()
	if set == nil {
		return nil
	}
	out := make([]string, 0, len(set.keys))
	for kid := range set.keys {
		out = append(out, kid)
	}
	slices.Sort(out)
	return out
}

func (is *jwksIssuer) lookup(kid string) (VerificationKey, bool) {
	set := is.keys.Load()
	if set == nil {
		return VerificationKey{}, false
	}
	k, ok := set.keys[kid]
	return k, ok
}

func (is *jwksIssuer) count() int {
	if set := is.keys.Load(); set != nil {
		return len(set.keys)
	}
	return 0
}

func (is *jwksIssuer) fetchedAt() string {
	if set := is.keys.Load(); set != nil {
		return set.fetchedAt.UTC().Format(time.RFC3339)
	}
	return "never"
}

// refresh runs one fetch for is, or joins the one in flight. onDemand fetches are refused
// when any fetch started within minInterval.
func (j *JWKS) refresh(ctx context.Context, is *jwksIssuer, onDemand bool) error {
	is.mu.Lock()
	if call := is.inflight; call != nil {
		is.mu.Unlock()
		select {
		case <-call.done:
			return call.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	now := j.opts.Now()
	if onDemand && !is.lastAttempt.IsZero() && now.Sub(is.lastAttempt) < is.minInterval {
		is.mu.Unlock()
		return errRefreshLimited
	}
	select {
	case <-j.stop:
		is.mu.Unlock()
		return errors.New("auth: jwks source stopped")
	default:
	}
	call := &jwksCall{done: make(chan struct{})}
	is.inflight = call
	is.lastAttempt = now
	is.mu.Unlock()

	// An on-demand fetch belongs to every caller waiting on it, not to the handshake that
	// started it: a client hanging up must not fail the others. Stop and Timeout still end
	// it; the refresher's own fetches also end with its context.
	base := ctx
	if onDemand {
		base = context.WithoutCancel(ctx)
	}
	fctx, cancel := context.WithTimeout(base, j.opts.Timeout)
	watchDone := make(chan struct{})
	go func() {
		select {
		case <-j.stop:
			cancel()
		case <-watchDone:
		}
	}()
	call.err = j.fetch(fctx, is)
	close(watchDone)
	cancel()
	if call.err != nil && onDemand {
		j.opts.Logger.Warn("jwks refresh for an unknown kid failed; keeping the last good key set",
			"issuer", is.cfg.Issuer, "url", is.url.Redacted(), "err", call.err, "keys", is.count(), "fetched_at", is.fetchedAt())
	}

	is.mu.Lock()
	is.inflight = nil
	is.mu.Unlock()
	close(call.done)
	return call.err
}

func (j *JWKS) fetch(ctx context.Context, is *jwksIssuer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, is.url.String(), nil)
	if err != nil {
		return fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	req.Header.Set("User-Agent", "flowgate-jwks/1")
	resp, err := j.client.Do(req)
	if err != nil {
		return fmt.Errorf("jwks fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks fetch: HTTP status %d", resp.StatusCode)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != "application/jwk-set+json") {
		return fmt.Errorf("jwks fetch: content type %q is not JSON", resp.Header.Get("Content-Type"))
	}
	if resp.ContentLength > j.opts.MaxBytes {
		return fmt.Errorf("jwks fetch: body of %d bytes is over the %d byte limit", resp.ContentLength, j.opts.MaxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, j.opts.MaxBytes+1))
	if err != nil {
		return fmt.Errorf("jwks fetch: read body: %w", err)
	}
	if int64(len(body)) > j.opts.MaxBytes {
		return fmt.Errorf("jwks fetch: body is over the %d byte limit", j.opts.MaxBytes)
	}
	keys, skipped, err := ParseJWKS(body, is.algs)
	if err != nil {
		return err
	}
	is.keys.Store(&jwkSet{keys: keys, fetchedAt: j.opts.Now()})
	j.opts.Logger.Debug("jwks refreshed", "issuer", is.cfg.Issuer, "keys", len(keys), "skipped", skipped)
	if skipped > 0 {
		j.opts.Logger.Warn("jwks: some keys were not usable and were skipped", "issuer", is.cfg.Issuer, "skipped", skipped)
	}
	return nil
}

// rawJWK holds the members of a JWK that matter here; others (x5c, x5t, …) are ignored and
// never fetched or trusted.
type rawJWK struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Alg    string   `json:"alg"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	// Private or symmetric material: a key carrying any of these is not used.
	D string `json:"d"`
	P string `json:"p"`
	Q string `json:"q"`
	K string `json:"k"`
}

// ParseJWKS reads an RFC 7517 key set and returns its usable verification keys by kid, and
// how many entries it skipped. A key is usable when it has a kid, is meant for signatures,
// carries no private material, and its type and curve match exactly one algorithm of algs
// (and its alg, when present, is that one). Symmetric ("oct") keys are never usable. A kid
// that appears twice is dropped entirely rather than guessed between. A set with more than
// 64 entries, or with no usable key, is an error: the caller keeps what it had.
func ParseJWKS(data []byte, algs []string) (map[string]VerificationKey, int, error) {
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, 0, errors.New("jwks: body is not a JSON object")
	}
	if doc.Keys == nil {
		return nil, 0, errors.New("jwks: no keys array")
	}
	if len(*doc.Keys) > maxKeysPerIssuer {
		return nil, 0, fmt.Errorf("jwks: %d keys; at most %d are accepted", len(*doc.Keys), maxKeysPerIssuer)
	}
	var parsed []VerificationKey
	copies := map[string]int{}
	skipped := 0
	for _, raw := range *doc.Keys {
		var jk rawJWK
		if err := json.Unmarshal(raw, &jk); err != nil {
			skipped++
			continue
		}
		k, err := jwkToKey(jk, algs)
		if err != nil {
			skipped++
			continue
		}
		parsed = append(parsed, k)
		copies[k.KID]++
	}
	keys := make(map[string]VerificationKey, len(parsed))
	for _, k := range parsed {
		if copies[k.KID] > 1 {
			skipped++
			continue
		}
		keys[k.KID] = k
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("jwks: no usable key (%d skipped)", skipped)
	}
	return keys, skipped, nil
}

var b64url = base64.RawURLEncoding.Strict()

func jwkToKey(jk rawJWK, algs []string) (VerificationKey, error) {
	if !printable(jk.Kid, maxKIDLen) {
		return VerificationKey{}, errors.New("kid missing or not printable")
	}
	if jk.Use != "" && jk.Use != "sig" {
		return VerificationKey{}, errors.New("key is not for signatures")
	}
	if len(jk.KeyOps) > 0 && !slices.Contains(jk.KeyOps, "verify") {
		return VerificationKey{}, errors.New("key_ops does not allow verify")
	}
	if jk.D != "" || jk.P != "" || jk.Q != "" || jk.K != "" {
		return VerificationKey{}, errors.New("key carries private or symmetric material")
	}
	var (
		alg string
		pub any
	)
	switch jk.Kty {
	case "RSA":
		alg = AlgRS256
		n, err := b64url.DecodeString(jk.N)
		if err != nil || len(n) == 0 || len(n) > maxRSABits/8+1 {
			return VerificationKey{}, errors.New("bad RSA modulus")
		}
		e, err := b64url.DecodeString(jk.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return VerificationKey{}, errors.New("bad RSA exponent")
		}
		exp := new(big.Int).SetBytes(e).Int64()
		if exp < 3 || exp%2 == 0 || exp > 1<<31-1 {
			return VerificationKey{}, errors.New("bad RSA exponent")
		}
		k := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)}
		if k.N.BitLen() > maxRSABits {
			return VerificationKey{}, errors.New("RSA modulus too large")
		}
		pub = k
	case "EC":
		if jk.Crv != "P-256" {
			return VerificationKey{}, errors.New("EC key must be on P-256")
		}
		alg = AlgES256
		x, errX := b64url.DecodeString(jk.X)
		y, errY := b64url.DecodeString(jk.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return VerificationKey{}, errors.New("bad EC coordinates")
		}
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return VerificationKey{}, errors.New("EC point is not on the curve")
		}
		pub = k
	case "OKP":
		if jk.Crv != "Ed25519" {
			return VerificationKey{}, errors.New("OKP key must be Ed25519")
		}
		alg = AlgEdDSA
		x, err := b64url.DecodeString(jk.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return VerificationKey{}, errors.New("bad Ed25519 key")
		}
		pub = ed25519.PublicKey(x)
	case "oct":
		return VerificationKey{}, errors.New("symmetric keys are never taken from a JWKS")
	default:
		return VerificationKey{}, fmt.Errorf("unsupported kty %q", jk.Kty)
	}
	if jk.Alg != "" && jk.Alg != alg {
		return VerificationKey{}, fmt.Errorf("alg %q does not match a %s key", jk.Alg, jk.Kty)
	}
	if !slices.Contains(algs, alg) {
		return VerificationKey{}, fmt.Errorf("algorithm %s is not allowed for this issuer", alg)
	}
	if err := checkKeyAlg(pub, alg); err != nil {
		return VerificationKey{}, err
	}
	return VerificationKey{KID: jk.Kid, Alg: alg, Key: pub}, nil
}
