package admin

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"

	"github.com/flowgate/flowgate/internal/audit"
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
		return store.Tenant{}, store.ErrNotFound
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

func newTrail(t *testing.T, tr *trail) *Service {
	t.Helper()
	s, err := New(Options{
		Audit: tr, Keys: tr, Tenants: tr, Logger: slog.New(slog.DiscardHandler),
		TenantChanged: func(_ context.Context, t store.Tenant) { tr.steps = append(tr.steps, "tenant-changed") },
		Touch:         func(context.Context, string) error { tr.steps = append(tr.steps, "touch"); return nil },
		KeyChanged:    func(context.Context, string) { tr.steps = append(tr.steps, "notify") },
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
		}, store.ErrConflict, nil},
		{"create, audit down", trail{failAudit: func(string) bool { return true }}, func(s *Service) error {
			_, err := s.CreateTenant(context.Background(), Actor{}, store.Tenant{ID: "initech"})
			return err
		}, ErrNotRecorded, []string{"record-failed tenant.create"}},
		{"create racing another", trail{storeErr: store.ErrConflict}, func(s *Service) error {
			_, err := s.CreateTenant(context.Background(), Actor{}, store.Tenant{ID: "initech"})
			return err
		}, store.ErrConflict, []string{"record tenant.create success", "create initech", "record tenant.create failure reason=conflict"}},
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
		}, store.ErrNotFound, nil},
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
