package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthURL(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"", "http://127.0.0.1:9090/healthz"},
		{":9090", "http://127.0.0.1:9090/healthz"},
		{"0.0.0.0:9191", "http://127.0.0.1:9191/healthz"},
		{"[::]:9090", "http://[::1]:9090/healthz"},
		{"10.1.2.3:9090", "http://10.1.2.3:9090/healthz"},
		{"localhost:9090", "http://localhost:9090/healthz"},
	} {
		got, err := healthURL(tc.addr)
		if err != nil || got != tc.want {
			t.Errorf("healthURL(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
		}
	}
	for _, bad := range []string{"9090", "host:", "127.0.0.1:0"} {
		if _, err := healthURL(bad); err == nil {
			t.Errorf("healthURL(%q) accepted", bad)
		}
	}
}

func TestHealthcheck(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/healthz", http.StatusFound) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	check := func(env map[string]string, args ...string) (int, string) {
		var out, errb strings.Builder
		err := run(context.Background(), append([]string{"flowgate", "healthcheck"}, args...), func(k string) string { return env[k] }, &out, &errb)
		return exitCode(err, &errb), out.String() + errb.String()
	}
	if code, out := check(nil, "--url", srv.URL+"/healthz"); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("healthy: exit %d: %s", code, out)
	}
	if code, out := check(map[string]string{"FLOWGATE_OPS_ADDR": addr}); code != 0 {
		t.Errorf("from FLOWGATE_OPS_ADDR: exit %d: %s", code, out)
	}
	for name, args := range map[string][]string{
		"not ready":   {"--url", srv.URL + "/readyz"},
		"redirect":    {"--url", srv.URL + "/moved"},
		"unreachable": {"--url", "http://127.0.0.1:1/healthz", "--timeout", "2s"},
	} {
		if code, out := check(nil, args...); code != 1 || !strings.HasPrefix(out, "flowgate: healthcheck: ") {
			t.Errorf("%s: exit %d: %q", name, code, out)
		}
	}
	for _, args := range [][]string{{"--url", "ftp://x/healthz"}, {"--timeout", "0s"}, {"extra"}} {
		if code, _ := check(nil, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)", args, code)
		}
	}
}
