package secrets_test

import (
	"errors"
	"fmt"
	"github.com/flowgate/flowgate/internal/logbuf"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/secrets"
	"github.com/flowgate/flowgate/internal/secrets/awssm"
	"github.com/flowgate/flowgate/internal/secrets/awssm/smtest"
	"github.com/flowgate/flowgate/internal/secrets/local"
	"github.com/flowgate/flowgate/internal/store"
	"github.com/flowgate/flowgate/internal/store/storetest"
)

// canary is a key value that must never appear in a log line or an error.
const canary = "sk-ant-api03-CANARY-7f3e9a1c5b2d4e6f8a0b1c2d3e4f5a6b"

// TestCanaryNeverLeaks drives every package through its failure paths with the canary as the
// key and asserts that neither the logs (at debug level) nor any error text contains it.
func TestCanaryNeverLeaks(t *testing.T) {
	smtest.IsolateEnv(t)
	logs := &logbuf.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var errs []error
	collect := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	ctx := t.Context()
	fpKey := []byte("canary-test-fingerprint-key-0123456")

	// AWS provider behind a cache.
	srv := smtest.New(t, smtest.Options{})
	aws, err := awssm.New(ctx, awssm.Options{
		Region: srv.Region(), Endpoint: srv.URL, FingerprintKey: fpKey, Credentials: srv.Credentials(),
		MaxBackoff: time.Millisecond, Timeout: 300 * time.Millisecond, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	cache, err := secrets.NewCache(secrets.CacheOptions{Provider: aws, Now: clk.Now, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	id := "flowgate/tenants/acme/anthropic-api-key"
	_, err = cache.Set(ctx, "acme", "", canary)
	collect(err)
	if k, err := cache.APIKey(ctx, "acme", ""); err != nil || k != canary {
		t.Fatalf("APIKey = %v", err)
	}
	for _, f := range []smtest.Failure{smtest.Throttle, smtest.InternalError, smtest.AccessDenied, smtest.NotFound} {
		clk.Advance(6 * time.Minute)
		srv.Fail("", f, 100)
		_, err := cache.APIKey(ctx, "acme", "") // stale or refused
		collect(err)
		_, err = cache.Describe(ctx, "acme", "")
		collect(err)
		_, err = cache.Set(ctx, "acme", "", canary)
		collect(err)
		collect(cache.Delete(ctx, "acme", ""))
		srv.Reset()
		srv.SetSecret(id, `{"apiKey":"`+canary+`"}`, nil)
	}
	clk.Advance(time.Hour)
	srv.Fail("", smtest.Throttle, 100)
	_, err = cache.APIKey(ctx, "acme", "") // past max_stale
	collect(err)
	srv.Reset()
	release := srv.Pause(smtest.OpGetSecretValue)
	cache.Invalidate("acme")
	_, err = cache.APIKey(ctx, "acme", "") // provider timeout
	collect(err)
	release()
	// Malformed stored values around the canary.
	for _, v := range []string{`{"apiKey":"` + canary, canary + " trailing", `{"apiKey":"` + canary + ` x"}`, `{"key":"` + canary + `"}`, `{"apiKey":["` + canary + `"]}`} {
		srv.SetSecret(id, v, nil)
		cache.Invalidate("acme")
		_, err = cache.APIKey(ctx, "acme", "")
		collect(err)
		_, err = cache.Describe(ctx, "acme", "")
		collect(err)
	}
	// Invalid values written through the API.
	for _, v := range []string{canary + " ", canary + "\n", " " + canary, canary + "\x00", canary + strings.Repeat("x", 5000)} {
		_, err = cache.Set(ctx, "acme", "", v)
		collect(err)
	}
	// keyRef refusals.
	srv.SetSecret("foreign/secret", canary, nil)
	_, err = cache.APIKey(ctx, "acme", "foreign/secret")
	collect(err)
	_, err = cache.Set(ctx, "acme", "flowgate/tenants/other/anthropic-api-key", canary)
	collect(err)
	// Network failure.
	dead := smtest.New(t, smtest.Options{})
	deadURL := dead.URL
	dead.Close()
	deadAWS, err := awssm.New(ctx, awssm.Options{Region: "us-east-1", Endpoint: deadURL, FingerprintKey: fpKey,
		Credentials: srv.Credentials(), MaxBackoff: time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	_, err = deadAWS.Put(ctx, "acme", "", canary)
	collect(err)

	// Local provider.
	db := storetest.Open(t, store.DriverSQLite)
	storetest.CreateTenant(t, db, "acme")
	storetest.CreateTenant(t, db, "other")
	mk, _, err := local.LoadOrGenerateMasterKey(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	lp, err := local.New(local.Options{MasterKey: mk, FingerprintKey: fpKey, Store: db, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	lcache, err := secrets.NewCache(secrets.CacheOptions{Provider: lp, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	_, err = lcache.Set(ctx, "acme", "", canary)
	collect(err)
	rec, err := db.GetSecret(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	rec.Tenant = "other"
	if _, err := db.PutSecret(ctx, rec); err != nil {
		t.Fatal(err)
	}
	_, err = lcache.APIKey(ctx, "other", "") // moved ciphertext
	collect(err)
	mk2, _, _ := local.LoadOrGenerateMasterKey(filepath.Join(t.TempDir(), "master.key"))
	lp2, _ := local.New(local.Options{MasterKey: mk2, FingerprintKey: fpKey, Store: db, Logger: logger})
	_, _, err = lp2.Get(ctx, "acme", "") // wrong master key
	collect(err)
	_, err = lp2.Describe(ctx, "acme", "")
	collect(err)
	_, err = lcache.Set(ctx, "ghost", "", canary)
	collect(err)
	_, err = lcache.Set(ctx, "acme", "", canary+"\t")
	collect(err)

	// A key file holding the canary as text.
	kf := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(kf, []byte(canary), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = secrets.LoadKeyFile(kf)
	collect(err)

	if len(errs) < 40 {
		t.Fatalf("only %d errors collected; the scenario did not run its failure paths", len(errs))
	}
	var all strings.Builder
	for _, err := range errs {
		fmt.Fprintf(&all, "%v\n%+v\n%#v\n", err, err, err)
		classified := errors.Is(err, secrets.ErrNotFound) || errors.Is(err, secrets.ErrUnavailable) || errors.Is(err, secrets.ErrInvalid)
		if !classified && !strings.HasPrefix(err.Error(), "key file ") {
			t.Errorf("unclassified error: %v", err)
		}
	}
	checkNoCanary(t, "errors", all.String())
	checkNoCanary(t, "logs", logs.String())
	if !strings.Contains(logs.String(), "tenant key fetch failed") {
		t.Fatalf("the failure paths logged nothing; logs:\n%s", logs.String())
	}
	// The canary's distinctive middle must not appear either (e.g. a truncated or prefixed form).
	checkNoCanary(t, "errors", strings.ReplaceAll(all.String(), "sk-ant-api03-", ""))
	t.Logf("%d errors and %d bytes of logs checked", len(errs), len(logs.String()))
}

func checkNoCanary(t *testing.T, what, text string) {
	t.Helper()
	for _, needle := range []string{canary, "CANARY-7f3e9a1c5b2d4e6f8a0b1c2d3e4f5a6b", "7f3e9a1c5b2d4e6f8a0b"} {
		if strings.Contains(text, needle) {
			i := strings.Index(text, needle)
			t.Fatalf("%s contain the canary key: …%s…", what, text[max(0, i-200):i])
		}
	}
}
