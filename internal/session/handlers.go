package session

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/task"
	"github.com/flowgate/flowgate/internal/tenant"
	"github.com/flowgate/flowgate/internal/validation"
)

// handle decodes one text frame and dispatches it. Every failure becomes an error reply;
// the connection stays open.
func (s *Session) handle(ctx context.Context, data []byte) {
	msg, err := protocol.Decode(data)
	if err != nil {
		// The client correlates replies by requestId: echo it whenever the frame is JSON
		// enough to carry one, refused frames included.
		reqID := requestIDOf(data)
		var de *protocol.DecodeError
		if errors.As(err, &de) {
			s.opts.metric(func(m Metrics) { m.Message("invalid") })
			s.sendError(de.Code, de.Msg, reqID, "", 0, nil)
			return
		}
		s.sendError(protocol.CodeInvalidMessage, "malformed message", reqID, "", 0, nil)
		return
	}
	switch m := msg.(type) {
	case *protocol.Swarm:
		s.opts.metric(func(mt Metrics) { mt.Message(protocol.TypeSwarm) })
		s.handleSwarm(ctx, m)
	case *protocol.TaskRef:
		s.opts.metric(func(mt Metrics) { mt.Message(m.Type) })
		s.handleTaskRef(ctx, m)
	case *protocol.Reauth:
		s.opts.metric(func(mt Metrics) { mt.Message(protocol.TypeReauth) })
		s.handleReauth(ctx, m)
	case *protocol.Simple:
		s.opts.metric(func(mt Metrics) { mt.Message(m.Type) })
		s.handleSimple(ctx, m)
	}
}

// requestIDOf is the requestId of a frame the decoder refused, when it is a JSON object with
// a string requestId that is safe to echo; "" otherwise.
func requestIDOf(data []byte) string {
	var f struct {
		RequestID *string `json:"requestId"`
	}
	if json.Unmarshal(data, &f) != nil {
		return ""
	}
	return echoID(f.RequestID)
}

// echoID returns the client's requestId when it is safe to echo (the validation layer
// reports a bad one; it is then simply not echoed).
func echoID(id *string) string {
	if id == nil || len(*id) > 64 {
		return ""
	}
	for _, r := range *id {
		if r < 0x20 || r == 0x7f {
			return ""
		}
	}
	return *id
}

func (s *Session) handleSwarm(ctx context.Context, m *protocol.Swarm) {
	o := s.opts
	p := s.Principal()
	reqID := echoID(m.RequestID)
	if !p.Has(auth.PermSwarmExecute) {
		s.deny(ctx, protocol.CodeForbidden, "this token lacks the swarm:execute permission", reqID, "", "permission", "swarm:execute")
		return
	}
	if o.Tasks.Draining() {
		s.sendError(protocol.CodeServerDraining, "the server is shutting down; retry on another connection", reqID, "", 0, nil)
		return
	}
	ten, err := o.Tenants.Get(ctx, p.Tenant)
	switch {
	case errors.Is(err, tenant.ErrNotFound), err == nil && !tenant.Active(ten):
		s.deny(ctx, protocol.CodeTenantSuspended, "the tenant is suspended", reqID, "", "tenant", "suspended")
		return
	case err != nil:
		o.Logger.Error("tenant lookup failed", "tenant", p.Tenant, "err", err)
		s.sendError(protocol.CodeInternal, "internal error", reqID, "", 0, nil)
		return
	}
	lim := s.swarmLimits(ten)
	req, err := o.Validator.Swarm(m, lim)
	if err != nil {
		var ve *validation.Error
		if errors.As(err, &ve) {
			s.audit(ctx, audit.ActionValidationRejected, audit.OutcomeDenied, "swarm request failed validation", "", reqID,
				map[string]any{"fields": ve.Names()})
			o.metric(func(mt Metrics) { mt.Rejected(protocol.CodeValidationFailed, "swarm") })
			s.sendError(protocol.CodeValidationFailed, "the request is invalid", reqID, "", 0, ve.Fields)
			return
		}
		o.Logger.Error("swarm not validated", "tenant", p.Tenant, "err", err)
		s.sendError(protocol.CodeInternal, "internal error", reqID, "", 0, nil)
		return
	}

	perMin, burst := o.SwarmsPerMinute, o.SwarmBurst
	if v := ten.Limits.SwarmsPerMinute; v != nil && *v > 0 {
		perMin = *v
	}
	if v := ten.Limits.SwarmBurst; v != nil && *v > 0 {
		burst = *v
	}
	now := o.Now()
	if d := o.Swarms.Allow(p.Tenant+"\x00"+p.Subject, rate.Limit(float64(perMin)/60), burst, now); !d.OK {
		s.audit(ctx, audit.ActionRateLimitDenied, audit.OutcomeDenied, "swarm rate", "", reqID,
			map[string]any{"scope": "user", "retryAfterMs": d.RetryAfter.Milliseconds()})
		o.metric(func(mt Metrics) { mt.Rejected(protocol.CodeRateLimited, "user") })
		s.sendError(protocol.CodeRateLimited, "too many swarms; retry later", reqID, "", d.RetryAfter, nil)
		return
	}

	tr := task.Request{
		Objective: req.Objective,
		Engine:    engine.Request{Objective: req.Objective, Agents: req.Agents, Strategy: req.Strategy, Mode: req.Mode, Timeout: req.Timeout},
		KeyRef:    ten.KeyRef,
	}
	if v := ten.Limits.ConcurrentTasks; v != nil && *v > 0 {
		tr.TenantConcurrent = *v
	}
	if v := ten.Limits.BudgetUSDPerDay; v != nil {
		tr.Budget.USDPerDay = *v
	}
	if v := ten.Limits.TokensPerDay; v != nil {
		tr.Budget.TokensPerDay = *v
	}
	t, err := o.Tasks.Create(ctx, p, tr, s.taskMeta(req.RequestID))
	if err != nil {
		s.createFailed(ctx, err, req.RequestID)
		return
	}
	s.send(protocol.TaskCreated{
		Type: protocol.TypeTaskCreated, TaskID: t.ID, Objective: t.Objective, Status: protocol.StatusPending,
		CreatedAt: protocol.Time(t.CreatedAt), RequestID: req.RequestID,
	})
	s.addSub(t.ID, o.Tasks.Attach(t, p, s))
}

