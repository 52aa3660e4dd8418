package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckpointKeyRotation rotates the audit checkpoint key between two runs of a gateway on
// one data dir: verification needs the retired key listed in
// audit.previous_checkpoint_key_files, and passes with it.
func TestCheckpointKeyRotation(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, gwOptions{dataDir: dir})
	runSwarm(t, g.dial(t, g.UserToken), "before the rotation", nil)
	g.stop() // Close signs a final checkpoint with the first key

	keyPath := filepath.Join(dir, "audit-checkpoint.key")
	retired := filepath.Join(dir, "audit-checkpoint.old.key")
	if err := os.Rename(keyPath, retired); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FLOWGATE_AUDIT_PREVIOUS_CHECKPOINT_KEY_FILES": retired}
	h := startGateway(t, gwOptions{dataDir: dir, env: env}) // --dev generates the new key
	runSwarm(t, h.dial(t, h.UserToken), "after the rotation", nil)
	h.stop()

	verify := func(extra ...string) (string, error) {
		cmd := exec.Command(binary, "audit", "verify", "--dev", "--data-dir", dir)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, extra...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := verify("FLOWGATE_AUDIT_PREVIOUS_CHECKPOINT_KEY_FILES=" + retired); err != nil {
		t.Fatalf("verify with the retired key listed: %v\n%s", err, out)
	}
	out, err := verify()
	if err == nil || !strings.Contains(out, "checkpoint") {
		t.Fatalf("verify without the retired key = %v\n%s\nwant a failure naming the checkpoint", err, out)
	}
}
