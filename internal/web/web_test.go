package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

func serve(t *testing.T, method, target string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	return rec.Result()
}

func TestHandlerServes(t *testing.T) {
	tests := []struct {
		path   string
		status int
		ctype  string
	}{
		{"/ui/", 200, "text/html; charset=utf-8"},
		{"/ui/index.html", 200, "text/html; charset=utf-8"},
		{"/ui/app.js", 200, "text/javascript; charset=utf-8"},
		{"/ui/admin.js", 200, "text/javascript; charset=utf-8"},
		{"/ui/style.css", 200, "text/css; charset=utf-8"},
		{"/ui/favicon.svg", 200, "image/svg+xml"},
		{"/sdk/flowgate.js", 200, "text/javascript; charset=utf-8"},
		{"/sdk/flowgate.d.ts", 200, "text/plain; charset=utf-8"},
		{"/sdk/", 404, "application/problem+json"},
		{"/ui/nope.js", 404, "application/problem+json"},
		{"/ui/../sdk/flowgate.js", 404, "application/problem+json"},
		{"/ui//app.js", 404, "application/problem+json"},
		{"/ui/static/ui/app.js", 404, "application/problem+json"},
		{"/static/ui/app.js", 404, "application/problem+json"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			res := serve(t, http.MethodGet, tc.path, nil)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			if got := res.Header.Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if got := res.Header.Get("Content-Security-Policy"); got != CSP {
				t.Errorf("CSP %q", got)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
			if tc.status == 200 {
				if got := res.Header.Get("Cache-Control"); got != "no-cache" {
					t.Errorf("Cache-Control %q", got)
				}
				if res.Header.Get("ETag") == "" {
					t.Error("no ETag")
				}
			}
		})
	}
}

func TestCSPIsStrict(t *testing.T) {
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"} {
		if !strings.Contains(CSP, want) {
			t.Errorf("CSP lacks %q", want)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*", "http:", "https:"} {
		if strings.Contains(CSP, bad) {
			t.Errorf("CSP allows %q", bad)
		}
	}
}

func TestConditionalAndMethods(t *testing.T) {
	first := serve(t, http.MethodGet, "/sdk/flowgate.js", nil)
	etag := first.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) {
		t.Fatalf("ETag %q is not a strong validator", etag)
	}
	if got := first.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("the SDK lacks CORS for module scripts: %q", got)
	}
	again := serve(t, http.MethodGet, "/sdk/flowgate.js", http.Header{"If-None-Match": {etag}})
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", again.StatusCode)
	}
	head := serve(t, http.MethodHead, "/ui/", nil)
	if head.StatusCode != 200 || head.Header.Get("Content-Length") == "" {
		t.Errorf("HEAD: status %d, length %q", head.StatusCode, head.Header.Get("Content-Length"))
	}
	ui := serve(t, http.MethodGet, "/ui/", nil)
	if got := ui.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("the dashboard must not be shared cross-origin: %q", got)
	}
	if got := ui.Header.Get("Cross-Origin-Resource-Policy"); got != "same-origin" {
		t.Errorf("Cross-Origin-Resource-Policy %q", got)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		res := serve(t, m, "/ui/", nil)
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405", m, res.StatusCode)
		}
	}
}

func embedded(t *testing.T, ext string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ext {
			return err
		}
		b, err := fs.ReadFile(static, p)
		out[strings.TrimPrefix(p, "static")] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no %s files", ext)
	}
	return out
}

var (
	scriptTag   = regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script\s*>`)
	styleTag    = regexp.MustCompile(`(?i)<style\b`)
	styleAttr   = regexp.MustCompile(`(?i)\sstyle\s*=`)
	handlerAttr = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	jsURL       = regexp.MustCompile(`(?i)javascript:`)
)

// The CSP would block inline script and style anyway; this keeps the pages from depending on
// anything it blocks (a page that silently half-works).
func TestNoInlineScriptOrStyle(t *testing.T) {
	for name, body := range embedded(t, ".html") {
		for _, m := range scriptTag.FindAllStringSubmatch(body, -1) {
			if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
				t.Errorf("%s: inline script %q", name, m[0])
			}
		}
		for _, re := range []*regexp.Regexp{styleTag, styleAttr, handlerAttr, jsURL} {
			if loc := re.FindStringIndex(body); loc != nil {
				t.Errorf("%s: inline style or handler at %d: %q", name, loc[0], body[loc[0]:min(len(body), loc[1]+30)])
			}
		}
	}
}

// Every id is unique: a duplicate makes getElementById find the wrong element, silently.
func TestUniqueIDs(t *testing.T) {
	idAttr := regexp.MustCompile(`\sid="([^"]+)"`)
	for name, body := range embedded(t, ".html") {
		seen := map[string]bool{}
		for _, m := range idAttr.FindAllStringSubmatch(body, -1) {
			if seen[m[1]] {
				t.Errorf("%s: id %q twice", name, m[1])
			}
			seen[m[1]] = true
		}
	}
}

var (
	unsafeDOM = regexp.MustCompile(`\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(|new Function\(|setAttribute\(\s*['"]style|\.cssText\b`)
	logCall   = regexp.MustCompile(`\bconsole\.(log|info|debug|warn|error)\(`)
	importRe  = regexp.MustCompile(`(?m)^import\s[^'"]*['"]([^'"]+)['"]`)
)

// Engine output is untrusted: no script may turn data into markup or code, and nothing may
// log (a log line is where tokens leak).
func TestScriptsAvoidHTMLSinksAndLogging(t *testing.T) {
	for name, body := range embedded(t, ".js") {
		if loc := unsafeDOM.FindStringIndex(body); loc != nil {
			t.Errorf("%s: unsafe DOM or eval use: %q", name, body[loc[0]:loc[1]])
		}
		if loc := logCall.FindStringIndex(body); loc != nil {
			t.Errorf("%s: console logging: %q", name, body[loc[0]:loc[1]])
		}
	}
}

// Every module import of the dashboard resolves to a file the handler serves.
func TestImportsResolve(t *testing.T) {
	for name, body := range embedded(t, ".js") {
		for _, m := range importRe.FindAllStringSubmatch(body, -1) {
			target := m[1]
			if !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir(name), target)
			}
			res := serve(t, http.MethodGet, target, nil)
			if res.StatusCode != 200 {
				t.Errorf("%s imports %s: status %d", name, m[1], res.StatusCode)
			}
		}
	}
	index := serve(t, http.MethodGet, "/ui/", nil)
	body, _ := io.ReadAll(index.Body)
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(string(body), -1) {
		if strings.HasPrefix(m[1], "#") {
			continue
		}
		if res := serve(t, http.MethodGet, m[1], nil); res.StatusCode != 200 {
			t.Errorf("index.html references %s: status %d", m[1], res.StatusCode)
		}
	}
}

func TestNewHandlerNeedsTheFiles(t *testing.T) {
	sub, err := fs.Sub(static, "static/ui")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newHandler(sub); err == nil {
		t.Error("a tree without static/ was accepted")
	}
	noSDK := fstest.MapFS{"static/ui/index.html": {Data: []byte("<!doctype html>")}}
	if _, err := newHandler(noSDK); err == nil {
		t.Error("a tree without the SDK was accepted")
	}
}
