package secrets_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/clocktest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/secrets/secretstest"
)

func newClock() *clocktest.Clock { return clocktest.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// fakeProvider is an in-memory Provider whose Get can be failed or held.
type fakeProvider struct {
	mu      sync.Mutex
	keys    map[string]string
	version map[string]int
	err     error         // returned by Get when set
	gate    chan struct{} // Get waits for it when set
	entered chan struct{} // Get signals here (non-blocking) when set
	gets    atomic.Int64
	refs    []string // keyRefs seen by Get
}

func newFakeProvider() *fakeProvider {
	return &fakeProvider{keys: map[string]string{}, version: map[string]int{}}
}

func (f *fakeProvider) set(tenant, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[tenant] = key
	f.version[tenant]++
}

func (f *fakeProvider) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeProvider) hold() (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.gate = ch
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.gate = nil
			f.mu.Unlock()
			close(ch)
		})
	}
}

func (f *fakeProvider) Get(ctx context.Context, tenant, keyRef string) (string, string, error) {
	f.gets.Add(1)
	f.mu.Lock()
	gate, entered := f.gate, f.entered
	f.refs = append(f.refs, keyRef)
	f.mu.Unlock()
	if entered != nil {
		select {
		case entered <- struct{}{}:
		default:
		}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return "", "", ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", "", f.err
	}
	k, ok := f.keys[tenant]
	if !ok {
		return "", "", fmt.Errorf("%w: %s", secrets.ErrNotFound, tenant)
	}
	return k, strconv.Itoa(f.version[tenant]), nil
}

func (f *fakeProvider) Put(_ context.Context, tenant, _, value string) (secrets.Metadata, error) {
	f.set(tenant, value)
	return secrets.Metadata{Tenant: tenant, Fingerprint: secrets.Fingerprint([]byte("k"), value), Provider: "fake"}, nil
}

func (f *fakeProvider) Delete(_ context.Context, tenant, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.keys[tenant]; !ok {
		return secrets.ErrNotFound
	}
	delete(f.keys, tenant)
	return nil
}

func (f *fakeProvider) Describe(_ context.Context, tenant, _ string) (secrets.Metadata, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[tenant]
	if !ok {
		return secrets.Metadata{}, secrets.ErrNotFound
	}
	return secrets.Metadata{Tenant: tenant, Fingerprint: secrets.Fingerprint([]byte("k"), k)}, nil
}

const (
	key1 = "sk-ant-api03-first-0123456789"
	key2 = "sk-ant-api03-second-9876543210"
)

var errBoom = fmt.Errorf("%w: injected outage", secrets.ErrUnavailable)

func newCache(t *testing.T, p secrets.Provider, clk *clocktest.Clock, mod func(*secrets.CacheOptions)) *secrets.Cache {
	t.Helper()
	opts := secrets.CacheOptions{Provider: p, TTL: time.Minute, MaxStale: 5 * time.Minute, RefreshBackoff: 10 * time.Second, Now: clk.Now}
	if mod != nil {
		mod(&opts)
	}
	c, err := secrets.NewCache(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustKey(t *testing.T, c *secrets.Cache, tenant, want string) {
	t.Helper()
	got, err := c.APIKey(t.Context(), tenant, "")
	if err != nil || got != want {
		t.Fatalf("APIKey(%s) = %q, %v; want %q", tenant, got, err, want)
	}
}

func TestCacheTTL(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, nil)
	p.set("acme", key1)
	mustKey(t, c, "acme", key1)
	p.set("acme", key2)
	clk.Advance(59 * time.Second)
	mustKey(t, c, "acme", key1) // within TTL: cached
	if n := p.gets.Load(); n != 1 {
		t.Fatalf("fetches = %d; want 1", n)
	}
	clk.Advance(time.Second)
	mustKey(t, c, "acme", key2) // TTL expired: rotated key seen
	if n := p.gets.Load(); n != 2 {
		t.Fatalf("fetches = %d; want 2", n)
	}
	st := c.Stats()
	if st.Hits != 1 || st.Misses != 2 || st.Fetches != 2 || st.Entries != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestCacheStaleWithinMaxStaleOnly(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, nil)
	p.set("acme", key1)
	mustKey(t, c, "acme", key1)

	p.fail(errBoom)
	clk.Advance(2 * time.Minute) // past TTL, within MaxStale
	mustKey(t, c, "acme", key1)  // refresh failed: stale served
	if n := p.gets.Load(); n != 2 {
		t.Fatalf("fetches = %d; want 2", n)
	}
	clk.Advance(5 * time.Second)
	mustKey(t, c, "acme", key1) // within RefreshBackoff: no new fetch
	if n := p.gets.Load(); n != 2 {
		t.Fatalf("fetches during refresh backoff = %d; want 2", n)
	}
	clk.Advance(10 * time.Second)
	mustKey(t, c, "acme", key1) // backoff over: tried again, still failing, still stale
	if n := p.gets.Load(); n != 3 {
		t.Fatalf("fetches = %d; want 3", n)
	}

	clk.Advance(5*time.Minute - 2*time.Minute - 15*time.Second - time.Nanosecond) // just before MaxStale
	mustKey(t, c, "acme", key1)
	clk.Advance(time.Nanosecond) // exactly MaxStale after the fetch: never served
	_, err := c.APIKey(t.Context(), "acme", "")
	if !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("APIKey past MaxStale = %v; want ErrUnavailable", err)
	}
	if st := c.Stats(); st.StaleServed != 4 || st.FetchErrors < 3 || st.Entries != 0 {
		t.Fatalf("stats = %+v", st)
	}

	p.fail(nil)
	mustKey(t, c, "acme", key1) // recovers
}

