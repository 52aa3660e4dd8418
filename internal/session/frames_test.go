package session_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/protocol"
)

// frameCounter is a session.Metrics that keeps only what the writer reports as sent.
type frameCounter struct{ frames, bytes, calls atomic.Int64 }

func (*frameCounter) SessionOpened()          {}
func (*frameCounter) SessionClosed(int)       {}
func (*frameCounter) Message(string)          {}
func (*frameCounter) Rejected(string, string) {}
func (*frameCounter) SlowConsumer()           {}
func (f *frameCounter) FramesSent(frames, bytes int) {
	f.frames.Add(int64(frames))
	f.bytes.Add(int64(bytes))
	f.calls.Add(1)
}

// The writer counts every data frame the client receives, with its payload bytes.
func TestFramesSentCounted(t *testing.T) {
	fc := &frameCounter{}
	e := newEnv(t, envConfig{metrics: fc})
	d := websocket.Dialer{Subprotocols: []string{protocol.Name}, HandshakeTimeout: waitBound}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(e.srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t.Cleanup(func() { conn.Close() })

	var frames, bytes int64
	read := func() {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(waitBound))
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		frames, bytes = frames+1, bytes+int64(len(data))
	}
	read() // the welcome frame
	for i := range 5 {
		if err := conn.WriteMessage(websocket.TextMessage, pingJSON(fmt.Sprint("p", i))); err != nil {
			t.Fatal(err)
		}
		read()
	}
	// The writer reports after its pass, which may end after the client has read.
	waitFor(t, "the sent frames to be counted", func() bool { return fc.frames.Load() == frames })
	if got := fc.bytes.Load(); got != bytes {
		t.Fatalf("bytes sent %d, client received %d", got, bytes)
	}
	if c := fc.calls.Load(); c < 1 || c > frames {
		t.Fatalf("%d reports for %d frames", c, frames)
	}
}
