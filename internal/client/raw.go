package client

import (
	"io"
	"time"

	"github.com/gorilla/websocket"
)

// ReadRaw is the lean read path for load generators: it reads the next data frame into
// buf's storage (growing it only when a frame does not fit) and returns it undecoded. The
// result aliases buf and is valid until the next call that reuses it. Unlike Read it takes no
// context (Options.ReadLimit still bounds a frame): the caller bounds the wait with SetReadDeadline, or ends it with Close from
// another goroutine, so the per-frame cost is one read and no allocation in the steady state.
func (c *Conn) ReadRaw(buf []byte) (frame []byte, binary bool, err error) {
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return buf[:0], false, err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // let append pick the growth
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, mt == websocket.BinaryMessage, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
}

// SetReadDeadline bounds the next ReadRaw (the zero time: no bound).
func (c *Conn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }
