package awssm_test

import (
	"context"
	"errors"
	"github.com/flowgate/flowgate/internal/logbuf"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/secrets/awssm"
	"github.com/flowgate/flowgate/internal/secrets/awssm/smtest"
)

var fpKey = []byte("fingerprint-key-for-tests-0123456789")

const (
	keyA = "sk-ant-api03-tenantA-0123456789abcdef"
	keyB = "sk-ant-api03-tenantB-fedcba9876543210"
)

func defaultID(tenant string) string { return "flowgate/tenants/" + tenant + "/anthropic-api-key" }

type fixture struct {
	srv  *smtest.Server
	p    *awssm.Provider
	logs *logbuf.Buffer
}

func newFixture(t *testing.T, mod func(*awssm.Options)) *fixture {
	t.Helper()
	smtest.IsolateEnv(t)
	srv := smtest.New(t, smtest.Options{})
	logs := &logbuf.Buffer{}
	opts := awssm.Options{
		Region:         srv.Region(),
		Endpoint:       srv.URL,
		FingerprintKey: fpKey,
		Credentials:    srv.Credentials(),
		MaxBackoff:     time.Millisecond,
		Logger:         slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&opts)
	}
	p, err := awssm.New(t.Context(), opts)
	if err != nil {
		t.Fatalf("awssm.New: %v", err)
	}
	return &fixture{srv: srv, p: p, logs: logs}
}

func TestGetPlainAndJSON(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name, stored, want string
	}{
		{"plain", keyA, keyA},
		{"plain with newline", keyA + "\n", keyA},
		{"json", `{"apiKey":"` + keyA + `"}`, keyA},
		{"json with other fields", `{"note":"x","apiKey":"` + keyA + `"}`, keyA},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tenant := "t" + string(rune('a'+i)) + "-plainjson"
			vid := f.srv.SetSecret(defaultID(tenant), tc.stored, nil)
			got, ver, err := f.p.Get(t.Context(), tenant, "")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if got != tc.want || ver != vid {
				t.Fatalf("Get = %q, %q; want %q, %q", got, ver, tc.want, vid)
			}
		})
	}
}

func TestGetMalformedValues(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct{ name, stored string }{
		{"json without apiKey", `{"key":"` + keyA + `"}`},
		{"json apiKey not string", `{"apiKey":42}`},
		{"broken json", `{"apiKey":"` + keyA},
		{"inner whitespace", "sk-ant-a b"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tenant := "m" + string(rune('a'+i)) + "-malformed"
			f.srv.SetSecret(defaultID(tenant), tc.stored, nil)
			_, _, err := f.p.Get(t.Context(), tenant, "")
			if !errors.Is(err, secrets.ErrUnavailable) {
				t.Fatalf("Get err = %v; want ErrUnavailable", err)
			}
			if strings.Contains(err.Error(), keyA) || strings.Contains(err.Error(), "sk-ant") {
				t.Fatalf("error leaks the value: %v", err)
			}
		})
	}
}

func TestEveryCallIsSigned(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	if _, err := f.p.Put(ctx, "acme", "", keyA); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if _, _, err := f.p.Get(ctx, "acme", ""); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if _, err := f.p.Describe(ctx, "acme", ""); err != nil {
		t.Fatalf("Describe: %v", err)
	}
	if err := f.p.Delete(ctx, "acme", ""); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	reqs := f.srv.Requests()
	if len(reqs) < 5 {
		t.Fatalf("recorded %d requests, want at least 5", len(reqs))
	}
	for _, r := range reqs {
		if !r.Signed || r.AccessKeyID != smtest.DefaultAccessKeyID || r.Region != "us-east-1" {
			t.Errorf("request %s not signed with the test credentials: %+v", r.Op, r)
		}
		if r.Status != 200 && r.ErrorType != "ResourceNotFoundException" {
			t.Errorf("request %s answered %d %s", r.Op, r.Status, r.ErrorType)
		}
	}
}

