package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/flowgate/flowgate/internal/admin"
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
	a, err := openCommand(ctx, cf, getenv)
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
	svc, err := a.adminService(nil, nil, cliLogger(stderr))
	if err != nil {
		return err
	}
	meta, _, err := svc.SetKey(ctx, cliActor(), t.ID, t.KeyRef, value)
	if errors.Is(err, admin.ErrNotRecorded) {
		return fmt.Errorf("audit: key not set: %w", err)
	}
	if err != nil {
		return fmt.Errorf("key not set: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "key set for tenant %s: fingerprint %s\n", t.ID, meta.Fingerprint)
	return err
}

func keyDelete(ctx context.Context, a *app, t store.Tenant, stdout, stderr io.Writer) error {
	svc, err := a.adminService(nil, nil, cliLogger(stderr))
	if err != nil {
		return err
	}
	meta, err := svc.DeleteKey(ctx, cliActor(), t.ID, t.KeyRef)
	switch {
	case errors.Is(err, secrets.ErrNotFound):
		return fmt.Errorf("tenant %s has no key", t.ID)
	case errors.Is(err, admin.ErrNotRecorded):
		return fmt.Errorf("audit: key not deleted: %w", err)
	case err != nil:
		return fmt.Errorf("key not deleted: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "key deleted for tenant %s (was %s)\n", t.ID, meta.Fingerprint)
	return err
}

// cliLogger reports what a command could not finish but did not fail on (a running server
// not notified) as a warning on stderr.
func cliLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
