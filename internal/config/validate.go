package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowgate/flowgate/internal/egress"
	"github.com/flowgate/flowgate/internal/tenant"
)

// Validate checks every key and returns all problems, each naming its key. Insecure
// settings are refused here unless Dev is set (DESIGN §2).
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...)))
	}
	positive := func(key string, n int64) {
		if n <= 0 {
			bad(key, "must be greater than 0")
		}
	}
	durPositive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be a positive duration")
		}
	}
	addr := func(key, a string, required bool) {
		if a == "" {
			if required {
				bad(key, "is required")
			}
			return
		}
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			bad(key, "must be host:port (e.g. :8080 or 127.0.0.1:8080)")
		}
	}

	if c.DataDir == "" {
		bad("data_dir", "is required")
	}
	addr("server.addr", c.Server.Addr, true)
	addr("ops.addr", c.Ops.Addr, false)
	if c.Ops.Addr != "" && c.Ops.Addr == c.Server.Addr && !strings.HasSuffix(c.Ops.Addr, ":0") {
		bad("ops.addr", "must differ from server.addr (metrics and pprof must not be public)")
	}
	durPositive("server.read_header_timeout", c.Server.ReadHeaderTimeout)
	durPositive("server.idle_timeout", c.Server.IdleTimeout)
	positive("server.max_header_bytes", int64(c.Server.MaxHeaderBytes))
	positive("server.max_body_bytes", c.Server.MaxBodyBytes)
	for i, o := range c.Server.AllowedOrigins {
		key := fmt.Sprintf("server.allowed_origins[%d]", i)
		if o == "*" {
			if !c.Dev {
				bad(key, "wildcard origin is insecure; list exact scheme://host[:port] origins")
			}
			continue
		}
		if err := checkOrigin(o); err != nil {
			bad(key, "%v", err)
		}
	}
	for i, p := range c.Server.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			bad(fmt.Sprintf("server.trusted_proxies[%d]", i), "must be an IP or CIDR")
		}
	}

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error")
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "must be json or text")
	}

	c.validateAuth(bad)

	l := c.Limits
	for key, n := range map[string]int{
		"limits.max_message_bytes": l.MaxMessageBytes, "limits.max_objective_chars": l.MaxObjectiveChars,
		"limits.max_objective_bytes": l.MaxObjectiveBytes, "limits.max_agents": l.MaxAgents,
		"limits.default_agents": l.DefaultAgents, "limits.max_timeout_seconds": l.MaxTimeoutSeconds,
		"limits.default_timeout_seconds": l.DefaultTimeoutSeconds, "limits.send_queue_messages": l.SendQueueMessages,
		"limits.send_queue_bytes": l.SendQueueBytes, "limits.swarms_per_minute": l.SwarmsPerMinute,
		"limits.swarm_burst": l.SwarmBurst, "limits.user_concurrent_tasks": l.UserConcurrentTasks,
		"limits.tenant_concurrent_tasks": l.TenantConcurrentTasks, "limits.user_connections": l.UserConnections,
		"limits.ip_connections": l.IPConnections, "limits.ip_handshakes_per_second": l.IPHandshakesPerSecond,
		"limits.ip_handshake_burst": l.IPHandshakeBurst, "limits.global_connections": l.GlobalConnections,
		"limits.messages_per_second": l.MessagesPerSecond, "limits.message_burst": l.MessageBurst,
		"limits.executor_pool": l.ExecutorPool, "limits.limiter_max_entries": l.LimiterMaxEntries,
	} {
		positive(key, int64(n))
	}
	if l.ExecutorQueue < 0 {
		bad("limits.executor_queue", "must not be negative")
	}
	if l.MaxMessageBytes > 16<<20 {
		bad("limits.max_message_bytes", "must be at most 16 MiB")
	}
	if l.DefaultAgents > l.MaxAgents {
		bad("limits.default_agents", "must not exceed limits.max_agents")
	}
	if l.DefaultTimeoutSeconds > l.MaxTimeoutSeconds {
		bad("limits.default_timeout_seconds", "must not exceed limits.max_timeout_seconds")
	}
	if l.MaxObjectiveBytes < l.MaxObjectiveChars {
		bad("limits.max_objective_bytes", "must be at least limits.max_objective_chars")
	}
	durPositive("limits.ping_interval", l.PingInterval)
	durPositive("limits.write_timeout", l.WriteTimeout)
	// Pings go out at the hub's once-a-second sweep, so two pings can be ping_interval plus a
	// second apart: a client answering every one must not time out in between.
	if l.PongTimeout <= l.PingInterval+time.Second {
		bad("limits.pong_timeout", "must be longer than limits.ping_interval plus 1s (pings go out at a once-a-second sweep)")
	}

	switch c.Tasks.OnDisconnect {
	case "detach", "cancel":
	default:
		bad("tasks.on_disconnect", "must be detach or cancel")
	}
	if c.Tasks.DetachGrace < 0 {
		bad("tasks.detach_grace", "must not be negative")
	}
	durPositive("tasks.retention", c.Tasks.Retention)
	positive("tasks.max_subscriptions", int64(c.Tasks.MaxSubscriptions))
	positive("tasks.list_limit", int64(c.Tasks.ListLimit))
	positive("tasks.max_result_bytes", int64(c.Tasks.MaxResultBytes))
	positive("tasks.max_retained_tasks", int64(c.Tasks.MaxRetainedTasks))
	if c.Tasks.RetainedMemoryMax == invalidSize || c.Tasks.RetainedMemoryMax < 0 {
		bad("tasks.retained_memory_max", "must be a size like 256MiB, or 0 for no bound")
	}
	positive("tasks.max_task_log_bytes", c.Tasks.MaxTaskLogBytes)
	positive("tasks.max_task_log_events", int64(c.Tasks.MaxTaskLogEvents))
	durPositive("tasks.event_retention", c.Tasks.EventRetention)

	switch c.Engine.Profile {
	case "sim", "claude-flow-v2", "claude-code", "custom":
	default:
		bad("engine.profile", "must be sim, claude-flow-v2, claude-code or custom")
	}
	if c.Engine.Command != "" && !filepath.IsAbs(c.Engine.Command) {
		bad("engine.command", "must be an absolute path")
	}
	if c.Engine.Profile == "custom" && len(c.Engine.Args) == 0 {
		bad("engine.args", "is required for the custom profile")
	}
	if c.Engine.Profile != "custom" && len(c.Engine.Args) > 0 {
		bad("engine.args", "is only used by the custom profile")
	}
	for i, name := range c.Engine.Env {
		if name == "" || strings.ContainsAny(name, "= \t\n") {
			bad(fmt.Sprintf("engine.env[%d]", i), "must be a variable name")
		}
	}
	durPositive("engine.kill_grace", c.Engine.KillGrace)
	positive("engine.max_line_bytes", int64(c.Engine.MaxLineBytes))
	positive("engine.max_output_bytes", c.Engine.MaxOutputBytes)
	switch c.Engine.Sandbox {
	case "auto", "pidns", "pgroup":
	default:
		bad("engine.sandbox", "must be auto, pidns or pgroup")
	}
	c.validateConfinement(bad)
	c.validateRealEngines(bad)

	switch c.Secrets.Provider {
	case "local":
		if c.Secrets.Local.MasterKeyFile == "" {
			bad("secrets.local.master_key_file", "is required for the local provider")
		}
	case "aws":
		if c.Secrets.AWS.SecretIDTemplate == "" || !strings.Contains(c.Secrets.AWS.SecretIDTemplate, "{tenant}") {
			bad("secrets.aws.secret_id_template", "must contain {tenant}")
		}
		if c.Secrets.AWS.Endpoint != "" {
			if u, err := url.Parse(c.Secrets.AWS.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				bad("secrets.aws.endpoint", "must be an http(s) URL")
			}
		}
		if c.Secrets.AWS.RecoveryWindowDays != 0 && (c.Secrets.AWS.RecoveryWindowDays < 7 || c.Secrets.AWS.RecoveryWindowDays > 30) {
			bad("secrets.aws.recovery_window_days", "must be 0 (force delete) or 7-30")
		}
	default:
		bad("secrets.provider", "must be local or aws")
	}
	durPositive("secrets.cache_ttl", c.Secrets.CacheTTL)
	if c.Secrets.MaxStale < c.Secrets.CacheTTL {
		bad("secrets.max_stale", "must be at least secrets.cache_ttl")
	}
	positive("secrets.cache_size", int64(c.Secrets.CacheSize))
	if c.Secrets.FingerprintKeyFile == "" {
		bad("secrets.fingerprint_key_file", "is required")
	}

	switch c.Store.Driver {
	case "sqlite":
		if c.Store.Path == "" {
			bad("store.path", "is required for sqlite")
		}
	case "postgres":
		if c.Store.DSN == "" {
			bad("store.dsn", "is required for postgres")
		}
	default:
		bad("store.driver", "must be sqlite or postgres")
	}
	positive("store.max_open_conns", int64(c.Store.MaxOpenConns))

	durPositive("audit.checkpoint_interval", c.Audit.CheckpointInterval)
	if c.Audit.CheckpointKeyFile == "" {
		bad("audit.checkpoint_key_file", "is required")
	}
	if c.Audit.Retention < 24*time.Hour {
		bad("audit.retention", "must be at least 24h")
	}
	durPositive("shutdown.grace", c.Shutdown.Grace)

	if c.Cluster.RedisURL != "" {
		if c.Store.Driver != "postgres" {
			bad("cluster.redis_url", "cluster mode needs store.driver: postgres (replicas share state)")
		}
		if u, err := url.Parse(c.Cluster.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			bad("cluster.redis_url", "must be a redis:// or rediss:// URL")
		}
		durPositive("cluster.heartbeat_interval", c.Cluster.HeartbeatInterval)
		if c.Cluster.HeartbeatTTL <= c.Cluster.HeartbeatInterval {
			bad("cluster.heartbeat_ttl", "must be longer than cluster.heartbeat_interval")
		}
		positive("cluster.stream_max_len", c.Cluster.StreamMaxLen)
		durPositive("cluster.event_ttl", c.Cluster.EventTTL)
	}
	return errors.Join(errs...)
}