// swarmLimits narrows the global bounds by the tenant's own.
func (s *Session) swarmLimits(t tenant.Tenant) validation.Limits {
	lim := s.opts.SwarmLimits
	if v := t.Limits.MaxAgents; v != nil && *v > 0 && *v < lim.MaxAgents {
		lim.MaxAgents = *v
	}
	if allowed := t.Limits.AllowedStrategies; len(allowed) > 0 {
		var narrowed []string
		for _, st := range lim.Strategies {
			if slices.Contains(allowed, st) {
				narrowed = append(narrowed, st)
			}
		}
		if len(narrowed) > 0 {
			lim.Strategies = narrowed
		}
	}
	return lim
}

func (s *Session) createFailed(ctx context.Context, err error, reqID string) {
	o := s.opts
	var (
		qe *task.QuotaError
		be *task.BudgetError
	)
	switch {
	case errors.As(err, &be):
		s.audit(ctx, audit.ActionBudgetDenied, audit.OutcomeDenied, be.Error(), "", reqID, map[string]any{
			"budgetUsdPerDay": be.Budget.USDPerDay, "tokensPerDay": be.Budget.TokensPerDay,
			"spentUsd": be.SpentUSD, "spentTokens": be.SpentTokens})
		o.metric(func(m Metrics) { m.Rejected(protocol.CodeBudgetExceeded, "tenant") })
		s.sendError(protocol.CodeBudgetExceeded, be.Error(), reqID, "", 0, nil)
	case errors.As(err, &qe):
		s.audit(ctx, audit.ActionQuotaDenied, audit.OutcomeDenied, qe.Error(), "", reqID, map[string]any{"scope": qe.Scope, "limit": qe.Limit})
		o.metric(func(m Metrics) { m.Rejected(protocol.CodeQuotaExceeded, qe.Scope) })
		s.sendError(protocol.CodeQuotaExceeded, qe.Error(), reqID, "", 0, nil)
	case errors.Is(err, task.ErrKeyUnavailable):
		o.metric(func(m Metrics) { m.Rejected(protocol.CodeTenantKeyUnavailable, "tenant") })
		s.sendError(protocol.CodeTenantKeyUnavailable, "the tenant's engine API key is not available", reqID, "", 0, nil)
	case errors.Is(err, task.ErrDraining):
		s.sendError(protocol.CodeServerDraining, "the server is shutting down; retry on another connection", reqID, "", 0, nil)
	case errors.Is(err, task.ErrEventLogBehind):
		// The store is not keeping up with the events already streaming: their durability
		// comes first (DESIGN §17), new work waits.
		o.Logger.Error("swarm refused: task event log is behind", "session", s.id)
		s.sendError(protocol.CodeInternal, "the server's event log is behind; new swarms are refused until it catches up", reqID, "", 2*time.Second, nil)
	case errors.Is(err, task.ErrClusterUnavailable):
		// Fail closed: without Redis the cluster-wide limits cannot be enforced.
		o.Logger.Error("swarm refused: cluster unavailable", "session", s.id, "err", err)
		s.sendError(protocol.CodeInternal, "cluster coordination is unavailable; new swarms are refused until it recovers", reqID, "", 2*time.Second, nil)
	default:
		o.Logger.Error("swarm refused", "session", s.id, "err", err)
		s.sendError(protocol.CodeInternal, "internal error", reqID, "", 0, nil)
	}
}

