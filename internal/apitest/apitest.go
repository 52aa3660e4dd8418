// Package apitest sends a test's HTTP request to a gateway's API and reads the answer: the one
// copy the server and end-to-end tests share.
package apitest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// maxBody bounds what a test reads back; the largest answers (audit exports) stay well below.
const maxBody = 16 << 20

// Response is what came back: the status, the headers and the body (at most 16 MiB).
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// Do sends method url with client: body as JSON when set, token as a bearer token when set,
// and hdr as name, value pairs. A transport error fails the test.
func Do(t testing.TB, client *http.Client, method, url, token, body string, hdr ...string) Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}