// Bounds of the engine confinement keys.
const (
	maxEnginePaths = 64
	maxEnginePorts = 64
)

func (c *Config) validateConfinement(bad func(key, format string, args ...any)) {
	e := c.Engine
	switch e.Landlock {
	case "auto", "required", "off":
	default:
		bad("engine.landlock", "must be auto, required or off")
	}
	for key, paths := range map[string][]string{"engine.read_paths": e.ReadPaths, "engine.write_paths": e.WritePaths} {
		if len(paths) > maxEnginePaths {
			bad(key, "at most %d paths", maxEnginePaths)
			continue
		}
		for i, p := range paths {
			if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
				bad(fmt.Sprintf("%s[%d]", key, i), "must be an absolute path")
			}
		}
	}
	if len(e.ConnectPorts) > maxEnginePorts {
		bad("engine.connect_ports", "at most %d ports", maxEnginePorts)
	}
	for i, p := range e.ConnectPorts {
		if p < 1 || p > 65535 {
			bad(fmt.Sprintf("engine.connect_ports[%d]", i), "must be a TCP port (1-65535)")
		}
	}
	if e.Nice < 0 || e.Nice > 19 {
		bad("engine.nice", "must be 0 (the gateway's own) to 19")
	}
	if e.MaxStarting < 0 || e.MaxStarting > 10000 {
		bad("engine.max_starting", "must be 0 (no limit) to 10000")
	}
	if e.RunAs != "" {
		u, g, ok := strings.Cut(e.RunAs, ":")
		uid, err1 := strconv.ParseUint(u, 10, 31)
		gid, err2 := strconv.ParseUint(g, 10, 31)
		switch {
		case !ok || err1 != nil || err2 != nil:
			bad("engine.run_as", "must be numeric UID:GID (e.g. 65534:65534)")
		case uid == 0 || gid == 0:
			bad("engine.run_as", "must not be root (uid or gid 0): engines would own the gateway's files")
		}
	}
}

