package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/admin"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/secrets/awssm"
	"github.com/flowgate/flowgate/internal/secrets/local"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/tenant"
	"github.com/flowgate/flowgate/internal/validation"
)

// app is the state every command shares: the store, the audit recorder, tenant keys and
// token keys. serve adds the network-facing parts on top.
type app struct {
	cfg      config.Config
	log      *slog.Logger
	db       *store.DB
	recorder *audit.Recorder
	auditPub []ed25519.PublicKey
	keys     *secrets.Cache
	signer   *auth.Signer
	verifier *auth.Verifier
	tenants  *tenant.Directory
	// jwks fetches the key sets of issuers configured with a jwks_url; nil when there are
	// none. It makes no request until serve starts it (one-shot commands never do).
	jwks *auth.JWKS
}

type appOptions struct {
	// checkpoints runs periodic audit checkpoints (the server does; one-shot commands only
	// checkpoint when they close).
	checkpoints bool
	// retention prunes audit records older than this (audit.retention). Only the server's
	// recorder prunes: a one-shot command must never delete evidence as a side effect.
	retention time.Duration
	// auditHooks and onSecretFetch feed the server's metrics (zero for one-shot commands).
	auditHooks    audit.Hooks
	onSecretFetch func(outcome string, took time.Duration)
	// auditLinger lets a busy server's audit batches gather for a moment: each transaction
	// costs far more than each record, and every handshake writes one.
	auditLinger time.Duration
}

