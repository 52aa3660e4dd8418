package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/singleflight"
)

// Cache defaults; the config keys are secrets.cache_ttl and secrets.max_stale.
const (
	DefaultCacheTTL       = 5 * time.Minute
	DefaultMaxStale       = 15 * time.Minute
	DefaultMaxEntries     = 10000
	DefaultFetchTimeout   = 30 * time.Second
	DefaultRefreshBackoff = 10 * time.Second
)

// Fetch outcomes passed to CacheOptions.OnFetch.
const (
	FetchOK       = "ok"
	FetchNotFound = "not_found"
	FetchError    = "error"
)

// CacheOptions configures NewCache. Zero durations take the defaults above.
type CacheOptions struct {
	Provider Provider
	// TTL is how long a fetched key is served without asking the provider again.
	TTL time.Duration
	// MaxStale bounds how long after its fetch a key may still be served while refreshes
	// fail. It must be at least TTL; MaxStale == TTL disables stale serving.
	MaxStale time.Duration
	// MaxEntries bounds the number of cached tenants (least recently used are evicted).
	MaxEntries int
	// FetchTimeout bounds one provider fetch. The fetch is shared by every waiting caller, so
	// it does not run under any single caller's context.
	FetchTimeout time.Duration
	// RefreshBackoff is how long a failed refresh of a cached key is not retried; stale
	// serving within MaxStale continues meanwhile, so an outage does not cost every swarm a
	// full round of provider retries.
	RefreshBackoff time.Duration
	// FingerprintKey, when set, lets Key report the key's fingerprint (Fingerprint).
	FingerprintKey []byte
	// Now is the clock (tests); nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
	// OnFetch, if set, is called after every provider fetch with its outcome (FetchOK,
	// FetchNotFound, FetchError) and duration, e.g. to feed a latency histogram.
	OnFetch func(outcome string, took time.Duration)
}

// CacheStats is a snapshot of the cache counters, for metrics.
type CacheStats struct {
	Hits          uint64 // served from cache within TTL
	Misses        uint64 // calls that needed a fetch (whether or not they shared one)
	StaleServed   uint64 // served a key past TTL (within MaxStale) because a refresh failed
	Fetches       uint64 // provider Get calls
	FetchErrors   uint64 // provider Get calls that failed (not counting not found)
	NotFound      uint64 // provider Get calls answering "no key"
	Invalidations uint64
	Evictions     uint64 // entries dropped by the size bound
	Entries       int    // current number of cached tenants
}

type cacheEntry struct {
	value     string
	version   string
	keyRef    string
	fetchedAt time.Time
	failedAt  time.Time // last failed refresh; zero when the last fetch succeeded
}

// flightState tracks a tenant with callers inside APIKey. gen changes on Invalidate so a fetch
// that started before the invalidation neither fills the cache nor is joined by later callers.
// The entry is deleted when the last caller leaves, which bounds the map by concurrency.
type flightState struct {
	gen  uint64
	refs int
}

type fetchResult struct {
	value, version string
	err            error
}

// Cache serves tenant API keys from a bounded in-memory LRU in front of a Provider. Concurrent
// misses for one tenant share one fetch (singleflight). It is safe for concurrent use.
type Cache struct {
	p              Provider
	ttl            time.Duration
	maxStale       time.Duration
	fetchTimeout   time.Duration
	refreshBackoff time.Duration
	now            func() time.Time
	log            *slog.Logger
	onFetch        func(string, time.Duration)
	fpKey          []byte

	sf singleflight.Group

	mu      sync.Mutex
	entries *simplelru.LRU[string, *cacheEntry]
	flights map[string]*flightState
	nextGen uint64
	// Fetches run on singleflight's goroutine, detached from callers; Close cancels them
	// through these and waits for them.
	fetchCancels map[uint64]context.CancelFunc
	nextFetch    uint64
	closed       bool
	fetchWG      sync.WaitGroup

	hits, misses, stale, fetches, fetchErrs, notFound, invals, evictions atomic.Uint64
}

