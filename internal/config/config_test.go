package config_test

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/configs"
	"github.com/flowgate/flowgate/internal/config"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestExampleFileIsTheDefaults(t *testing.T) {
	got, err := config.Load(configs.Example, env(nil), false)
	if err != nil {
		t.Fatalf("configs/flowgate.yaml does not load: %v", err)
	}
	want := config.Default()
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Fatalf("configs/flowgate.yaml differs from config.Default():\n got %+v\nwant %+v", got, want)
	}
}

// normalize treats nil and empty lists alike: the file writes [] for an empty list.
func normalize(c config.Config) config.Config {
	fix := func(s *[]string) {
		if len(*s) == 0 {
			*s = nil
		}
	}
	fix(&c.Server.AllowedOrigins)
	fix(&c.Server.TrustedProxies)
	fix(&c.Auth.Signing.PreviousKeyFiles)
	fix(&c.Engine.Args)
	fix(&c.Engine.Env)
	fix(&c.Audit.PreviousCheckpointKeyFiles)
	fix(&c.Engine.ReadPaths)
	fix(&c.Engine.WritePaths)
	if len(c.Auth.Issuers) == 0 {
		c.Auth.Issuers = nil
	}
	return c
}

func TestExampleFileDocumentsEveryKey(t *testing.T) {
	doc := string(configs.Example)
	for _, key := range config.Keys() {
		leaf := key[strings.LastIndex(key, ".")+1:]
		if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(leaf) + `:`).MatchString(doc) {
			t.Errorf("configs/flowgate.yaml does not mention %s", key)
		}
	}
}

func TestEnvNamesAreUnique(t *testing.T) {
	seen := map[string]string{}
	for _, key := range config.Keys() {
		name := config.EnvName(key)
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share %s", key, other, name)
		}
		seen[name] = key
	}
}