func TestWrongCredentialsRejected(t *testing.T) {
	smtest.IsolateEnv(t)
	srv := smtest.New(t, smtest.Options{})
	other := smtest.New(t, smtest.Options{AccessKeyID: "AKIDOTHER00000000000", SecretAccessKey: "other-secret"})
	p, err := awssm.New(t.Context(), awssm.Options{
		Region: "us-east-1", Endpoint: srv.URL, FingerprintKey: fpKey,
		Credentials: other.Credentials(), MaxBackoff: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetSecret(defaultID("acme"), keyA, nil)
	_, _, err = p.Get(t.Context(), "acme", "")
	if !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("Get with foreign credentials: %v; want ErrUnavailable", err)
	}
	var ae *awssm.Error
	if !errors.As(err, &ae) || ae.Code != "UnrecognizedClientException" {
		t.Fatalf("error = %#v; want UnrecognizedClientException", err)
	}

	// Same access key id, wrong secret: the signature itself is checked.
	wrongSecret := smtest.New(t, smtest.Options{AccessKeyID: smtest.DefaultAccessKeyID, SecretAccessKey: "not-the-right-secret"})
	p, err = awssm.New(t.Context(), awssm.Options{
		Region: "us-east-1", Endpoint: srv.URL, FingerprintKey: fpKey,
		Credentials: wrongSecret.Credentials(), MaxBackoff: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.Get(t.Context(), "acme", "")
	if !errors.As(err, &ae) || ae.Code != "InvalidSignatureException" || !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("error = %v; want InvalidSignatureException", err)
	}
}

func TestNotFound(t *testing.T) {
	f := newFixture(t, nil)
	_, _, err := f.p.Get(t.Context(), "nokey", "")
	if !errors.Is(err, secrets.ErrNotFound) || errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("Get = %v; want ErrNotFound only", err)
	}
	if n := f.srv.Count(smtest.OpGetSecretValue); n != 1 {
		t.Fatalf("GetSecretValue calls = %d; not found must not be retried", n)
	}
	if _, err := f.p.Describe(t.Context(), "nokey", ""); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Describe = %v; want ErrNotFound", err)
	}
	if err := f.p.Delete(t.Context(), "nokey", ""); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Delete = %v; want ErrNotFound", err)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	tests := []struct {
		name     string
		failure  smtest.Failure
		n        int
		wantErr  error
		wantCode string
		calls    int
	}{
		{"throttled throughout", smtest.Throttle, 100, secrets.ErrUnavailable, "ThrottlingException", 3},
		{"5xx throughout", smtest.InternalError, 100, secrets.ErrUnavailable, "InternalServiceError", 3},
		{"throttled once then ok", smtest.Throttle, 1, nil, "", 2},
		{"5xx twice then ok", smtest.InternalError, 2, nil, "", 3},
		{"access denied is not retried", smtest.AccessDenied, 100, secrets.ErrUnavailable, "AccessDeniedException", 1},
		{"injected not found", smtest.NotFound, 1, secrets.ErrNotFound, "ResourceNotFoundException", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.srv.SetSecret(defaultID("acme"), keyA, nil)
			f.srv.Fail(smtest.OpGetSecretValue, tc.failure, tc.n)
			got, _, err := f.p.Get(t.Context(), "acme", "")
			if n := f.srv.Count(smtest.OpGetSecretValue); n != tc.calls {
				t.Errorf("GetSecretValue calls = %d; want %d", n, tc.calls)
			}
			if tc.wantErr == nil {
				if err != nil || got != keyA {
					t.Fatalf("Get = %q, %v; want the key", got, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Get err = %v; want %v", err, tc.wantErr)
			}
			var ae *awssm.Error
			if !errors.As(err, &ae) || ae.Code != tc.wantCode || ae.Op != "GetSecretValue" || ae.SecretID != defaultID("acme") {
				t.Fatalf("err = %#v; want code %s", err, tc.wantCode)
			}
			if strings.Contains(err.Error(), keyA) {
				t.Fatalf("error leaks the key: %v", err)
			}
		})
	}
}

