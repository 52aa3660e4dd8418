package session

import (
	"bufio"
	"context"
	"errors"
	"io"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flowgate/flowgate/internal/netpoll"
)

// Idle connections are parked: the reader returns and the hub's poller starts it again when
// the socket is readable. Two things would otherwise keep a goroutine per idle connection:
//
//   - gorilla's NextReader answers control frames itself and then blocks for the next data
//     frame, so a client answering our pings every 25 s (or sending its own keep-alive
//     pings) would pin a reader for good. A parked connection's control frames are therefore
//     taken here, without gorilla: at a frame boundary, every complete masked pong or ping
//     frame (at most 131 bytes) already in gorilla's buffer or on the socket is consumed; a
//     pong only moves the read deadline, a ping is answered with its pong and moves it too.
//   - the read deadline is a runtime timer per socket; while parked it is kept in the
//     session instead and enforced by the hub's once-a-second sweep.
//
// Anything else — a data frame, a close, a partial frame, a protocol error, end of stream —
// goes to gorilla on the reader goroutine, exactly as without parking.

// maxControlFrame is the largest client control frame: 2 header bytes, a 4-byte mask, 125
// payload bytes.
const maxControlFrame = 2 + 4 + 125

// controlFrame reports the size of the masked client ping or pong frame at the start of b and
// whether b holds all of it; size 0 when b does not start with one.
// A frame cut short still gives its size when its two header bytes are there.
func controlFrame(b []byte) (size int, ok bool) {
	if len(b) < 2 || (b[0] != 0x8a && b[0] != 0x89) || b[1]&0x80 == 0 || b[1]&0x7f > 125 {
		return 0, false
	}
	size = 6 + int(b[1]&0x7f)
	return size, len(b) >= size
}

// handleControl acts on one complete control frame from controlFrame.
func (s *Session) handleControl(f []byte) {
	if f[0] == 0x89 { // a client ping: answer with its payload, unmasked
		payload := make([]byte, len(f)-6)
		for i := range payload {
			payload[i] = f[6+i] ^ f[2+i%4]
		}
		// WriteControl may run alongside the writer (gorilla serialises it).
		_ = s.conn.WriteControl(websocket.PongMessage, payload, time.Now().Add(s.opts.WriteTimeout))
	}
	s.extendDeadline()
}

// extendDeadline moves the read deadline after a message or a pong (not while closing: the
// close handshake keeps its own short deadline).
func (s *Session) extendDeadline() {
	s.mu.Lock()
	if s.life != lifeOpen {
		s.mu.Unlock()
		return
	}
	s.readDeadline = s.opts.Now().Add(s.opts.PongTimeout)
	// Applied under s.mu: a closeWith in between must not have its short deadline replaced.
	_ = s.conn.SetReadDeadline(s.readDeadline)
	s.mu.Unlock()
}

// parkConn is a connection that can park: the buffered reader gorilla reads through, the
// socket under it and its poller registration. It knows the wire, not the session: it takes
// the control frames that may be taken without gorilla and parks and wakes the reader.
type parkConn struct {
	br   *bufio.Reader
	nc   netpoll.Conn
	read io.Reader // the socket itself, under gorilla's buffer
	h    *netpoll.Handle
}

// newParkConn registers conn with poll; nil when the connection cannot park (no poller, no
// known reader, not a socket, or the registration failed).
func newParkConn(poll *netpoll.Poller, conn *websocket.Conn, br *bufio.Reader) *parkConn {
	if poll == nil || br == nil {
		return nil
	}
	nc, ok := conn.NetConn().(netpoll.Conn)
	if !ok {
		return nil
	}
	h, err := poll.Register(nc)
	if err != nil {
		return nil
	}
	return &parkConn{br: br, nc: nc, read: conn.NetConn(), h: h}
}

// takeControl consumes the complete control frames waiting in gorilla's buffer and then on
// the socket, each handed to handle, and reports whether nothing is left (the connection
// may park). Called only at a frame boundary.
func (p *parkConn) takeControl(handle func(frame []byte)) bool {
	for p.br.Buffered() > 0 {
		head, _ := p.br.Peek(min(p.br.Buffered(), maxControlFrame)) // buffered: no read
		size, ok := controlFrame(head)
		if !ok {
			return false
		}
		handle(head[:size])
		_, _ = p.br.Discard(size)
	}
	var buf [maxControlFrame]byte
	for {
		n, err := netpoll.Peek(p.nc, buf[:])
		switch {
		case errors.Is(err, netpoll.ErrWouldBlock):
			return true
		case err != nil:
			return false // an error or end of stream: gorilla reports it
		}
		size, ok := controlFrame(buf[:n])
		if !ok && (n < 2 || size == 0) {
			return false // not a control frame (or too little of it to tell): gorilla's
		}
		// Complete, or a control frame whose header is here and whose rest is on its way:
		// read it here, as gorilla would (under the same read deadline), so that the reader
		// can park after it. A failed read leaves the deadline or the error to gorilla.
		if _, err := io.ReadFull(p.read, buf[:size]); err != nil {
			return false
		}
		handle(buf[:size])
	}
}

// parkReader parks the connection and reports whether it did; the caller's goroutine then
// ends and the session lives on in the poller. It does not park a closing session (its
// reader waits for the peer's close frame) nor one whose deadline has passed (the reader
// must see the timeout).
func (s *Session) parkReader(ctx context.Context) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life != lifeOpen || !s.opts.Now().Before(s.readDeadline) {
		return false
	}
	// While parked the deadline is the sweep's job; clearing the socket's frees its timer.
	// Cleared first: once parked, a new reader may start at any moment and set its own.
	_ = s.conn.SetReadDeadline(time.Time{})
	// Parked under s.mu so closeWith, which sets closing under s.mu and then wakes, either
	// stops this park or finds the connection parked.
	if err := s.park.h.Park(func() { go s.serve(ctx) }); err != nil {
		_ = s.conn.SetReadDeadline(s.readDeadline)
		return false
	}
	return true
}

// wakeReader gives a parked connection its reader back (closing, or the connection failed).
func (s *Session) wakeReader() {
	if s.park != nil {
		s.park.h.Wake()
	}
}

// wakeIfExpired is the sweep's deadline check for parked connections: one whose deadline has
// passed gets its reader back, which sees the timeout and closes the session.
func (s *Session) wakeIfExpired(now time.Time) {
	if s.park == nil {
		return
	}
	s.mu.Lock()
	expired := !now.Before(s.readDeadline)
	s.mu.Unlock()
	if expired {
		s.park.h.Wake()
	}
}
