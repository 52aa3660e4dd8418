package audit

import (
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "audit.pem")
	priv, err := GenerateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v)", st.Mode(), err)
	}
	if _, err := GenerateKey(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second GenerateKey: %v, want ErrExist", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	loaded, err := LoadSigningKey(path)
	if err != nil || !loaded.Equal(priv) {
		t.Fatalf("load: %v", err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	if got, err := LoadPublicKey(path); err != nil || !got.Equal(pub) {
		t.Fatalf("public from private file: %v", err)
	}
	pemPub, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubPath := filepath.Join(dir, "audit.pub")
	if err := os.WriteFile(pubPath, pemPub, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadPublicKey(pubPath); err != nil || !got.Equal(pub) {
		t.Fatalf("public key file: %v", err)
	}
	if _, err := LoadSigningKey(pubPath); err == nil {
		t.Fatal("a public key loaded as a signing key")
	}
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("not a key"), 0o600)
	if _, err := LoadPublicKey(junk); err == nil {
		t.Fatal("junk accepted")
	}
	if _, err := LoadSigningKey(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestCheckpointSignature(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	pub := priv.Public().(ed25519.PublicKey)
	keys := map[string]ed25519.PublicKey{KeyID(pub): pub}
	cp, err := signCheckpoint(priv, Checkpoint{Chain: "acme", Kind: KindCheckpoint, Seq: 7, Hash: GenesisHash, Time: time.UnixMilli(5)})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkSignature(keys, cp); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(c *Checkpoint){
		"chain": func(c *Checkpoint) { c.Chain = "" },
		"kind":  func(c *Checkpoint) { c.Kind = KindAnchor },
		"seq":   func(c *Checkpoint) { c.Seq++ },
		"hash":  func(c *Checkpoint) { c.Hash = "1" + c.Hash[1:] },
		"time":  func(c *Checkpoint) { c.Time = c.Time.Add(time.Millisecond) },
		"key":   func(c *Checkpoint) { c.KeyID = "ed25519:0000000000000000" },
		"sig":   func(c *Checkpoint) { c.Signature = "AAAA" },
	} {
		c := cp
		mutate(&c)
		if err := checkSignature(keys, c); !errors.Is(err, errBadSignature) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
}
