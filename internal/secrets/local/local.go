package local

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/store"
)

// ErrDecrypt marks a stored key that cannot be decrypted: the master key changed, the
// ciphertext was altered, or it belongs to another tenant. It is always joined with
// secrets.ErrUnavailable.
var ErrDecrypt = errors.New("stored tenant key cannot be decrypted")

// Store keeps sealed tenant keys; *store.DB implements it. A missing record is
// store.ErrNotFound; PutSecret assigns the version and times.
type Store interface {
	GetSecret(ctx context.Context, tenant string) (store.SecretRecord, error)
	PutSecret(ctx context.Context, rec store.SecretRecord) (store.SecretRecord, error)
	DeleteSecret(ctx context.Context, tenant string) error
}

var _ Store = (*store.DB)(nil)

// MasterKeyBytes is the AES-256 key size.
const MasterKeyBytes = secrets.KeyFileBytes

// aadPrefix versions and scopes the additional data; the tenant id follows it, so a
// ciphertext copied to another tenant's row fails authentication.
const aadPrefix = "flowgate tenant api key v1\x00"

// Options configures New.
type Options struct {
	// MasterKey is the 32-byte AES-256 key (LoadMasterKey).
	MasterKey []byte
	// FingerprintKey is the HMAC key of secrets.Fingerprint.
	FingerprintKey []byte
	Store          Store
	Logger         *slog.Logger
}

// Provider implements secrets.Provider with AES-256-GCM. keyRef is ignored: a local key is
// addressed by its tenant only.
type Provider struct {
	aead  cipher.AEAD
	fpKey []byte
	store Store
	log   *slog.Logger
}

var _ secrets.Provider = (*Provider)(nil)

