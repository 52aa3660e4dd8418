package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
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

const tokenUsage = "usage: flowgate token issue --tenant T --sub S --perm P [--perm P2 ...] [--ttl 1h] [--json] | token list --tenant T [--limit N] [--json] | token revoke --jti J [--tenant T] [--expires-at RFC3339]"

func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "revoke" {
		return runTokenRevoke(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "list" {
		return runTokenList(ctx, args[1:], getenv, stdout, stderr)
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
	svc, err := a.adminService(nil, nil, cliLogger(stderr))
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
	// The token alone on stdout, for pipes; what names it (to list or revoke it) on stderr.
	fmt.Fprintf(stderr, "jti %s, expires %s\n", iss.JTI, iss.ExpiresAt.UTC().Format(time.RFC3339))
	_, err = fmt.Fprintln(stdout, iss.Token)
	return err
}

// runTokenList prints the tokens issued for a tenant, newest first, from its audit chain,
// each with whether it has been revoked: what `token revoke --jti` needs.
func runTokenList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token list", stderr)
	var cf configFlags
	cf.register(fs)
	tenant := fs.String("tenant", "", "tenant id (required)")
	limit := fs.Int("limit", 50, fmt.Sprintf("at most this many, newest first (1 to %d)", admin.MaxTokenList))
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *tenant == "" || fs.NArg() > 0 {
		return usageError(tokenUsage)
	}
	if *limit < 1 || *limit > admin.MaxTokenList {
		return usageError("token list: --limit must be from 1 to %d", admin.MaxTokenList)
	}
	a, err := openCommand(ctx, cf, getenv)
	if err != nil {
		return err
	}
	defer a.close(context.WithoutCancel(ctx))
	if _, err := a.db.GetTenant(ctx, *tenant); err != nil {
		return fmt.Errorf("tenant %s: %w", *tenant, err)
	}
	svc, err := a.adminService(nil, nil, cliLogger(stderr))
	if err != nil {
		return err
	}
	toks, err := svc.ListTokens(ctx, *tenant, time.Time{}, *limit)
	if err != nil {
		return err
	}
	now := time.Now()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, t := range toks {
			if err := enc.Encode(map[string]any{"jti": t.JTI, "sub": t.Subject, "permissions": t.Permissions,
				"issuedAt": t.IssuedAt.UTC().Format(time.RFC3339), "expiresAt": t.ExpiresAt.UTC().Format(time.RFC3339),
				"issuedBy": t.IssuedBy, "revoked": t.Revoked, "expired": !t.ExpiresAt.After(now)}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JTI\tSUB\tPERMISSIONS\tISSUED\tEXPIRES\tSTATE")
	for _, t := range toks {
		state := "valid"
		switch {
		case t.Revoked:
			state = "revoked"
		case !t.ExpiresAt.After(now):
			state = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.JTI, t.Subject, strings.Join(t.Permissions, ","),
			t.IssuedAt.UTC().Format(time.RFC3339), t.ExpiresAt.UTC().Format(time.RFC3339), state)
	}
	return tw.Flush()
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
	expires := fs.String("expires-at", "", "the token's exp (RFC 3339), when known; the revocation is kept until then (at least auth.signing.max_ttl from now), else as long as any token may live")
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
	// Without the token's expiry the service keeps the revocation as long as any token
	// accepted now may live.
	var keep, expiresAt time.Time
	if *expires != "" {
		t, err := time.Parse(time.RFC3339, *expires)
		if err != nil {
			return usageError("token revoke: --expires-at is not an RFC 3339 time")
		}
		expiresAt, keep = t, time.Now().Add(cfg.Auth.Signing.MaxTTL)
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
	svc, err := a.adminService(nil, nil, cliLogger(stderr))
	if err != nil {
		return err
	}
	keep, err = svc.RevokeToken(ctx, cliActor(), admin.Revocation{JTI: *jti, Tenant: scope, ExpiresAt: expiresAt, KeepUntil: keep})
	switch {
	case errors.Is(err, admin.ErrNotRecorded):
		return fmt.Errorf("audit: token not revoked: %w", err)
	case err != nil:
		return fmt.Errorf("store: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "revoked %s (%s) until %s\n", *jti, map[bool]string{true: "every tenant", false: "tenant " + *tenant}[scope == auth.AnyTenant], keep.UTC().Format(time.RFC3339))
	return err
}
