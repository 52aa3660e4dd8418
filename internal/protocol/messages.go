package protocol

import "encoding/json"

// Swarm asks for a new task. Options stay raw: the validation layer decides what each key
// means and reports every bad one by name (an unknown key, "5" for an integer).
type Swarm struct {
	Type      string                     `json:"type"`
	Objective *string                    `json:"objective"`
	Options   map[string]json.RawMessage `json:"options"`
	RequestID *string                    `json:"requestId"`
}

// TaskRef is status, cancel and subscribe: a message about one task.
type TaskRef struct {
	Type      string  `json:"type"`
	TaskID    *string `json:"taskId"`
	AfterSeq  *int64  `json:"afterSeq"`
	RequestID *string `json:"requestId"`
}

// Reauth replaces the session's token with a fresh one for the same tenant and subject.
type Reauth struct {
	Type      string  `json:"type"`
	Token     *string `json:"token"`
	RequestID *string `json:"requestId"`
}

// Simple is tasks and ping: no payload beyond the request id.
type Simple struct {
	Type      string  `json:"type"`
	RequestID *string `json:"requestId"`
}

// Connection is the first frame of every session.
type Connection struct {
	Type        string   `json:"type"`
	SessionID   string   `json:"sessionId"`
	Status      string   `json:"status"`
	Version     string   `json:"version"`
	Protocol    string   `json:"protocol"`
	Tenant      string   `json:"tenant"`
	User        string   `json:"user"`
	Permissions []string `json:"permissions"`
	ExpiresAt   string   `json:"expiresAt"`
	Limits      Limits   `json:"limits"`
	ServerTime  string   `json:"serverTime"`
}

// Limits tells a client the bounds it is held to, so a well-behaved one never trips them.
type Limits struct {
	MaxMessageBytes     int `json:"maxMessageBytes"`
	MaxObjectiveChars   int `json:"maxObjectiveChars"`
	MaxObjectiveBytes   int `json:"maxObjectiveBytes"`
	MaxAgents           int `json:"maxAgents"`
	MaxTimeoutSeconds   int `json:"maxTimeoutSeconds"`
	SwarmsPerMinute     int `json:"swarmsPerMinute"`
	SwarmBurst          int `json:"swarmBurst"`
	ConcurrentTasks     int `json:"concurrentTasks"`
	MessagesPerSecond   int `json:"messagesPerSecond"`
	PingIntervalSeconds int `json:"pingIntervalSeconds"`
}

// TaskCreated acknowledges a swarm request.
type TaskCreated struct {
	Type      string `json:"type"`
	TaskID    string `json:"taskId"`
	Objective string `json:"objective"`
	Status    string `json:"status"`
	CreatedAt string `json:"createdAt"`
	RequestID string `json:"requestId,omitempty"`
}

// TaskComplete is the last event of every task. ExitCode is -1 when no process ever ran
// (cancelled while queued, interrupted before start).
type TaskComplete struct {
	Type       string `json:"type"`
	TaskID     string `json:"taskId"`
	Seq        int64  `json:"seq"`
	ServerTime string `json:"serverTime"`
	ExitCode   int    `json:"exitCode"`
	Status     string `json:"status"`
	DurationMs int64  `json:"durationMs"`
	Result     string `json:"result,omitempty"`
	Error      string `json:"error,omitempty"`
	// Usage is what the engine reported spending (absent when it reported nothing).
	Usage *Usage `json:"usage,omitempty"`
	// PermissionDenials counts the engine's permission_denied events: tools it was not
	// allowed to run (engine.permission_mode).
	PermissionDenials int `json:"permissionDenials"`
	// Egress is what the engine sent and received through its egress proxy, and how many
	// destinations it was refused.
	Egress *Egress `json:"egress,omitempty"`
}

// Egress counts one task's traffic through the egress proxy.
type Egress struct {
	BytesOut int64 `json:"bytesOut"`
	BytesIn  int64 `json:"bytesIn"`
	Denied   int64 `json:"denied"`
}