// NewCache returns a Cache in front of opts.Provider.
func NewCache(opts CacheOptions) (*Cache, error) {
	if opts.Provider == nil {
		return nil, errors.New("secrets cache: provider is required")
	}
	c := &Cache{
		p:              opts.Provider,
		ttl:            orDefault(opts.TTL, DefaultCacheTTL),
		maxStale:       orDefault(opts.MaxStale, DefaultMaxStale),
		fetchTimeout:   orDefault(opts.FetchTimeout, DefaultFetchTimeout),
		refreshBackoff: orDefault(opts.RefreshBackoff, DefaultRefreshBackoff),
		now:            opts.Now,
		log:            opts.Logger,
		onFetch:        opts.OnFetch,
		fpKey:          opts.FingerprintKey,
		flights:        make(map[string]*flightState),
		fetchCancels:   make(map[uint64]context.CancelFunc),
	}
	if opts.TTL < 0 || opts.MaxStale < 0 || opts.FetchTimeout < 0 || opts.RefreshBackoff < 0 {
		return nil, errors.New("secrets cache: durations must not be negative")
	}
	if opts.MaxStale == 0 && c.ttl > c.maxStale {
		// Only TTL was configured, above the default MaxStale: stale serving off.
		c.maxStale = c.ttl
	}
	if c.maxStale < c.ttl {
		return nil, fmt.Errorf("secrets.max_stale (%s) must not be less than secrets.cache_ttl (%s)", c.maxStale, c.ttl)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	size := opts.MaxEntries
	if size <= 0 {
		size = DefaultMaxEntries
	}
	lru, err := simplelru.NewLRU[string, *cacheEntry](size, nil)
	if err != nil {
		return nil, fmt.Errorf("secrets cache: %w", err)
	}
	c.entries = lru
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// APIKey returns the API key of tenant. keyRef is the tenant's secret id override ("" for the
// provider default); a cached key fetched under another keyRef is not used. Errors wrap
// ErrNotFound (the tenant has no key) or ErrUnavailable (the provider failed, or ctx ended
// first) and never contain the key.
func (c *Cache) APIKey(ctx context.Context, tenant, keyRef string) (string, error) {
	k, err := c.Key(ctx, tenant, keyRef)
	return k.Value, err
}

// Key is a tenant's key with what a reviewer may know of it.
type Key struct {
	Value       string
	Version     string // the provider's version id ("" when it has none)
	Fingerprint string // Fingerprint under CacheOptions.FingerprintKey ("" without one)
}

// Key is APIKey with the key's version and fingerprint, for the task.create audit record.
func (c *Cache) Key(ctx context.Context, tenant, keyRef string) (Key, error) {
	v, ver, err := c.apiKey(ctx, tenant, keyRef)
	if err != nil {
		return Key{}, err
	}
	k := Key{Value: v, Version: ver}
	if c.fpKey != nil {
		k.Fingerprint = Fingerprint(c.fpKey, v)
	}
	return k, nil
}

func (c *Cache) apiKey(ctx context.Context, tenant, keyRef string) (string, string, error) {
	if err := ValidateTenant(tenant); err != nil {
		return "", "", err
	}
	now := c.now()

	c.mu.Lock()
	if e, ok := c.entries.Get(tenant); ok && e.keyRef == keyRef {
		age := now.Sub(e.fetchedAt)
		if age < c.ttl {
			c.mu.Unlock()
			c.hits.Add(1)
			return e.value, e.version, nil
		}
		if !e.failedAt.IsZero() && now.Sub(e.failedAt) < c.refreshBackoff && age < c.maxStale {
			c.mu.Unlock()
			c.stale.Add(1)
			return e.value, e.version, nil
		}
	}
	st := c.flights[tenant]
	if st == nil {
		c.nextGen++
		st = &flightState{gen: c.nextGen}
		c.flights[tenant] = st
	}
	st.refs++
	gen := st.gen
	c.mu.Unlock()
	c.misses.Add(1)

	defer func() {
		c.mu.Lock()
		if st.refs--; st.refs == 0 && c.flights[tenant] == st {
			delete(c.flights, tenant)
		}
		c.mu.Unlock()
	}()

	// The separator cannot occur in a tenant id, and keyRef is last.
	key := tenant + "\x00" + strconv.FormatUint(gen, 10) + "\x00" + keyRef
	ch := c.sf.DoChan(key, func() (any, error) {
		return c.fetch(tenant, keyRef, gen), nil
	})
	var res fetchResult
	select {
	case r := <-ch:
		res = r.Val.(fetchResult)
	case <-ctx.Done():
		return "", "", fmt.Errorf("%w: tenant %s: %w", ErrUnavailable, tenant, ctx.Err())
	}
	if res.err == nil {
		return res.value, res.version, nil
	}
	if errors.Is(res.err, ErrNotFound) {
		return "", "", res.err
	}
	// The refresh failed: the last good key may be served until MaxStale after its fetch,
	// never later. Re-read the entry: an Invalidate since the fetch has removed it.
	now = c.now()
	c.mu.Lock()
	e, ok := c.entries.Peek(tenant)
	if ok && e.keyRef == keyRef && now.Sub(e.fetchedAt) < c.maxStale {
		c.mu.Unlock()
		c.stale.Add(1)
		return e.value, e.version, nil
	}
	c.mu.Unlock()
	return "", "", res.err
}

// fetch runs once per singleflight key; its result is shared by every caller waiting on it.
func (c *Cache) fetch(tenant, keyRef string, gen uint64) fetchResult {
	ctx, cancel := context.WithTimeout(context.Background(), c.fetchTimeout)
	defer cancel()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fetchResult{err: fmt.Errorf("%w: tenant %s: cache closed", ErrUnavailable, tenant)}
	}
	// A caller that missed just before the previous fetch of this key stored its result
	// arrives here after singleflight forgot that fetch; answer it from the cache.
	if e, ok := c.entries.Peek(tenant); ok && e.keyRef == keyRef && c.now().Sub(e.fetchedAt) < c.ttl {
		c.mu.Unlock()
		return fetchResult{value: e.value, version: e.version}
	}
	id := c.nextFetch
	c.nextFetch++
	c.fetchCancels[id] = cancel
	c.fetchWG.Add(1)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.fetchCancels, id)
		c.mu.Unlock()
		c.fetchWG.Done()
	}()
	c.fetches.Add(1)
	start := c.now()
	value, version, err := c.p.Get(ctx, tenant, keyRef)
	took := c.now().Sub(start)
	if err == nil {
		// A provider must never hand an unusable value to the engine environment.
		if verr := ValidateAPIKey(value); verr != nil {
			err = fmt.Errorf("%w: tenant %s: stored key is malformed", ErrUnavailable, tenant)
		}
	}
	outcome := FetchOK
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		outcome = FetchNotFound
		c.notFound.Add(1)
	default:
		outcome = FetchError
		c.fetchErrs.Add(1)
		if !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: tenant %s: %w", ErrUnavailable, tenant, err)
		}
	}
	if c.onFetch != nil {
		c.onFetch(outcome, took)
	}

	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	current := false
	if st := c.flights[tenant]; st != nil && st.gen == gen {
		current = true
	}
	switch {
	case !current:
		// Invalidated while fetching: the result may predate a key change. Callers already
		// waiting get it (they asked before the change); the cache does not keep it.
	case err == nil:
		if c.entries.Add(tenant, &cacheEntry{value: value, version: version, keyRef: keyRef, fetchedAt: now}) {
			c.evictions.Add(1)
		}
	case outcome == FetchNotFound:
		// Authoritative: the key is gone, so the old one must not be served as stale.
		c.entries.Remove(tenant)
	default:
		if e, ok := c.entries.Peek(tenant); ok {
			if e.keyRef == keyRef && now.Sub(e.fetchedAt) < c.maxStale {
				e.failedAt = now
			} else {
				c.entries.Remove(tenant)
			}
		}
	}
	if err != nil {
		lvl := slog.LevelWarn
		if outcome == FetchNotFound {
			lvl = slog.LevelInfo
		}
		c.log.Log(ctx, lvl, "tenant key fetch failed", "tenant", tenant, "outcome", outcome, "took", took, "error", err.Error())
	} else {
		c.log.Debug("tenant key fetched", "tenant", tenant, "version", version, "took", took)
	}
	if err != nil {
		return fetchResult{err: err}
	}
	return fetchResult{value: value, version: version}
}

