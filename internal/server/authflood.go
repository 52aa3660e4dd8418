package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
)

// Flood control of auth.failure records (DESIGN §16): an unauthenticated client can cause
// refusals as fast as it can send requests, and each refusal is an audit record. Per (client
// address block, reason) at most burst records a window are written; the rest are counted
// and written as one auth.failure.summary record per block, reason and window.

// Bounds of the flood controller.
const (
	authFloodWindow     = time.Minute
	DefaultAuthBurst    = 10
	maxAuthFloodEntries = 100_000 // beyond: new blocks share one entry per reason
	overflowBlock       = "*"
)

type floodKey struct{ block, reason string }

type floodEntry struct {
	start      time.Time
	written    int
	suppressed int
	src        audit.Source // the last suppressed request's
}

// authFlood decides which auth.failure records are written. Safe for concurrent use.
type authFlood struct {
	burst int
	mu    sync.Mutex
	m     map[floodKey]*floodEntry
	due   []audit.Record // summaries of windows that ended, not yet written
}

func newAuthFlood(burst int) *authFlood {
	if burst <= 0 {
		burst = DefaultAuthBurst
	}
	return &authFlood{burst: burst, m: map[floodKey]*floodEntry{}}
}

// admit reports whether this failure gets a record of its own; false means it was counted
// into its window's summary.
func (f *authFlood) admit(block, reason string, src audit.Source, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := floodKey{block, reason}
	e := f.m[k]
	if e == nil && len(f.m) >= maxAuthFloodEntries {
		k = floodKey{overflowBlock, reason}
		e = f.m[k]
	}
	if e != nil && now.Sub(e.start) >= authFloodWindow {
		f.closeLocked(k, e)
		e = nil
	}
	if e == nil {
		e = &floodEntry{start: now}
		f.m[k] = e
	}
	if e.written < f.burst {
		e.written++
		return true
	}
	e.suppressed++
	e.src = src
	return false
}

// closeLocked ends an entry's window, queueing its summary when it suppressed anything.
func (f *authFlood) closeLocked(k floodKey, e *floodEntry) {
	delete(f.m, k)
	if e.suppressed == 0 {
		return
	}
	src := e.src
	if k.block == overflowBlock {
		src = audit.Source{}
	}
	f.due = append(f.due, audit.Record{
		Action: audit.ActionAuthFailureSummary, Outcome: audit.OutcomeDenied, Reason: k.reason, Source: src,
		Details: map[string]any{"count": e.suppressed, "block": k.block,
			"windowStart": e.start.UTC().Format(time.RFC3339), "windowSeconds": int(authFloodWindow / time.Second)},
	})
}

// flush writes the summaries of every window that ended by now.
func (f *authFlood) flush(ctx context.Context, rec func(context.Context, audit.Record) error, now time.Time) error {
	f.mu.Lock()
	for k, e := range f.m {
		if now.Sub(e.start) >= authFloodWindow {
			f.closeLocked(k, e)
		}
	}
	due := f.due
	f.due = nil
	f.mu.Unlock()
	var (
		first  error
		failed []audit.Record
	)
	for _, r := range due {
		if err := rec(ctx, r); err != nil {
			// A context error may come after the record was queued (it may still be
			// written): requeueing it could count twice. Any other error is a write that
			// did not happen.
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				failed = append(failed, r)
			}
			if first == nil {
				first = err
			}
		}
	}
	if len(failed) > 0 {
		// Kept for the next flush (the shutdown flush at the latest): a count must not be
		// lost because one write failed (a store outage, a flush racing shutdown).
		f.mu.Lock()
		f.due = append(failed, f.due...)
		f.mu.Unlock()
	}
	return first
}

// recordAuthFailure writes an auth.failure record unless the flood control counts it into a
// summary instead.
func (a *authenticator) recordAuthFailure(ctx context.Context, block string, rec audit.Record) {
	if a.flood != nil && !a.flood.admit(block, rec.Reason, rec.Source, time.Now()) {
		return
	}
	if err := a.audit.Record(ctx, rec); err != nil {
		a.log.Error("audit write failed", "action", rec.Action, "err", err)
	}
}

// FlushAllAuthFailures writes the summaries of every window, ended or not (shutdown).
func (d *Deps) FlushAllAuthFailures(ctx context.Context) error {
	if d.authFlood == nil {
		return nil
	}
	return d.authFlood.flush(ctx, d.Audit.Record, time.Now().Add(authFloodWindow))
}

// FlushAuthFailures writes the auth.failure.summary records of ended windows; the server
// calls it periodically.
func (d *Deps) FlushAuthFailures(ctx context.Context) error {
	if d.authFlood == nil {
		return nil
	}
	return d.authFlood.flush(ctx, d.Audit.Record, time.Now())
}
