package session_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/wstest"
)

// The welcome frame comes first; app pings are answered in order, one pong each, whether
// the hub parks idle connections or not, sent one at a time or several in one TCP write.
func TestWelcomeAndPings(t *testing.T) {
	for _, m := range []mode{noPoller, withPoller, pollerNoReader} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envConfig{mode: m})
			c := e.dial(t)
			w := c.welcome
			if w.SessionID == "" || w.Status != "connected" || w.Protocol != protocol.Name ||
				w.Tenant != "acme" || w.User != "alice" || len(w.Permissions) != 1 || w.ServerTime == "" {
				t.Fatalf("welcome frame %+v", w)
			}
			if c.Subprotocol() != protocol.Name {
				t.Fatalf("subprotocol %q", c.Subprotocol())
			}

			// One at a time, through gorilla.
			for i := range 5 {
				id := fmt.Sprintf("one-%d", i)
				if err := c.WriteMessage(websocket.TextMessage, pingJSON(id)); err != nil {
					t.Fatal(err)
				}
				c.expectPongs(t, id)
			}
			// Ten frames in a single write: the server sees them in one read.
			var ids []string
			var burst []byte
			for i := range 10 {
				id := fmt.Sprintf("burst-%d", i)
				ids = append(ids, id)
				burst = append(burst, pingFrame(id)...)
			}
			c.raw(t, burst)
			c.expectPongs(t, ids...)

			switch m {
			case withPoller:
				// The same burst reaching a parked connection.
				e.waitParked(t, 1)
				c.raw(t, burst)
				c.expectPongs(t, ids...)
				e.waitParked(t, 1)
			case pollerNoReader:
				// Without the hijack reader the session cannot tell whether gorilla holds
				// buffered bytes, so it must never park. Give it the chance to.
				time.Sleep(50 * time.Millisecond)
				if n := e.poller.Parked(); n != 0 {
					t.Fatalf("%d connections parked although Start got no reader", n)
				}
			}
			if n := e.hub.Count(); n != 1 {
				t.Fatalf("hub counts %d sessions, want 1", n)
			}
		})
	}
}

// sessionGoroutines counts the goroutines running a Session method.
func sessionGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("internal/session.(*Session)")) {
			count++
		}
	}
	return count
}

// An idle connection parks and holds no goroutine at all; a message unparks it, is
// answered, and the connection parks again. Other parked connections stay parked.
// Not parallel: it counts the process's goroutines.
func TestIdleConnectionsPark(t *testing.T) {
	e := newEnv(t, envConfig{mode: withPoller})
	const n = 3
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = e.dial(t)
	}
	e.waitParked(t, n)
	waitFor(t, "no goroutine left in a parked session", func() bool { return sessionGoroutines() == 0 })

	for round := range 3 {
		for i, c := range cs {
			id := fmt.Sprintf("r%d-c%d", round, i)
			c.raw(t, pingFrame(id))
			c.expectPongs(t, id)
			e.waitParked(t, n)
		}
	}
	waitFor(t, "no goroutine left in a parked session", func() bool { return sessionGoroutines() == 0 })
	if got := e.hub.Count(); got != n {
		t.Fatalf("hub counts %d sessions, want %d", got, n)
	}
}

// The hub's sweep runs once a second, so pings go out once a second at most whatever
// PingInterval says, and PongTimeout must exceed that period plus a round trip. 1.5 s
// leaves half a second of slack; see the report about shorter timeouts.
const (
	testPingInterval = 100 * time.Millisecond
	testPongTimeout  = 1500 * time.Millisecond
)

