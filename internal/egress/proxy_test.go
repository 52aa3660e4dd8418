package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/internal/listentest"
)

// fakeResolver answers from a table; nothing is looked up for real.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

type recorder struct {
	mu      sync.Mutex
	denials []Denial
}

func (r *recorder) add(d Denial) { r.mu.Lock(); r.denials = append(r.denials, d); r.mu.Unlock() }

func newSession(t *testing.T, allow []string, opts Options) (*Session, *recorder) {
	t.Helper()
	pol, err := ParsePolicy("engine.egress.allow", allow)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	opts.Policy, opts.OnDenied = pol, rec.add
	if opts.Resolver == nil {
		opts.Resolver = fakeResolver{}
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Open("task-1", "acme")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, rec
}

// connect sends CONNECT target through s and returns the status line and the connection.
func connect(t *testing.T, s *Session, target string) (string, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", s.Port()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + string(b), c, br
	}
	return resp.Status, c, br
}

func TestConnectAllowedAndCounted(t *testing.T) {
	echo := listentest.Loopback(t, listentest.Echo)
	s, rec := newSession(t, []string{echo}, Options{})
	status, c, br := connect(t, s, echo)
	if !strings.HasPrefix(status, "200") {
		t.Fatalf("status %q", status)
	}
	fmt.Fprint(c, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo %q %v", line, err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().BytesIn < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.BytesOut < 5 || st.BytesIn < 5 || st.Denied != 0 || len(rec.denials) != 0 {
		t.Errorf("stats %+v, denials %v", st, rec.denials)
	}
}

func TestRefusals(t *testing.T) {
	listed := listentest.Loopback(t, listentest.Echo)
	other := listentest.Loopback(t, listentest.Echo) // a loopback service nobody listed: the gateway's ops port, Redis…
	_, listedPort, _ := net.SplitHostPort(listed)
	var dialed []string
	var mu sync.Mutex
	opts := Options{
		Resolver: fakeResolver{
			"rebind.example":   {netip.MustParseAddr("127.0.0.1")},
			"metadata.example": {netip.MustParseAddr("169.254.169.254")},
			"private.example":  {netip.MustParseAddr("10.1.2.3")},
			"mixed.example":    {netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("192.168.1.1")},
			"internal.example": {netip.MustParseAddr("127.0.0.1")},
			"trusted.example":  {netip.MustParseAddr("127.0.0.1")},
		},
		// No test traffic leaves loopback: record the dial instead of making it.
		dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, addr)
			mu.Unlock()
			if strings.HasPrefix(addr, "127.0.0.1:") {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}
			return nil, errors.New("test: not dialing " + addr)
		},
	}
	otherP := otherPort(t, other)
	s, rec := newSession(t, []string{listed, "rebind.example:" + otherP, "internal.example:" + listedPort, "metadata.example:80", "private.example:443", "mixed.example:443"}, opts)
	// A name whose private address is listed too, and a trusted name (the operator's API
	// endpoint), are reached.
	if err := s.p.opts.Policy.Trust("trusted.example:" + listedPort); err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{"trusted.example:" + listedPort, "internal.example:" + listedPort} {
		if status, _, _ := connect(t, s, ok); !strings.HasPrefix(status, "200") {
			t.Errorf("CONNECT %s: %q", ok, status)
		}
	}
	mu.Lock()
	dialed = nil
	mu.Unlock()
	tests := []struct{ target, want string }{
		{other, "403"},
		{"169.254.169.254:80", "403"},
		{"rebind.example:" + otherP, "403"}, // 127.0.0.1, listed only for another port
		{"metadata.example:80", "403"},
		{"private.example:443", "403"},
		{"mixed.example:443", "403"},
		{"unlisted.example:443", "403"},
		{"[::1]:" + listedPort, "403"},
	}
	for _, tt := range tests {
		status, _, _ := connect(t, s, tt.target)
		if !strings.HasPrefix(status, tt.want) {
			t.Errorf("CONNECT %s: %q, want %s", tt.target, status, tt.want)
		}
	}
	if st := s.Stats(); st.Denied != int64(len(tests)) || len(rec.denials) != len(tests) {
		t.Errorf("stats %+v, %d denials", st, len(rec.denials))
	}
	for _, d := range rec.denials {
		if d.Task != "task-1" || d.Reason == "" {
			t.Errorf("denial %+v", d)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dialed) != 0 {
		t.Errorf("refused destinations were dialed: %v", dialed)
	}
}

func TestPlainHTTPForwarded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Error("proxy credentials forwarded")
		}
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.RequestURI())
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	s, _ := newSession(t, []string{host}, Options{})
	proxyURL := fmt.Sprintf("http://127.0.0.1:%d", s.Port())
	req, _ := http.NewRequest("POST", srv.URL+"/v1/messages?beta=true", strings.NewReader("{}"))
	req.Header.Set("Proxy-Authorization", "Basic eA==")
	pu, _ := url.Parse(proxyURL)
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "POST /v1/messages?beta=true" {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
	// An unlisted http:// destination is refused the same way.
	req, _ = http.NewRequest("GET", "http://127.0.0.1:1/", nil)
	resp, err = (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("unlisted: %d", resp.StatusCode)
	}
}

func TestBadRequestsAndClose(t *testing.T) {
	echo := listentest.Loopback(t, listentest.Echo)
	s, _ := newSession(t, []string{echo}, Options{})
	c, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", s.Port()))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "GET /relative HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("relative request: %v %v", resp, err)
	}
	c.Close()
	// Close cuts an open tunnel.
	status, tc, br := connect(t, s, echo)
	if !strings.HasPrefix(status, "200") {
		t.Fatal(status)
	}
	s.Close()
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Error("tunnel still open after Close")
	}
}

func TestParsePolicy(t *testing.T) {
	good := []string{"api.anthropic.com:443", "API.Anthropic.com.:443", "127.0.0.1:8080", "[::1]:9"}
	p, err := ParsePolicy("engine.egress.allow", good)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Allowed("api.anthropic.com:443") || p.Allowed("api.anthropic.com:444") || !p.Allowed("[::1]:9") {
		t.Error("Allowed")
	}
	for i, bad := range []string{"api.anthropic.com", "host:0", "host:65536", "host:08", ":443", "a b:1", "[fe80::1%eth0]:1", strings.Repeat("a", 301)} {
		_, err := ParsePolicy("engine.egress.allow", []string{bad})
		if err == nil || !strings.Contains(err.Error(), "engine.egress.allow[0]") {
			t.Errorf("%d %q: %v", i, bad, err)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add("api.anthropic.com:443")
	f.Add("[::1]:80")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy("k", []string{s})
		if err == nil && !p.Allowed(s) {
			t.Fatalf("%q parsed but is not allowed", s)
		}
	})
}

func otherPort(t *testing.T, hostport string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
