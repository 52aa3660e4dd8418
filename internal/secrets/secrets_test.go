package secrets_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/internal/secrets"
)

func TestFingerprint(t *testing.T) {
	fp := secrets.Fingerprint([]byte("k1"), key1)
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+12 {
		t.Fatalf("fingerprint %q", fp)
	}
	if _, err := hex.DecodeString(fp[len("sha256:"):]); err != nil {
		t.Fatalf("fingerprint is not hex: %q", fp)
	}
	if fp != secrets.Fingerprint([]byte("k1"), key1) {
		t.Fatal("fingerprint not deterministic")
	}
	if fp == secrets.Fingerprint([]byte("k2"), key1) || fp == secrets.Fingerprint([]byte("k1"), key2) {
		t.Fatal("fingerprint ignores its key or input")
	}
	// Known answer: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
	if got := secrets.Fingerprint([]byte("key"), "The quick brown fox jumps over the lazy dog"); got != "sha256:f7bc83f43053" {
		t.Fatalf("known answer = %q", got)
	}
}

func TestValidateAPIKey(t *testing.T) {
	tests := []struct {
		v  string
		ok bool
	}{
		{key1, true},
		{strings.Repeat("a", secrets.MaxKeyBytes), true},
		{"", false},
		{strings.Repeat("a", secrets.MaxKeyBytes+1), false},
		{"a b", false},
		{"a\tb", false},
		{"ab\n", false},
		{"a\x00b", false},
		{"a\x7fb", false},
		{"a\u00a0b", false}, // no-break space
		{"a\u200bb", false}, // zero-width space (format)
		{"a\u202eb", false}, // bidi override
		{"\xff", false},
	}
	for _, tc := range tests {
		err := secrets.ValidateAPIKey(tc.v)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateAPIKey(%q) = %v; ok want %v", tc.v[:min(len(tc.v), 12)], err, tc.ok)
		}
		if err != nil && (!errors.Is(err, secrets.ErrInvalid) || (tc.v != "" && strings.Contains(err.Error(), tc.v))) {
			t.Errorf("ValidateAPIKey error %v: not ErrInvalid or quotes the value", err)
		}
	}
}

func TestValidateTenant(t *testing.T) {
	for _, ok := range []string{"acme", "a1", "tenant-b", strings.Repeat("a", 63)} {
		if err := secrets.ValidateTenant(ok); err != nil {
			t.Errorf("ValidateTenant(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a", "-a", "Acme", "a/b", "a..b", "a b", strings.Repeat("a", 64), "a\x00"} {
		if err := secrets.ValidateTenant(bad); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("ValidateTenant(%q) = %v; want ErrInvalid", bad, err)
		}
	}
}

func writeFile(t *testing.T, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadKeyFileFormats(t *testing.T) {
	key := bytes.Repeat([]byte{0xA5, 0x5A, 0x00, 0xFF}, 8)
	tests := []struct {
		name string
		data []byte
	}{
		{"raw", key},
		{"hex", []byte(hex.EncodeToString(key))},
		{"hex with newline", []byte(hex.EncodeToString(key) + "\n")},
		{"base64", []byte(base64.StdEncoding.EncodeToString(key) + "\n")},
		{"base64 raw url", []byte(base64.RawURLEncoding.EncodeToString(key))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := secrets.LoadKeyFile(writeFile(t, tc.data, 0o600))
			if err != nil || !bytes.Equal(got, key) {
				t.Fatalf("LoadKeyFile = %x, %v", got, err)
			}
		})
	}
	bad := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short", key[:31]},
		{"hex of 16 bytes", []byte(hex.EncodeToString(key[:16]))},
		{"32 printable characters", []byte("0123456789abcdefghijklmnopqrstuv")},
		{"not hex", []byte(strings.Repeat("zz", 32))},
		{"passphrase", []byte("correct horse battery staple sk-ant-canary-in-key-file\n")},
		{"huge", bytes.Repeat([]byte("a"), 5000)},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.data, 0o600)
			_, err := secrets.LoadKeyFile(path)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), path) || (len(tc.data) > 0 && strings.Contains(err.Error(), strings.TrimSpace(string(tc.data)))) ||
				strings.Contains(err.Error(), "canary") {
				t.Fatalf("error %q: must name the file and not quote its content", err)
			}
		})
	}
}

func TestLoadKeyFilePermissions(t *testing.T) {
	key := []byte(hex.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o666, 0o700 | 0o004} {
		path := writeFile(t, key, mode)
		_, err := secrets.LoadKeyFile(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v; want a refusal naming the file", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		if _, err := secrets.LoadKeyFile(writeFile(t, key, mode)); err != nil {
			t.Errorf("mode %04o refused: %v", mode, err)
		}
	}
	if _, err := secrets.LoadKeyFile(t.TempDir()); err == nil {
		t.Error("a directory was accepted")
	}
	missing := filepath.Join(t.TempDir(), "absent")
	if _, err := secrets.LoadKeyFile(missing); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
}

func TestGenerateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fp.key")
	k, err := secrets.GenerateKeyFile(path)
	if err != nil || len(k) != secrets.KeyFileBytes {
		t.Fatalf("GenerateKeyFile = %d bytes, %v", len(k), err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	back, err := secrets.LoadKeyFile(path)
	if err != nil || !bytes.Equal(back, k) {
		t.Fatalf("reload = %v", err)
	}
	if _, err := secrets.GenerateKeyFile(path); !errors.Is(err, os.ErrExist) {
		t.Fatalf("overwrite = %v; want ErrExist", err)
	}
}
