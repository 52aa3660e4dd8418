package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/client"
)

func TestSwarmNeedsPermission(t *testing.T) {
	g := startGateway(t, gwOptions{})
	reader := g.dial(t, g.token(t, "demo", "auditor", "1h", "audit:read"))
	before := enginesStarted(g)
	if err := reader.Send(map[string]any{"type": "swarm", "objective": "not allowed", "requestId": "p"}); err != nil {
		t.Fatal(err)
	}
	m := readUntil(t, reader, 10*time.Second, func(m client.Message) bool { return m.RequestID == "p" })
	if m.Type != "error" || m.Code != "forbidden" {
		t.Fatalf("swarm without swarm:execute = %s", m.Raw)
	}
	if enginesStarted(g) != before {
		t.Fatal("an engine started for a forbidden swarm")
	}
	// The refusal is on the record, with who asked and what was missing.
	var found bool
	for _, r := range auditRecords(t, g, "demo") {
		if r.Action == audit.ActionAuthzDenied && r.RequestID == "p" {
			found = true
			if r.Outcome != audit.OutcomeDenied || r.Actor.Sub != "auditor" || r.Actor.TokenFP == "" ||
				r.SessionID == "" || r.Details["required"] != "swarm:execute" {
				t.Errorf("authz.denied record %+v", r)
			}
		}
	}
	if !found {
		t.Error("no authz.denied audit record for the forbidden swarm")
	}
}

func TestPerIPAndGlobalConnectionCaps(t *testing.T) {
	for _, tc := range []struct{ name, key string }{
		{"per IP", "FLOWGATE_LIMITS_IP_CONNECTIONS"},
		{"global", "FLOWGATE_LIMITS_GLOBAL_CONNECTIONS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, gwOptions{env: map[string]string{tc.key: "2"}})
			g.dial(t, g.UserToken)
			g.dial(t, g.AdminToken) // different users: only the cap under test applies
			he := g.dialErr(t, g.UserToken)
			if he == nil || he.Status != http.StatusTooManyRequests || he.Code != "rate_limited" {
				t.Fatalf("3rd connection = %+v; want 429 rate_limited", he)
			}
		})
	}
}

// A client that answers no pings is closed with 1008 once the pong timeout passes; one that
// answers stays.
func TestPongTimeout(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{
		"FLOWGATE_LIMITS_PING_INTERVAL": "1s", "FLOWGATE_LIMITS_PONG_TIMEOUT": "3s",
	}})
	dial := func(answer bool) *websocket.Conn {
		t.Helper()
		h := http.Header{"Authorization": {"Bearer " + g.UserToken}}
		ws, _, err := websocket.DefaultDialer.Dial(g.URL, h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		if !answer {
			ws.SetPingHandler(func(string) error { return nil }) // swallow pings
		}
		return ws
	}
	silent, polite := dial(false), dial(true)
	done := make(chan error, 2)
	read := func(ws *websocket.Conn) {
		_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				done <- err
				return
			}
		}
	}
	go read(silent)
	go read(polite)
	select {
	case err := <-done:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 1008 || !strings.Contains(ce.Text, "pong") {
			t.Fatalf("silent client ended with %v; want 1008 pong timeout", err)
		}
	case <-time.After(12 * time.Second):
		t.Fatal("a client that answers no pings was never closed")
	}
	// The polite client is still connected (its read deadline is still ahead).
	select {
	case err := <-done:
		t.Fatalf("the client answering pings was closed too: %v", err)
	case <-time.After(2 * time.Second):
	}
}

