package session

import (
	"bufio"
	"errors"
	"net"
	"net/http"
)

// readBufferSize is each connection's read buffer. Client frames are small and rare; a large
// buffer would be held by every idle connection for nothing. gorilla reuses a hijacked
// reader only above 256 bytes (and needs at least a control frame, 125); 288 is the Go
// allocator's next size class, so nothing is rounded up. A larger frame (a long objective)
// is read through it: bufio hands reads of a buffer's size or more straight to the socket.
const readBufferSize = 288

// HijackReader wraps the handshake's ResponseWriter so that gorilla, at the hijack, gets a
// small buffered reader of ours instead of net/http's 4 KiB one, and keeps it: a session may
// park its connection (no goroutine) only when nothing is buffered above the socket, and this
// reader is how it can tell. Give the Upgrader ReadBufferSize 0 so it reads through it.
type HijackReader struct {
	http.ResponseWriter
	br *bufio.Reader
}

// Hijack implements http.Hijacker.
func (c *HijackReader) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := c.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("websocket: response does not implement http.Hijacker")
	}
	conn, rw, err := hj.Hijack()
	if err != nil || rw.Reader.Buffered() > 0 {
		return conn, rw, err // gorilla refuses a client that sent data before the handshake
	}
	c.br = bufio.NewReaderSize(conn, readBufferSize)
	return conn, bufio.NewReadWriter(c.br, rw.Writer), nil
}

// Reader is the reader gorilla reads through, for Hub.Start; nil until a hijack made one
// (the session then never parks).
func (c *HijackReader) Reader() *bufio.Reader { return c.br }