func TestDevFileLoads(t *testing.T) {
	cfg, err := config.Load(configs.Dev, env(nil), true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Engine.Profile != "sim" || cfg.Secrets.Provider != "local" || cfg.Server.Addr != "127.0.0.1:8080" {
		t.Fatalf("dev config = %+v", cfg)
	}
	if !cfg.QueryTokensAllowed() {
		t.Fatal("--dev must allow query tokens (seed clients)")
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := config.Load(configs.Dev, env(map[string]string{
		"FLOWGATE_SERVER_ADDR":              "127.0.0.1:0",
		"FLOWGATE_OPS_ADDR":                 "127.0.0.1:1",
		"FLOWGATE_ENGINE_PROFILE":           "claude-code",
		"FLOWGATE_ENGINE_COMMAND":           "/usr/bin/true",
		"FLOWGATE_LIMITS_SWARMS_PER_MINUTE": "99",
		"FLOWGATE_TASKS_DETACH_GRACE":       "3s",
		"FLOWGATE_SERVER_ALLOWED_ORIGINS":   "https://a.example, https://b.example",
		"FLOWGATE_AUTH_ALLOW_QUERY_TOKEN":   "false",
		"FLOWGATE_AUDIT_FAIL_CLOSED":        "false",
		"FLOWGATE_ENGINE_CONNECT_PORTS":     "443, 8443",
		"FLOWGATE_ENGINE_RUN_AS":            "65534:65534",
		"FLOWGATE_ENGINE_LANDLOCK":          "required",
	}), true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Addr != "127.0.0.1:0" || cfg.Ops.Addr != "127.0.0.1:1" || cfg.Engine.Profile != "claude-code" ||
		cfg.Engine.Command != "/usr/bin/true" || cfg.Limits.SwarmsPerMinute != 99 || cfg.Tasks.DetachGrace != 3*time.Second ||
		!reflect.DeepEqual(cfg.Server.AllowedOrigins, []string{"https://a.example", "https://b.example"}) ||
		cfg.QueryTokensAllowed() || cfg.Audit.FailClosed || !reflect.DeepEqual(cfg.Engine.ConnectPorts, []int{443, 8443}) ||
		cfg.Engine.RunAs != "65534:65534" || cfg.Engine.Landlock != "required" {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		dev  bool
		want string
	}{
		{"unknown key", "server:\n  adress: x\n", nil, false, "adress"},
		{"unknown section", "bogus: 1\n", nil, false, "bogus"},
		{"bad duration env", "", map[string]string{"FLOWGATE_LIMITS_PING_INTERVAL": "soon"}, false, "limits.ping_interval"},
		{"bad int env", "", map[string]string{"FLOWGATE_LIMITS_MAX_AGENTS": "many"}, false, "limits.max_agents"},
		{"bad addr", "server:\n  addr: nope\n", nil, false, "server.addr"},
		{"ops equals server", "server:\n  addr: 127.0.0.1:9\nops:\n  addr: 127.0.0.1:9\n", nil, false, "ops.addr"},
		{"wildcard origin", "server:\n  allowed_origins: ['*']\n", nil, false, "server.allowed_origins[0]"},
		{"origin with path", "server:\n  allowed_origins: ['https://a.example/x']\n", nil, false, "server.allowed_origins[0]"},
		{"no verification key", "auth:\n  signing:\n    enabled: false\n", nil, false, "auth.issuers"},
		{"leeway too long", "auth:\n  leeway: 2m\n", nil, false, "auth.leeway"},
		{"relative engine command", "engine:\n  command: claude\n", nil, false, "engine.command"},
		{"custom without args", "engine:\n  profile: custom\n", nil, false, "engine.args"},
		{"unknown profile", "engine:\n  profile: npx\n", nil, false, "engine.profile"},
		{"cluster without postgres", "cluster:\n  redis_url: redis://127.0.0.1:6379\n", nil, false, "cluster.redis_url"},
		{"issuer without keys", "auth:\n  issuers:\n    - issuer: https://a.example/\n", nil, false, "auth.issuers[0]"},
		{"issuer bad alg", "auth:\n  issuers:\n    - issuer: a\n      keys: [{kid: k, alg: none, file: f}]\n", nil, false, "auth.issuers[0].keys[0].alg"},
		{"jwks over http", "auth:\n  issuers:\n    - issuer: a\n      jwks_url: http://auth.example/jwks\n", nil, false, "auth.issuers[0].jwks_url"},
		{"bad store driver", "store:\n  driver: mysql\n", nil, false, "store.driver"},
		{"bad landlock", "engine:\n  landlock: maybe\n", nil, false, "engine.landlock"},
		{"relative read path", "engine:\n  read_paths: [opt]\n", nil, false, "engine.read_paths[0]"},
		{"relative write path", "engine:\n  write_paths: [/ok, tmp]\n", nil, false, "engine.write_paths[1]"},
		{"bad port", "engine:\n  connect_ports: [443, 70000]\n", nil, false, "engine.connect_ports[1]"},
		{"bad port env", "", map[string]string{"FLOWGATE_ENGINE_CONNECT_PORTS": "443,https"}, false, "engine.connect_ports"},
		{"run_as root", "engine:\n  run_as: \"0:0\"\n", nil, false, "engine.run_as"},
		{"run_as root group", "engine:\n  run_as: \"65534:0\"\n", nil, false, "engine.run_as"},
		{"run_as name", "engine:\n  run_as: nobody\n", nil, false, "engine.run_as"},
		{"issuer permission unknown", "auth:\n  issuers:\n    - issuer: a\n      keys: [{kid: k, alg: HS256, file: f}]\n      permissions: [swarm:execute, root]\n", nil, false, "auth.issuers[0].permissions[1]"},
		{"issuer tenant invalid", "auth:\n  issuers:\n    - issuer: a\n      keys: [{kid: k, alg: HS256, file: f}]\n      tenants: [Acme]\n", nil, false, "auth.issuers[0].tenants[0]"},
		{"negative max token lifetime", "auth:\n  max_token_lifetime: -1h\n", nil, false, "auth.max_token_lifetime"},
		// Pings go out at a once-a-second sweep: the timeout must cover the interval plus it.
		{"pong timeout within a sweep of the ping interval", "limits:\n  ping_interval: 10s\n  pong_timeout: 11s\n", nil, false, "limits.pong_timeout"},
		{"unknown permission mode", "engine:\n  permission_mode: yolo\n", nil, false, "engine.permission_mode"},
		{"relative claude_command", "engine:\n  claude_command: bin/claude\n", nil, false, "engine.claude_command"},
		{"base URL not http", "engine:\n  anthropic_base_url: ftp://gw.example/\n", nil, false, "engine.anthropic_base_url"},
		{"base URL with credentials", "engine:\n  anthropic_base_url: https://u:p@gw.example/\n", nil, false, "engine.anthropic_base_url"},
		{"base URL env", "", map[string]string{"FLOWGATE_ENGINE_ANTHROPIC_BASE_URL": "gw.example:443"}, false, "engine.anthropic_base_url"},
		{"too many retries", "engine:\n  max_retries: 11\n", nil, false, "engine.max_retries"},
		{"egress entry not host:port", "engine:\n  egress:\n    allow: [api.anthropic.com]\n", nil, false, "engine.egress.allow[0]"},
		{"egress port out of range", "engine:\n  egress:\n    allow: [api.anthropic.com:443, gw.example:70000]\n", nil, false, "engine.egress.allow[1]"},
		{"egress env", "", map[string]string{"FLOWGATE_ENGINE_EGRESS_ALLOW": "a.example:443,b.example"}, false, "engine.egress.allow[1]"},
		{"memory size does not parse", "engine:\n  memory_max: lots\n", nil, false, "engine.memory_max"},
		{"memory size env", "", map[string]string{"FLOWGATE_ENGINE_MEMORY_MAX": "2 gigs"}, false, "engine.memory_max"},
		{"memory too small", "engine:\n  memory_max: 1MiB\n", nil, false, "engine.memory_max"},
		{"negative pids", "engine:\n  pids_max: -1\n", nil, false, "engine.pids_max"},
		{"disk size does not parse", "engine:\n  workdir_max_bytes: 1.5GiB\n", nil, false, "engine.workdir_max_bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load([]byte(tt.yaml), env(tt.env), tt.dev)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error = %v; want one naming %q", err, tt.want)
			}
		})
	}
}