// A subscriber that stops reading is cut off as a slow consumer; the task runs on.
func TestSlowConsumerIsClosed(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{"FLOWGATE_LIMITS_WRITE_TIMEOUT": "1s"}})
	// A socket with tiny buffers, so the kernel cannot absorb the stream for the client.
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var nd net.Dialer
		nd.Control = func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}
		return nd.DialContext(ctx, network, addr)
	}}
	ws, _, err := d.Dial(g.URL, http.Header{"Authorization": {"Bearer " + g.UserToken}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]any{"type": "swarm", "objective": "flood sim:pace=0 sim:events=60000"}); err != nil {
		t.Fatal(err)
	}
	// Read nothing. The gateway holds the engine back while this subscriber is behind, then
	// gives up on it.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(g.Logs(), "slow consumer") && !metricPositive(t, g, "flowgate_slow_consumer_closes_total") {
		if time.Now().After(deadline) {
			t.Fatal("the stuck subscriber was never closed as a slow consumer")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The task was detached, not lost: it still completes.
	other := g.dial(t, g.UserToken)
	if err := other.Send(map[string]any{"type": "tasks", "requestId": "l"}); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Tasks []struct{ TaskID, Status string }
	}
	m := readUntil(t, other, 10*time.Second, func(m client.Message) bool { return m.RequestID == "l" })
	if err := jsonUnmarshal(m.Raw, &list); err != nil || len(list.Tasks) != 1 {
		t.Fatalf("tasks = %s", m.Raw)
	}
	if err := other.Send(map[string]any{"type": "subscribe", "taskId": list.Tasks[0].TaskID, "afterSeq": 59990}); err != nil {
		t.Fatal(err)
	}
	final := readUntil(t, other, 60*time.Second, func(m client.Message) bool { return m.Type == "task_complete" })
	if final.Status != "success" {
		t.Fatalf("the task did not survive its slow subscriber: %s", final.Raw)
	}
}

func metricPositive(t *testing.T, g *gateway, name string) bool {
	t.Helper()
	resp, err := http.Get(g.Ops + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			var v float64
			if _, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v); err == nil && v > 0 {
				return true
			}
		}
	}
	return false
}

func TestHeaderBounds(t *testing.T) {
	g := startGateway(t, gwOptions{env: map[string]string{"FLOWGATE_SERVER_READ_HEADER_TIMEOUT": "1s"}})
	// Headers past server.max_header_bytes (32 KiB): 431 before any handler runs.
	req, _ := http.NewRequest("GET", g.HTTP+"/healthz", nil)
	req.Header.Set("X-Padding", strings.Repeat("a", 40<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("40 KiB of headers: %d; want 431", resp.StatusCode)
	}
	// A client that never finishes its headers is dropped after server.read_header_timeout.
	c, err := net.Dial("tcp", strings.TrimPrefix(g.HTTP, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a half-sent request held the connection for %v; want about 1s", d)
	}
}

// Idle HTTP keep-alive connections count against limits.ip_connections like WebSockets do
// (DESIGN §16): 300 from one address hold at most the cap, the rest are answered 429 at
// accept, and another address still gets both HTTP and a WebSocket.
func TestIdleKeepAliveConnectionsAreCapped(t *testing.T) {
	g := startGateway(t, gwOptions{})
	host := strings.TrimPrefix(g.HTTP, "http://")
	open := func(src string) (net.Conn, int) {
		t.Helper()
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", host)
		if err != nil {
			t.Fatalf("dial from %s: %v", src, err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			// A refused connection may be reset before its answer is read; it is still refused.
			c.Close()
			return nil, 0
		}
		resp.Body.Close()
		return c, resp.StatusCode
	}
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	ok, refused := 0, 0
	for range 300 {
		c, status := open("127.0.0.1")
		switch status {
		case http.StatusOK:
			ok++
			held = append(held, c) // kept open and idle
		default:
			refused++
			if c != nil {
				c.Close()
			}
		}
	}
	t.Logf("300 keep-alive connections from 127.0.0.1: %d answered, %d refused", ok, refused)
	if ok > 100 || refused < 200 {
		t.Fatalf("%d of 300 idle connections from one address were served; want at most limits.ip_connections (100)", ok)
	}
	if _, status := open("127.0.0.2"); status != http.StatusOK {
		t.Fatalf("another address while the first is capped: %d; want 200", status)
	}
	dialer := websocket.Dialer{
		NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext,
		Subprotocols:   []string{"flowgate.v1"}, HandshakeTimeout: 10 * time.Second,
	}
	ws, resp, err := dialer.Dial(g.URL, http.Header{"Authorization": {"Bearer " + g.UserToken}})
	if err != nil {
		t.Fatalf("WebSocket from another address: %v (%v)", err, resp)
	}
	ws.Close()
	if !metricPositive(t, g, `flowgate_ratelimit_denials_total{scope="connections_ip"}`) {
		t.Fatal("refusals at accept are not counted in flowgate_ratelimit_denials_total{scope=\"connections_ip\"}")
	}
}
