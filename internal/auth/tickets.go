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

// ticketLen is the length of every ticket Issue returns ("tk_" + 43 base64url characters);
// anything else is refused without a lookup.
const ticketLen = 3 + 43

// Tickets are single-use, short-lived stand-ins for a bearer token, for browsers that cannot
// set headers and must not put a long-lived token in a URL (DESIGN §4).
type Tickets struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]ticket
}

type ticket struct {
	p   *Principal
	exp time.Time
}

// ErrTooManyTickets is returned when the outstanding-ticket bound is reached.
var ErrTooManyTickets = errors.New("auth: too many outstanding tickets")

// NewTickets returns a ticket store whose tickets live ttl (≤ 0: DefaultTicketTTL).
func NewTickets(ttl time.Duration, now func() time.Time) *Tickets {
	if ttl <= 0 {
		ttl = DefaultTicketTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Tickets{ttl: ttl, now: now, m: map[string]ticket{}}
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
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= maxTickets {
		t.pruneLocked(now)
		if len(t.m) >= maxTickets {
			return "", time.Time{}, ErrTooManyTickets
		}
	}
	t.m[id] = ticket{p: p, exp: exp}
	return id, exp, nil
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
	delete(t.m, id)
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
		}
	}
}
