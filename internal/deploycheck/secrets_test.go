package deploycheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/secrets/local"
)

// gen-secrets.sh produces key files flowgate accepts, and is idempotent.
func TestComposeGenSecrets(t *testing.T) {
	tool(t, "openssl")
	dir := t.TempDir()
	script := filepath.Join(dir, "gen-secrets.sh")
	if err := os.WriteFile(script, readFile(t, "deploy/compose/gen-secrets.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		out, err := exec.Command("sh", script).CombinedOutput()
		if err != nil {
			t.Fatalf("gen-secrets.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	run()
	s := filepath.Join(dir, "secrets")
	if os.Geteuid() == 0 {
		// The files now belong to the containers' users; read them back as root.
		for _, f := range []string{"signing.key", "audit-checkpoint.key", "fingerprint.key", "master.key"} {
			st, err := os.Stat(filepath.Join(s, f))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s mode %o", f, st.Mode().Perm())
			}
		}
	}
	if _, err := auth.LoadSigningKey(filepath.Join(s, "signing.key")); err != nil {
		t.Errorf("signing.key: %v", err)
	}
	if _, err := audit.LoadSigningKey(filepath.Join(s, "audit-checkpoint.key")); err != nil {
		t.Errorf("audit-checkpoint.key: %v", err)
	}
	if _, err := secrets.LoadKeyFile(filepath.Join(s, "fingerprint.key")); err != nil {
		t.Errorf("fingerprint.key: %v", err)
	}
	if _, err := local.LoadMasterKey(filepath.Join(s, "master.key")); err != nil {
		t.Errorf("master.key: %v", err)
	}
	pw := strings.TrimSpace(string(mustRead(t, filepath.Join(s, "postgres-password"))))
	if pgpass := string(mustRead(t, filepath.Join(s, "pgpass"))); pgpass != "postgres:5432:flowgate:flowgate:"+pw+"\n" {
		t.Errorf("pgpass does not match postgres-password")
	}
	redisEnv := string(mustRead(t, filepath.Join(s, "redis.env")))
	if !strings.HasPrefix(redisEnv, "FLOWGATE_CLUSTER_REDIS_URL=redis://default:") {
		t.Errorf("redis.env = %q", redisEnv)
	}
	if acl := string(mustRead(t, filepath.Join(s, "redis-users.acl"))); !strings.HasPrefix(acl, "user default on #") || strings.Contains(acl, strings.TrimSpace(string(mustRead(t, filepath.Join(s, "redis-password"))))) {
		t.Errorf("redis ACL must hold the password's hash only: %q", acl)
	}
	before := string(mustRead(t, filepath.Join(s, "signing.key")))
	if out := run(); strings.Contains(out, "generated") {
		t.Errorf("second run generated again:\n%s", out)
	}
	if string(mustRead(t, filepath.Join(s, "signing.key"))) != before {
		t.Error("second run replaced a key")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
