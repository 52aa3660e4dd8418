package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/flowgate/flowgate/internal/admin"
	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/validation"
)

// The admin commands (tenant, key) work on the store directly, so they also work while a
// server runs on the same store. Running servers notice within seconds: every change moves the
// tenant's updated_at (store.TouchTenant for key changes), which each server's janitor polls
// every 2 s to invalidate its tenant and key caches; the session sweep then closes the
// sessions of a suspended tenant within a second.

const tenantUsage = `usage: flowgate tenant create --id ID [--name N]
       flowgate tenant suspend|resume --id ID
       flowgate tenant list [--json]
       flowgate tenant budget --id ID [--usd-per-day N] [--tokens-per-day N]   (0: no cap)
each also takes --config FILE or --dev [--data-dir D]`

func runTenant(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, tenantUsage)
		return usageError("tenant: missing command")
	}
	sub := args[0]
	fs := newFlagSet("tenant "+sub, stderr)
	var cf configFlags
	cf.register(fs)
	var id, name string
	var asJSON bool
	var usdPerDay float64
	var tokensPerDay int64
	switch sub {
	case "create":
		fs.StringVar(&id, "id", "", "tenant id, ^[a-z0-9][a-z0-9-]{1,62}$ (required)")
		fs.StringVar(&name, "name", "", "display name (default: the id)")
	case "suspend", "resume":
		fs.StringVar(&id, "id", "", "tenant id (required)")
	case "list":
		fs.BoolVar(&asJSON, "json", false, "print a JSON array instead of a table")
	case "budget":
		fs.StringVar(&id, "id", "", "tenant id (required)")
		fs.Float64Var(&usdPerDay, "usd-per-day", -1, "US dollars the tenant's engines may spend per UTC day (0: no cap)")
		fs.Int64Var(&tokensPerDay, "tokens-per-day", -1, "tokens the tenant's engines may use per UTC day (0: no cap)")
	default:
		fmt.Fprintln(stderr, tenantUsage)
		return usageError("unknown tenant command %q", sub)
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("tenant %s takes no arguments (got %q)", sub, fs.Arg(0))
	}
	if sub != "list" && id == "" {
		return usageError("tenant %s needs --id", sub)
	}
	if sub != "list" && !store.ValidTenantID(id) {
		return usageError("--id %q is not a tenant id: it must match ^[a-z0-9][a-z0-9-]{1,62}$", id)
	}
	a, err := openCommand(ctx, cf, getenv)
	if err != nil {
		return err
	}
	defer a.close(context.WithoutCancel(ctx))
	switch sub {
	case "create":
		return tenantCreate(ctx, a, id, name, stdout, stderr)
	case "suspend":
		return tenantSetStatus(ctx, a, id, store.TenantSuspended, stdout, stderr)
	case "resume":
		return tenantSetStatus(ctx, a, id, store.TenantActive, stdout, stderr)
	case "budget":
		return tenantSetBudget(ctx, a, id, fs, usdPerDay, tokensPerDay, stdout, stderr)
	}
	return tenantList(ctx, a, asJSON, stdout)
}

func tenantCreate(ctx context.Context, a *app, id, name string, stdout, stderr io.Writer) error {
	in, err := validation.New().TenantCreate(validation.TenantCreate{ID: id, Name: name}, validation.Limits{})
	if err != nil {
		return usageError("%v", err)
	}
	svc, err := a.adminService(nil, nil, cliLogger(stderr))
	if err != nil {
		return err
	}
	t, err := svc.CreateTenant(ctx, cliActor(), store.Tenant{ID: in.ID, Name: in.Name})
	switch {
	case errors.Is(err, store.ErrConflict):
		return fmt.Errorf("tenant %s already exists", in.ID)
	case errors.Is(err, admin.ErrNotRecorded):
		return fmt.Errorf("audit: tenant not created: %w", err)
	case err != nil:
		return err
	}
	_, err = fmt.Fprintf(stdout, "created tenant %s (%s)\n", t.ID, t.Status)
	return err
}

func tenantSetStatus(ctx context.Context, a *app, id, status string, stdout, stderr io.Writer) error {
	t, err := a.db.GetTenant(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("tenant %s does not exist", id)
	}
	if err != nil {
		return err
	}
	if t.Status == status {
		_, err := fmt.Fprintf(stdout, "tenant %s is already %s\n", id, status)
		return err
	}
	svc, err := a.adminService(nil, nil, cliLogger(stderr))
	if err != nil {
		return err
	}
	if _, err := svc.UpdateTenant(ctx, cliActor(), id, func(t *store.Tenant) { t.Status = status }); err != nil {
		return tenantUpdateError(id, err)
	}
	verb := "suspended"
	if status == store.TenantActive {
		verb = "resumed"
	}
	_, err = fmt.Fprintf(stdout, "%s tenant %s\n", verb, id)
	return err
}

func tenantList(ctx context.Context, a *app, asJSON bool, stdout io.Writer) error {
	var tw *tabwriter.Writer
	if asJSON {
		if _, err := io.WriteString(stdout, "["); err != nil {
			return err
		}
	} else {
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tUPDATED\tNAME")
	}
	n := 0
	err := eachTenant(ctx, a, func(t store.Tenant) error {
		defer func() { n++ }()
		if !asJSON {
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Status, t.UpdatedAt.UTC().Format(time.RFC3339), oneLine(t.Name))
			return err
		}
		b, err := json.Marshal(admin.ViewTenant(t))
		if err != nil {
			return err
		}
		if n > 0 {
			b = append([]byte{','}, b...)
		}
		_, err = stdout.Write(append(b, '\n'))
		return err
	})
	if err != nil {
		return err
	}
	if asJSON {
		_, err := io.WriteString(stdout, "]\n")
		return err
	}
	return tw.Flush()
}

