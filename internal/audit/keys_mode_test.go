package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadSigningKeyRefusesLooseModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoint.key")
	if _, err := GenerateKey(path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigningKey(path); err != nil {
		t.Fatalf("a 0600 key: %v", err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadSigningKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("mode %04o: %v; want a refusal", mode, err)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigningKey(path); err != nil {
		t.Fatalf("a 0400 key: %v", err)
	}
}
