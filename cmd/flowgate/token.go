package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "issue" {
		return usageError("usage: flowgate token issue --tenant T --sub S --perm P [--perm P2 ...] [--ttl 1h]")
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
	cfg, err := cf.load(getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, io.Discard)
	a, err := openApp(ctx, cfg, log, appOptions{})
	if err != nil {
		return err
	}
	defer a.close(context.WithoutCancel(ctx))
	if a.signer == nil {
		return fmt.Errorf("auth.signing is disabled: this gateway does not issue tokens")
	}
	iss, err := a.signer.Issue(auth.IssueRequest{Tenant: tenant, Subject: sub, Permissions: expanded, TTL: ttl})
	if err != nil {
		return err
	}
	if err := a.record(ctx, audit.Record{Action: audit.ActionTokenIssue, Outcome: audit.OutcomeSuccess, Tenant: tenant,
		Target:  audit.Target{Type: "token", ID: iss.JTI},
		Details: map[string]any{"sub": sub, "permissions": expanded, "expiresAt": iss.ExpiresAt.UTC().Format(time.RFC3339), "via": "cli"}}); err != nil {
		return fmt.Errorf("audit: token not issued: %w", err)
	}
	_, err = fmt.Fprintln(stdout, iss.Token)
	return err
}