// A client that answers the server's pings keeps its session for many PongTimeouts, its
// pongs taken off the socket while the connection stays parked; a client that does not is
// closed with 1008 "pong timeout".
func TestPongsWhileParked(t *testing.T) {
	for _, m := range []mode{withPoller, noPoller} {
		for _, answer := range []bool{true, false} {
			name := m.String() + "/answers-pings"
			if !answer {
				name = m.String() + "/deaf"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, envConfig{mode: m, sweep: true, pingInterval: testPingInterval, pongTimeout: testPongTimeout})
				c := e.dial(t)
				var pings atomic.Int32
				c.SetPingHandler(func(data string) error {
					pings.Add(1)
					if !answer {
						return nil
					}
					return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(waitBound))
				})
				// The client reads on a goroutine of its own (gorilla answers pings there)
				// while the test watches the poller.
				msgs := make(chan reply, 16)
				errc := make(chan error, 1)
				done := make(chan struct{})
				go func() {
					defer close(done)
					for {
						_, data, err := c.ReadMessage()
						if err != nil {
							errc <- err
							return
						}
						var r reply
						_ = json.Unmarshal(data, &r)
						msgs <- r
					}
				}()
				t.Cleanup(func() {
					c.Close()
					<-done
				})

				if !answer {
					select {
					case err := <-errc:
						var ce *websocket.CloseError
						if !errors.As(err, &ce) || ce.Code != protocol.ClosePolicyViolation || ce.Text != "pong timeout" {
							t.Fatalf("deaf client got %v, want close 1008 \"pong timeout\"", err)
						}
					case <-time.After(testPongTimeout + waitBound):
						t.Fatal("a client that never answers pings was not closed")
					}
					e.waitEnded(t, c.id)
					if code, reason := e.closeRecord(t, c.id); code != protocol.ClosePolicyViolation || reason != "pong timeout" {
						t.Fatalf("session.close recorded code %d reason %q", code, reason)
					}
					return
				}

				const hold = 3 * testPongTimeout
				until := time.Now().Add(hold)
				samples, parked := 0, 0
				for time.Now().Before(until) {
					select {
					case err := <-errc:
						t.Fatalf("a client answering pings lost its session after %d pings: %v", pings.Load(), err)
					case r := <-msgs:
						t.Fatalf("unexpected frame %+v", r)
					case <-time.After(10 * time.Millisecond):
					}
					if e.poller != nil {
						samples++
						if e.poller.Parked() == 1 {
							parked++
						}
					}
				}
				if got := pings.Load(); got < 2 {
					t.Fatalf("only %d server pings in %v", got, hold)
				}
				// Pongs are consumed without gorilla: had one reached gorilla, the reader
				// would have stayed blocked for the next data frame, unparked for good.
				if e.poller != nil && parked*2 < samples {
					t.Fatalf("parked in only %d of %d samples", parked, samples)
				}
				if err := c.WriteMessage(websocket.TextMessage, pingJSON("still-there")); err != nil {
					t.Fatal(err)
				}
				select {
				case r := <-msgs:
					if r.Type != protocol.TypePong || r.RequestID != "still-there" {
						t.Fatalf("got %+v, want the pong to still-there", r)
					}
				case err := <-errc:
					t.Fatal(err)
				case <-time.After(waitBound):
					t.Fatal("no answer after the keep-alive period")
				}
				t.Logf("%d server pings answered; parked in %d of %d samples", pings.Load(), parked, samples)
			})
		}
	}
}

