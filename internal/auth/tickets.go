package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// maxTickets bounds outstanding tickets; each lives 30 s, so this is thousands of browser
// handshakes a second before anyone is refused.
const maxTickets = 100000

// DefaultTicketTTL is how long a ticket lives unless configured (auth.ticket_ttl).
const DefaultTicketTTL = 30 * time.Second

// DefaultTicketsPerPrincipal bounds one (tenant, sub)'s outstanding tickets unless configured
// (auth.tickets_per_principal): one token must not take the whole pool and lock every other
// tenant's browser logins out.
const DefaultTicketsPerPrincipal = 20

// ticketLen is the length of every ticket Issue returns ("tk_" + 43 base64url characters);
// anything else is refused without a lookup.
const ticketLen = 3 + 43

// Tickets are single-use, short-lived stand-ins for a bearer token, for browsers that cannot
// set headers and must not put a long-lived token in a URL (DESIGN §4).
type Tickets struct {
	ttl          time.Duration
	now          func() time.Time
	perPrincipal int

	mu  sync.Mutex
	m   map[string]ticket
	per map[PrincipalKey]int // outstanding tickets of each principal
}

type ticket struct {
	p   *Principal
	exp time.Time
}

// PrincipalKey identifies a principal for per-principal bounds.
type PrincipalKey struct{ Tenant, Subject string }

// ErrTooManyTickets is returned when the outstanding-ticket bound is reached, for everyone or
// for the asking principal.
var ErrTooManyTickets = errors.New("auth: too many outstanding tickets")

// NewTickets returns a ticket store whose tickets live ttl (≤ 0: DefaultTicketTTL), at most
// perPrincipal outstanding for one (tenant, sub) (≤ 0: DefaultTicketsPerPrincipal).
func NewTickets(ttl time.Duration, perPrincipal int, now func() time.Time) *Tickets {
	if ttl <= 0 {
		ttl = DefaultTicketTTL
	}
	if perPrincipal <= 0 {
		perPrincipal = DefaultTicketsPerPrincipal
	}
	if now == nil {
		now = time.Now
	}
	return &Tickets{ttl: ttl, now: now, perPrincipal: perPrincipal, m: map[string]ticket{}, per: map[PrincipalKey]int{}}
}

// Issue returns a ticket bound to p. It expires after the ttl or with p's token, whichever
// comes first.
func (t *Tickets) Issue(p *Principal) (string, time.Time, error) {
	id, err := NewTicketID()
	if err != nil {
		return "", time.Time{}, err
	}
	now := t.now()
	exp := TicketExpiry(p, now, t.ttl)
	pk := PrincipalKey{p.Tenant, p.Subject}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= maxTickets || t.per[pk] >= t.perPrincipal {
		t.pruneLocked(now)
		if len(t.m) >= maxTickets || t.per[pk] >= t.perPrincipal {
			return "", time.Time{}, ErrTooManyTickets
		}
	}
	t.m[id] = ticket{p: p, exp: exp}
	t.per[pk]++
	return id, exp, nil
}

// forgetLocked drops one outstanding ticket of p from the per-principal count.
func (t *Tickets) forgetLocked(p *Principal) {
	pk := PrincipalKey{p.Tenant, p.Subject}
	if t.per[pk]--; t.per[pk] <= 0 {
		delete(t.per, pk)
	}
}

// TTL is how long a new ticket lives.
func (t *Tickets) TTL() time.Duration { return t.ttl }

// Redeem consumes a ticket: the first call returns its principal, every later one fails, and
// so does any call after the ticket's expiry. The principal is the one the ticket was issued
// to, bound at issue time; the caller still checks revocation and the tenant.
func (t *Tickets) Redeem(id string) (*Principal, error) {
	if !ValidTicketID(id) {
		return nil, fail(ReasonTicket, nil)
	}
	t.mu.Lock()
	tk, ok := t.m[id]
	if ok {
		delete(t.m, id)
		t.forgetLocked(tk.p)
	}
	t.mu.Unlock()
	if !ok || !t.now().Before(tk.exp) {
		return nil, fail(ReasonTicket, nil)
	}
	return tk.p, nil
}

// NewTicketID returns a fresh ticket id: 256 random bits.
func NewTicketID() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "tk_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ValidTicketID reports whether id has the shape NewTicketID produces, so a malformed
// ticket is refused without a lookup.
func ValidTicketID(id string) bool { return len(id) == ticketLen && id[:3] == "tk_" }

// TicketExpiry is when a ticket issued now for p expires: after ttl, or with p's token.
func TicketExpiry(p *Principal, now time.Time, ttl time.Duration) time.Time {
	exp := now.Add(ttl)
	if p.ExpiresAt.Before(exp) {
		exp = p.ExpiresAt
	}
	return exp
}

// ErrTicket is the refusal of a ticket that is unknown, used or expired.
func ErrTicket() error { return fail(ReasonTicket, nil) }

// Prune drops expired tickets; the server calls it periodically.
func (t *Tickets) Prune() {
	t.mu.Lock()
	t.pruneLocked(t.now())
	t.mu.Unlock()
}

func (t *Tickets) pruneLocked(now time.Time) {
	for id, tk := range t.m {
		if !now.Before(tk.exp) {
			delete(t.m, id)
			t.forgetLocked(tk.p)
		}
	}
}
