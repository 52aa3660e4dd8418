package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/store"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

const tokenUsage = "usage: flowgate token issue --tenant T --sub S --perm P [--perm P2 ...] [--ttl 1h] [--json] | token revoke --jti J [--tenant T] [--expires-at RFC3339]"

func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "revoke" {
		return runTokenRevoke(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "issue" {
		return usageError(tokenUsage)
	}
	fs := newFlagSet("token issue", stderr)
	var cf configFlags
	cf.register(fs)
	var (
		tenant, sub string
		perms       stringList
		ttl         time.Duration
	)
	fs.StringVar(&tenant, "tenant", "", "tenant id (required)")
	fs.StringVar(&sub, "sub", "", "subject, the user id (required)")
	fs.Var(&perms, "perm", "permission to grant; repeat for several (swarm:execute, task:admin, tenant:admin, audit:read, platform:admin)")
	fs.DurationVar(&ttl, "ttl", time.Hour, "token lifetime")
	asJSON := fs.Bool("json", false, `print {"token", "jti", "expiresAt"} instead of the token alone`)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if tenant == "" || sub == "" || len(perms) == 0 {
		return usageError("token issue needs --tenant, --sub and at least one --perm")
	}
	var expanded []string
	for _, p := range perms {
		for _, q := range strings.Split(p, ",") {
			if q = strings.TrimSpace(q); q != "" {
				expanded = append(expanded, q)
			}
		}
	}
	a, err := openCommand(ctx, cf, getenv)
	if err != nil {
		return err
	}
	defer a.close(context.WithoutCancel(ctx))
	svc, err := a.adminService(nil, cliLogger(stderr))
	if err != nil {
		return err
	}
	iss, err := svc.IssueToken(ctx, cliActor(), auth.IssueRequest{Tenant: tenant, Subject: sub, Permissions: expanded, TTL: ttl})
	switch {
	case errors.Is(err, admin.ErrNoSigner):
		return fmt.Errorf("auth.signing is disabled: this gateway does not issue tokens")
	case errors.Is(err, store.ErrNotFound):
		// A token for a tenant that does not exist would be refused at every use; say so now.
		return fmt.Errorf("tenant %s does not exist (flowgate tenant create --id %s)", tenant, tenant)
	case errors.Is(err, admin.ErrTenantSuspended):
		return fmt.Errorf("tenant %s is suspended: its tokens would be refused (flowgate tenant resume --id %s)", tenant, tenant)
	case errors.Is(err, admin.ErrNotRecorded):
		return fmt.Errorf("audit: token not issued: %w", err)
	case err != nil:
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]string{
			"token": iss.Token, "jti": iss.JTI, "expiresAt": iss.ExpiresAt.UTC().Format(time.RFC3339)})
	}
	_, err = fmt.Fprintln(stdout, iss.Token)
	return err
}

// runTokenRevoke revokes a token by jti: in one tenant (--tenant) or, without it, in every
// tenant (a platform revocation). Running servers pick it up from the store within seconds
// and close the sessions using it.
func runTokenRevoke(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token revoke", stderr)
	var cf configFlags
	cf.register(fs)
	jti := fs.String("jti", "", "the token's jti (required)")
	tenant := fs.String("tenant", "", "the token's tenant; empty: revoke it in every tenant")
	expires := fs.String("expires-at", "", "the token's exp (RFC 3339); the revocation is kept until then, at least auth.signing.max_ttl from now")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *jti == "" || fs.NArg() > 0 {
		return usageError(tokenUsage)
	}
	if len(*jti) > 128 || strings.ContainsFunc(*jti, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return usageError("token revoke: --jti is not a token id")
	}
	cfg, err := cf.load(getenv)
	if err != nil {
		return err
	}
	keep := time.Now().Add(cfg.Auth.Signing.MaxTTL)
	var expiresAt time.Time
	if *expires != "" {
		t, err := time.Parse(time.RFC3339, *expires)
		if err != nil {
			return usageError("token revoke: --expires-at is not an RFC 3339 time")
		}
		expiresAt = t
		if t.After(keep) {
			keep = t
		}
	}
	a, err := openApp(ctx, cfg, newLogger(cfg, io.Discard), appOptions{})
	if err != nil {
		return err
	}
	defer a.close(context.WithoutCancel(ctx))
	scope := auth.AnyTenant
	if *tenant != "" {
		if _, err := a.db.GetTenant(ctx, *tenant); err != nil {
			return fmt.Errorf("tenant %s: %w", *tenant, err)
		}
		scope = *tenant
	}
	svc, err := a.adminService(nil, cliLogger(stderr))
	if err != nil {
		return err
	}
	err = svc.RevokeToken(ctx, cliActor(), admin.Revocation{JTI: *jti, Tenant: scope, ExpiresAt: expiresAt, KeepUntil: keep})
	switch {
	case errors.Is(err, admin.ErrNotRecorded):
		return fmt.Errorf("audit: token not revoked: %w", err)
	case err != nil:
		return fmt.Errorf("store: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "revoked %s (%s) until %s\n", *jti, map[bool]string{true: "every tenant", false: "tenant " + *tenant}[scope == auth.AnyTenant], keep.UTC().Format(time.RFC3339))
	return err
}
