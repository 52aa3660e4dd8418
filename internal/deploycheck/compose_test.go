package deploycheck

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCompose(t *testing.T) {
	docs := yamlDocs(t, "deploy/compose/compose.yaml")
	c := docs[0]
	cfg := loadConfig(t, "deploy/compose/flowgate.yaml", nil)
	services := getMap(c, "services")
	for _, want := range []string{"flowgate", "postgres", "redis", "prometheus", "grafana", "alertmanager"} {
		if services[want] == nil {
			t.Errorf("no %s service", want)
		}
	}
	for name, svc := range services {
		if b, _ := getBool(svc, "read_only"); !b {
			t.Errorf("%s: root filesystem is not read-only", name)
		}
		if !slices.Contains(strs(getList(svc, "cap_drop")), "ALL") {
			t.Errorf("%s: does not drop all capabilities", name)
		}
		if !slices.Contains(strs(getList(svc, "security_opt")), "no-new-privileges:true") {
			t.Errorf("%s: no-new-privileges is not set", name)
		}
		if b, _ := getBool(svc, "privileged"); b {
			t.Errorf("%s: privileged", name)
		}
		if img := getString(svc, "image"); get(svc, "build") == nil && !pinned(img) {
			t.Errorf("%s: image %q is not pinned to an exact tag", name, img)
		}
		for k, v := range getMap(svc, "environment") {
			s, _ := v.(string)
			upper := strings.ToUpper(k)
			if (strings.Contains(upper, "PASSWORD") || strings.Contains(upper, "SECRET") || strings.Contains(upper, "TOKEN")) &&
				!strings.HasSuffix(upper, "_FILE") && !strings.HasPrefix(s, "/run/secrets/") {
				t.Errorf("%s: environment %s holds a secret value; use a secret file", name, k)
			}
		}
		for _, p := range strs(getList(svc, "ports")) {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s: port %s is published on every interface", name, p)
			}
		}
		if get(svc, "healthcheck") == nil && slices.Contains([]string{"flowgate", "postgres", "redis"}, name) {
			t.Errorf("%s: no healthcheck", name)
		}
	}
	for name, s := range getMap(c, "secrets") {
		if f := getString(s, "file"); !strings.HasPrefix(f, "./secrets/") {
			t.Errorf("secret %s is not a file under ./secrets (got %q)", name, f)
		}
	}

	gw := getMap(services, "flowgate")
	for _, p := range strs(getList(gw, "ports")) {
		if strings.HasSuffix(p, ":9090") {
			t.Error("the ops port is published")
		}
	}
	hc := strs(getList(gw, "healthcheck", "test"))
	if len(hc) < 3 || hc[0] != "CMD" || hc[1] != "/usr/local/bin/flowgate" || hc[2] != "healthcheck" {
		t.Errorf("flowgate healthcheck %v does not use flowgate healthcheck", hc)
	}
	checkInvocation(t, "compose healthcheck", hc[2:])
	checkInvocation(t, "compose command", strs(getList(gw, "command")))
	if grace, err := time.ParseDuration(getString(gw, "stop_grace_period")); err != nil || grace <= cfg.Shutdown.Grace {
		t.Errorf("stop_grace_period %q must exceed shutdown.grace %s", getString(gw, "stop_grace_period"), cfg.Shutdown.Grace)
	}
	if getString(gw, "user") != "10001:10001" {
		t.Errorf("flowgate runs as %q", getString(gw, "user"))
	}
	mounted := map[string]bool{}
	for _, s := range strs(getList(gw, "secrets")) {
		mounted["/run/secrets/"+s] = true
	}
	for key, file := range map[string]string{
		"auth.signing.key_file": cfg.Auth.Signing.KeyFile, "secrets.fingerprint_key_file": cfg.Secrets.FingerprintKeyFile,
		"audit.checkpoint_key_file": cfg.Audit.CheckpointKeyFile, "secrets.local.master_key_file": cfg.Secrets.Local.MasterKeyFile,
	} {
		if !mounted[file] {
			t.Errorf("%s %s is not a secret of the flowgate service", key, file)
		}
	}
	if cfg.Ops.Pprof {
		t.Error("ops.pprof is on")
	}
	if b, _ := getBool(c, "networks", "backend", "internal"); !b {
		t.Error("the backend network (databases) is not internal")
	}
	if nets := strs(getList(services["postgres"], "networks")); !slices.Equal(nets, []string{"backend"}) {
		t.Errorf("postgres is on %v", nets)
	}
}

func TestComposeCluster(t *testing.T) {
	c := yamlDocs(t, "deploy/compose/compose.cluster.yaml")[0]
	// secrets/redis.env sets the Redis URL (gen-secrets.sh).
	cfg := loadConfig(t, "deploy/compose/flowgate.yaml", map[string]string{"FLOWGATE_CLUSTER_REDIS_URL": "redis://default:x@redis:6379/0"})
	gw := getMap(c, "services", "flowgate")
	if n, _ := getInt(gw, "deploy", "replicas"); n < 2 {
		t.Errorf("replicas %d, want several (DESIGN §12)", n)
	}
	if ports := getList(gw, "ports"); len(ports) != 0 {
		t.Errorf("replicas publish ports %v", ports)
	}
	ng := getMap(c, "services", "nginx")
	if ng == nil {
		t.Fatal("no nginx service")
	}
	if !pinned(getString(ng, "image")) {
		t.Errorf("nginx image %q is not pinned", getString(ng, "image"))
	}
	if b, _ := getBool(ng, "read_only"); !b {
		t.Error("nginx root filesystem is not read-only")
	}
	ip := getString(ng, "networks", "frontend", "ipv4_address")
	if !slices.Contains(cfg.Server.TrustedProxies, ip) {
		t.Errorf("nginx address %s is not in server.trusted_proxies %v", ip, cfg.Server.TrustedProxies)
	}
	if cfg.Store.Driver != "postgres" {
		t.Error("replicas need store.driver: postgres")
	}
}