// Usage is an engine's token and cost usage: from its result line at the end, summed from
// its assistant messages while it runs.
type Usage struct {
	InputTokens              int64   `json:"inputTokens"`
	OutputTokens             int64   `json:"outputTokens"`
	CacheReadInputTokens     int64   `json:"cacheReadInputTokens"`
	CacheCreationInputTokens int64   `json:"cacheCreationInputTokens"`
	CostUSD                  float64 `json:"costUsd"`
	NumTurns                 int     `json:"numTurns"`
}

// TaskCancelled acknowledges a cancel; task_complete{status:"cancelled"} follows.
type TaskCancelled struct {
	Type      string `json:"type"`
	TaskID    string `json:"taskId"`
	RequestID string `json:"requestId,omitempty"`
}

// TaskOutput carries a stdout line that was not a JSON object.
type TaskOutput struct {
	Type       string `json:"type"`
	TaskID     string `json:"taskId"`
	Seq        int64  `json:"seq"`
	ServerTime string `json:"serverTime"`
	Line       string `json:"line"`
	Truncated  bool   `json:"truncated,omitempty"`
}

// TaskLog carries a stderr line.
type TaskLog struct {
	Type       string `json:"type"`
	TaskID     string `json:"taskId"`
	Seq        int64  `json:"seq"`
	ServerTime string `json:"serverTime"`
	Level      string `json:"level"`
	Message    string `json:"message"`
	Truncated  bool   `json:"truncated,omitempty"`
}

// EngineEvent wraps an engine event whose type collides with one of the gateway's own.
type EngineEvent struct {
	Type       string          `json:"type"`
	TaskID     string          `json:"taskId"`
	Seq        int64           `json:"seq"`
	ServerTime string          `json:"serverTime"`
	Event      json.RawMessage `json:"event"`
}

// Status answers a status request. A task the caller may not see is StatusNotFound with
// nothing else filled in, exactly like a task that does not exist.
type Status struct {
	Type      string `json:"type"`
	TaskID    string `json:"taskId"`
	Status    string `json:"status"`
	Objective string `json:"objective,omitempty"`
	StartTime string `json:"startTime,omitempty"`
	Duration  *int64 `json:"duration,omitempty"` // milliseconds, as the seed reported it
	LastSeq   *int64 `json:"lastSeq,omitempty"`
	ExitCode  *int   `json:"exitCode,omitempty"`
	Usage     *Usage `json:"usage,omitempty"`
	RequestID string `json:"requestId,omitempty"`
}

// TaskSummary is one entry of a tasks reply.
type TaskSummary struct {
	TaskID    string `json:"taskId"`
	Objective string `json:"objective"`
	Status    string `json:"status"`
	CreatedAt string `json:"createdAt"`
	StartTime string `json:"startTime,omitempty"`
	EndTime   string `json:"endTime,omitempty"`
	LastSeq   int64  `json:"lastSeq"`
	ExitCode  *int   `json:"exitCode,omitempty"`
}

// Tasks answers a tasks request with the caller's recent tasks, newest first.
type Tasks struct {
	Type      string        `json:"type"`
	Tasks     []TaskSummary `json:"tasks"`
	RequestID string        `json:"requestId,omitempty"`
}

// Reauthenticated confirms a reauth.
type Reauthenticated struct {
	Type      string `json:"type"`
	ExpiresAt string `json:"expiresAt"`
	RequestID string `json:"requestId,omitempty"`
}

// Pong answers a ping.
type Pong struct {
	Type       string `json:"type"`
	ServerTime string `json:"serverTime"`
	RequestID  string `json:"requestId,omitempty"`
}

// Error is the error message. Fields names every field that failed validation.
type Error struct {
	Type         string            `json:"type"`
	Error        string            `json:"error"`
	Code         string            `json:"code"`
	Timestamp    string            `json:"timestamp"`
	RequestID    string            `json:"requestId,omitempty"`
	TaskID       string            `json:"taskId,omitempty"`
	RetryAfterMs int64             `json:"retryAfterMs,omitempty"`
	Fields       map[string]string `json:"fields,omitempty"`
}
