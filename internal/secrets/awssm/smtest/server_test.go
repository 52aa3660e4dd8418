package smtest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/internal/secrets/awssm/smtest"
)

func post(t *testing.T, url, target, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", target)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func TestUnsignedAndForgedRequestsAreRejected(t *testing.T) {
	srv := smtest.New(t, smtest.Options{})
	srv.SetSecret("s", "v", nil)
	status, out := post(t, srv.URL, "secretsmanager.GetSecretValue", `{"SecretId":"s"}`, nil)
	if status != 400 || out["__type"] != "MissingAuthenticationTokenException" {
		t.Fatalf("unsigned: %d %v", status, out)
	}
	forged := "AWS4-HMAC-SHA256 Credential=" + smtest.DefaultAccessKeyID + "/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + strings.Repeat("0", 64)
	status, out = post(t, srv.URL, "secretsmanager.GetSecretValue", `{"SecretId":"s"}`, map[string]string{"Authorization": forged, "X-Amz-Date": "20260101T000000Z"})
	if status != 400 || out["__type"] != "InvalidSignatureException" {
		t.Fatalf("forged signature: %d %v", status, out)
	}
	reqs := srv.Requests()
	if len(reqs) != 2 || reqs[0].Signed || !reqs[1].Signed || reqs[1].SecretID != "s" {
		t.Fatalf("records = %+v", reqs)
	}
	if srv.Count(smtest.OpGetSecretValue) != 2 {
		t.Fatalf("count = %d", srv.Count(smtest.OpGetSecretValue))
	}
}

func TestVersionStagesMove(t *testing.T) {
	srv := smtest.New(t, smtest.Options{})
	v1 := srv.SetSecret("s", "one", map[string]string{"k": "v"})
	v2 := srv.SetSecret("s", "two", nil)
	v3 := srv.SetSecret("s", "three", nil)
	s, ok := srv.Secret("s")
	if !ok || s.Current != "three" || s.CurrentVersion != v3 || s.PreviousVersion != v2 || s.Versions != 3 || s.Tags["k"] != "v" {
		t.Fatalf("secret = %+v (v1 %s)", s, v1)
	}
	if !strings.HasPrefix(s.ARN, "arn:aws:secretsmanager:us-east-1:123456789012:secret:s-") || len(s.ARN) != len("arn:aws:secretsmanager:us-east-1:123456789012:secret:s-")+6 {
		t.Fatalf("ARN %q", s.ARN)
	}
}
