package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/flowgate/flowgate/internal/audit"
)

// ErrNoSession: no replica holds a live session of that id for that tenant.
var ErrNoSession = errors.New("no such live session")

// SessionEnder closes a tenant's live session wherever it is (this process's hub, or every
// replica through the cluster bus) and reports whether one was found.
type SessionEnder interface {
	TerminateSession(ctx context.Context, tenant, id string) (bool, error)
}

// TerminateSession ends a tenant's live session: session.terminate is on record before the
// session is touched (fail-closed, ErrNotRecorded); the client is closed with 1008
// session_terminated. A session that no replica holds is ErrNoSession (and recorded as a
// failure, so a reviewer sees the attempt).
func (s *Service) TerminateSession(ctx context.Context, a Actor, tenant, id string) error {
	if s.o.Sessions == nil {
		return ErrUnavailable
	}
	target := audit.Target{Type: "session", ID: id}
	if err := s.record(ctx, a, tenant, audit.ActionSessionTerminate, audit.OutcomeSuccess, "", target, nil); err != nil {
		return fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	found, err := s.o.Sessions.TerminateSession(context.WithoutCancel(ctx), tenant, id)
	switch {
	case err != nil:
		s.recordFailure(context.WithoutCancel(ctx), a, tenant, audit.ActionSessionTerminate, target, "the cluster could not be asked")
		return fmt.Errorf("admin: terminate session: %w", err)
	case !found:
		s.recordFailure(context.WithoutCancel(ctx), a, tenant, audit.ActionSessionTerminate, target, "no such live session")
		return ErrNoSession
	}
	return nil
}
