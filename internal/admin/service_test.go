package admin

import (
	"context"
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/tenant"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/store"
)

// trail records the order of everything the service does: audit records and provider calls.
type trail struct {
	steps     []string
	failAudit func(action string) bool
	keyErr    error
	storeErr  error
	have      bool
}

func (tr *trail) Record(_ context.Context, r audit.Record) error {
	if tr.failAudit != nil && tr.failAudit(r.Action) {
		tr.steps = append(tr.steps, "record-failed "+r.Action)
		return errors.New("audit store down")
	}
	step := "record " + r.Action + " " + r.Outcome
	if fp, ok := r.Details["fingerprint"]; ok {
		step += " fp=" + fp.(string)
	}
	if r.Reason != "" {
		step += " reason=" + r.Reason
	}
	tr.steps = append(tr.steps, step)
	return nil
}

func (tr *trail) Set(context.Context, string, string, string) (secrets.Metadata, error) {
	tr.steps = append(tr.steps, "set")
	if tr.keyErr != nil {
		return secrets.Metadata{}, tr.keyErr
	}
	tr.have = true
	return secrets.Metadata{Fingerprint: "sha256:new", Version: "2", Provider: "test"}, nil
}

func (tr *trail) Delete(context.Context, string, string) error {
	tr.steps = append(tr.steps, "delete")
	return tr.keyErr
}

func (tr *trail) Describe(context.Context, string, string) (secrets.Metadata, error) {
	if !tr.have {
		return secrets.Metadata{}, secrets.ErrNotFound
	}
	return secrets.Metadata{Fingerprint: "sha256:old", Version: "1", Provider: "test"}, nil
}

// GetTenant, CreateTenant and UpdateTenant implement TenantStore over one tenant, "acme".
func (tr *trail) GetTenant(_ context.Context, id string) (store.Tenant, error) {
	if id != "acme" {
		return store.Tenant{}, tenant.ErrNotFound
	}
	return store.Tenant{ID: "acme", Name: "Acme", Status: store.TenantActive}, nil
}

func (tr *trail) CreateTenant(_ context.Context, t store.Tenant) (store.Tenant, error) {
	tr.steps = append(tr.steps, "create "+t.ID)
	return t, tr.storeErr
}

func (tr *trail) UpdateTenant(_ context.Context, id string, fn func(*store.Tenant) error) (store.Tenant, error) {
	t, err := tr.GetTenant(context.Background(), id)
	if err != nil {
		return t, err
	}
	_ = fn(&t)
	tr.steps = append(tr.steps, "update "+t.Status)
	return t, tr.storeErr
}

// funcNotifier is a Notifier made of functions; a nil one is not called.
type funcNotifier struct {
	tenant  func(context.Context, tenant.Tenant)
	revoked func(ctx context.Context, tenant, jti string, keepUntil time.Time, cancelTasks bool)
	key     func(context.Context, string)
}

func (n funcNotifier) TenantChanged(ctx context.Context, t tenant.Tenant) {
	if n.tenant != nil {
		n.tenant(ctx, t)
	}
}

func (n funcNotifier) TokenRevoked(ctx context.Context, tenant, jti string, keepUntil time.Time, cancelTasks bool) {
	if n.revoked != nil {
		n.revoked(ctx, tenant, jti, keepUntil, cancelTasks)
	}
}

func (n funcNotifier) KeyChanged(ctx context.Context, tenant string) {
	if n.key != nil {
		n.key(ctx, tenant)
	}
}