// openApp opens the store (applying migrations), loads every key file the configuration
// names (generating them with --dev) and builds the shared services.
func openApp(ctx context.Context, cfg config.Config, log *slog.Logger, opts appOptions) (_ *app, err error) {
	a := &app{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			a.close(context.WithoutCancel(ctx))
		}
	}()
	if cfg.Dev {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
	}

	a.db, err = store.Open(ctx, store.Config{
		Driver: cfg.Store.Driver, DSN: cfg.Store.DSN, Path: cfg.Path(cfg.Store.Path), MaxOpenConns: cfg.Store.MaxOpenConns,
	}, log)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}

	cpKeyPath := cfg.Path(cfg.Audit.CheckpointKeyFile)
	cpKey, err := audit.LoadSigningKey(cpKeyPath)
	if errors.Is(err, os.ErrNotExist) && cfg.Dev {
		cpKey, err = audit.GenerateKey(cpKeyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("audit.checkpoint_key_file: %w", err)
	}
	a.auditPub = []ed25519.PublicKey{cpKey.Public().(ed25519.PublicKey)}
	retired, err := previousCheckpointKeys(cfg)
	if err != nil {
		return nil, err
	}
	a.auditPub = append(a.auditPub, retired...)
	interval := cfg.Audit.CheckpointInterval
	if !opts.checkpoints {
		interval = -1
	}
	a.recorder, err = audit.NewRecorder(audit.Options{
		Storage: a.db, SigningKey: cpKey, FailOpen: !cfg.Audit.FailClosed,
		CheckpointInterval: interval, Retention: opts.retention, Logger: log, Hooks: opts.auditHooks, VerifyKeys: retired,
		Linger: opts.auditLinger,
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}

	fpPath := cfg.Path(cfg.Secrets.FingerprintKeyFile)
	var fpKey []byte
	if cfg.Dev {
		fpKey, _, err = secrets.LoadOrGenerateKeyFile(fpPath)
	} else {
		fpKey, err = secrets.LoadKeyFile(fpPath)
	}
	if err != nil {
		return nil, fmt.Errorf("secrets.fingerprint_key_file: %w", err)
	}
	var provider secrets.Provider
	switch cfg.Secrets.Provider {
	case "local":
		mkPath := cfg.Path(cfg.Secrets.Local.MasterKeyFile)
		var mk []byte
		if cfg.Dev {
			mk, _, err = local.LoadOrGenerateMasterKey(mkPath)
		} else {
			mk, err = local.LoadMasterKey(mkPath)
		}
		if err != nil {
			return nil, fmt.Errorf("secrets.local.master_key_file: %w", err)
		}
		provider, err = local.New(local.Options{MasterKey: mk, FingerprintKey: fpKey, Store: a.db, Logger: log})
	case "aws":
		rw := cfg.Secrets.AWS.RecoveryWindowDays
		provider, err = awssm.New(ctx, awssm.Options{
			Region: cfg.Secrets.AWS.Region, Endpoint: cfg.Secrets.AWS.Endpoint,
			SecretIDTemplate: cfg.Secrets.AWS.SecretIDTemplate, VersionStage: cfg.Secrets.AWS.VersionStage,
			RecoveryWindowDays: &rw, FingerprintKey: fpKey, Logger: log,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("secrets.%s: %w", cfg.Secrets.Provider, err)
	}
	a.keys, err = secrets.NewCache(secrets.CacheOptions{
		Provider: provider, TTL: cfg.Secrets.CacheTTL, MaxStale: cfg.Secrets.MaxStale, FingerprintKey: fpKey,
		MaxEntries: cfg.Secrets.CacheSize, Logger: log, OnFetch: opts.onSecretFetch,
	})
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}

	if err := a.openAuth(); err != nil {
		return nil, err
	}
	// Short: a suspension made by another process (CLI, replica) reaches live sessions
	// through the sweep within this TTL plus a second.
	a.tenants = tenant.NewDirectory(a.db, 10000, 2*time.Second)
	return a, nil
}

// openAuth loads the signing key and every configured issuer's keys.
func (a *app) openAuth() error {
	cfg := a.cfg
	var issuers []auth.IssuerConfig
	if s := cfg.Auth.Signing; s.Enabled {
		path := cfg.Path(s.KeyFile)
		var (
			key ed25519.PrivateKey
			err error
		)
		if cfg.Dev {
			key, _, err = auth.EnsureSigningKey(path)
		} else {
			key, err = auth.LoadSigningKey(path)
		}
		if err != nil {
			return fmt.Errorf("auth.signing.key_file: %w", err)
		}
		var prev []ed25519.PrivateKey
		for i, f := range s.PreviousKeyFiles {
			k, err := auth.LoadSigningKey(cfg.Path(f))
			if err != nil {
				return fmt.Errorf("auth.signing.previous_key_files[%d]: %w", i, err)
			}
			prev = append(prev, k)
		}
		a.signer, err = auth.NewSigner(auth.SignerOptions{
			Issuer: s.Issuer, Audience: cfg.Auth.Audience, Key: key, Previous: prev,
			TenantClaim: cfg.Auth.TenantClaim, DefaultTTL: s.DefaultTTL, MaxTTL: s.MaxTTL,
		})
		if err != nil {
			return fmt.Errorf("auth.signing: %w", err)
		}
		issuers = append(issuers, a.signer.IssuerConfig())
	}
	var dynamic []auth.IssuerConfig
	var sets []auth.JWKSIssuer
	for i, is := range cfg.Auth.Issuers {
		ic := auth.IssuerConfig{Issuer: is.Issuer, Audience: is.Audience, Algorithms: is.Algorithms,
			Permissions: is.Permissions, Tenants: is.Tenants}
		if ic.Audience == "" {
			ic.Audience = cfg.Auth.Audience
		}
		for j, k := range is.Keys {
			key, err := auth.LoadVerificationKey(cfg.Path(k.File), k.Alg)
			if err != nil {
				return fmt.Errorf("auth.issuers[%d].keys[%d]: %w", i, j, err)
			}
			ic.Keys = append(ic.Keys, auth.VerificationKey{KID: k.KID, Alg: k.Alg, Key: key})
		}
		if is.JWKSURL == "" {
			issuers = append(issuers, ic)
			continue
		}
		// Keys of a JWKS issuer are looked up by (issuer, kid) in its own set only; its static
		// keys, if any, are consulted first.
		dynamic = append(dynamic, ic)
		sets = append(sets, auth.JWKSIssuer{Issuer: is.Issuer, URL: is.JWKSURL, Algorithms: is.Algorithms, Refresh: is.JWKSRefresh})
	}
	opts := auth.VerifierOptions{
		Issuers: issuers, TenantClaim: cfg.Auth.TenantClaim, Leeway: cfg.Auth.Leeway, MaxTokenBytes: cfg.Auth.MaxTokenBytes,
		MaxLifetime: cfg.Auth.MaxTokenLifetime,
		OnDropped: func(issuer, tenant, sub string, dropped []string) {
			// The token still works with what its issuer may grant; an operator should know an
			// issuer asks for more (a misconfiguration, or an attempt).
			a.log.Warn("auth: permissions dropped from a token: its issuer may not grant them (auth.issuers[].permissions)",
				"issuer", issuer, "tenant", tenant, "sub", sub, "dropped", dropped)
		},
	}
	if len(sets) > 0 {
		jwks, err := auth.NewJWKS(auth.JWKSOptions{Issuers: sets, Logger: a.log.With("component", "jwks")})
		if err != nil {
			return fmt.Errorf("auth.issuers: %w", err)
		}
		a.jwks = jwks
		opts.Dynamic, opts.DynamicIssuers = jwks, dynamic
	}
	v, err := auth.NewVerifier(opts)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	a.verifier = v
	return nil
}

// adminService is the admin use-cases over this process's store, keys and audit log.
// notify (nil for the CLI) tells this process and its cluster of a change at once; sessions
// (nil for the CLI, which holds none) ends live sessions here or on any replica.
func (a *app) adminService(notify admin.Notifier, sessions admin.SessionEnder, log *slog.Logger) (*admin.Service, error) {
	opts := admin.Options{
		Audit: a.recorder, Keys: a.keys, Tenants: a.db, Revoker: a.db, AuditLog: a.recorder, Logger: log,
		Notify: notify, Sessions: sessions,
		Touch: func(ctx context.Context, id string) error { _, err := a.db.TouchTenant(ctx, id); return err },
	}
	if a.signer != nil { // a nil *auth.Signer must not become a non-nil Minter
		opts.Signer = a.signer
	}
	opts.TokenHorizon = tokenHorizon(a.cfg)
	return admin.New(opts)
}

// openCommand loads the configuration and opens the app for a one-shot admin command; the
// caller closes it.
func openCommand(ctx context.Context, cf configFlags, getenv func(string) string) (*app, error) {
	cfg, err := cf.load(getenv)
	if err != nil {
		return nil, err
	}
	return openApp(ctx, cfg, newLogger(cfg, io.Discard), appOptions{})
}

// cliActor is the actor of a change made with the command line.
func cliActor() admin.Actor { return admin.Actor{Sub: "cli:" + osUser(), Via: "cli"} }

func (a *app) record(ctx context.Context, r audit.Record) error {
	if r.Actor.Sub == "" {
		r.Actor.Sub = "cli:" + osUser()
	}
	return a.recorder.Record(ctx, r)
}

func osUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return fmt.Sprintf("uid-%d", os.Getuid())
}

func (a *app) close(ctx context.Context) {
	if a.keys != nil {
		a.keys.Close()
	}
	if a.recorder != nil {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := a.recorder.Close(ctx); err != nil {
			a.log.Error("audit close", "err", err)
		}
		cancel()
	}
	if a.db != nil {
		if err := a.db.Close(); err != nil {
			a.log.Error("store close", "err", err)
		}
	}
}

// previousCheckpointKeys loads the retired checkpoint keys that still verify old checkpoints.
func previousCheckpointKeys(cfg config.Config) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for i, f := range cfg.Audit.PreviousCheckpointKeyFiles {
		k, err := audit.LoadPublicKey(cfg.Path(f))
		if err != nil {
			return nil, fmt.Errorf("audit.previous_checkpoint_key_files[%d]: %w", i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// tokenHorizon is the longest a token accepted now can stay valid: what a revocation without
// the token's expiry must outlive. Without auth.max_token_lifetime an external issuer's
// tokens may live as long as they say, so the revocation is kept as long as any may be.
func tokenHorizon(cfg config.Config) time.Duration {
	h := cfg.Auth.MaxTokenLifetime
	if h <= 0 {
		h = validation.MaxRevokeAhead
	}
	return max(h, cfg.Auth.Signing.MaxTTL)
}