func TestWildcardOriginAllowedInDev(t *testing.T) {
	if _, err := config.Load([]byte("server:\n  allowed_origins: ['*']\n"), env(nil), true); err != nil {
		t.Fatal(err)
	}
}

func TestPathResolvesAgainstDataDir(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = "/var/lib/flowgate"
	if got := cfg.Path("signing.key"); got != "/var/lib/flowgate/signing.key" {
		t.Fatal(got)
	}
	if got := cfg.Path("/etc/k"); got != "/etc/k" {
		t.Fatal(got)
	}
}

func TestProtectedPaths(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = "/var/lib/flowgate"
	cfg.Audit.CheckpointKeyFile = "/etc/flowgate/checkpoint.key"
	got := cfg.ProtectedPaths(env(map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks/token", "PGPASSFILE": "relative"}))
	for _, want := range []string{"/var/lib/flowgate", "/var/lib/flowgate/signing.key", "/var/lib/flowgate/flowgate.db",
		"/var/lib/flowgate/master.key", "/var/lib/flowgate/fingerprint.key", "/etc/flowgate/checkpoint.key", "/var/run/secrets/eks/token"} {
		if !slices.Contains(got, want) {
			t.Errorf("%s not protected: %q", want, got)
		}
	}
	if slices.Contains(got, "relative") {
		t.Errorf("relative variable value taken: %q", got)
	}
}

func TestRedactedMasksCredentials(t *testing.T) {
	cfg := config.Default()
	cfg.Store.DSN = "postgres://app:hunter2@db:5432/x?sslmode=require"
	cfg.Cluster.RedisURL = "redis://:s3cret@redis:6379/0"
	r := cfg.Redacted()
	for _, s := range []string{r.Store.DSN, r.Cluster.RedisURL} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "s3cret") {
			t.Fatalf("not masked: %s", s)
		}
	}
	if cfg.Store.DSN == r.Store.DSN {
		t.Fatal("Redacted changed nothing")
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:1": true, "localhost:1": true,
		":8080": false, "0.0.0.0:1": false, "10.0.0.1:1": false, "nope": false,
	} {
		if got := config.IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "64k": 64 << 10, "512MiB": 512 << 20, "2GiB": 2 << 30, "1G": 1 << 30, "3 TB": 3 << 40} {
		if got, err := config.ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1", "1.5G", "1PiB", "99999999999999999999", "9999999999T"} {
		if _, err := config.ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) succeeded", in)
		}
	}
}