func newTrail(t *testing.T, tr *trail) *Service {
	t.Helper()
	s, err := New(Options{
		Audit: tr, Keys: tr, Tenants: tr, Logger: slog.New(slog.DiscardHandler),
		Touch: func(context.Context, string) error { tr.steps = append(tr.steps, "touch"); return nil },
		Notify: funcNotifier{
			tenant: func(context.Context, tenant.Tenant) { tr.steps = append(tr.steps, "tenant-changed") },
			key:    func(context.Context, string) { tr.steps = append(tr.steps, "notify") },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSetKeySequence(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tr      trail
		wantErr error
		steps   []string
	}{
		{"first key", trail{}, nil, []string{
			"record key.set.requested success", "set", "record key.set success fp=sha256:new", "touch", "notify"}},
		{"audit down: nothing changes", trail{failAudit: func(string) bool { return true }}, ErrNotRecorded, []string{
			"record-failed key.set.requested"}},
		{"provider refuses: the outcome says so", trail{keyErr: secrets.ErrUnavailable}, secrets.ErrUnavailable, []string{
			"record key.set.requested success", "set", "record key.set failure reason=secrets provider unavailable"}},
		{"outcome record lost after the write: the key is set", trail{failAudit: func(a string) bool { return a == audit.ActionKeySet }}, nil, []string{
			"record key.set.requested success", "set", "record-failed key.set", "touch", "notify"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tc.tr
			s := newTrail(t, &tr)
			meta, created, err := s.SetKey(context.Background(), Actor{Sub: "alice"}, "acme", "", "sk-ant-test")
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v; want %v", err, tc.wantErr)
			}
			if err == nil && (meta.Fingerprint != "sha256:new" || !created) {
				t.Fatalf("meta %+v created %v", meta, created)
			}
			if !slices.Equal(tr.steps, tc.steps) {
				t.Fatalf("steps\n got %q\nwant %q", tr.steps, tc.steps)
			}
		})
	}
}

func TestDeleteKeySequence(t *testing.T) {
	tr := trail{have: true}
	s := newTrail(t, &tr)
	if _, err := s.DeleteKey(context.Background(), Actor{Via: "cli"}, "acme", ""); err != nil {
		t.Fatal(err)
	}
	want := []string{"record key.delete success fp=sha256:old", "delete", "touch", "notify"}
	if !slices.Equal(tr.steps, want) {
		t.Fatalf("steps %q; want %q", tr.steps, want)
	}
	tr = trail{have: true, failAudit: func(string) bool { return true }}
	s = newTrail(t, &tr)
	if _, err := s.DeleteKey(context.Background(), Actor{}, "acme", ""); !errors.Is(err, ErrNotRecorded) || slices.Contains(tr.steps, "delete") {
		t.Fatalf("audit down: err %v, steps %q; want ErrNotRecorded and no delete", err, tr.steps)
	}
}

func TestTenantSequences(t *testing.T) {
	suspend := func(t *store.Tenant) { t.Status = store.TenantSuspended }
	for _, tc := range []struct {
		name    string
		tr      trail
		run     func(s *Service) error
		wantErr error
		steps   []string
	}{
		{"create", trail{}, func(s *Service) error {
			_, err := s.CreateTenant(context.Background(), Actor{}, store.Tenant{ID: "initech"})
			return err
		}, nil, []string{"record tenant.create success", "create initech", "tenant-changed"}},
		{"create an existing tenant: nothing recorded", trail{}, func(s *Service) error {
			_, err := s.CreateTenant(context.Background(), Actor{}, store.Tenant{ID: "acme"})
			return err
		}, tenant.ErrExists, nil},
		{"create, audit down", trail{failAudit: func(string) bool { return true }}, func(s *Service) error {
			_, err := s.CreateTenant(context.Background(), Actor{}, store.Tenant{ID: "initech"})
			return err
		}, ErrNotRecorded, []string{"record-failed tenant.create"}},
		{"create racing another", trail{storeErr: tenant.ErrExists}, func(s *Service) error {
			_, err := s.CreateTenant(context.Background(), Actor{}, store.Tenant{ID: "initech"})
			return err
		}, tenant.ErrExists, []string{"record tenant.create success", "create initech", "record tenant.create failure reason=conflict"}},
		{"suspend", trail{}, func(s *Service) error {
			_, err := s.UpdateTenant(context.Background(), Actor{}, "acme", suspend)
			return err
		}, nil, []string{"record tenant.update success", "update suspended", "tenant-changed"}},
		{"suspend, audit down: nothing changes", trail{failAudit: func(string) bool { return true }}, func(s *Service) error {
			_, err := s.UpdateTenant(context.Background(), Actor{}, "acme", suspend)
			return err
		}, ErrNotRecorded, []string{"record-failed tenant.update"}},
		{"update an unknown tenant", trail{}, func(s *Service) error {
			_, err := s.UpdateTenant(context.Background(), Actor{}, "nosuch", suspend)
			return err
		}, tenant.ErrNotFound, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tc.tr
			err := tc.run(newTrail(t, &tr))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v; want %v", err, tc.wantErr)
			}
			if !slices.Equal(tr.steps, tc.steps) {
				t.Fatalf("steps\n got %q\nwant %q", tr.steps, tc.steps)
			}
		})
	}
}

