package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flowgate/flowgate/internal/auth"
)

// Tickets keeps WebSocket tickets in Redis, so a browser may get its ticket from one
// replica and open its WebSocket on another. GETDEL makes redemption single-use across the
// cluster.
type Tickets struct {
	c            *Cluster
	ttl          time.Duration
	perPrincipal int
}

// Tickets returns the cluster-wide ticket store: at most perPrincipal outstanding tickets per
// (tenant, sub) across every replica (≤ 0: auth.DefaultTicketsPerPrincipal).
func (c *Cluster) Tickets(ttl time.Duration, perPrincipal int) *Tickets {
	if perPrincipal <= 0 {
		perPrincipal = auth.DefaultTicketsPerPrincipal
	}
	return &Tickets{c: c, ttl: ttl, perPrincipal: perPrincipal}
}

// principalKey is the sorted set of a principal's outstanding tickets (member: ticket id,
// score: expiry in unix ms).
func principalKey(p *auth.Principal) string { return "fg:tickets:" + p.Tenant + ":" + p.Subject }

const maxPrincipalJSON = 16 << 10

// Issue stores a ticket bound to p until it expires.
func (t *Tickets) Issue(p *auth.Principal) (string, time.Time, error) {
	id, err := auth.NewTicketID()
	if err != nil {
		return "", time.Time{}, err
	}
	now := t.c.opts.Now()
	exp := auth.TicketExpiry(p, now, t.ttl)
	data, err := json.Marshal(p)
	if err != nil {
		return "", time.Time{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// Claim a place first, count after: replicas racing for the last place may both be
	// refused, never both admitted.
	pk := principalKey(p)
	pipe := t.c.rdb.TxPipeline()
	pipe.ZRemRangeByScore(ctx, pk, "-inf", fmt.Sprint(now.UnixMilli()))
	pipe.ZAdd(ctx, pk, redis.Z{Score: float64(exp.UnixMilli()), Member: id})
	card := pipe.ZCard(ctx, pk)
	pipe.PExpire(ctx, pk, t.ttl+time.Second)
	if _, err := pipe.Exec(ctx); err != nil {
		return "", time.Time{}, fmt.Errorf("cluster: count tickets: %w", err)
	}
	if card.Val() > int64(t.perPrincipal) {
		t.c.rdb.ZRem(ctx, pk, id)
		return "", time.Time{}, auth.ErrTooManyTickets
	}
	if err := t.c.rdb.Set(ctx, "fg:ticket:"+id, data, exp.Sub(now)).Err(); err != nil {
		t.c.rdb.ZRem(ctx, pk, id)
		return "", time.Time{}, fmt.Errorf("cluster: store ticket: %w", err)
	}
	return id, exp, nil
}

// Redeem consumes a ticket: the first redemption anywhere in the cluster wins.
func (t *Tickets) Redeem(id string) (*auth.Principal, error) {
	if !auth.ValidTicketID(id) {
		return nil, auth.ErrTicket()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	data, err := t.c.rdb.GetDel(ctx, "fg:ticket:"+id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, auth.ErrTicket()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", auth.ErrTicket(), err)
	}
	if len(data) > maxPrincipalJSON {
		return nil, auth.ErrTicket()
	}
	var p auth.Principal
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, auth.ErrTicket()
	}
	t.c.rdb.ZRem(ctx, principalKey(&p), id)
	if !t.c.opts.Now().Before(p.ExpiresAt) {
		return nil, auth.ErrTicket()
	}
	return &p, nil
}
