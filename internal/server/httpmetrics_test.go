package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/config"
	"github.com/flowgate/flowgate/internal/ratelimit"
)

type observedRequest struct {
	route, method string
	status        int
	d             time.Duration
}

// requestLog is a RequestMetrics that keeps what it is told.
type requestLog struct {
	mu   sync.Mutex
	reqs []observedRequest
}

func (l *requestLog) Request(route, method string, status int, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, observedRequest{route, method, status, d})
}

// wait returns the first n observations; the middleware reports after the handler returned,
// which may be after the client has its response.
func (l *requestLog) wait(t *testing.T, n int) []observedRequest {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		got := append([]observedRequest(nil), l.reqs...)
		l.mu.Unlock()
		if len(got) >= n {
			if len(got) > n {
				t.Fatalf("%d observations, want %d: %+v", len(got), n, got)
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d observations after 10s, want %d: %+v", len(got), n, got)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestRouteOf(t *testing.T) {
	for pattern, want := range map[string]string{
		"GET /v1/admin/tenants/{id}": "/v1/admin/tenants/{id}",
		"/v1/admin/tenants":          "/v1/admin/tenants",
		"GET /{$}":                   "/{$}",
		"POST\t /v1/ws-ticket":       "/v1/ws-ticket",
		"GET example.com/ui/":        "/ui/",
		"/":                          "other",
		"":                           "other",
	} {
		if got := routeOf(pattern); got != want {
			t.Errorf("routeOf(%q) = %q, want %q", pattern, got, want)
		}
	}
}

// Through the real public handler: every request is reported once, under the pattern it
// matched, the ones refused before routing (the per-address limit) included.
func TestPublicRequestMetrics(t *testing.T) {
	t.Parallel()
	rl := &requestLog{}
	d := &Deps{
		Logger: slog.New(slog.DiscardHandler), RequestMetrics: rl,
		Limiter: ratelimit.New(ratelimit.Options{MaxEntries: 100}),
		Limits:  config.Limits{IPHandshakesPerSecond: 1, IPHandshakeBurst: 3},
	}
	srv := httptest.NewServer(Public(d))
	t.Cleanup(srv.Close)
	do := func(method, path string) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	steps := []struct {
		method, path string
		want         observedRequest
	}{
		// Health probes do not take from the per-address bucket.
		{"GET", "/healthz", observedRequest{"/healthz", "GET", 200, 0}},
		{"GET", "/no/such/route?token=secret", observedRequest{"other", "GET", 404, 0}},
		{"DELETE", "/v1/admin/tenants", observedRequest{"/v1/admin/tenants", "DELETE", 405, 0}},
		{"GET", "/ws", observedRequest{"/ws", "GET", 426, 0}},
		// The bucket (burst 3) is empty: refused before the mux, still under its route.
		{"GET", "/ws", observedRequest{"/ws", "GET", 429, 0}},
	}
	for i, s := range steps {
		if got := do(s.method, s.path); got != s.want.status {
			t.Fatalf("%s %s: status %d, want %d", s.method, s.path, got, s.want.status)
		}
		got := rl.wait(t, i+1)[i]
		if got.route != s.want.route || got.method != s.want.method || got.status != s.want.status || got.d <= 0 {
			t.Fatalf("%s %s: observed %+v, want %+v", s.method, s.path, got, s.want)
		}
	}
}

// A WebSocket upgrade is reported as 101, timed until the hijack, not for the connection's
// life; a recovered panic is a 500 under its route.
func TestRequestMetricsUpgradeAndPanic(t *testing.T) {
	t.Parallel()
	rl := &requestLog{}
	const session = 300 * time.Millisecond
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		// A handler that served the connection inline: its time is not the request's.
		time.Sleep(session)
		conn.Close()
	})
	mux.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
	var h http.Handler = mux
	h = withAccessLog(slog.New(slog.DiscardHandler), func(*http.Request) string { return "" }, h)
	h = withRecover(slog.New(slog.DiscardHandler), h)
	h = withHTTPMetrics(rl, mux, h)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := rl.wait(t, 1)[0]
	if got.route != "/ws" || got.method != "GET" || got.status != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade observed as %+v", got)
	}
	if got.d <= 0 || got.d >= session {
		t.Fatalf("upgrade timed %v: want the handshake only (< %v)", got.d, session)
	}

	resp, err := srv.Client().Get(srv.URL + "/boom")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := rl.wait(t, 2)[1]; got.route != "/boom" || got.status != http.StatusInternalServerError {
		t.Fatalf("panic observed as %+v", got)
	}
}
