package tenant

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"
)

// Store reads tenants; a missing tenant's error matches ErrNotFound.
type Store interface {
	GetTenant(ctx context.Context, id string) (Tenant, error)
}

// Directory caches tenant lookups. A handshake, a swarm and the session sweep each need the
// tenant; the cache keeps that off the database, and Invalidate (called on every update,
// locally or from another replica) keeps a suspension from waiting out the TTL.
type Directory struct {
	store Store
	cache *expirable.LRU[string, result]
	group singleflight.Group
}

type result struct {
	t   Tenant
	err error
}

// NewDirectory returns a directory caching up to size tenants for ttl.
func NewDirectory(s Store, size int, ttl time.Duration) *Directory {
	if size <= 0 {
		size = 10000
	}
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	return &Directory{store: s, cache: expirable.NewLRU[string, result](size, nil, ttl)}
}

// Get returns the tenant, or ErrNotFound. Not-found answers are cached too, so a flood of
// tokens naming a missing tenant costs one query per TTL.
func (d *Directory) Get(ctx context.Context, id string) (Tenant, error) {
	if r, ok := d.cache.Get(id); ok {
		return r.t, r.err
	}
	v, err, _ := d.group.Do(id, func() (any, error) {
		t, err := d.store.GetTenant(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			r := result{err: ErrNotFound}
			d.cache.Add(id, r)
			return r, nil
		case err != nil:
			return nil, err // transient: not cached
		}
		r := result{t: t}
		d.cache.Add(id, r)
		return r, nil
	})
	if err != nil {
		return Tenant{}, err
	}
	r := v.(result)
	return r.t, r.err
}

// Invalidate forgets id so the next Get reads the store.
func (d *Directory) Invalidate(id string) {
	d.cache.Remove(id)
	d.group.Forget(id)
}