func (c *Config) validateAuth(bad func(key, format string, args ...any)) {
	a := c.Auth
	if a.Audience == "" {
		bad("auth.audience", "is required")
	}
	if a.TenantClaim == "" {
		bad("auth.tenant_claim", "is required")
	}
	if a.Leeway < 0 || a.Leeway > time.Minute {
		bad("auth.leeway", "must be between 0s and 60s")
	}
	if a.MaxTokenBytes <= 0 || a.MaxTokenBytes > 8<<10 {
		bad("auth.max_token_bytes", "must be between 1 and 8192")
	}
	if a.TicketTTL <= 0 || a.TicketTTL > 5*time.Minute {
		bad("auth.ticket_ttl", "must be between 1s and 5m")
	}
	if a.Signing.Enabled {
		if a.Signing.Issuer == "" {
			bad("auth.signing.issuer", "is required when signing is enabled")
		}
		if a.Signing.KeyFile == "" {
			bad("auth.signing.key_file", "is required when signing is enabled (generate one with openssl genpkey -algorithm ed25519)")
		}
		if a.Signing.DefaultTTL <= 0 || a.Signing.DefaultTTL > a.Signing.MaxTTL {
			bad("auth.signing.default_ttl", "must be positive and at most auth.signing.max_ttl")
		}
		if a.Signing.MaxTTL <= 0 || a.Signing.MaxTTL > 30*24*time.Hour {
			bad("auth.signing.max_ttl", "must be between 1s and 720h")
		}
	}
	if c.Audit.AuthFailureBurst < 1 || c.Audit.AuthFailureBurst > 100000 {
		bad("audit.auth_failure_burst", "must be 1 to 100000")
	}
	if a.TicketsPerPrincipal < 1 || a.TicketsPerPrincipal > 10000 {
		bad("auth.tickets_per_principal", "must be 1 to 10000")
	}
	if a.MaxTokenLifetime < 0 {
		bad("auth.max_token_lifetime", "must not be negative (0: no bound)")
	}
	if !a.Signing.Enabled && len(a.Issuers) == 0 {
		bad("auth.issuers", "no verification key: enable auth.signing or configure at least one issuer")
	}
	seen := map[string]bool{}
	for i, is := range a.Issuers {
		key := fmt.Sprintf("auth.issuers[%d]", i)
		if is.Issuer == "" {
			bad(key+".issuer", "is required")
		}
		if seen[is.Issuer] || (a.Signing.Enabled && is.Issuer == a.Signing.Issuer) {
			bad(key+".issuer", "is configured twice")
		}
		seen[is.Issuer] = true
		if len(is.Keys) == 0 && is.JWKSURL == "" {
			bad(key, "needs keys or jwks_url")
		}
		for j, p := range is.Permissions {
			if !slices.Contains([]string{"swarm:execute", "task:admin", "tenant:admin", "audit:read", "platform:admin"}, p) {
				bad(fmt.Sprintf("%s.permissions[%d]", key, j), "must be swarm:execute, task:admin, tenant:admin, audit:read or platform:admin")
			}
		}
		for j, tn := range is.Tenants {
			if tn != "*" && !tenant.ValidID(tn) {
				bad(fmt.Sprintf("%s.tenants[%d]", key, j), "must be a tenant id or \"*\"")
			}
		}
		if is.JWKSURL != "" {
			u, err := url.Parse(is.JWKSURL)
			if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
				bad(key+".jwks_url", "must be an https URL (http only for loopback)")
			}
			if is.JWKSRefresh < 0 {
				bad(key+".jwks_refresh", "must not be negative")
			}
		}
		for j, alg := range is.Algorithms {
			if !knownAlg(alg) {
				bad(fmt.Sprintf("%s.algorithms[%d]", key, j), "must be one of HS256, RS256, ES256, EdDSA")
			}
		}
		for j, k := range is.Keys {
			kkey := fmt.Sprintf("%s.keys[%d]", key, j)
			if k.KID == "" {
				bad(kkey+".kid", "is required")
			}
			if !knownAlg(k.Alg) {
				bad(kkey+".alg", "must be one of HS256, RS256, ES256, EdDSA")
			}
			if k.File == "" {
				bad(kkey+".file", "is required")
			}
		}
	}
}

