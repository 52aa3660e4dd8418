package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration. Every field has a yaml tag; the environment variable for
// a key is FLOWGATE_ followed by the upper-cased path with dots as underscores
// (server.addr → FLOWGATE_SERVER_ADDR). configs/flowgate.yaml documents every key.
type Config struct {
	// DataDir holds the gateway's own state; relative paths elsewhere in the file resolve
	// against it.
	DataDir  string   `yaml:"data_dir"`
	Server   Server   `yaml:"server"`
	Ops      Ops      `yaml:"ops"`
	Log      Log      `yaml:"log"`
	Auth     Auth     `yaml:"auth"`
	Limits   Limits   `yaml:"limits"`
	Tasks    Tasks    `yaml:"tasks"`
	Tenants  Tenants  `yaml:"tenants"`
	Engine   Engine   `yaml:"engine"`
	Secrets  Secrets  `yaml:"secrets"`
	Store    Store    `yaml:"store"`
	Audit    Audit    `yaml:"audit"`
	Shutdown Shutdown `yaml:"shutdown"`
	Cluster  Cluster  `yaml:"cluster"`
	UI       UI       `yaml:"ui"`

	// Dev is set by --dev, never by the file: it relaxes the insecure-settings checks that
	// only make sense on a loopback demo.
	Dev bool `yaml:"-"`
}