// Every way a session ends: the close code the client sees, the code and reason the
// session.close record carries, onEnd exactly once, and the hub forgetting the session —
// each on a connection with a reader goroutine and on one that was parked when it happened.
func TestCloseCodes(t *testing.T) {
	const small = 1024
	type closeCase struct {
		name    string
		cfg     envConfig
		provoke func(t *testing.T, e *env, c *client)
		// What the client sees: 0 when the client closes first and sees nothing useful.
		code int
		text string
		// What the server records.
		auditCode   int
		auditReason string
	}
	cases := []closeCase{
		{
			name:    "binary frame",
			provoke: func(t *testing.T, _ *env, c *client) { c.raw(t, wstest.ClientFrame(opBinary, []byte{1, 2, 3})) },
			code:    protocol.CloseUnsupportedData, text: "binary frames are not supported",
			auditCode: protocol.CloseUnsupportedData, auditReason: "binary frames are not supported",
		},
		{
			name: "invalid UTF-8",
			provoke: func(t *testing.T, _ *env, c *client) {
				c.raw(t, wstest.ClientFrame(opText, []byte("{\"type\":\"ping\xff\xfe\"}")))
			},
			code: protocol.CloseInvalidPayload, text: "invalid UTF-8",
			auditCode: protocol.CloseInvalidPayload, auditReason: "invalid UTF-8",
		},
		{
			name: "oversized message",
			cfg:  envConfig{maxMessageBytes: small},
			provoke: func(t *testing.T, _ *env, c *client) {
				c.raw(t, wstest.ClientFrame(opText, bytes.Repeat([]byte("x"), 2*small)))
			},
			// gorilla sends its own 1009 (no reason) before the session's.
			code: protocol.CloseMessageTooBig, text: "",
			auditCode: protocol.CloseMessageTooBig, auditReason: "message too big",
		},
		{
			name: "oversized message split across frames",
			cfg:  envConfig{maxMessageBytes: small},
			provoke: func(t *testing.T, _ *env, c *client) {
				first := wstest.ClientFrame(opText, bytes.Repeat([]byte("x"), small/2+1))
				first[0] &^= 0x80 // not FIN
				second := wstest.ClientFrame(0, bytes.Repeat([]byte("x"), small/2+1))
				c.raw(t, concat(first, second))
			},
			code: protocol.CloseMessageTooBig, text: "",
			auditCode: protocol.CloseMessageTooBig, auditReason: "message too big",
		},
		{
			name: "hub shutdown",
			provoke: func(t *testing.T, e *env, _ *client) {
				done := make(chan struct{})
				go func() {
					defer close(done)
					ctx, cancel := context.WithTimeout(context.Background(), waitBound)
					defer cancel()
					e.hub.Shutdown(ctx)
				}()
				t.Cleanup(func() { <-done })
			},
			code: protocol.CloseGoingAway, text: protocol.ReasonShutdown,
			auditCode: protocol.CloseGoingAway, auditReason: protocol.ReasonShutdown,
		},
		{
			name: "token revoked",
			provoke: func(t *testing.T, e *env, _ *client) {
				if n := e.hub.CloseJTI("other-tenant", "j1"); n != 0 {
					t.Fatalf("another tenant's revocation closed %d sessions", n)
				}
				if n := e.hub.CloseJTI("acme", "j1"); n != 1 {
					t.Fatalf("CloseJTI closed %d sessions, want 1", n)
				}
			},
			code: protocol.ClosePolicyViolation, text: protocol.ReasonTokenRevoked,
			auditCode: protocol.ClosePolicyViolation, auditReason: protocol.ReasonTokenRevoked,
		},
		{
			name: "tenant suspended",
			provoke: func(t *testing.T, e *env, _ *client) {
				if n := e.hub.CloseTenant("acme"); n != 1 {
					t.Fatalf("CloseTenant closed %d sessions, want 1", n)
				}
			},
			code: protocol.ClosePolicyViolation, text: protocol.ReasonTenantSuspended,
			auditCode: protocol.ClosePolicyViolation, auditReason: protocol.ReasonTenantSuspended,
		},
		{
			name:    "token expires (sweep)",
			cfg:     envConfig{sweep: true, expiresIn: 1200 * time.Millisecond},
			provoke: func(*testing.T, *env, *client) {},
			code:    protocol.ClosePolicyViolation, text: protocol.ReasonTokenExpired,
			auditCode: protocol.ClosePolicyViolation, auditReason: protocol.ReasonTokenExpired,
		},
		{
			name: "client closes",
			provoke: func(t *testing.T, _ *env, c *client) {
				if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")); err != nil {
					t.Fatal(err)
				}
			},
			code:      websocket.CloseNormalClosure, // the server's echo
			auditCode: websocket.CloseNormalClosure, auditReason: "client closed",
		},
		{
			name:      "client vanishes",
			provoke:   func(_ *testing.T, _ *env, c *client) { c.Close() },
			auditCode: websocket.CloseAbnormalClosure, auditReason: "connection lost",
		},
		{
			name: "unmasked frame (protocol error)",
			provoke: func(t *testing.T, _ *env, c *client) {
				c.raw(t, []byte{0x81, 0x02, 'h', 'i'})
			},
			code: websocket.CloseProtocolError, text: "bad MASK", // gorilla's own
			auditCode: websocket.CloseAbnormalClosure, auditReason: "connection lost",
		},
	}
	for _, tc := range cases {
		for _, m := range []mode{noPoller, withPoller} {
			t.Run(tc.name+"/"+m.String(), func(t *testing.T) {
				t.Parallel()
				cfg := tc.cfg
				cfg.mode = m
				e := newEnv(t, cfg)
				c := e.dial(t)
				if m == withPoller {
					e.waitParked(t, 1)
				}
				tc.provoke(t, e, c)
				if tc.name != "client vanishes" {
					ce := c.expectClose(t)
					if ce.Code != tc.code || ce.Text != tc.text {
						t.Fatalf("client saw close %d %q, want %d %q", ce.Code, ce.Text, tc.code, tc.text)
					}
					// The close handshake is complete (gorilla echoed the server's close);
					// drop the TCP connection as a client would.
					c.Close()
				}
				e.waitEnded(t, c.id)
				waitFor(t, "the hub to forget the session", func() bool { return e.hub.Count() == 0 })
				if m == withPoller && e.poller.Parked() != 0 {
					t.Fatalf("an ended session is still parked")
				}
				code, reason := e.closeRecord(t, c.id)
				if code != tc.auditCode || reason != tc.auditReason {
					t.Fatalf("session.close recorded %d %q, want %d %q", code, reason, tc.auditCode, tc.auditReason)
				}
			})
		}
	}
}