func (s *Session) handleTaskRef(ctx context.Context, m *protocol.TaskRef) {
	o := s.opts
	req, err := o.Validator.TaskRef(m)
	if err != nil {
		s.validationFailed(err, echoID(m.RequestID))
		return
	}
	p := s.Principal()
	switch m.Type {
	case protocol.TypeStatus:
		snap, err := o.Tasks.Status(ctx, p, req.TaskID)
		if errors.Is(err, task.ErrNotFound) {
			s.send(protocol.Status{Type: protocol.TypeStatus, TaskID: req.TaskID, Status: protocol.StatusNotFound, RequestID: req.RequestID})
			return
		}
		if err != nil {
			o.Logger.Error("status failed", "task", req.TaskID, "err", err)
			s.sendError(protocol.CodeInternal, "internal error", req.RequestID, req.TaskID, 0, nil)
			return
		}
		s.send(statusReply(snap, req.RequestID, o.Now()))
	case protocol.TypeCancel:
		err := o.Tasks.Cancel(ctx, p, req.TaskID, s.taskMeta(req.RequestID))
		switch {
		case errors.Is(err, task.ErrNotFound):
			s.sendError(protocol.CodeNotFound, "task not found", req.RequestID, req.TaskID, 0, nil)
		case err != nil:
			o.Logger.Error("cancel failed", "task", req.TaskID, "err", err)
			s.sendError(protocol.CodeInternal, "internal error", req.RequestID, req.TaskID, 0, nil)
		default:
			s.send(protocol.TaskCancelled{Type: protocol.TypeTaskCancelled, TaskID: req.TaskID, RequestID: req.RequestID})
		}
	case protocol.TypeSubscribe:
		s.mu.Lock()
		_, resub := s.subs[req.TaskID]
		full := len(s.subs) >= o.MaxSubscriptions
		s.mu.Unlock()
		if full && !resub {
			s.sendError(protocol.CodeQuotaExceeded, "too many subscriptions on this connection", req.RequestID, req.TaskID, 0, nil)
			return
		}
		sub, err := o.Tasks.Subscribe(ctx, p, req.TaskID, req.AfterSeq, s)
		if errors.Is(err, task.ErrNotFound) {
			s.sendError(protocol.CodeNotFound, "task not found", req.RequestID, req.TaskID, 0, nil)
			return
		}
		if err != nil {
			s.sendError(protocol.CodeInternal, "internal error", req.RequestID, req.TaskID, 0, nil)
			return
		}
		s.addSub(req.TaskID, sub)
	}
}

func statusReply(snap task.Snapshot, reqID string, now time.Time) protocol.Status {
	st := protocol.Status{Type: protocol.TypeStatus, TaskID: snap.ID, Status: snap.Status, Objective: snap.Objective, RequestID: reqID, Usage: snap.Usage}
	lastSeq := snap.LastSeq
	st.LastSeq = &lastSeq
	if !snap.StartedAt.IsZero() {
		st.StartTime = protocol.Time(snap.StartedAt)
		end := now
		if !snap.EndedAt.IsZero() {
			end = snap.EndedAt
		}
		d := end.Sub(snap.StartedAt).Milliseconds()
		st.Duration = &d
	}
	if protocol.Terminal(snap.Status) {
		code := snap.ExitCode
		st.ExitCode = &code
	}
	return st
}

func (s *Session) handleReauth(ctx context.Context, m *protocol.Reauth) {
	o := s.opts
	req, err := o.Validator.Reauth(m)
	if err != nil {
		s.validationFailed(err, echoID(m.RequestID))
		return
	}
	cur := s.Principal()
	np, err := o.Verifier.Verify(ctx, req.Token)
	if err == nil && o.Revocations != nil && np.JTI != "" && o.Revocations.Revoked(np.Tenant, np.JTI) {
		err = &auth.Error{Reason: auth.ReasonRevoked}
	}
	if err != nil {
		reason := auth.ReasonOf(err)
		s.audit(ctx, audit.ActionAuthFailure, audit.OutcomeDenied, reason, "", req.RequestID, map[string]any{"stage": "reauth"})
		s.sendError(protocol.CodeForbidden, "token rejected: "+reason, req.RequestID, "", 0, nil)
		return
	}
	if !np.SameUser(cur) {
		s.audit(ctx, audit.ActionAuthFailure, audit.OutcomeDenied, protocol.ReasonReauthMismatch, "", req.RequestID,
			map[string]any{"stage": "reauth", "newTokenFp": np.TokenFP})
		s.closeWith(protocol.ClosePolicyViolation, protocol.ReasonReauthMismatch)
		return
	}
	s.principal.Store(np)
	s.send(protocol.Reauthenticated{Type: protocol.TypeReauthenticated, ExpiresAt: protocol.Time(np.ExpiresAt), RequestID: req.RequestID})
}

