package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/wstest"
)

// metricValue reads one unlabelled sample from the ops listener's /metrics.
func metricValue(t *testing.T, g *gateway, name string) float64 {
	t.Helper()
	resp, err := http.Get(g.Ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			var f float64
			if _, err := fmt.Sscanf(v, "%g", &f); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

// waitMetric polls until the metric satisfies ok.
func waitMetric(t *testing.T, g *gateway, name string, ok func(float64) bool, what string) float64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := metricValue(t, g, name)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s = %g", what, name, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawDial connects with gorilla directly, so a test can write frames of its own making on
// the socket underneath, and reads the welcome frame.
func rawDial(t *testing.T, g *gateway) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(g.URL, http.Header{"Authorization": {"Bearer " + g.UserToken}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, data, err := ws.ReadMessage(); err != nil || !strings.Contains(string(data), `"type":"connection"`) {
		t.Fatalf("welcome: %s, %v", data, err)
	}
	return ws
}

func pingMessage(id string) []byte {
	return wstest.ClientFrame(websocket.TextMessage, []byte(`{"type":"ping","requestId":"`+id+`"}`))
}

// An idle connection is parked: it holds no goroutine on the server, and comes back for
// whatever the client sends next.
func TestIdleConnectionsPark(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("GOOS=%s: connections park only on Linux (epoll); elsewhere each keeps its reader goroutine and there is nothing to test", runtime.GOOS)
	}
	const n = 100
	g := startGateway(t, gwOptions{env: map[string]string{
		"FLOWGATE_LIMITS_USER_CONNECTIONS": "1000", "FLOWGATE_LIMITS_IP_CONNECTIONS": "1000",
		"FLOWGATE_LIMITS_IP_HANDSHAKES_PER_SECOND": "10000", "FLOWGATE_LIMITS_IP_HANDSHAKE_BURST": "10000",
	}})
	base := waitMetric(t, g, "go_goroutines", func(float64) bool { return true }, "baseline")

	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = rawDial(t, g)
	}
	waitMetric(t, g, "flowgate_connections_parked", func(v float64) bool { return v == n }, "after connecting")
	// A handful of goroutines come and go (the metrics scrape itself); n readers would be n.
	if v := metricValue(t, g, "go_goroutines"); v > base+n/4 {
		t.Fatalf("%d idle connections: go_goroutines %g, was %g before; idle connections should hold none", n, v, base)
	}

	// Every parked connection still answers.
	for i, ws := range conns {
		id := fmt.Sprintf("p%d", i)
		if _, err := ws.NetConn().Write(pingMessage(id)); err != nil {
			t.Fatal(err)
		}
		expectPong(t, ws, id)
	}
	waitMetric(t, g, "flowgate_connections_parked", func(v float64) bool { return v == n }, "after a message each")

	// And they leave cleanly: closing them ends their sessions.
	for _, ws := range conns {
		ws.Close()
	}
	waitMetric(t, g, "flowgate_connections", func(v float64) bool { return v == 0 }, "after the clients closed")
	waitMetric(t, g, "flowgate_connections_parked", func(v float64) bool { return v == 0 }, "after the clients closed")
}

// expectPong reads frames until the pong for requestId id.
func expectPong(t *testing.T, ws *websocket.Conn, id string) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for pong %s: %v", id, err)
		}
		var m struct{ Type, RequestID string }
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("frame %s: %v", data, err)
		}
		if m.Type == "pong" && m.RequestID == id {
			return
		}
	}
}

// Whatever way the client's bytes arrive at a parked connection — pipelined, split
// mid-frame, interleaved with control frames — each message is answered, and the connection
// parks again afterwards.
func TestParkedConnectionFraming(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("GOOS=%s: connections park only on Linux (epoll); elsewhere each keeps its reader goroutine and there is nothing to test", runtime.GOOS)
	}
	pong := func(payload string) []byte { return wstest.ClientFrame(websocket.PongMessage, []byte(payload)) }
	join := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	manyPongs := make([][]byte, 0, 50)
	for range 50 {
		manyPongs = append(manyPongs, pong("keepalive"))
	}
	ping := pingMessage("split")
	bigPong := pong(strings.Repeat("x", 125))
	cases := []struct {
		name   string
		writes [][]byte // written one after another, 100 ms apart
		want   []string // pong request ids, in order
	}{
		{"two messages in one segment", [][]byte{join(pingMessage("a1"), pingMessage("a2"))}, []string{"a1", "a2"}},
		{"pong then message", [][]byte{join(pong(""), pingMessage("b1"))}, []string{"b1"}},
		{"fifty pongs then message", [][]byte{join(append(manyPongs, pingMessage("c1"))...)}, []string{"c1"}},
		{"largest pong split in two", [][]byte{bigPong[:60], join(bigPong[60:], pingMessage("d1"))}, []string{"d1"}},
		{"pong header alone", [][]byte{bigPong[:1], join(bigPong[1:], pingMessage("e1"))}, []string{"e1"}},
		{"message split mid-frame", [][]byte{ping[:7], ping[7:]}, []string{"split"}},
		{"client ping then message", [][]byte{join(wstest.ClientFrame(websocket.PingMessage, []byte("hi")), pingMessage("f1"))}, []string{"f1"}},
	}
	g := startGateway(t, gwOptions{})
	conns := make([]*websocket.Conn, len(cases))
	for i := range cases {
		conns[i] = rawDial(t, g)
	}
	waitMetric(t, g, "flowgate_connections_parked", func(v float64) bool { return v == float64(len(cases)) }, "before the cases")
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws := conns[i]
			for j, w := range tc.writes {
				if j > 0 {
					time.Sleep(100 * time.Millisecond) // let the server see the first part alone
				}
				if _, err := ws.NetConn().Write(w); err != nil {
					t.Fatal(err)
				}
			}
			for _, id := range tc.want {
				expectPong(t, ws, id)
			}
		})
	}
	// No connection was lost, each answers once more, and each parks again after it.
	if v := metricValue(t, g, "flowgate_connections"); v != float64(len(cases)) {
		t.Fatalf("flowgate_connections = %g after the cases, want %d", v, len(cases))
	}
	for i, ws := range conns {
		id := fmt.Sprintf("z%d", i)
		if _, err := ws.NetConn().Write(pingMessage(id)); err != nil {
			t.Fatal(err)
		}
		expectPong(t, ws, id)
	}
	waitMetric(t, g, "flowgate_connections_parked", func(v float64) bool { return v == float64(len(cases)) }, "after the cases")
}