func TestCacheNotFoundIsNotServedStale(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, nil)
	p.set("acme", key1)
	mustKey(t, c, "acme", key1)
	if err := p.Delete(t.Context(), "acme", ""); err != nil { // deleted out of band
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if _, err := c.APIKey(t.Context(), "acme", ""); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("APIKey after out-of-band delete = %v; want ErrNotFound", err)
	}
	if st := c.Stats(); st.NotFound != 1 || st.Entries != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestCacheInvalidate(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, nil)
	p.set("acme", key1)
	mustKey(t, c, "acme", key1)
	p.set("acme", key2)
	c.Invalidate("acme")
	mustKey(t, c, "acme", key2)
	if n := p.gets.Load(); n != 2 {
		t.Fatalf("fetches = %d; want 2", n)
	}
	// Invalidate also ends stale serving at once.
	p.fail(errBoom)
	c.Invalidate("acme")
	if _, err := c.APIKey(t.Context(), "acme", ""); !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("APIKey after Invalidate during outage = %v; want ErrUnavailable", err)
	}
}

func TestCacheInvalidateDuringFetch(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, nil)
	p.set("acme", key1)
	p.entered = make(chan struct{}, 1)
	release := p.hold()

	first := make(chan string, 1)
	go func() {
		k, _ := c.APIKey(context.Background(), "acme", "")
		first <- k
	}()
	<-p.entered // fetch #1 holds key1... it reads the map after the gate
	p.set("acme", key2)
	c.Invalidate("acme")
	p.fail(nil)

	// A caller after the invalidation must not join fetch #1.
	second := make(chan string, 1)
	go func() {
		k, _ := c.APIKey(context.Background(), "acme", "")
		second <- k
	}()
	<-p.entered
	release()
	<-first
	if k := <-second; k != key2 {
		t.Fatalf("caller after Invalidate got %q; want key2", k)
	}
	if n := p.gets.Load(); n != 2 {
		t.Fatalf("fetches = %d; want 2 (no joining across Invalidate)", n)
	}
	mustKey(t, c, "acme", key2)
}

func TestCacheInvalidatedFetchDoesNotRefill(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, nil)
	p.set("acme", key1)
	p.entered = make(chan struct{}, 1)
	release := p.hold()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.APIKey(context.Background(), "acme", "")
	}()
	<-p.entered
	c.Invalidate("acme")
	release()
	<-done
	if st := c.Stats(); st.Entries != 0 {
		t.Fatalf("a fetch that started before Invalidate filled the cache: %+v", st)
	}
}

func TestCacheSingleflight(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, nil)
	p.set("acme", key1)
	p.entered = make(chan struct{}, 1)
	release := p.hold()

	const n = 100
	secretstest.Stampede(t, n, func() error {
		k, err := c.APIKey(t.Context(), "acme", "")
		if err == nil && k != key1 {
			err = fmt.Errorf("got %q", k)
		}
		return err
	}, func() { <-p.entered; release() })
	if got := p.gets.Load(); got != 1 {
		t.Fatalf("%d concurrent calls cost %d fetches; want 1", n, got)
	}
}

func TestCacheCallerContext(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, nil)
	p.set("acme", key1)
	p.entered = make(chan struct{}, 1)
	release := p.hold()
	defer release()

	ctx, cancel := context.WithCancel(t.Context())
	res := make(chan error, 1)
	go func() {
		_, err := c.APIKey(ctx, "acme", "")
		res <- err
	}()
	<-p.entered
	other := make(chan string, 1)
	go func() {
		k, _ := c.APIKey(context.Background(), "acme", "")
		other <- k
	}()
	cancel()
	err := <-res
	if !errors.Is(err, secrets.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller got %v", err)
	}
	release()
	// Canceling one caller does not fail the others.
	if k := <-other; k != key1 {
		t.Fatalf("other caller got %q", k)
	}
}

