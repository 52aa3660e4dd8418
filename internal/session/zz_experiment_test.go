package session_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestExpShortPongTimeout(t *testing.T) {
	for _, m := range []mode{withPoller, noPoller} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envConfig{mode: m, sweep: true, pingInterval: 100 * time.Millisecond, pongTimeout: 500 * time.Millisecond})
			c := e.dial(t)
			pings := 0
			start := time.Now()
			c.SetPingHandler(func(d string) error {
				pings++
				return c.WriteControl(websocket.PongMessage, []byte(d), time.Now().Add(time.Second))
			})
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, err := c.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				t.Errorf("responsive client closed after %v, %d pings answered: %d %q", time.Since(start), pings, ce.Code, ce.Text)
			} else {
				t.Logf("survived: %v", err)
			}
		})
	}
}

func TestExpStartShutdownRace(t *testing.T) {
	for i := 0; i < 30; i++ {
		e := newEnv(t, envConfig{mode: withPoller, quiet: true})
		var wg sync.WaitGroup
		for j := 0; j < 8; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := websocket.Dialer{Subprotocols: []string{"flowgate.v1"}}
				c, _, err := d.Dial("ws"+e.srv.URL[4:], nil)
				if err == nil {
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
					for {
						if _, _, err := c.ReadMessage(); err != nil {
							break
						}
					}
					c.Close()
				}
			}()
		}
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		for k := 0; k < 50; k++ {
			e.hub.CloseTenant("acme")
			time.Sleep(100 * time.Microsecond)
		}
		wg.Wait()
	}
}
