package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// MinHMACKeyBytes is the shortest HS256 secret accepted: the hash's own output size.
const MinHMACKeyBytes = 32

const maxKeyFileBytes = 64 << 10

// Algorithm names as they appear in a JWT "alg" header.
const (
	AlgHS256 = "HS256"
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"
)

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxKeyFileBytes)
	}
	return data, nil
}

// LoadVerificationKey reads the key for alg from path: the raw secret for HS256 (one trailing
// newline is ignored; at least 32 bytes), a PEM public key (or certificate) for the others.
// The key's type must match alg exactly, so one key never serves two algorithm families.
func LoadVerificationKey(path, alg string) (any, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	if alg == AlgHS256 {
		// A shared secret signs as well as verifies: anyone who can read it mints tokens.
		if err := checkPrivateFile(path); err != nil {
			return nil, err
		}
		secret := []byte(strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r"))
		if len(secret) < MinHMACKeyBytes {
			return nil, fmt.Errorf("HS256 secret in %s is %d bytes; at least %d are required", path, len(secret), MinHMACKeyBytes)
		}
		return secret, nil
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	var pub any
	switch block.Type {
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		pub = cert.PublicKey
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a public key", path, block.Type)
	}
	if err := checkKeyAlg(pub, alg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

func checkKeyAlg(pub any, alg string) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if alg != AlgRS256 {
			return fmt.Errorf("an RSA key can only be used with RS256, not %s", alg)
		}
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too short (2048 at least)", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if alg != AlgES256 || k.Curve != elliptic.P256() {
			return fmt.Errorf("an ECDSA key must be P-256 and used with ES256")
		}
	case ed25519.PublicKey:
		if alg != AlgEdDSA {
			return fmt.Errorf("an Ed25519 key can only be used with EdDSA, not %s", alg)
		}
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
	return nil
}

// LoadSigningKey reads an Ed25519 private key (PKCS#8 PEM, as written by
// `openssl genpkey -algorithm ed25519`). The file must not be readable by group or others.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	if err := checkPrivateFile(path); err != nil {
		return nil, err
	}
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s holds no PKCS#8 PRIVATE KEY PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: signing key must be Ed25519, got %T", path, k)
	}
	return priv, nil
}

// checkPrivateFile refuses key files other users could read.
func checkPrivateFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is readable by group or others (mode %04o); chmod 600 it", path, st.Mode().Perm())
	}
	return nil
}

// EnsureSigningKey loads the Ed25519 key at path, generating it (mode 0600, parent 0700)
// when the file does not exist. It reports whether it created the key.
func EnsureSigningKey(path string) (ed25519.PrivateKey, bool, error) {
	priv, err := LoadSigningKey(path)
	if err == nil {
		return priv, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	_, priv, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, false, err
	}
	if err := f.Close(); err != nil {
		return nil, false, err
	}
	return priv, true, nil
}

// KeyID is the RFC 7638 JWK thumbprint of an Ed25519 public key: stable, derived from the
// key itself, so replicas sharing a key agree on its kid without configuration.
func KeyID(pub ed25519.PublicKey) string {
	x := base64.RawURLEncoding.EncodeToString(pub)
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
