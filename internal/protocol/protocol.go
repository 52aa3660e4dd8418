package protocol

import "time"

// Name is the WebSocket subprotocol the gateway selects.
const Name = "flowgate.v1"

// BearerPrefix marks a token carried in Sec-WebSocket-Protocol ("flowgate.bearer.<jwt>"),
// the only way a browser can send one without putting it in the URL.
const BearerPrefix = "flowgate.bearer."

// Client → server message types.
const (
	TypeSwarm     = "swarm"
	TypeStatus    = "status"
	TypeCancel    = "cancel"
	TypeSubscribe = "subscribe"
	TypeTasks     = "tasks"
	TypeReauth    = "reauth"
	TypePing      = "ping"
)

// Server → client message types. TypeStatus and TypeTasks are also replies.
const (
	TypeConnection      = "connection"
	TypeTaskCreated     = "task_created"
	TypeTaskComplete    = "task_complete"
	TypeTaskCancelled   = "task_cancelled"
	TypeTaskOutput      = "task_output"
	TypeTaskLog         = "task_log"
	TypeEngineEvent     = "engine_event"
	TypeReauthenticated = "reauthenticated"
	TypePong            = "pong"
	TypeError           = "error"
)

// Reserved reports whether an engine event of type t must be wrapped in an engine_event
// envelope: every type the gateway itself speaks, in either direction, so a child can never
// forge task_complete, an error or a reply.
func Reserved(t string) bool {
	switch t {
	case TypeSwarm, TypeStatus, TypeCancel, TypeSubscribe, TypeTasks, TypeReauth, TypePing,
		TypeConnection, TypeTaskCreated, TypeTaskComplete, TypeTaskCancelled, TypeTaskOutput,
		TypeTaskLog, TypeEngineEvent, TypeReauthenticated, TypePong, TypeError:
		return true
	}
	return false
}

// Error codes of the error message (DESIGN §4) and of problem+json bodies.
const (
	CodeInvalidMessage       = "invalid_message"
	CodeUnknownType          = "unknown_type"
	CodeValidationFailed     = "validation_failed"
	CodeForbidden            = "forbidden"
	CodeNotFound             = "not_found"
	CodeRateLimited          = "rate_limited"
	CodeQuotaExceeded        = "quota_exceeded"
	CodeBudgetExceeded       = "budget_exceeded"
	CodeTenantSuspended      = "tenant_suspended"
	CodeTenantKeyUnavailable = "tenant_key_unavailable"
	CodeServerDraining       = "server_draining"
	CodeInternal             = "internal"
	CodeUnauthorized         = "unauthorized"
)

// Task statuses. Pending and running are live; the rest are terminal.
const (
	StatusPending     = "pending"
	StatusRunning     = "running"
	StatusSuccess     = "success"
	StatusFailed      = "failed"
	StatusTimeout     = "timeout"
	StatusCancelled   = "cancelled"
	StatusInterrupted = "interrupted"
	StatusNotFound    = "not_found"
)

// Terminal reports whether a task in status s has ended.
func Terminal(s string) bool {
	switch s {
	case StatusSuccess, StatusFailed, StatusTimeout, StatusCancelled, StatusInterrupted:
		return true
	}
	return false
}

// Close codes and reasons used by the gateway.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001 // server shutdown
	CloseUnsupportedData = 1003 // binary frame
	CloseInvalidPayload  = 1007 // invalid UTF-8
	ClosePolicyViolation = 1008 // slow consumer, token expired or revoked, tenant suspended
	CloseMessageTooBig   = 1009
	CloseInternalError   = 1011

	ReasonSlowConsumer    = "slow consumer"
	ReasonTokenExpired    = "token_expired"
	ReasonTokenRevoked    = "token_revoked"
	ReasonTenantSuspended = "tenant_suspended"
	// ReasonSessionTerminated: an admin ended the session (DELETE …/sessions/{sid}).
	ReasonSessionTerminated = "session_terminated"
	ReasonReauthMismatch    = "reauth_mismatch"
	ReasonShutdown          = "server shutting down"
)

// Time formats t the way every timestamp on the wire is written: UTC, millisecond precision.
func Time(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
