package secrets

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flowgate/flowgate/internal/tenant"
)

// Sentinel errors. Callers map ErrNotFound and ErrUnavailable to the wire code
// tenant_key_unavailable; ErrInvalid is a rejected input (bad key value, tenant id or keyRef).
// No error produced by this package or its providers contains key material.
var (
	ErrNotFound    = errors.New("tenant key not found")
	ErrUnavailable = errors.New("tenant key provider unavailable")
	ErrInvalid     = errors.New("invalid tenant key request")
)

// MaxKeyBytes bounds a stored API key; it ends up as an environment variable value.
const MaxKeyBytes = 4096

// Provider names reported in Metadata.Provider.
const (
	ProviderLocal = "local"
	ProviderAWS   = "aws"
)

// Metadata is everything about a tenant key that an administrator may see. It never holds
// the key itself.
type Metadata struct {
	Tenant      string    `json:"tenant"`
	Fingerprint string    `json:"fingerprint"`
	Version     string    `json:"version"`
	UpdatedAt   time.Time `json:"updatedAt"`
	Provider    string    `json:"provider"`
	SecretID    string    `json:"secretId,omitempty"`
}

// Provider stores and fetches tenant API keys. keyRef is the tenant's optional secret id
// override ("" means the provider's default location for the tenant); providers without a
// notion of secret ids ignore it. Errors wrap ErrNotFound, ErrUnavailable or ErrInvalid.
type Provider interface {
	Get(ctx context.Context, tenant, keyRef string) (value, version string, err error)
	Put(ctx context.Context, tenant, keyRef, value string) (Metadata, error)
	Delete(ctx context.Context, tenant, keyRef string) error
	Describe(ctx context.Context, tenant, keyRef string) (Metadata, error)
}

// Fingerprint identifies a key without revealing it: "sha256:" followed by the first 12 hex
// characters of HMAC-SHA256(fpKey, key). The HMAC key keeps short or guessable keys from being
// confirmed by hashing candidates.
func Fingerprint(fpKey []byte, key string) string {
	m := hmac.New(sha256.New, fpKey)
	m.Write([]byte(key))
	return "sha256:" + hex.EncodeToString(m.Sum(nil))[:12]
}

// ValidateTenant reports whether id is a well-formed tenant id.
func ValidateTenant(id string) error {
	// Providers substitute the id into storage keys and secret names, so it is checked
	// again here rather than trusted.
	if !tenant.ValidID(id) {
		return fmt.Errorf("%w: malformed tenant id", ErrInvalid)
	}
	return nil
}

// ValidateAPIKey checks a key value before it is stored. The key becomes an environment
// variable of the engine process, so it must be non-empty, at most MaxKeyBytes, valid UTF-8
// and free of whitespace, control and format (invisible) characters. The error never quotes
// the value.
func ValidateAPIKey(value string) error {
	if value == "" {
		return fmt.Errorf("%w: api key is empty", ErrInvalid)
	}
	if len(value) > MaxKeyBytes {
		return fmt.Errorf("%w: api key longer than %d bytes", ErrInvalid, MaxKeyBytes)
	}
	if !utf8.ValidString(value) {
		return fmt.Errorf("%w: api key is not valid utf-8", ErrInvalid)
	}
	for i, r := range value {
		if unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("%w: api key contains whitespace or a control character at byte %d", ErrInvalid, i)
		}
	}
	return nil
}