func knownAlg(a string) bool {
	switch a {
	case "HS256", "RS256", "ES256", "EdDSA":
		return true
	}
	return false
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("must be an exact origin scheme://host[:port] with no path")
	}
	if strings.ToLower(o) != o {
		return errors.New("must be lower case")
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// maxEngineRetries bounds engine.max_retries: every retry holds an executor slot.
const maxEngineRetries = 10

func (c *Config) validateRealEngines(bad func(key, format string, args ...any)) {
	e := c.Engine
	switch e.PermissionMode {
	case "default", "acceptEdits", "bypassPermissions", "plan":
	default:
		bad("engine.permission_mode", "must be default, acceptEdits, bypassPermissions or plan")
	}
	if e.MaxRetries < 0 || e.MaxRetries > maxEngineRetries {
		bad("engine.max_retries", "must be 0 to %d", maxEngineRetries)
	}
	if e.ClaudeCommand != "" && (!filepath.IsAbs(e.ClaudeCommand) || strings.ContainsRune(e.ClaudeCommand, 0)) {
		bad("engine.claude_command", "must be an absolute path")
	}
	if e.AnthropicBaseURL != "" {
		if err := checkBaseURL(e.AnthropicBaseURL); err != "" {
			bad("engine.anthropic_base_url", "%s", err)
		}
	}
	switch {
	case e.MemoryMax == invalidSize:
		bad("engine.memory_max", "must be a size like 512MiB or 2GiB, or 0 for no limit")
	case e.MemoryMax != 0 && e.MemoryMax < 16<<20:
		bad("engine.memory_max", "must be 0 (no limit) or at least 16MiB")
	}
	if e.PidsMax < 0 || e.PidsMax > 1<<22 {
		bad("engine.pids_max", "must be 0 (no limit) to %d", 1<<22)
	}
	switch {
	case e.WorkdirMaxBytes == invalidSize:
		bad("engine.workdir_max_bytes", "must be a size like 512MiB or 2GiB, or 0 for no limit")
	case e.WorkdirMaxBytes != 0 && e.WorkdirMaxBytes < 1<<20:
		bad("engine.workdir_max_bytes", "must be 0 (no limit) or at least 1MiB")
	}
	if _, err := egress.ParsePolicy("engine.egress.allow", e.Egress.Allow); err != nil {
		// The error names the entry (engine.egress.allow[i]).
		key, msg, _ := strings.Cut(err.Error(), ": ")
		bad(key, "%s", msg)
	}
}

// checkBaseURL accepts an absolute http(s) URL with a host and nothing a proxy or an engine
// could misread: no credentials, query or fragment.
func checkBaseURL(raw string) string {
	if len(raw) > 2048 {
		return "longer than 2048 bytes"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an http:// or https:// URL"
	case u.Hostname() == "":
		return "must name a host"
	case u.User != nil:
		return "must not carry credentials"
	case u.RawQuery != "" || u.Fragment != "":
		return "must not have a query or fragment"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "has an invalid port"
		}
	}
	return ""
}
