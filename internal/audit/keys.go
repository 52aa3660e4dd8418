package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// maxKeyFileBytes bounds what a key loader reads.
const maxKeyFileBytes = 64 << 10

// checkpointDomain separates checkpoint signatures from any other use of the key.
const checkpointDomain = "flowgate-audit-checkpoint-v1\n"

// KeyID names a checkpoint public key: "ed25519:" and the first 16 hex digits of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// GenerateKey creates a new Ed25519 checkpoint key at path as a PKCS#8 PEM file with mode 0600
// (its directory 0700 if missing). It fails with an error wrapping fs.ErrExist if path exists:
// a checkpoint key is never silently replaced.
func GenerateKey(path string) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("audit: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("audit: encode key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: create key directory: %w", err)
	}
	// Written to a temporary file and linked into place, so a crash never leaves a half key
	// and an existing key is never overwritten.
	tmp, err := os.CreateTemp(dir, ".audit-key-*")
	if err != nil {
		return nil, fmt.Errorf("audit: create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("audit: create key file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("audit: write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("audit: write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("audit: write key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("audit: install key file: %w", err)
	}
	return priv, nil
}

// LoadSigningKey reads an Ed25519 private key (PKCS#8 PEM, "PRIVATE KEY") from path.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	// Whoever can read this key can sign checkpoints over a rewritten chain.
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("audit: key file %s is readable or writable by group or others (mode %04o); chmod 600 it", path, st.Mode().Perm())
	}
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("audit: key file %s: want a PRIVATE KEY PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit: key file %s: not a PKCS#8 key", path)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit: key file %s: not an Ed25519 key", path)
	}
	return priv, nil
}

// LoadPublicKey reads the checkpoint verification key from path: either the private key file
// (the public half is derived) or a public-key-only PEM ("PUBLIC KEY", PKIX) for offline
// verifiers.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	switch block.Type {
	case "PRIVATE KEY":
		priv, err := LoadSigningKey(path)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("audit: key file %s: not a PKIX public key", path)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("audit: key file %s: not an Ed25519 key", path)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("audit: key file %s: want a PRIVATE KEY or PUBLIC KEY PEM block", path)
}

// MarshalPublicKey returns pub as a "PUBLIC KEY" PEM block, for offline verifiers.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("audit: encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func readPEM(path string) (*pem.Block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: open key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("audit: read key file: %w", err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("audit: key file %s is too large", path)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("audit: key file %s holds no PEM block", path)
	}
	return block, nil
}

// signedMessage is what a checkpoint signature covers: a domain string and the canonical JSON
// of chain, hash, keyId, kind, seq and time. The kind is covered so that a checkpoint cannot be
// relabelled as an anchor (which would excuse deleting the records before it).
func signedMessage(cp Checkpoint) ([]byte, error) {
	msg := []byte(checkpointDomain)
	return AppendCanonical(msg, map[string]any{
		"chain": cp.Chain, "hash": cp.Hash, "keyId": cp.KeyID, "kind": cp.Kind,
		"seq": cp.Seq, "time": cp.Time.UTC().Format(timeLayout),
	})
}

func signCheckpoint(priv ed25519.PrivateKey, cp Checkpoint) (Checkpoint, error) {
	cp.Time = cp.Time.UTC().Truncate(time.Millisecond)
	cp.KeyID = KeyID(priv.Public().(ed25519.PublicKey))
	msg, err := signedMessage(cp)
	if err != nil {
		return Checkpoint{}, err
	}
	cp.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg))
	return cp, nil
}

var errBadSignature = errors.New("bad signature")

// checkSignature verifies cp against keys (by key id).
func checkSignature(keys map[string]ed25519.PublicKey, cp Checkpoint) error {
	msg, err := signedMessage(cp)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadSignature, err)
	}
	return verifySignature(keys, cp.KeyID, cp.Signature, msg)
}

// verifySignature checks a base64 Ed25519 signature of msg by the key keyID names.
func verifySignature(keys map[string]ed25519.PublicKey, keyID, signature string, msg []byte) error {
	pub, ok := keys[keyID]
	if !ok {
		return fmt.Errorf("%w: unknown key id", errBadSignature)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: malformed signature", errBadSignature)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return errBadSignature
	}
	return nil
}