// New returns a local provider.
func New(opts Options) (*Provider, error) {
	if len(opts.MasterKey) != MasterKeyBytes {
		return nil, fmt.Errorf("local secrets: master key must be %d bytes", MasterKeyBytes)
	}
	if len(opts.FingerprintKey) == 0 {
		return nil, errors.New("local secrets: fingerprint key is required")
	}
	if opts.Store == nil {
		return nil, errors.New("local secrets: store is required")
	}
	block, err := aes.NewCipher(opts.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("local secrets: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("local secrets: %w", err)
	}
	p := &Provider{aead: aead, fpKey: append([]byte(nil), opts.FingerprintKey...), store: opts.Store, log: opts.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

// LoadMasterKey reads the master key file (see secrets.LoadKeyFile for formats and the
// permission check).
func LoadMasterKey(path string) ([]byte, error) {
	return secrets.LoadKeyFile(path)
}

// GenerateMasterKey writes a new random master key to path with mode 0600. It refuses to
// overwrite an existing file (the error wraps fs.ErrExist): replacing the master key makes
// every stored tenant key undecryptable.
func GenerateMasterKey(path string) error {
	key, err := secrets.GenerateKeyFile(path)
	clear(key)
	return err
}

// LoadOrGenerateMasterKey loads path, generating it first when absent (the --dev path).
// created reports whether a new key was written.
func LoadOrGenerateMasterKey(path string) (key []byte, created bool, err error) {
	return secrets.LoadOrGenerateKeyFile(path)
}

func aad(tenant string) []byte { return []byte(aadPrefix + tenant) }

// Get returns the tenant's decrypted key and its version.
func (p *Provider) Get(ctx context.Context, tenant, _ string) (string, string, error) {
	rec, err := p.load(ctx, tenant)
	if err != nil {
		return "", "", err
	}
	value, err := p.open(rec)
	if err != nil {
		return "", "", err
	}
	return value, strconv.FormatInt(rec.Version, 10), nil
}

func (p *Provider) load(ctx context.Context, tenant string) (store.SecretRecord, error) {
	if err := secrets.ValidateTenant(tenant); err != nil {
		return store.SecretRecord{}, err
	}
	rec, err := p.store.GetSecret(ctx, tenant)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.SecretRecord{}, fmt.Errorf("%w: tenant %s", secrets.ErrNotFound, tenant)
	case err != nil:
		return store.SecretRecord{}, fmt.Errorf("%w: tenant %s: store: %w", secrets.ErrUnavailable, tenant, err)
	case rec.Tenant != tenant:
		return store.SecretRecord{}, fmt.Errorf("%w: tenant %s: store returned another tenant's record", secrets.ErrUnavailable, tenant)
	}
	return rec, nil
}

func (p *Provider) open(rec store.SecretRecord) (string, error) {
	if len(rec.Nonce) != p.aead.NonceSize() || len(rec.Ciphertext) < p.aead.Overhead() ||
		len(rec.Ciphertext) > secrets.MaxKeyBytes+p.aead.Overhead() {
		return "", fmt.Errorf("%w: tenant %s: %w: malformed record", secrets.ErrUnavailable, rec.Tenant, ErrDecrypt)
	}
	plain, err := p.aead.Open(nil, rec.Nonce, rec.Ciphertext, aad(rec.Tenant))
	if err != nil {
		p.log.Error("tenant key decryption failed", "tenant", rec.Tenant, "version", rec.Version)
		return "", fmt.Errorf("%w: tenant %s: %w: authentication failed", secrets.ErrUnavailable, rec.Tenant, ErrDecrypt)
	}
	value := string(plain)
	clear(plain)
	return value, nil
}

// Put encrypts and stores value as the tenant's key, replacing any previous one.
func (p *Provider) Put(ctx context.Context, tenant, _ string, value string) (secrets.Metadata, error) {
	if err := secrets.ValidateTenant(tenant); err != nil {
		return secrets.Metadata{}, err
	}
	if err := secrets.ValidateAPIKey(value); err != nil {
		return secrets.Metadata{}, err
	}
	rec := store.SecretRecord{Tenant: tenant}
	rec.Nonce = make([]byte, p.aead.NonceSize())
	if _, err := rand.Read(rec.Nonce); err != nil {
		return secrets.Metadata{}, fmt.Errorf("%w: tenant %s: %w", secrets.ErrUnavailable, tenant, err)
	}
	rec.Ciphertext = p.aead.Seal(nil, rec.Nonce, []byte(value), aad(tenant))
	rec.Fingerprint = secrets.Fingerprint(p.fpKey, value)
	saved, err := p.store.PutSecret(ctx, rec)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return secrets.Metadata{}, fmt.Errorf("%w: tenant %s does not exist", secrets.ErrInvalid, tenant)
	case errors.Is(err, store.ErrInvalid):
		return secrets.Metadata{}, fmt.Errorf("%w: tenant %s: store: %w", secrets.ErrInvalid, tenant, err)
	case err != nil:
		return secrets.Metadata{}, fmt.Errorf("%w: tenant %s: store: %w", secrets.ErrUnavailable, tenant, err)
	}
	p.log.Info("tenant key stored", "tenant", tenant, "fingerprint", rec.Fingerprint, "version", saved.Version)
	return p.metadata(saved, rec.Fingerprint), nil
}

// Delete removes the tenant's key.
func (p *Provider) Delete(ctx context.Context, tenant, _ string) error {
	if err := secrets.ValidateTenant(tenant); err != nil {
		return err
	}
	err := p.store.DeleteSecret(ctx, tenant)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: tenant %s", secrets.ErrNotFound, tenant)
	case err != nil:
		return fmt.Errorf("%w: tenant %s: store: %w", secrets.ErrUnavailable, tenant, err)
	}
	p.log.Info("tenant key deleted", "tenant", tenant)
	return nil
}

// Describe returns the key's metadata. The fingerprint is recomputed from the decrypted key,
// so it reflects the current fingerprint key and proves the record still decrypts.
func (p *Provider) Describe(ctx context.Context, tenant, _ string) (secrets.Metadata, error) {
	rec, err := p.load(ctx, tenant)
	if err != nil {
		return secrets.Metadata{}, err
	}
	value, err := p.open(rec)
	if err != nil {
		return secrets.Metadata{}, err
	}
	return p.metadata(rec, secrets.Fingerprint(p.fpKey, value)), nil
}

func (p *Provider) metadata(rec store.SecretRecord, fp string) secrets.Metadata {
	return secrets.Metadata{
		Tenant:      rec.Tenant,
		Fingerprint: fp,
		Version:     strconv.FormatInt(rec.Version, 10),
		UpdatedAt:   rec.UpdatedAt,
		Provider:    secrets.ProviderLocal,
	}
}