// Server is the public listener.
type Server struct {
	Addr              string        `yaml:"addr"`
	AllowedOrigins    []string      `yaml:"allowed_origins"`
	TrustedProxies    []string      `yaml:"trusted_proxies"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	MaxBodyBytes      int64         `yaml:"max_body_bytes"`
}

// Ops is the operator listener: metrics, pprof, health.
type Ops struct {
	Addr  string `yaml:"addr"`
	Pprof bool   `yaml:"pprof"`
}

// Log configures slog.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Auth configures token verification and issuance.
type Auth struct {
	Audience        string        `yaml:"audience"`
	TenantClaim     string        `yaml:"tenant_claim"`
	Leeway          time.Duration `yaml:"leeway"`
	MaxTokenBytes   int           `yaml:"max_token_bytes"`
	AllowQueryToken *bool         `yaml:"allow_query_token"`
	TicketTTL       time.Duration `yaml:"ticket_ttl"`
	// TicketsPerPrincipal bounds one (tenant, sub)'s outstanding tickets, cluster-wide.
	TicketsPerPrincipal int `yaml:"tickets_per_principal"`
	// MaxTokenLifetime refuses tokens whose exp lies further than this from iat (or now).
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
	// RevokeCancelsTasks: revoking a token through the API cancels the tasks it started,
	// unless the request says otherwise ({"cancelTasks": false}).
	RevokeCancelsTasks bool     `yaml:"revoke_cancels_tasks"`
	Signing            Signing  `yaml:"signing"`
	Issuers            []Issuer `yaml:"issuers"`
}

// Signing is flowgate's own token issuer.
type Signing struct {
	Enabled          bool          `yaml:"enabled"`
	Issuer           string        `yaml:"issuer"`
	KeyFile          string        `yaml:"key_file"`
	PreviousKeyFiles []string      `yaml:"previous_key_files"`
	DefaultTTL       time.Duration `yaml:"default_ttl"`
	MaxTTL           time.Duration `yaml:"max_ttl"`
}

// Issuer is an external token issuer: static keys, a JWKS URL, or both.
type Issuer struct {
	Issuer      string        `yaml:"issuer"`
	Audience    string        `yaml:"audience"`
	Algorithms  []string      `yaml:"algorithms"`
	Keys        []Key         `yaml:"keys"`
	JWKSURL     string        `yaml:"jwks_url"`
	JWKSRefresh time.Duration `yaml:"jwks_refresh"`
	// Permissions the issuer may grant (default [swarm:execute]); platform:admin only when
	// listed. Tenants it may speak for (default ["*"]: any).
	Permissions []string `yaml:"permissions"`
	Tenants     []string `yaml:"tenants"`
}

// Key is one static verification key read from a file.
type Key struct {
	KID  string `yaml:"kid"`
	Alg  string `yaml:"alg"`
	File string `yaml:"file"`
}

// Limits are the abuse-control defaults of DESIGN §6; tenants may override some.
type Limits struct {
	MaxMessageBytes       int           `yaml:"max_message_bytes"`
	MaxObjectiveChars     int           `yaml:"max_objective_chars"`
	MaxObjectiveBytes     int           `yaml:"max_objective_bytes"`
	MaxAgents             int           `yaml:"max_agents"`
	DefaultAgents         int           `yaml:"default_agents"`
	MaxTimeoutSeconds     int           `yaml:"max_timeout_seconds"`
	DefaultTimeoutSeconds int           `yaml:"default_timeout_seconds"`
	SendQueueMessages     int           `yaml:"send_queue_messages"`
	SendQueueBytes        int           `yaml:"send_queue_bytes"`
	PingInterval          time.Duration `yaml:"ping_interval"`
	PongTimeout           time.Duration `yaml:"pong_timeout"`
	WriteTimeout          time.Duration `yaml:"write_timeout"`
	SwarmsPerMinute       int           `yaml:"swarms_per_minute"`
	SwarmBurst            int           `yaml:"swarm_burst"`
	UserConcurrentTasks   int           `yaml:"user_concurrent_tasks"`
	TenantConcurrentTasks int           `yaml:"tenant_concurrent_tasks"`
	UserConnections       int           `yaml:"user_connections"`
	IPConnections         int           `yaml:"ip_connections"`
	IPHandshakesPerSecond int           `yaml:"ip_handshakes_per_second"`
	IPHandshakeBurst      int           `yaml:"ip_handshake_burst"`
	GlobalConnections     int           `yaml:"global_connections"`
	MessagesPerSecond     int           `yaml:"messages_per_second"`
	MessageBurst          int           `yaml:"message_burst"`
	ExecutorPool          int           `yaml:"executor_pool"`
	ExecutorQueue         int           `yaml:"executor_queue"`
	LimiterMaxEntries     int           `yaml:"limiter_max_entries"`
}

// Tasks configures the task lifecycle.
type Tasks struct {
	OnDisconnect      string        `yaml:"on_disconnect"`
	DetachGrace       time.Duration `yaml:"detach_grace"`
	Retention         time.Duration `yaml:"retention"`
	MaxSubscriptions  int           `yaml:"max_subscriptions"`
	ListLimit         int           `yaml:"list_limit"`
	MaxResultBytes    int           `yaml:"max_result_bytes"`
	MaxRetainedTasks  int           `yaml:"max_retained_tasks"`
	RetainedMemoryMax ByteSize      `yaml:"retained_memory_max"`
	MaxTaskLogBytes   int64         `yaml:"max_task_log_bytes"`
	MaxTaskLogEvents  int           `yaml:"max_task_log_events"`
	// EventRetention is how long a finished task's events stay in the store's event log
	// (DESIGN §17); then they are pruned and a resume gets just how the task ended.
	EventRetention time.Duration `yaml:"event_retention"`
}

// Tenants configures what tenant status changes do.
type Tenants struct {
	// SuspendCancelsTasks: suspending a tenant cancels its running tasks.
	SuspendCancelsTasks bool `yaml:"suspend_cancels_tasks"`
}

// Engine selects and bounds the swarm engine.
type Engine struct {
	Profile        string        `yaml:"profile"`
	Command        string        `yaml:"command"`
	Args           []string      `yaml:"args"`
	Env            []string      `yaml:"env"`
	WorkdirRoot    string        `yaml:"workdir_root"`
	KillGrace      time.Duration `yaml:"kill_grace"`
	MaxLineBytes   int           `yaml:"max_line_bytes"`
	MaxOutputBytes int64         `yaml:"max_output_bytes"`
	Sandbox        string        `yaml:"sandbox"`
	Landlock       string        `yaml:"landlock"`
	ReadPaths      []string      `yaml:"read_paths"`
	WritePaths     []string      `yaml:"write_paths"`
	ConnectPorts   []int         `yaml:"connect_ports"`
	RunAs          string        `yaml:"run_as"`
	Nice           int           `yaml:"nice"`
	// MaxStarting is how many engines may be starting at once (sandbox start until the
	// engine's first line, at most 2 s each); the others wait their turn. 0: no limit.
	MaxStarting int `yaml:"max_starting"`
	// AnthropicBaseURL sets ANTHROPIC_BASE_URL for the claude-code and claude-flow-v2 engines
	// (LLM gateways, regional endpoints, the test suite's mock); its host:port joins the
	// egress allowlist.
	AnthropicBaseURL string `yaml:"anthropic_base_url"`
	// PermissionMode is Claude Code's --permission-mode (claude-code profile).
	PermissionMode string `yaml:"permission_mode"`
	// MaxRetries caps Claude Code's API retries (CLAUDE_CODE_MAX_RETRIES).
	MaxRetries int `yaml:"max_retries"`
	// ClaudeCommand is the Claude Code binary claude-flow runs (claude-flow-v2 profile).
	ClaudeCommand string `yaml:"claude_command"`
	// ProgressEvents adds seed-style agent_spawn, task_progress and insight events derived
	// from a real engine's stream-json.
	ProgressEvents bool `yaml:"progress_events"`
	// Egress is the engines' proxy to the network.
	Egress EngineEgress `yaml:"egress"`
	// Resource limits of each engine: memory (all its processes together), processes, and
	// the bytes its task directory may hold. 0 = none.
	MemoryMax       ByteSize `yaml:"memory_max"`
	PidsMax         int      `yaml:"pids_max"`
	WorkdirMaxBytes ByteSize `yaml:"workdir_max_bytes"`
}

// ByteSize is a number of bytes, written as an integer or with a unit: 512MiB, 2GiB, 1G, 64k.
type ByteSize int64

// invalidSize marks a value that did not parse; Validate reports it under its key (the YAML
// decoder does not know which key it is decoding).
const invalidSize ByteSize = -1

// UnmarshalYAML accepts an integer or a size string.
func (b *ByteSize) UnmarshalYAML(value *yaml.Node) error {
	n, err := ParseByteSize(value.Value)
	if err != nil || value.Kind != yaml.ScalarNode {
		*b = invalidSize
		return nil
	}
	*b = ByteSize(n)
	return nil
}

// ParseByteSize parses an integer number of bytes, optionally followed by a unit: k/K/KB/KiB,
// M/MB/MiB, G/GB/GiB, T/TB/TiB (all powers of 1024; there is no use for decimal units here).
func ParseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 19 {
		return 0, fmt.Errorf("%q is not a size like 512MiB or 2GiB", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size like 512MiB or 2GiB", s)
	}
	shift := 0
	switch strings.ToLower(strings.TrimSpace(s[i:])) {
	case "", "b":
	case "k", "kb", "kib":
		shift = 10
	case "m", "mb", "mib":
		shift = 20
	case "g", "gb", "gib":
		shift = 30
	case "t", "tb", "tib":
		shift = 40
	default:
		return 0, fmt.Errorf("%q is not a size like 512MiB or 2GiB", s)
	}
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n << shift, nil
}

// EngineEgress configures the egress proxy engines reach the network through.
type EngineEgress struct {
	// Allow lists host:port destinations; anthropic_base_url's is added.
	Allow []string `yaml:"allow"`
}

// Secrets configures where tenant API keys live.
type Secrets struct {
	Provider           string        `yaml:"provider"`
	CacheTTL           time.Duration `yaml:"cache_ttl"`
	MaxStale           time.Duration `yaml:"max_stale"`
	CacheSize          int           `yaml:"cache_size"`
	FingerprintKeyFile string        `yaml:"fingerprint_key_file"`
	Local              LocalSecrets  `yaml:"local"`
	AWS                AWSSecrets    `yaml:"aws"`
}

// LocalSecrets is the AES-256-GCM provider.
type LocalSecrets struct {
	MasterKeyFile string `yaml:"master_key_file"`
}

// AWSSecrets is the Secrets Manager provider.
type AWSSecrets struct {
	Region             string `yaml:"region"`
	Endpoint           string `yaml:"endpoint"`
	SecretIDTemplate   string `yaml:"secret_id_template"`
	VersionStage       string `yaml:"version_stage"`
	RecoveryWindowDays int    `yaml:"recovery_window_days"`
}

// Store selects the database.
type Store struct {
	Driver       string `yaml:"driver"`
	Path         string `yaml:"path"`
	DSN          string `yaml:"dsn"`
	MaxOpenConns int    `yaml:"max_open_conns"`
}

// Audit configures the tamper-evident log.
type Audit struct {
	FailClosed         bool          `yaml:"fail_closed"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	CheckpointKeyFile  string        `yaml:"checkpoint_key_file"`
	// PreviousCheckpointKeyFiles are retired checkpoint keys (public or private PEM), still
	// trusted to verify the checkpoints they signed.
	PreviousCheckpointKeyFiles []string      `yaml:"previous_checkpoint_key_files"`
	Retention                  time.Duration `yaml:"retention"`
	// AuthFailureBurst: auth.failure records per client address block, reason and minute;
	// the rest are counted into one auth.failure.summary record.
	AuthFailureBurst int `yaml:"auth_failure_burst"`
}

