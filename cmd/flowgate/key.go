package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/store"
)

const keyUsage = `usage: flowgate key set --tenant ID      (the key is read from stdin)
       flowgate key delete --tenant ID
each also takes --config FILE or --dev [--data-dir D]`

// runKey sets or deletes a tenant's engine key. The key is only ever read from stdin, never
// from an argument (arguments are visible to every user of the machine in /proc), and is
// never printed: the output names its fingerprint.
func runKey(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "set" && args[0] != "delete") {
		fmt.Fprintln(stderr, keyUsage)
		return usageError("key: want set or delete")
	}
	sub := args[0]
	fs := newFlagSet("key "+sub, stderr)
	var cf configFlags
	cf.register(fs)
	var id string
	fs.StringVar(&id, "tenant", "", "tenant id (required)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("key %s takes no arguments; the key is read from stdin", sub)
	}
	if id == "" {
		return usageError("key %s needs --tenant", sub)
	}
	if !store.ValidTenantID(id) {
		return usageError("--tenant %q is not a tenant id: it must match ^[a-z0-9][a-z0-9-]{1,62}$", id)
	}
	var value string
	if sub == "set" {
		// Read before opening anything, so a bad input changes nothing.
		v, err := readKey(stdin)
		if err != nil {
			return err
		}
		value = v
	}
	cfg, err := cf.load(getenv)
	if err != nil {
		return err
	}
	a, err := openApp(ctx, cfg, newLogger(cfg, io.Discard), appOptions{})
	if err != nil {
		return err
	}
	defer a.close(context.WithoutCancel(ctx))
	t, err := a.db.GetTenant(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("tenant %s does not exist", id)
	}
	if err != nil {
		return err
	}
	if sub == "set" {
		return keySet(ctx, a, t, value, stdout, stderr)
	}
	return keyDelete(ctx, a, t, stdout, stderr)
}

// readKey reads the key from r: one line, its line ending trimmed, at most
// secrets.MaxKeyBytes. Errors never quote the input.
func readKey(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, secrets.MaxKeyBytes+3))
	if err != nil {
		return "", fmt.Errorf("read the key from stdin: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return "", usageError("no key on stdin (pipe it in: flowgate key set --tenant ID < keyfile)")
	}
	if err := secrets.ValidateAPIKey(string(b)); err != nil {
		return "", usageError("the key on stdin is not accepted: %v", err)
	}
	return string(b), nil
}

func keySet(ctx context.Context, a *app, t store.Tenant, value string, stdout, stderr io.Writer) error {
	// The CLI holds the fingerprint key, so its record names the new key before it is stored.
	fpKey, err := secrets.LoadKeyFile(a.cfg.Path(a.cfg.Secrets.FingerprintKeyFile))
	if err != nil {
		return fmt.Errorf("secrets.fingerprint_key_file: %w", err)
	}
	fp := secrets.Fingerprint(fpKey, value)
	details := map[string]any{"fingerprint": fp, "via": "cli"}
	switch prev, err := a.keys.Describe(ctx, t.ID, t.KeyRef); {
	case err == nil:
		details["previousFingerprint"] = prev.Fingerprint
	case errors.Is(err, secrets.ErrNotFound):
		details["previousFingerprint"] = nil
	default:
		details["previousFingerprint"] = "unknown"
	}
	target := audit.Target{Type: "key", ID: t.ID}
	if err := a.record(ctx, audit.Record{Action: audit.ActionKeySet, Outcome: audit.OutcomeSuccess, Tenant: t.ID,
		Target: target, Details: details}); err != nil {
		return fmt.Errorf("audit: key not set: %w", err)
	}
	meta, err := a.keys.Set(ctx, t.ID, t.KeyRef, value)
	if err != nil {
		keyFailure(ctx, a, t.ID, audit.ActionKeySet, target, err)
		return fmt.Errorf("key not set: %w", err)
	}
	notifyServers(ctx, a, t.ID, stderr)
	_, err = fmt.Fprintf(stdout, "key set for tenant %s: fingerprint %s\n", t.ID, meta.Fingerprint)
	return err
}

func keyDelete(ctx context.Context, a *app, t store.Tenant, stdout, stderr io.Writer) error {
	meta, err := a.keys.Describe(ctx, t.ID, t.KeyRef)
	if errors.Is(err, secrets.ErrNotFound) {
		return fmt.Errorf("tenant %s has no key", t.ID)
	}
	if err != nil {
		return err
	}
	target := audit.Target{Type: "key", ID: t.ID}
	if err := a.record(ctx, audit.Record{Action: audit.ActionKeyDelete, Outcome: audit.OutcomeSuccess, Tenant: t.ID,
		Target: target, Details: map[string]any{"fingerprint": meta.Fingerprint, "via": "cli"}}); err != nil {
		return fmt.Errorf("audit: key not deleted: %w", err)
	}
	if err := a.keys.Delete(ctx, t.ID, t.KeyRef); err != nil {
		keyFailure(ctx, a, t.ID, audit.ActionKeyDelete, target, err)
		if errors.Is(err, secrets.ErrNotFound) {
			return fmt.Errorf("tenant %s has no key", t.ID)
		}
		return fmt.Errorf("key not deleted: %w", err)
	}
	notifyServers(ctx, a, t.ID, stderr)
	_, err = fmt.Fprintf(stdout, "key deleted for tenant %s (was %s)\n", t.ID, meta.Fingerprint)
	return err
}

// notifyServers moves the tenant's change marker so running servers drop their cached key
// within seconds. The key change itself is done; if this fails they only notice after
// secrets.cache_ttl, which is worth a warning, not a failure.
func notifyServers(ctx context.Context, a *app, tenant string, stderr io.Writer) {
	if _, err := a.db.TouchTenant(context.WithoutCancel(ctx), tenant); err != nil {
		fmt.Fprintf(stderr, "flowgate: warning: running servers were not notified (%s); they use the new key after secrets.cache_ttl (%s)\n",
			oneLine(err.Error()), a.cfg.Secrets.CacheTTL)
	}
}

func keyFailure(ctx context.Context, a *app, tenant, action string, target audit.Target, cause error) {
	reason := "secrets provider error"
	switch {
	case errors.Is(cause, secrets.ErrNotFound):
		reason = "not found"
	case errors.Is(cause, secrets.ErrInvalid):
		reason = "rejected by the secrets provider"
	case errors.Is(cause, secrets.ErrUnavailable):
		reason = "secrets provider unavailable"
	}
	if err := a.record(context.WithoutCancel(ctx), audit.Record{Action: action, Outcome: audit.OutcomeFailure, Reason: reason,
		Tenant: tenant, Target: target, Details: map[string]any{"via": "cli"}}); err != nil {
		a.log.Error("audit write failed", "action", action, "err", err)
	}
}