func (tr *trail) Issue(req auth.IssueRequest) (auth.Issued, error) {
	tr.steps = append(tr.steps, "mint "+req.Subject)
	return auth.Issued{Token: "tok", JTI: "j1", ExpiresAt: time.Now().Add(time.Hour)}, nil
}

func (tr *trail) RevokeToken(_ context.Context, r store.RevokedToken) error {
	tr.steps = append(tr.steps, "revoke "+r.Tenant+"/"+r.JTI)
	return tr.storeErr
}

func (tr *trail) IsRevoked(context.Context, string, string) (bool, error) { return false, nil }

func TestTokenSequences(t *testing.T) {
	build := func(t *testing.T, tr *trail, suspended bool) *Service {
		t.Helper()
		tenants := TenantStore(tr)
		if suspended {
			tenants = suspendedTenants{tr}
		}
		s, err := New(Options{
			Audit: tr, Tenants: tenants, Revoker: tr, Signer: tr, Logger: slog.New(slog.DiscardHandler),
			Notify: funcNotifier{revoked: func(_ context.Context, tenant, jti string, _ time.Time, cancel bool) {
				tr.steps = append(tr.steps, fmt.Sprintf("revoked-hook %s/%s cancel=%t", tenant, jti, cancel))
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	issue := func(s *Service) error {
		_, err := s.IssueToken(context.Background(), Actor{}, auth.IssueRequest{Tenant: "acme", Subject: "rita"})
		return err
	}
	revoke := func(s *Service) error {
		_, err := s.RevokeToken(context.Background(), Actor{}, Revocation{JTI: "j1", Tenant: auth.AnyTenant, KeepUntil: time.Now(), CancelTasks: true})
		return err
	}
	for _, tc := range []struct {
		name      string
		tr        trail
		suspended bool
		run       func(*Service) error
		wantErr   error
		steps     []string
	}{
		{"issue", trail{}, false, issue, nil, []string{"mint rita", "record token.issue success"}},
		{"issue, audit down: the token never leaves", trail{failAudit: func(string) bool { return true }}, false, issue, ErrNotRecorded,
			[]string{"mint rita", "record-failed token.issue"}},
		{"issue for a suspended tenant", trail{}, true, issue, ErrTenantSuspended, nil},
		{"revoke", trail{}, false, revoke, nil, []string{"record token.revoke success", "revoke */j1", "revoked-hook */j1 cancel=true"}},
		{"revoke, audit down", trail{failAudit: func(string) bool { return true }}, false, revoke, ErrNotRecorded, []string{"record-failed token.revoke"}},
		{"revoke, store down", trail{storeErr: errors.New("disk full")}, false, revoke, nil,
			[]string{"record token.revoke success", "revoke */j1", "record token.revoke failure reason=storage error"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tc.tr
			err := tc.run(build(t, &tr, tc.suspended))
			if tc.tr.storeErr != nil {
				if err == nil {
					t.Fatal("store failure not returned")
				}
			} else if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v; want %v", err, tc.wantErr)
			}
			if !slices.Equal(tr.steps, tc.steps) {
				t.Fatalf("steps\n got %q\nwant %q", tr.steps, tc.steps)
			}
		})
	}
}

// suspendedTenants answers every tenant as suspended.
type suspendedTenants struct{ *trail }

func (s suspendedTenants) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	t, err := s.trail.GetTenant(ctx, id)
	t.Status = store.TenantSuspended
	return t, err
}
