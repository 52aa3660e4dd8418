package server

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"
)

// RequestMetrics receives one observation per request of the public listener.
type RequestMetrics interface {
	// Request reports a finished request. route is the pattern that matched, without its
	// method ("other" when no route did), status the code sent (101 for a WebSocket upgrade)
	// and d the latency: for an upgrade, until the connection was handed over, since the
	// session that follows may last for hours.
	Request(route, method string, status int, d time.Duration)
}

// unmatchedRoute is the label of requests no route matched (the catch-all 404 included):
// the path itself would be an unbounded label.
const unmatchedRoute = "other"

// withHTTPMetrics reports every request to m. mux is the router next ends in. ServeMux
// records the pattern it matched on the request it was given, so between this middleware and
// mux no handler may replace the request (r.WithContext): withRequestID, which does, must
// stay outside. When mux never ran because a middleware answered first (the per-address
// limit, a recovered panic), the pattern is looked up afterwards.
func withHTTPMetrics(m RequestMetrics, mux *http.ServeMux, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &metricsRecorder{ResponseWriter: w, status: http.StatusOK}
		// A handler aborting with http.ErrAbortHandler unwinds through here uncounted: its
		// response is cut, with no status to report.
		next.ServeHTTP(rec, r)
		end := rec.hijackedAt
		if end.IsZero() {
			end = time.Now()
		}
		pattern := r.Pattern
		if pattern == "" {
			_, pattern = mux.Handler(r)
		}
		m.Request(routeOf(pattern), r.Method, rec.status, end.Sub(start))
	})
}

// routeOf is the path of a ServeMux pattern ("[METHOD ][HOST]/PATH"): the method is a
// label of its own, and the catch-all "/" means that no route matched.
func routeOf(pattern string) string {
	if i := strings.IndexAny(pattern, " \t"); i >= 0 {
		pattern = strings.TrimLeft(pattern[i:], " \t")
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:] // a host-specific pattern
	}
	if pattern == "" || pattern == "/" {
		return unmatchedRoute
	}
	return pattern
}

// metricsRecorder keeps the status a handler sent and when a WebSocket upgrade took the
// connection over.
type metricsRecorder struct {
	http.ResponseWriter
	status     int
	wrote      bool
	hijackedAt time.Time
}

func (m *metricsRecorder) WriteHeader(code int) {
	if !m.wrote {
		m.status, m.wrote = code, true
	}
	m.ResponseWriter.WriteHeader(code)
}

func (m *metricsRecorder) Write(b []byte) (int, error) {
	m.wrote = true
	return m.ResponseWriter.Write(b)
}

// Hijack lets the WebSocket upgrade through and marks the end of the request's latency.
func (m *metricsRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := m.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("server: response writer cannot hijack")
	}
	conn, rw, err := hj.Hijack()
	if err == nil {
		m.status, m.wrote, m.hijackedAt = http.StatusSwitchingProtocols, true, time.Now()
	}
	return conn, rw, err
}

func (m *metricsRecorder) Flush() {
	if f, ok := m.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (m *metricsRecorder) Unwrap() http.ResponseWriter { return m.ResponseWriter }