// A frame that reaches a parked connection in pieces, pongs taken off the socket while
// parked (whole, split, or followed by a data frame in the same write), and a client
// control ping: every app message is answered, every control ping gets its pong, and the
// connection parks again afterwards.
func TestFramesReachingAParkedConnection(t *testing.T) {
	p1, p2 := pingFrame("a"), pingFrame("b")
	pong := wstest.ClientFrame(opPong, []byte("pong-data"))
	emptyPong := wstest.ClientFrame(opPong, nil)
	maxPong := wstest.ClientFrame(opPong, bytes.Repeat([]byte{0xa5}, 125))
	ping := wstest.ClientFrame(opPing, []byte("x"))
	type tc struct {
		name   string
		writes [][]byte // written one by one, with a pause between
		want   []string // app pongs, in order
		pings  int      // control pings among the writes
	}
	cases := []tc{
		{name: "split after the first byte", writes: [][]byte{p1[:1], p1[1:]}, want: []string{"a"}},
		{name: "split after the 2-byte header", writes: [][]byte{p1[:2], p1[2:]}, want: []string{"a"}},
		{name: "split after the mask key", writes: [][]byte{p1[:6], p1[6:]}, want: []string{"a"}},
		{name: "split mid payload", writes: [][]byte{p1[:10], p1[10:]}, want: []string{"a"}},
		{name: "split in three", writes: [][]byte{p1[:3], p1[3:12], p1[12:]}, want: []string{"a"}},
		{name: "second frame split", writes: [][]byte{concat(p1, p2[:4]), p2[4:]}, want: []string{"a", "b"}},
		{name: "pong alone", writes: [][]byte{pong, p1}, want: []string{"a"}},
		{name: "empty and max-size pongs", writes: [][]byte{concat(emptyPong, maxPong), p1}, want: []string{"a"}},
		{name: "pong then data in one write", writes: [][]byte{concat(pong, p1)}, want: []string{"a"}},
		{name: "pongs around data in one write", writes: [][]byte{concat(pong, pong, p1, pong, p2)}, want: []string{"a", "b"}},
		{name: "pong split after its header", writes: [][]byte{pong[:2], pong[2:], p1}, want: []string{"a"}},
		{name: "pong split mid payload, data behind", writes: [][]byte{pong[:8], concat(pong[8:], p1)}, want: []string{"a"}},
		{name: "control ping", writes: [][]byte{wstest.ClientFrame(opPing, []byte("hello")), p1}, want: []string{"a"}, pings: 1},
		{name: "control ping split", writes: [][]byte{ping[:3], concat(ping[3:], p1)}, want: []string{"a"}, pings: 1},
	}

	e := newEnv(t, envConfig{mode: withPoller})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(t)
			var pongs atomic.Int32
			c.SetPongHandler(func(string) error { pongs.Add(1); return nil })
			for round := range 2 {
				e.waitParked(t, 1)
				for i, w := range tc.writes {
					if i > 0 {
						time.Sleep(30 * time.Millisecond) // the stimulus: the server sees a piece, then nothing
					}
					c.raw(t, w)
				}
				c.expectPongs(t, tc.want...)
				if got := int(pongs.Load()); got != tc.pings*(round+1) {
					t.Fatalf("round %d: %d pongs to %d control pings", round, got, tc.pings*(round+1))
				}
			}
			e.waitParked(t, 1)
			c.Close()
			e.waitEnded(t, c.id)
		})
	}
}