func TestNetworkErrorIsUnavailable(t *testing.T) {
	smtest.IsolateEnv(t)
	srv := smtest.New(t, smtest.Options{})
	url := srv.URL
	srv.Close()
	p, err := awssm.New(t.Context(), awssm.Options{
		Region: "us-east-1", Endpoint: url, FingerprintKey: fpKey,
		Credentials: srv.Credentials(), MaxBackoff: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.Get(t.Context(), "acme", "")
	if !errors.Is(err, secrets.ErrUnavailable) {
		t.Fatalf("Get against a closed port = %v; want ErrUnavailable", err)
	}
}

func TestTimeoutBoundsTheCall(t *testing.T) {
	f := newFixture(t, func(o *awssm.Options) { o.Timeout = 200 * time.Millisecond })
	f.srv.SetSecret(defaultID("acme"), keyA, nil)
	release := f.srv.Pause(smtest.OpGetSecretValue)
	defer release()
	_, _, err := f.p.Get(t.Context(), "acme", "")
	if !errors.Is(err, secrets.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get on a hung endpoint = %v; want ErrUnavailable and DeadlineExceeded", err)
	}
}

func TestRotationNewVersion(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	m1, err := f.p.Put(ctx, "acme", "", keyA)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := f.p.Put(ctx, "acme", "", keyB)
	if err != nil {
		t.Fatal(err)
	}
	if m1.Version == m2.Version || m1.Fingerprint == m2.Fingerprint {
		t.Fatalf("rotation kept version/fingerprint: %+v %+v", m1, m2)
	}
	got, ver, err := f.p.Get(ctx, "acme", "")
	if err != nil || got != keyB || ver != m2.Version {
		t.Fatalf("Get after rotation = %q, %q, %v; want keyB, %s", got, ver, err, m2.Version)
	}
	s, _ := f.srv.Secret(defaultID("acme"))
	if s.CurrentVersion != m2.Version || s.PreviousVersion != m1.Version {
		t.Fatalf("stages: current %s previous %s; want %s %s", s.CurrentVersion, s.PreviousVersion, m2.Version, m1.Version)
	}
	if s.Current != `{"apiKey":"`+keyB+`"}` {
		t.Fatalf("stored value is not the JSON form")
	}
	d, err := f.p.Describe(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	if d.Fingerprint != secrets.Fingerprint(fpKey, keyB) || d.Version != m2.Version || d.SecretID != s.ARN || d.Provider != "aws" || d.Tenant != "acme" {
		t.Fatalf("Describe = %+v", d)
	}
}

func TestVersionStage(t *testing.T) {
	f := newFixture(t, func(o *awssm.Options) { o.VersionStage = "AWSPREVIOUS" })
	f.srv.SetSecret(defaultID("acme"), keyA, nil)
	f.srv.SetSecret(defaultID("acme"), keyB, nil)
	got, _, err := f.p.Get(t.Context(), "acme", "")
	if err != nil || got != keyA {
		t.Fatalf("Get AWSPREVIOUS = %q, %v; want keyA", got, err)
	}
	for _, r := range f.srv.Requests() {
		if r.Op == smtest.OpGetSecretValue && r.VersionStage != "AWSPREVIOUS" {
			t.Fatalf("requested stage %q", r.VersionStage)
		}
	}
}

func TestCreateOnPutWithTags(t *testing.T) {
	f := newFixture(t, nil)
	m, err := f.p.Put(t.Context(), "acme", "", keyA)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, r := range f.srv.Requests() {
		ops = append(ops, r.Op)
		if r.Op == smtest.OpCreateSecret {
			if r.SecretID != defaultID("acme") || r.Tags["flowgate:tenant"] != "acme" || r.Tags["flowgate:managed"] != "true" || len(r.Tags) != 2 {
				t.Fatalf("CreateSecret request = %+v", r)
			}
		}
	}
	if strings.Join(ops, ",") != "PutSecretValue,CreateSecret" {
		t.Fatalf("operations = %v", ops)
	}
	s, ok := f.srv.Secret(defaultID("acme"))
	if !ok || s.Tags["flowgate:tenant"] != "acme" || s.CurrentVersion != m.Version || m.SecretID != s.ARN {
		t.Fatalf("secret = %+v, metadata %+v", s, m)
	}
	if m.Fingerprint != secrets.Fingerprint(fpKey, keyA) || !strings.HasPrefix(m.Fingerprint, "sha256:") || len(m.Fingerprint) != len("sha256:")+12 {
		t.Fatalf("fingerprint %q", m.Fingerprint)
	}
}

func TestPutRejectsBadValues(t *testing.T) {
	f := newFixture(t, nil)
	for _, v := range []string{"", "a b", "a\nb", strings.Repeat("x", 4097), "a\x00b"} {
		if _, err := f.p.Put(t.Context(), "acme", "", v); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("Put(%q...) = %v; want ErrInvalid", v[:min(len(v), 8)], err)
		}
	}
	if n := f.srv.Count(""); n != 0 {
		t.Fatalf("invalid values reached the service: %d calls", n)
	}
}

func TestDeleteRecoveryWindowAndRestore(t *testing.T) {
	seven, zero := 7, 0
	t.Run("recovery window then put restores", func(t *testing.T) {
		f := newFixture(t, func(o *awssm.Options) { o.RecoveryWindowDays = &seven })
		ctx := t.Context()
		if _, err := f.p.Put(ctx, "acme", "", keyA); err != nil {
			t.Fatal(err)
		}
		if err := f.p.Delete(ctx, "acme", ""); err != nil {
			t.Fatal(err)
		}
		reqs := f.srv.Requests()
		last := reqs[len(reqs)-1]
		if last.Op != smtest.OpDeleteSecret || last.RecoveryDays != 7 || last.ForceDelete {
			t.Fatalf("DeleteSecret request = %+v", last)
		}
		if _, _, err := f.p.Get(ctx, "acme", ""); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("Get of a deleted key = %v; want ErrNotFound", err)
		}
		if _, err := f.p.Describe(ctx, "acme", ""); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("Describe of a deleted key = %v; want ErrNotFound", err)
		}
		if err := f.p.Delete(ctx, "acme", ""); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("second Delete = %v; want ErrNotFound", err)
		}
		if _, err := f.p.Put(ctx, "acme", "", keyB); err != nil {
			t.Fatalf("Put after delete: %v", err)
		}
		if got, _, err := f.p.Get(ctx, "acme", ""); err != nil || got != keyB {
			t.Fatalf("Get after restore = %q, %v", got, err)
		}
		if f.srv.Count(smtest.OpRestoreSecret) != 1 {
			t.Fatalf("RestoreSecret not called")
		}
	})
	t.Run("force delete", func(t *testing.T) {
		f := newFixture(t, func(o *awssm.Options) { o.RecoveryWindowDays = &zero })
		if _, err := f.p.Put(t.Context(), "acme", "", keyA); err != nil {
			t.Fatal(err)
		}
		if err := f.p.Delete(t.Context(), "acme", ""); err != nil {
			t.Fatal(err)
		}
		reqs := f.srv.Requests()
		if last := reqs[len(reqs)-1]; !last.ForceDelete || last.RecoveryDays != 0 {
			t.Fatalf("DeleteSecret request = %+v", last)
		}
		if _, ok := f.srv.Secret(defaultID("acme")); ok {
			t.Fatalf("secret still present after force delete")
		}
	})
}

