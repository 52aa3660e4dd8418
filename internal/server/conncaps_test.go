package server

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/ratelimit"
)

// capsServer serves a handler that answers with the caps its connection holds, behind a
// BatchListener with caps.
func capsServer(t *testing.T, caps *ConnCaps) string {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := NewBatchListener(raw, caps)
	srv := NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := countedFrom(r.Context())
		w.Header().Set("X-Counted-Block", c.block)
		if c.global {
			w.Header().Set("X-Counted-Global", "1")
		}
	}), 5*time.Second, time.Minute, 1<<14, slog.New(slog.DiscardHandler))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return raw.Addr().String()
}

// keepAlive opens a connection from source address src, sends one keep-alive request and
// returns the connection (left open) with the response.
func keepAlive(t *testing.T, addr, src string) (net.Conn, *http.Response) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("response from %s: %v", src, err)
	}
	return c, resp
}

func TestConnCapsCountEveryConnection(t *testing.T) {
	var (
		mu       sync.Mutex
		rejected []string
	)
	caps := &ConnCaps{
		Counter: ratelimit.NewCounter(ratelimit.CounterOptions{}), Global: 5, PerIP: 3,
		Rejected: func(scope string) { mu.Lock(); rejected = append(rejected, scope); mu.Unlock() },
	}
	addr := capsServer(t, caps)

	var first net.Conn
	for i := range 3 {
		c, resp := keepAlive(t, addr, "127.0.0.1")
		if resp.StatusCode != 200 || resp.Header.Get("X-Counted-Block") != "127.0.0.1/32" || resp.Header.Get("X-Counted-Global") != "1" {
			t.Fatalf("connection %d: %d %v; want 200 counted under 127.0.0.1/32 and global", i, resp.StatusCode, resp.Header)
		}
		if i == 0 {
			first = c
		}
	}
	_, resp := keepAlive(t, addr, "127.0.0.1")
	var p problem
	_ = json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != http.StatusTooManyRequests || p.Code != "rate_limited" || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("4th idle connection from one address: %d %+v; want 429 rate_limited, Retry-After 5", resp.StatusCode, p)
	}
	// Other addresses still connect, up to the global cap.
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		if _, resp := keepAlive(t, addr, src); resp.StatusCode != 200 {
			t.Fatalf("from %s: %d; want 200", src, resp.StatusCode)
		}
	}
	if _, resp := keepAlive(t, addr, "127.0.0.4"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("6th connection overall: %d; want 429 (global cap 5)", resp.StatusCode)
	}
	mu.Lock()
	got := append([]string(nil), rejected...)
	mu.Unlock()
	if len(got) != 2 || got[0] != "connections_ip" || got[1] != "connections_global" {
		t.Fatalf("rejections counted %v; want [connections_ip connections_global]", got)
	}
	// Closing a connection gives its slots back.
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, resp := keepAlive(t, addr, "127.0.0.1")
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's slot was never released")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConnCapsTrustedProxyIsNotCappedPerAddress(t *testing.T) {
	caps := &ConnCaps{
		Counter: ratelimit.NewCounter(ratelimit.CounterOptions{}), Global: 10, PerIP: 1,
		Trusted: func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.1") },
	}
	addr := capsServer(t, caps)
	for i := range 3 {
		_, resp := keepAlive(t, addr, "127.0.0.1")
		if resp.StatusCode != 200 || resp.Header.Get("X-Counted-Block") != "" || resp.Header.Get("X-Counted-Global") != "1" {
			t.Fatalf("proxy connection %d: %d %v; want 200, counted globally only (the handshake caps the client it names)", i, resp.StatusCode, resp.Header)
		}
	}
	keepAlive(t, addr, "127.0.0.2")
	if _, resp := keepAlive(t, addr, "127.0.0.2"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("2nd direct connection with ip cap 1: %d; want 429", resp.StatusCode)
	}
}
