package auth

import (
	"errors"
	"github.com/flowgate/flowgate/internal/clocktest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/config"
)

func TestTicketDefaultTTLIs30s(t *testing.T) {
	if got := config.Default().Auth.TicketTTL; got != 30*time.Second {
		t.Fatalf("auth.ticket_ttl default = %v; want 30s (DESIGN §4)", got)
	}
	if DefaultTicketTTL != 30*time.Second || NewTickets(0, 0, nil).TTL() != 30*time.Second {
		t.Fatal("the tickets' own default is not 30s")
	}
}

func TestTickets(t *testing.T) {
	clock := clocktest.New(testNow)
	tk := NewTickets(config.Default().Auth.TicketTTL, config.Default().Auth.TicketsPerPrincipal, clock.Now)
	p := &Principal{Tenant: "acme", Subject: "alice", JTI: "j1", ExpiresAt: testNow.Add(time.Hour)}

	// Bound to the principal and single use.
	id, exp, err := tk.Issue(p)
	if err != nil || !exp.Equal(testNow.Add(30*time.Second)) || !strings.HasPrefix(id, "tk_") || len(id) != ticketLen {
		t.Fatalf("issue: %q %v %v", id, exp, err)
	}
	got, err := tk.Redeem(id)
	if err != nil || got != p {
		t.Fatalf("redeem: %+v %v", got, err)
	}
	if _, err := tk.Redeem(id); ReasonOf(err) != ReasonTicket {
		t.Fatalf("replay: %v", err)
	}

	// Valid for 30 s, not a moment longer.
	id, _, _ = tk.Issue(p)
	clock.Advance(29 * time.Second)
	if _, err := tk.Redeem(id); err != nil {
		t.Fatalf("at 29s: %v", err)
	}
	id, _, _ = tk.Issue(p)
	clock.Advance(30 * time.Second)
	if _, err := tk.Redeem(id); ReasonOf(err) != ReasonTicket {
		t.Fatalf("at 30s: %v", err)
	}

	// Never outlives its token.
	short := &Principal{Tenant: "acme", Subject: "alice", ExpiresAt: clock.Now().Add(5 * time.Second)}
	id, exp, _ = tk.Issue(short)
	if !exp.Equal(short.ExpiresAt) {
		t.Fatalf("ticket outlives its token: %v > %v", exp, short.ExpiresAt)
	}
	clock.Advance(5 * time.Second)
	if _, err := tk.Redeem(id); err == nil {
		t.Fatal("ticket of an expired token redeemed")
	}

	for _, bad := range []string{"", "tk_", "tk_" + strings.Repeat("A", 43), strings.Repeat("x", 10000)} {
		if _, err := tk.Redeem(bad); ReasonOf(err) != ReasonTicket {
			t.Fatalf("redeem %q: %v", bad, err)
		}
	}

	// Concurrent redemptions of one ticket: exactly one wins.
	id, _, _ = tk.Issue(p)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := tk.Redeem(id); err == nil {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d redemptions of one ticket succeeded", wins.Load())
	}

	// Expired tickets are pruned.
	_, _, _ = tk.Issue(p)
	clock.Advance(time.Minute)
	tk.Prune()
	tk.mu.Lock()
	n := len(tk.m)
	tk.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d tickets after prune", n)
	}
}

// One principal's outstanding tickets are bounded; another principal, of another tenant, still
// gets its own; redeemed and expired tickets free their places.
func TestTicketsPerPrincipal(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	tk := NewTickets(30*time.Second, 3, clock)
	hog := &Principal{Tenant: "acme", Subject: "hog", ExpiresAt: now.Add(time.Hour)}
	other := &Principal{Tenant: "beta", Subject: "bea", ExpiresAt: now.Add(time.Hour)}
	var ids []string
	for range 3 {
		id, _, err := tk.Issue(hog)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, _, err := tk.Issue(hog); !errors.Is(err, ErrTooManyTickets) {
		t.Fatalf("4th ticket of one principal: %v", err)
	}
	if _, _, err := tk.Issue(other); err != nil {
		t.Fatalf("another tenant's principal was refused: %v", err)
	}
	if _, err := tk.Redeem(ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tk.Issue(hog); err != nil {
		t.Fatalf("a redeemed ticket did not free its place: %v", err)
	}
	now = now.Add(31 * time.Second)
	for range 3 {
		if _, _, err := tk.Issue(hog); err != nil {
			t.Fatalf("expired tickets did not free their places: %v", err)
		}
	}
}