func TestCacheKeyRefChangeIsAMiss(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, nil)
	p.set("acme", key1)
	mustKey(t, c, "acme", key1)
	if _, err := c.APIKey(t.Context(), "acme", "team/acme/key"); err != nil {
		t.Fatal(err)
	}
	if n := p.gets.Load(); n != 2 {
		t.Fatalf("fetches = %d; a new keyRef must be fetched", n)
	}
	if p.refs[1] != "team/acme/key" {
		t.Fatalf("keyRef passed = %q", p.refs[1])
	}
	// A stale entry under another keyRef is never served during an outage.
	p.fail(errBoom)
	clk.Advance(2 * time.Minute)
	if _, err := c.APIKey(t.Context(), "acme", ""); !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("APIKey = %v; want ErrUnavailable", err)
	}
}

func TestCacheBounded(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, func(o *secrets.CacheOptions) { o.MaxEntries = 2 })
	for _, tn := range []string{"t1", "t2", "t3"} {
		p.set(tn, key1)
		mustKey(t, c, tn, key1)
	}
	if st := c.Stats(); st.Entries != 2 || st.Evictions != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestCacheErrorsAreClassified(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	var outcomes []string
	c := newCache(t, p, clk, func(o *secrets.CacheOptions) {
		o.OnFetch = func(outcome string, _ time.Duration) { outcomes = append(outcomes, outcome) }
	})
	p.fail(errors.New("some driver error"))
	_, err := c.APIKey(t.Context(), "acme", "")
	if !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("unclassified provider error = %v; want ErrUnavailable", err)
	}
	p.fail(nil)
	if _, err := c.APIKey(t.Context(), "acme", ""); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	p.set("acme", "bad key with spaces")
	if _, err := c.APIKey(t.Context(), "acme", ""); !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("malformed stored key = %v; want ErrUnavailable", err)
	}
	p.set("acme", key1)
	mustKey(t, c, "acme", key1)
	if fmt.Sprint(outcomes) != "[error not_found error ok]" {
		t.Fatalf("outcomes = %v", outcomes)
	}
	if _, err := c.APIKey(t.Context(), "../etc", ""); !errors.Is(err, secrets.ErrInvalid) {
		t.Fatalf("malformed tenant = %v; want ErrInvalid", err)
	}
}

func TestCacheSetDeleteInvalidate(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, nil)
	ctx := t.Context()
	if _, err := c.Set(ctx, "acme", "", key1); err != nil {
		t.Fatal(err)
	}
	mustKey(t, c, "acme", key1)
	if _, err := c.Set(ctx, "acme", "", key2); err != nil {
		t.Fatal(err)
	}
	mustKey(t, c, "acme", key2)
	md, err := c.Describe(ctx, "acme", "")
	if err != nil || md.Fingerprint != secrets.Fingerprint([]byte("k"), key2) {
		t.Fatalf("Describe = %+v, %v", md, err)
	}
	if err := c.Delete(ctx, "acme", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.APIKey(ctx, "acme", ""); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("APIKey after Delete = %v", err)
	}
	if _, err := c.Set(ctx, "acme", "", "has space"); !errors.Is(err, secrets.ErrInvalid) {
		t.Fatalf("Set invalid = %v", err)
	}
}

func TestNewCacheValidation(t *testing.T) {
	p := newFakeProvider()
	bad := []secrets.CacheOptions{
		{},
		{Provider: p, TTL: 10 * time.Minute, MaxStale: 5 * time.Minute},
		{Provider: p, TTL: -time.Second},
	}
	for _, o := range bad {
		if _, err := secrets.NewCache(o); err == nil {
			t.Errorf("NewCache(%+v) accepted", o)
		}
	}
	if _, err := secrets.NewCache(secrets.CacheOptions{Provider: p, TTL: 20 * time.Minute}); err != nil {
		t.Errorf("TTL above default MaxStale without MaxStale: %v", err)
	}
}

func TestCacheClose(t *testing.T) {
	p, clk := newFakeProvider(), newClock()
	c := newCache(t, p, clk, nil)
	p.set("acme", key1)
	mustKey(t, c, "acme", key1)
	p.entered = make(chan struct{}, 1)
	release := p.hold()
	defer release()
	res := make(chan error, 1)
	go func() {
		_, err := c.APIKey(context.Background(), "other", "")
		res <- err
	}()
	<-p.entered
	c.Close() // cancels the held fetch and waits for it
	if err := <-res; !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("fetch in flight at Close = %v; want ErrUnavailable", err)
	}
	if _, err := c.APIKey(t.Context(), "acme", ""); !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("APIKey after Close = %v; want ErrUnavailable", err)
	}
}
