package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/store"
)

// The demo tenant and users of --dev.
const (
	devTenant    = "demo"
	devUser      = "demo-user"
	devAdmin     = "demo-admin"
	devTokenTTL  = time.Hour
	devKeyPrefix = "sk-ant-demo-" // shaped like a real key so redaction shows on the dashboard
)

// devBootstrap creates the demo tenant and gives it a generated (fake) engine key, once.
func devBootstrap(ctx context.Context, a *app) error {
	_, err := a.db.CreateTenant(ctx, store.Tenant{ID: devTenant, Name: "Demo tenant", Status: "active"})
	switch {
	case err == nil:
		if err := a.record(ctx, audit.Record{Action: audit.ActionTenantCreate, Outcome: audit.OutcomeSuccess, Tenant: devTenant,
			Actor: audit.Actor{Sub: "system:dev"}, Target: audit.Target{Type: "tenant", ID: devTenant}}); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	case errors.Is(err, store.ErrConflict):
	default:
		return fmt.Errorf("dev: create demo tenant: %w", err)
	}
	if _, err := a.keys.Describe(ctx, devTenant, ""); err == nil {
		return nil
	} else if !errors.Is(err, secrets.ErrNotFound) {
		return fmt.Errorf("dev: demo key: %w", err)
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	meta, err := a.keys.Set(ctx, devTenant, "", devKeyPrefix+hex.EncodeToString(b[:]))
	if err != nil {
		return fmt.Errorf("dev: set demo key: %w", err)
	}
	return a.record(ctx, audit.Record{Action: audit.ActionKeySet, Outcome: audit.OutcomeSuccess, Tenant: devTenant,
		Actor: audit.Actor{Sub: "system:dev"}, Target: audit.Target{Type: "key", ID: devTenant},
		Details: map[string]any{"fingerprint": meta.Fingerprint, "generated": true}})
}

// printDevBanner prints the scripting contract's lines (DESIGN §2) and how to use them.
func printDevBanner(w io.Writer, a *app, addr net.Addr) error {
	if a.signer == nil {
		return errors.New("auth.signing is disabled; --dev cannot mint demo tokens")
	}
	user, err := a.signer.Issue(auth.IssueRequest{Tenant: devTenant, Subject: devUser, Permissions: []string{auth.PermSwarmExecute}, TTL: devTokenTTL})
	if err != nil {
		return err
	}
	admin, err := a.signer.Issue(auth.IssueRequest{Tenant: devTenant, Subject: devAdmin, Permissions: auth.AllPermissions(), TTL: devTokenTTL})
	if err != nil {
		return err
	}
	for _, t := range []struct {
		iss  auth.Issued
		sub  string
		perm []string
	}{{user, devUser, []string{auth.PermSwarmExecute}}, {admin, devAdmin, auth.AllPermissions()}} {
		if err := a.record(context.Background(), audit.Record{Action: audit.ActionTokenIssue, Outcome: audit.OutcomeSuccess, Tenant: devTenant,
			Actor: audit.Actor{Sub: "system:dev"}, Target: audit.Target{Type: "token", ID: t.iss.JTI},
			Details: map[string]any{"sub": t.sub, "permissions": t.perm, "expiresAt": t.iss.ExpiresAt.UTC().Format(time.RFC3339)}}); err != nil {
			return err
		}
	}
	host := displayHost(addr)
	_, err = fmt.Fprintf(w, `url: ws://%[1]s/ws
dashboard: http://%[1]s/ui/
user-token: %[2]s
admin-token: %[3]s
# flowgate --dev: simulated engine, tenant %[4]q, state in %[5]s, tokens valid %[6]s.
# Try it:   websocat "ws://%[1]s/ws?token=<user-token>"   then send {"type":"swarm","objective":"hello"}
#    or:    flowgate swarm --url ws://%[1]s/ws --token <user-token> "hello"
#    or:    open http://%[1]s/ui/ and paste a token
`, host, user.Token, admin.Token, devTenant, a.cfg.DataDir, devTokenTTL)
	return err
}

// displayHost names a listener so a client on this machine can reach it.
func displayHost(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}