// Shutdown configures the drain on SIGTERM.
type Shutdown struct {
	Grace time.Duration `yaml:"grace"`
}

// Cluster turns on scale-out when RedisURL is set.
type Cluster struct {
	RedisURL          string        `yaml:"redis_url"`
	NodeID            string        `yaml:"node_id"`
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	HeartbeatTTL      time.Duration `yaml:"heartbeat_ttl"`
	StreamMaxLen      int64         `yaml:"stream_max_len"`
	EventTTL          time.Duration `yaml:"event_ttl"`
}

// UI toggles the embedded dashboard and SDK.
type UI struct {
	Enabled bool `yaml:"enabled"`
}

// Default returns the configuration every key falls back to. configs/flowgate.yaml must
// say the same (a test checks it).
func Default() Config {
	return Config{
		DataDir: "./data",
		Server: Server{
			Addr:              ":8080",
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    32 << 10,
			MaxBodyBytes:      64 << 10,
		},
		Ops: Ops{Addr: "127.0.0.1:9090", Pprof: true},
		Log: Log{Level: "info", Format: "json"},
		Auth: Auth{
			Audience:            "flowgate",
			TenantClaim:         "tenant",
			Leeway:              30 * time.Second,
			MaxTokenBytes:       8 << 10,
			TicketTTL:           30 * time.Second,
			MaxTokenLifetime:    24 * time.Hour,
			TicketsPerPrincipal: 20,
			Signing: Signing{
				Enabled:    true,
				Issuer:     "flowgate",
				KeyFile:    "signing.key",
				DefaultTTL: time.Hour,
				MaxTTL:     24 * time.Hour,
			},
		},
		Limits: Limits{
			MaxMessageBytes:       64 << 10,
			MaxObjectiveChars:     1000,
			MaxObjectiveBytes:     4000,
			MaxAgents:             20,
			DefaultAgents:         3,
			MaxTimeoutSeconds:     3600,
			DefaultTimeoutSeconds: 600,
			SendQueueMessages:     256,
			SendQueueBytes:        1 << 20,
			PingInterval:          25 * time.Second,
			PongTimeout:           60 * time.Second,
			WriteTimeout:          10 * time.Second,
			SwarmsPerMinute:       10,
			SwarmBurst:            10,
			UserConcurrentTasks:   5,
			TenantConcurrentTasks: 50,
			UserConnections:       10,
			IPConnections:         100,
			IPHandshakesPerSecond: 50,
			IPHandshakeBurst:      100,
			GlobalConnections:     20000,
			MessagesPerSecond:     20,
			MessageBurst:          40,
			ExecutorPool:          64,
			ExecutorQueue:         256,
			LimiterMaxEntries:     1000000,
		},
		Tasks: Tasks{
			OnDisconnect:      "detach",
			DetachGrace:       2 * time.Minute,
			Retention:         15 * time.Minute,
			MaxSubscriptions:  64,
			ListLimit:         50,
			MaxResultBytes:    64 << 10,
			MaxRetainedTasks:  10000,
			RetainedMemoryMax: 256 << 20,
			MaxTaskLogBytes:   64 << 20,
			MaxTaskLogEvents:  1000000,
			EventRetention:    7 * 24 * time.Hour,
		},
		Tenants: Tenants{SuspendCancelsTasks: true},
		Engine: Engine{
			Profile:         "claude-flow-v2",
			WorkdirRoot:     "tasks",
			KillGrace:       5 * time.Second,
			MaxLineBytes:    1 << 20,
			MaxOutputBytes:  32 << 20,
			Sandbox:         "auto",
			Landlock:        "auto",
			ConnectPorts:    []int{},
			Nice:            10,
			PermissionMode:  "acceptEdits",
			MaxRetries:      2,
			ProgressEvents:  true,
			Egress:          EngineEgress{Allow: []string{"api.anthropic.com:443"}},
			MemoryMax:       2 << 30,
			PidsMax:         512,
			WorkdirMaxBytes: 1 << 30,
		},
		Secrets: Secrets{
			Provider:           "aws",
			CacheTTL:           5 * time.Minute,
			MaxStale:           15 * time.Minute,
			CacheSize:          10000,
			FingerprintKeyFile: "fingerprint.key",
			Local:              LocalSecrets{MasterKeyFile: "master.key"},
			AWS: AWSSecrets{
				SecretIDTemplate:   "flowgate/tenants/{tenant}/anthropic-api-key",
				VersionStage:       "AWSCURRENT",
				RecoveryWindowDays: 7,
			},
		},
		Store: Store{Driver: "sqlite", Path: "flowgate.db", MaxOpenConns: 10},
		Audit: Audit{
			FailClosed:         true,
			AuthFailureBurst:   10,
			CheckpointInterval: time.Minute,
			CheckpointKeyFile:  "audit-checkpoint.key",
			Retention:          400 * 24 * time.Hour,
		},
		Shutdown: Shutdown{Grace: 30 * time.Second},
		Cluster: Cluster{
			HeartbeatInterval: 2 * time.Second,
			HeartbeatTTL:      10 * time.Second,
			StreamMaxLen:      100000,
			EventTTL:          time.Hour,
		},
		UI: UI{Enabled: true},
	}
}