func TestTenantIsolation(t *testing.T) {
	f := newFixture(t, nil)
	f.srv.SetSecret(defaultID("tenant-a"), keyA, nil)
	f.srv.SetSecret(defaultID("tenant-b"), keyB, nil)
	got, _, err := f.p.Get(t.Context(), "tenant-a", "")
	if err != nil || got != keyA {
		t.Fatalf("Get tenant-a = %q, %v", got, err)
	}
	for _, r := range f.srv.Requests() {
		if r.SecretID != defaultID("tenant-a") {
			t.Fatalf("tenant-a's fetch requested %q", r.SecretID)
		}
	}
}

func TestKeyRef(t *testing.T) {
	f := newFixture(t, nil)
	ctx := t.Context()
	const ref = "team/acme/claude"
	f.srv.SetSecret(ref, keyA, map[string]string{"flowgate:tenant": "acme"})
	f.srv.SetSecret(defaultID("acme"), keyB, nil) // must not be read
	got, _, err := f.p.Get(ctx, "acme", ref)
	if err != nil || got != keyA {
		t.Fatalf("Get with keyRef = %q, %v", got, err)
	}
	s, _ := f.srv.Secret(ref)
	got, _, err = f.p.Get(ctx, "acme", s.ARN)
	if err != nil || got != keyA {
		t.Fatalf("Get with ARN keyRef = %q, %v", got, err)
	}
	for _, r := range f.srv.Requests() {
		if r.SecretID != ref && r.SecretID != s.ARN {
			t.Fatalf("keyRef fetch requested %q", r.SecretID)
		}
	}

	t.Run("put and delete through keyRef", func(t *testing.T) {
		const ref2 = "team/acme/new-key"
		m, err := f.p.Put(ctx, "acme", ref2, keyB)
		if err != nil {
			t.Fatal(err)
		}
		s2, ok := f.srv.Secret(ref2)
		if !ok || s2.Tags["flowgate:tenant"] != "acme" || m.SecretID != s2.ARN {
			t.Fatalf("created %+v", s2)
		}
		if err := f.p.Delete(ctx, "acme", ref2); err != nil {
			t.Fatal(err)
		}
	})

	rejected := []struct{ name, ref string }{
		{"another tenant's templated secret", defaultID("other")},
		{"another tenant's templated ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:" + defaultID("other") + "-AbCdEf"},
		{"bad characters", "team/acme key"},
		{"too long", strings.Repeat("a", 2049)},
		{"not an arn", "arn:aws:s3:::bucket"},
	}
	for _, tc := range rejected {
		t.Run(tc.name, func(t *testing.T) {
			f.srv.Reset()
			if _, _, err := f.p.Get(ctx, "acme", tc.ref); !errors.Is(err, secrets.ErrInvalid) {
				t.Fatalf("Get = %v; want ErrInvalid", err)
			}
			if _, err := f.p.Put(ctx, "acme", tc.ref, keyA); !errors.Is(err, secrets.ErrInvalid) {
				t.Fatalf("Put = %v; want ErrInvalid", err)
			}
			if err := f.p.Delete(ctx, "acme", tc.ref); !errors.Is(err, secrets.ErrInvalid) {
				t.Fatalf("Delete = %v; want ErrInvalid", err)
			}
			if n := f.srv.Count(""); n != 0 {
				t.Fatalf("a rejected keyRef reached the service (%d calls)", n)
			}
		})
	}

	t.Run("untagged secret is refused", func(t *testing.T) {
		const foreign = "prod/database/password"
		f.srv.SetSecret(foreign, "hunter2-db-password", nil)
		f.srv.SetSecret("team/other/claude", keyB, map[string]string{"flowgate:tenant": "other"})
		for _, ref := range []string{foreign, "team/other/claude"} {
			if _, _, err := f.p.Get(ctx, "acme", ref); !errors.Is(err, secrets.ErrInvalid) {
				t.Fatalf("Get %s = %v; want ErrInvalid", ref, err)
			}
			if _, err := f.p.Put(ctx, "acme", ref, keyA); !errors.Is(err, secrets.ErrInvalid) {
				t.Fatalf("Put %s = %v; want ErrInvalid", ref, err)
			}
			if err := f.p.Delete(ctx, "acme", ref); !errors.Is(err, secrets.ErrInvalid) {
				t.Fatalf("Delete %s = %v; want ErrInvalid", ref, err)
			}
		}
		if f.srv.Count(smtest.OpGetSecretValue) != 0 || f.srv.Count(smtest.OpPutSecretValue) != 0 || f.srv.Count(smtest.OpDeleteSecret) != 0 {
			t.Fatalf("refused secrets were read, written or deleted")
		}
		if s, _ := f.srv.Secret(foreign); s.Current != "hunter2-db-password" || s.Deleted {
			t.Fatalf("foreign secret changed")
		}
	})
}