// Invalidate drops tenant's cached key at once; the next APIKey fetches it again. A fetch
// already in flight is not joined by later callers and does not refill the cache.
func (c *Cache) Invalidate(tenant string) {
	c.invals.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries.Remove(tenant)
	if st := c.flights[tenant]; st != nil {
		c.nextGen++
		st.gen = c.nextGen
	}
}

// Set validates and stores tenant's key through the provider, then invalidates the cache.
func (c *Cache) Set(ctx context.Context, tenant, keyRef, value string) (Metadata, error) {
	if err := ValidateTenant(tenant); err != nil {
		return Metadata{}, err
	}
	if err := ValidateAPIKey(value); err != nil {
		return Metadata{}, err
	}
	// Invalidate on failure too: a failed write may still have landed.
	defer c.Invalidate(tenant)
	return c.p.Put(ctx, tenant, keyRef, value)
}

// Delete removes tenant's key through the provider, then invalidates the cache.
func (c *Cache) Delete(ctx context.Context, tenant, keyRef string) error {
	if err := ValidateTenant(tenant); err != nil {
		return err
	}
	defer c.Invalidate(tenant)
	return c.p.Delete(ctx, tenant, keyRef)
}

// Describe returns the metadata of tenant's key straight from the provider.
func (c *Cache) Describe(ctx context.Context, tenant, keyRef string) (Metadata, error) {
	if err := ValidateTenant(tenant); err != nil {
		return Metadata{}, err
	}
	return c.p.Describe(ctx, tenant, keyRef)
}

// Close cancels fetches in flight, waits for them to end and makes later fetches fail with
// ErrUnavailable. Cached keys are dropped.
func (c *Cache) Close() {
	c.mu.Lock()
	c.closed = true
	for _, cancel := range c.fetchCancels {
		cancel()
	}
	c.entries.Purge()
	c.mu.Unlock()
	c.fetchWG.Wait()
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	n := c.entries.Len()
	c.mu.Unlock()
	return CacheStats{
		Hits:          c.hits.Load(),
		Misses:        c.misses.Load(),
		StaleServed:   c.stale.Load(),
		Fetches:       c.fetches.Load(),
		FetchErrors:   c.fetchErrs.Load(),
		NotFound:      c.notFound.Load(),
		Invalidations: c.invals.Load(),
		Evictions:     c.evictions.Load(),
		Entries:       n,
	}
}