func (s *Session) handleSimple(ctx context.Context, m *protocol.Simple) {
	o := s.opts
	req, err := o.Validator.Simple(m)
	if err != nil {
		s.validationFailed(err, echoID(m.RequestID))
		return
	}
	switch m.Type {
	case protocol.TypePing:
		s.send(protocol.Pong{Type: protocol.TypePong, ServerTime: protocol.Time(o.Now()), RequestID: req.RequestID})
	case protocol.TypeTasks:
		snaps, err := o.Tasks.List(ctx, s.Principal())
		if err != nil {
			o.Logger.Error("tasks list failed", "err", err)
		}
		reply := protocol.Tasks{Type: protocol.TypeTasks, Tasks: make([]protocol.TaskSummary, 0, len(snaps)), RequestID: req.RequestID}
		for _, sn := range snaps {
			ts := protocol.TaskSummary{TaskID: sn.ID, Objective: sn.Objective, Status: sn.Status, CreatedAt: protocol.Time(sn.CreatedAt), LastSeq: sn.LastSeq}
			if !sn.StartedAt.IsZero() {
				ts.StartTime = protocol.Time(sn.StartedAt)
			}
			if !sn.EndedAt.IsZero() {
				ts.EndTime = protocol.Time(sn.EndedAt)
			}
			if protocol.Terminal(sn.Status) {
				code := sn.ExitCode
				ts.ExitCode = &code
			}
			reply.Tasks = append(reply.Tasks, ts)
		}
		s.send(reply)
	}
}

func (s *Session) validationFailed(err error, reqID string) {
	var ve *validation.Error
	if errors.As(err, &ve) {
		s.sendError(protocol.CodeValidationFailed, "the request is invalid", reqID, "", 0, ve.Fields)
		return
	}
	s.sendError(protocol.CodeInternal, "internal error", reqID, "", 0, nil)
}

// deny answers a refused request and records it.
func (s *Session) deny(ctx context.Context, code, msg, reqID, taskID, scope, what string) {
	s.audit(ctx, audit.ActionAuthzDenied, audit.OutcomeDenied, msg, taskID, reqID, map[string]any{"scope": scope, "required": what})
	s.opts.metric(func(m Metrics) { m.Rejected(code, scope) })
	s.sendError(code, msg, reqID, taskID, 0, nil)
}

func (s *Session) sendError(code, msg, reqID, taskID string, retryAfter time.Duration, fields map[string]string) {
	e := protocol.Error{
		Type: protocol.TypeError, Error: msg, Code: code, Timestamp: protocol.Time(s.opts.Now()),
		RequestID: reqID, TaskID: taskID, Fields: fields,
	}
	if retryAfter > 0 {
		e.RetryAfterMs = ceilMillis(retryAfter)
	}
	s.send(e)
}

func (s *Session) taskMeta(reqID string) task.Meta {
	return task.Meta{SessionID: s.id, RequestID: reqID, Source: audit.Source{IP: s.meta.IP, Origin: s.meta.Origin, UserAgent: s.meta.UserAgent}}
}

// audit records an action of this session. Refusals are recorded best-effort: the request is
// already refused, so a failed write is logged rather than changing the answer.
func (s *Session) audit(ctx context.Context, action, outcome, reason, taskID, reqID string, details map[string]any) {
	if s.opts.Audit == nil {
		return
	}
	p := s.Principal()
	r := audit.Record{
		Action: action, Outcome: outcome, Reason: reason, Tenant: p.Tenant,
		Actor:     audit.Actor{Sub: p.Subject, TokenFP: p.TokenFP},
		Source:    audit.Source{IP: s.meta.IP, Origin: s.meta.Origin, UserAgent: s.meta.UserAgent},
		RequestID: reqID, SessionID: s.id, Details: details,
	}
	if taskID != "" {
		r.Target = audit.Target{Type: "task", ID: taskID}
	}
	if err := s.opts.Audit.Record(ctx, r); err != nil {
		s.opts.Logger.Error("audit write failed", "action", action, "session", s.id, "err", err)
	}
}

// ceilMillis rounds up, so a client that waits retryAfterMs is never early.
func ceilMillis(d time.Duration) int64 {
	return max(1, int64((d+time.Millisecond-1)/time.Millisecond))
}