func TestOptionsValidation(t *testing.T) {
	smtest.IsolateEnv(t)
	eight, six := 8, 6
	tests := []struct {
		name string
		opts awssm.Options
	}{
		{"no fingerprint key", awssm.Options{Region: "us-east-1"}},
		{"template without tenant", awssm.Options{Region: "us-east-1", FingerprintKey: fpKey, SecretIDTemplate: "flowgate/key"}},
		{"template twice", awssm.Options{Region: "us-east-1", FingerprintKey: fpKey, SecretIDTemplate: "{tenant}/{tenant}"}},
		{"template bad chars", awssm.Options{Region: "us-east-1", FingerprintKey: fpKey, SecretIDTemplate: "a b/{tenant}"}},
		{"recovery 6", awssm.Options{Region: "us-east-1", FingerprintKey: fpKey, RecoveryWindowDays: &six}},
		{"plain http off loopback", awssm.Options{Region: "us-east-1", FingerprintKey: fpKey, Endpoint: "http://secrets.example.com"}},
		{"endpoint with userinfo", awssm.Options{Region: "us-east-1", FingerprintKey: fpKey, Endpoint: "https://u:p@example.com"}},
		{"no region", awssm.Options{FingerprintKey: fpKey}},
		{"bad stage", awssm.Options{Region: "us-east-1", FingerprintKey: fpKey, VersionStage: "a b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := awssm.New(t.Context(), tc.opts); err == nil {
				t.Fatalf("New accepted %+v", tc.opts)
			}
		})
	}
	ok := awssm.Options{Region: "eu-west-1", FingerprintKey: fpKey, RecoveryWindowDays: &eight,
		Endpoint: "https://vpce-123.secretsmanager.eu-west-1.vpce.amazonaws.com", SecretIDTemplate: "prod/{tenant}"}
	if _, err := awssm.New(t.Context(), ok); err != nil {
		t.Fatalf("New(%+v): %v", ok, err)
	}
}
