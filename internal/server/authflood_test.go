package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
)

func TestAuthFloodBurstAndSummary(t *testing.T) {
	f := newAuthFlood(3)
	now := time.Unix(1_800_000_000, 0)
	src := audit.Source{IP: "192.0.2.7"}
	admitted := 0
	for range 100 {
		if f.admit("192.0.2.7", "bad_signature", src, now) {
			admitted++
		}
	}
	// Another reason and another client have their own allowance.
	if !f.admit("192.0.2.7", "token_expired", src, now) || !f.admit("198.51.100.1", "bad_signature", src, now) {
		t.Fatal("another reason or client was suppressed")
	}
	if admitted != 3 {
		t.Fatalf("admitted %d of 100, want the burst of 3", admitted)
	}
	var got []audit.Record
	rec := func(_ context.Context, r audit.Record) error { got = append(got, r); return nil }
	if err := f.flush(context.Background(), rec, now.Add(30*time.Second)); err != nil || len(got) != 0 {
		t.Fatalf("flushed %d summaries before the window ended", len(got))
	}
	if err := f.flush(context.Background(), rec, now.Add(authFloodWindow)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Action != audit.ActionAuthFailureSummary || got[0].Reason != "bad_signature" ||
		got[0].Details["count"] != 97 || got[0].Source.IP != "192.0.2.7" {
		t.Fatalf("summaries = %+v", got)
	}
	// A new window starts with a fresh allowance.
	if !f.admit("192.0.2.7", "bad_signature", src, now.Add(2*authFloodWindow)) {
		t.Fatal("the next window had no allowance")
	}
}

func TestAuthFloodBoundedEntries(t *testing.T) {
	f := newAuthFlood(1)
	now := time.Unix(1_800_000_000, 0)
	for i := range maxAuthFloodEntries + 500 {
		f.admit(time.Duration(i).String(), "bad_signature", audit.Source{}, now)
	}
	if n := len(f.m); n > maxAuthFloodEntries+1 {
		t.Fatalf("%d entries, bound %d", n, maxAuthFloodEntries)
	}
}

// A summary whose write fails is kept for the next flush, so the count is not lost; one
// refused by a context error (it may have been queued already) is not, so it never counts twice.
func TestAuthFloodFailedSummaryIsKept(t *testing.T) {
	f := newAuthFlood(1)
	now := time.Unix(1_800_000_000, 0)
	for range 5 {
		f.admit("192.0.2.7", "bad_signature", audit.Source{}, now)
	}
	down := func(context.Context, audit.Record) error { return errors.New("store down") }
	if err := f.flush(context.Background(), down, now.Add(authFloodWindow)); err == nil {
		t.Fatal("a failed write was not reported")
	}
	var got []audit.Record
	up := func(_ context.Context, r audit.Record) error { got = append(got, r); return nil }
	if err := f.flush(context.Background(), up, now.Add(authFloodWindow)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Details["count"] != 4 {
		t.Fatalf("after the store came back: %+v; want the one summary counting 4", got)
	}

	for range 5 {
		f.admit("192.0.2.8", "bad_signature", audit.Source{}, now)
	}
	cancelled := func(context.Context, audit.Record) error { return context.Canceled }
	_ = f.flush(context.Background(), cancelled, now.Add(authFloodWindow))
	got = nil
	_ = f.flush(context.Background(), up, now.Add(authFloodWindow))
	if len(got) != 0 {
		t.Fatalf("a summary refused by a context error was written again: %+v", got)
	}
}