// Refused messages get one error reply each, echoing a safe requestId; the connection stays
// open and usable.
func TestErrorReplies(t *testing.T) {
	long := strings.Repeat("r", 65)
	cases := []struct {
		name, msg, code, reqID string
	}{
		{"unknown type", `{"type":"bogus","requestId":"u1"}`, protocol.CodeUnknownType, "u1"},
		{"no type", `{"requestId":"u2"}`, protocol.CodeInvalidMessage, "u2"},
		{"malformed JSON", `{"type":"ping",`, protocol.CodeInvalidMessage, ""},
		{"not an object", `[1,2,3]`, protocol.CodeInvalidMessage, ""},
		{"unknown field", `{"type":"ping","requestId":"u3","extra":1}`, protocol.CodeInvalidMessage, "u3"},
		{"requestId too long", `{"type":"ping","requestId":"` + long + `"}`, protocol.CodeValidationFailed, ""},
		{"requestId with a control character", `{"type":"ping","requestId":"a\u0001b"}`, protocol.CodeValidationFailed, ""},
		{"status needs a task manager", `{"type":"status","taskId":"nope","requestId":"u4"}`, "", "u4"},
	}
	for _, m := range []mode{noPoller, withPoller} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envConfig{mode: m})
			c := e.dial(t)
			for i, tc := range cases {
				if m == withPoller {
					e.waitParked(t, 1)
				}
				if err := c.WriteMessage(websocket.TextMessage, []byte(tc.msg)); err != nil {
					t.Fatal(err)
				}
				r := c.next(t)
				if r.Type != protocol.TypeError || (tc.code != "" && r.Code != tc.code) || r.RequestID != tc.reqID || r.Error == "" {
					t.Errorf("%s: got %+v, want an error %q echoing %q", tc.name, r, tc.code, tc.reqID)
				}
				id := fmt.Sprintf("after-%d", i)
				c.raw(t, pingFrame(id))
				c.expectPongs(t, id)
			}
		})
	}
}

// Past the per-connection rate, messages are refused with rate_limited and a retry hint;
// the connection stays open.
func TestRateLimited(t *testing.T) {
	e := newEnv(t, envConfig{mode: withPoller, perSecond: 1, burst: 3})
	c := e.dial(t)
	var b []byte
	for i := range 6 {
		b = append(b, pingFrame(fmt.Sprintf("rl-%d", i))...)
	}
	c.raw(t, b)
	c.expectPongs(t, "rl-0", "rl-1", "rl-2")
	for range 3 {
		r := c.next(t)
		if r.Type != protocol.TypeError || r.Code != protocol.CodeRateLimited || r.RetryAfterMs <= 0 {
			t.Fatalf("got %+v, want rate_limited with retryAfterMs", r)
		}
	}
	var denied int
	for _, r := range e.audit.records() {
		if r.Action == "ratelimit.denied" {
			denied++
			if r.Details["denied"] != 1 {
				t.Errorf("first denial record counts %v", r.Details["denied"])
			}
		}
	}
	if denied != 1 {
		t.Fatalf("%d ratelimit.denied records for one burst, want 1 (one per ten seconds)", denied)
	}
}
