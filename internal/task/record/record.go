// Package record is what the store keeps of a task: the record, its statuses, updates and
// filters. The task package runs tasks; the store implements its interfaces with these types.
package record

import (
	"errors"
	"time"

	"github.com/flowgate/flowgate/internal/protocol"
)

// Statuses of a task: the wire protocol's (the task_complete statuses plus the two live
// ones), kept as they are sent.
const (
	StatusPending     = protocol.StatusPending
	StatusRunning     = protocol.StatusRunning
	StatusSuccess     = protocol.StatusSuccess
	StatusFailed      = protocol.StatusFailed
	StatusTimeout     = protocol.StatusTimeout
	StatusCancelled   = protocol.StatusCancelled
	StatusInterrupted = protocol.StatusInterrupted
)

// Input bounds of a task.
const (
	MaxIDBytes    = 128
	MaxOwnerBytes = 256
)

// ErrNotFound is a task the store does not have (for that tenant); the store's errors match
// it.
var ErrNotFound = errors.New("task not found")

// ErrInvalidEvent is an event the store will never accept (a frame past its bound); the
// store's refusals of event input match it.
var ErrInvalidEvent = errors.New("invalid task event")

// Task is one swarm run: what was asked, how it ran and how it ended.
type Task struct {
	ID            string     `json:"id"`
	Tenant        string     `json:"tenant"`
	Owner         string     `json:"owner"`
	Objective     string     `json:"objective"`
	Agents        int        `json:"agents"`
	Strategy      string     `json:"strategy"`
	Mode          string     `json:"mode"`
	TimeoutSec    int        `json:"timeoutSec"`
	Status        string     `json:"status"`
	Node          string     `json:"node,omitempty"`
	CreatedAt     time.Time  `json:"createdAt"`
	StartedAt     *time.Time `json:"startedAt,omitempty"`
	EndedAt       *time.Time `json:"endedAt,omitempty"`
	ExitCode      *int       `json:"exitCode,omitempty"`
	ResultSummary string     `json:"resultSummary,omitempty"`
	Error         string     `json:"error,omitempty"`
	LastSeq       int64      `json:"lastSeq"`
	// Usage is what the engine reported spending; nil when it reported nothing.
	Usage             *Usage `json:"usage,omitempty"`
	PermissionDenials int    `json:"permissionDenials"`
}

// Event is one event frame of a task's log, as sent to clients.
type Event struct {
	TaskID string
	Seq    int64
	Frame  []byte
}

// Usage is an engine's token and cost usage for one task, as task_complete reports it.
type Usage = protocol.Usage

// Update changes a live (pending or running) task; nil fields are left as they are.
// Typical uses: {Status: running, StartedAt, Node} when the engine starts, {LastSeq} as events
// flow, and {Status: success|failed|…, EndedAt, ExitCode, ResultSummary, Error, LastSeq} at the
// end.
type Update struct {
	Status            string // "" = unchanged
	Node              *string
	StartedAt         *time.Time
	EndedAt           *time.Time
	ExitCode          *int
	ResultSummary     *string
	Error             *string
	LastSeq           *int64
	Usage             *Usage
	PermissionDenials *int
}

// Filter selects tasks. Empty fields match everything.
type Filter struct {
	Tenant string
	Owner  string
	Status string
	Limit  int // the store bounds it (store.DefaultListLimit, store.MaxListLimit)
	// Before (exclusive) pages backwards: pass the CreatedAt, and BeforeID the ID, of the last
	// task of the previous page. Without BeforeID, tasks created at exactly Before are skipped.
	Before   time.Time
	BeforeID string
}

// ValidStatus reports whether s is one of the Status* values.
func ValidStatus(s string) bool {
	switch s {
	case StatusPending, StatusRunning, StatusSuccess, StatusFailed, StatusTimeout, StatusCancelled, StatusInterrupted:
		return true
	}
	return false
}

// Usage groupings (GET /v1/admin/usage, flowgate usage).
const (
	UsageByDay  = "day"  // UTC day the task ended
	UsageByUser = "user" // the task's owner
	UsageByTask = "task"
)

// UsageFilter selects the usage of one tenant's tasks that ended in [From, To).
type UsageFilter struct {
	Tenant   string
	From, To time.Time
	GroupBy  string // UsageBy*
	Limit    int    // rows; the store bounds it
}

// UsageRow is the usage of the tasks of one group: a UTC day (2026-12-07), an owner or a task id.
type UsageRow struct {
	Key   string `json:"key"`
	Tasks int64  `json:"tasks"`
	Usage
}

// AddUsage is a + b.
func AddUsage(a, b Usage) Usage {
	a.InputTokens += b.InputTokens
	a.OutputTokens += b.OutputTokens
	a.CacheReadInputTokens += b.CacheReadInputTokens
	a.CacheCreationInputTokens += b.CacheCreationInputTokens
	a.CostUSD += b.CostUSD
	a.NumTurns += b.NumTurns
	return a
}

// Spend is what a tenant's ended tasks reported spending over a period: the dollars engines
// reported, every token, and the tokens of tasks that reported no dollars (for an estimate).
type Spend struct {
	CostUSD  float64
	Tokens   int64
	Unpriced Usage
}