// tenantWatchOverlap is how far back each poll looks: it covers clock skew between the
// processes writing updated_at and transactions that commit after their timestamp.
const tenantWatchOverlap = time.Minute

// maxTenantWatchPages bounds one poll; anything beyond is picked up by the next one.
const maxTenantWatchPages = 20

// tenantWatch makes a server notice tenant changes made by other processes (the tenant and key
// commands, other replicas): each poll lists the tenants whose updated_at moved within the
// overlap window and drops them from the tenant directory and the key cache. The hub's sweep
// then reads the fresh tenant within a second and closes a suspended tenant's sessions (1008);
// the next swarm fetches the new key. Changes made through this server's own API already
// invalidated both at once; the poll only repeats that (one extra key fetch per change).
type tenantWatch struct {
	seen map[string]time.Time // tenant id → the updated_at already acted on
}

func newTenantWatch() *tenantWatch { return &tenantWatch{seen: map[string]time.Time{}} }

// poll also calls suspended (when set) for every tenant it finds no longer active: a suspension
// made by the CLI or another replica cancels the tenant's tasks here too.
func (w *tenantWatch) poll(ctx context.Context, a *app, now time.Time, suspended func(id string)) error {
	since := now.Add(-tenantWatchOverlap)
	from, after := since, ""
	for range maxTenantWatchPages {
		list, err := a.db.TenantsChangedSince(ctx, from, after, store.MaxListLimit)
		if err != nil {
			return err
		}
		for _, t := range list {
			if last, ok := w.seen[t.ID]; ok && !t.UpdatedAt.After(last) {
				continue
			}
			w.seen[t.ID] = t.UpdatedAt
			a.tenants.Invalidate(t.ID)
			a.keys.Invalidate(t.ID)
			if suspended != nil && t.Status != store.TenantActive {
				suspended(t.ID)
			}
			a.log.Debug("tenant changed; caches invalidated", "tenant", t.ID, "status", t.Status,
				"updated_at", protocol.Time(t.UpdatedAt))
		}
		if len(list) < store.MaxListLimit {
			break
		}
		last := list[len(list)-1]
		from, after = last.UpdatedAt, last.ID
	}
	// What fell out of the window is never listed again; forget it so the map stays small.
	for id, at := range w.seen {
		if at.Before(since) {
			delete(w.seen, id)
		}
	}
	return nil
}

// tenantSetBudget sets the daily budget limits given on the command line (DESIGN §18), through
// the same validation and audited update as PATCH /v1/admin/tenants/{id}.
func tenantSetBudget(ctx context.Context, a *app, id string, fs *flag.FlagSet, usd float64, tokens int64, stdout, stderr io.Writer) error {
	var lim validation.TenantLimits
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "usd-per-day":
			lim.BudgetUSDPerDay = &usd
		case "tokens-per-day":
			lim.TokensPerDay = &tokens
		}
	})
	if lim.BudgetUSDPerDay == nil && lim.TokensPerDay == nil {
		return usageError("tenant budget needs --usd-per-day or --tokens-per-day")
	}
	if _, err := validation.New().TenantPatch(validation.TenantPatch{Limits: &lim}, validation.Limits{}); err != nil {
		return usageError("%v", err)
	}
	svc, err := a.adminService(nil, nil, cliLogger(stderr))
	if err != nil {
		return err
	}
	t, err := svc.UpdateTenant(ctx, cliActor(), id, func(t *store.Tenant) {
		if lim.BudgetUSDPerDay != nil {
			t.Limits.BudgetUSDPerDay = lim.BudgetUSDPerDay
		}
		if lim.TokensPerDay != nil {
			t.Limits.TokensPerDay = lim.TokensPerDay
		}
	})
	if err != nil {
		return tenantUpdateError(id, err)
	}
	describe := func(set bool, v string) string {
		if !set || v == "0" {
			return "none"
		}
		return v
	}
	l := t.Limits
	_, err = fmt.Fprintf(stdout, "tenant %s: daily budget USD %s, tokens %s\n", id,
		describe(l.BudgetUSDPerDay != nil, fmt.Sprint(deref(l.BudgetUSDPerDay))),
		describe(l.TokensPerDay != nil, fmt.Sprint(deref(l.TokensPerDay))))
	return err
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// tenantUpdateError is what a CLI tenant change says when admin.Service.UpdateTenant fails.
func tenantUpdateError(id string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("tenant %s does not exist", id)
	case errors.Is(err, admin.ErrNotRecorded):
		return fmt.Errorf("audit: tenant not changed: %w", err)
	}
	return err
}

// eachTenant calls fn for every tenant, in id order, page by page.
func eachTenant(ctx context.Context, a *app, fn func(store.Tenant) error) error {
	after := ""
	for {
		page, err := a.db.ListTenants(ctx, store.MaxListLimit, after)
		if err != nil {
			return err
		}
		for _, t := range page {
			if err := fn(t); err != nil {
				return err
			}
		}
		if len(page) < store.MaxListLimit {
			return nil
		}
		after = page[len(page)-1].ID
	}
}
