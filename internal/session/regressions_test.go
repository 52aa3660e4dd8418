package session_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/protocol"
	"github.com/flowgate/flowgate/internal/wstest"
)

// Regression tests of four bugs these tests found in the session core (all fixed): a control
// frame handled by gorilla pinned the reader of an idle connection; Hub.Shutdown returned
// before onEnd and session.close; Hub.Start published a session before initialising it; a
// pong timeout shorter than the ping interval plus the 1 s sweep closed clients that answer
// every ping (the configuration now refuses it).

// A control frame that gorilla handles — a pong read into
// gorilla's buffer together with a data frame, a pong split across TCP segments with nothing
// behind it, a client ping — leaves the reader blocked in ReadMessage for the next data
// frame, so the idle connection keeps a goroutine until the client sends a message again.
// The package docs promise an idle connection parks.
func TestIdleAfterControlFrameParks(t *testing.T) {
	p1 := pingFrame("a")
	pong := wstest.ClientFrame(opPong, []byte("pong-data"))
	cases := []struct {
		name   string
		writes [][]byte
	}{
		{"data and pong in one write", [][]byte{concat(p1, pong)}},
		{"pong split across writes", [][]byte{p1, pong[:4], pong[4:]}},
		{"client ping", [][]byte{p1, wstest.ClientFrame(opPing, []byte("keepalive"))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envConfig{mode: withPoller})
			c := e.dial(t)
			e.waitParked(t, 1)
			for i, w := range tc.writes {
				if i > 0 {
					time.Sleep(30 * time.Millisecond)
				}
				c.raw(t, w)
			}
			c.expectPongs(t, "a")
			e.waitParked(t, 1)
		})
	}
}

// Fixed: Hub.Shutdown returned once every session is out of the hub's set, but a
// session leaves the set (hub.remove, the WaitGroup's Done) before it writes its
// session.close record and calls onEnd, so both can run after Shutdown returned — after
// the caller wrote server.stop, closed the audit recorder or the connection limiter.
// A slow audit write makes the window wide.
func TestShutdownWaitsForOnEnd(t *testing.T) {
	e := newEnv(t, envConfig{mode: withPoller})
	c := e.dial(t)
	e.waitParked(t, 1)
	e.audit.closeDelay.Store(int64(200 * time.Millisecond))
	errc := make(chan error, 1)
	go func() { // the client answers the server's close
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				errc <- err
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	e.hub.Shutdown(ctx)
	if n := e.endCount(c.id); n != 1 {
		t.Errorf("Shutdown returned with onEnd called %d times", n)
	}
	var ce *websocket.CloseError
	if err := <-errc; !errors.As(err, &ce) || ce.Code != protocol.CloseGoingAway {
		t.Errorf("client saw %v, want close 1001", err)
	}
}

// Fixed in the configuration: the hub sends pings from a sweep that runs once a second, so two
// pings can be PingInterval + 1 s apart, and a PongTimeout shorter than that closed clients
// that answer every ping. internal/config/validate.go now requires pong_timeout >
// ping_interval + 1s; at that bound an answering client stays.
func TestShortPongTimeoutKeepsResponsiveClient(t *testing.T) {
	for _, m := range []mode{noPoller, withPoller} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			// The shortest pong timeout the configuration accepts: ping_interval + 1s (+ a margin).
			e := newEnv(t, envConfig{mode: m, sweep: true, pingInterval: 100 * time.Millisecond, pongTimeout: 1200 * time.Millisecond})
			c := e.dial(t) // gorilla's default ping handler answers every ping
			_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
			_, _, err := c.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				t.Fatalf("a client answering every ping was closed: %d %q", ce.Code, ce.Text)
			}
		})
	}
}

// Fixed: Hub.Start published the session (hub.add) before it sets nextPing,
// readDeadline and park, which CloseWhere, Shutdown and the sweep read under s.mu or not at
// all: a data race, and a close in that window has its short close-handshake deadline
// overwritten by PongTimeout. Only the race detector sees it; run with -race.
func TestStartRacesWithClose(t *testing.T) {
	e := newEnv(t, envConfig{mode: withPoller, quiet: true})
	for range 20 {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				d := websocket.Dialer{Subprotocols: []string{protocol.Name}}
				c, resp, err := d.Dial("ws"+e.srv.URL[len("http"):], nil)
				if err != nil {
					return
				}
				resp.Body.Close()
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(waitBound))
				for {
					if _, _, err := c.ReadMessage(); err != nil {
						return
					}
				}
			})
		}
		ctx, cancel := context.WithCancel(context.Background())
		closer := make(chan struct{})
		go func() {
			defer close(closer)
			for ctx.Err() == nil {
				e.hub.CloseTenant("acme")
				time.Sleep(50 * time.Microsecond)
			}
		}()
		wg.Wait()
		cancel()
		<-closer
	}
}
