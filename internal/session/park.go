package session

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/flowgate/flowgate/internal/netpoll"
)

// Idle connections are parked: the reader returns and the hub's poller starts it again when
// the socket is readable. Two things would otherwise keep a goroutine per idle connection:
//
//   - gorilla's NextReader answers control frames itself and then blocks for the next data
//     frame, so a client answering our pings every 25 s would pin a reader for good. A
//     parked connection's pongs are therefore taken off the socket here, without gorilla:
//     at a frame boundary with nothing buffered, a complete masked pong frame (at most
//     131 bytes) is consumed and only moves the read deadline.
//   - the read deadline is a runtime timer per socket; while parked it is kept in the
//     session instead and enforced by the hub's once-a-second sweep.
//
// Anything else on the socket — a data frame, a ping, a close, a partial frame, a protocol
// error, end of stream — goes to gorilla on the reader goroutine, exactly as without parking.

// maxPongFrame is the largest client pong: 2 header bytes, a 4-byte mask, 125 payload bytes.
const maxPongFrame = 2 + 4 + 125

// extendDeadline moves the read deadline after a message or a pong (not while closing: the
// close handshake keeps its own short deadline).
func (s *Session) extendDeadline() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.readDeadline = s.opts.Now().Add(s.opts.PongTimeout)
	deadline := s.readDeadline
	s.mu.Unlock()
	_ = s.conn.SetReadDeadline(deadline)
}

// takePongs consumes the complete pong frames waiting on the socket and reports whether the
// socket is then empty (the connection may park). Called only at a frame boundary with
// nothing buffered above the socket.
func (s *Session) takePongs() bool {
	nc, ok := s.conn.NetConn().(netpoll.Conn)
	if !ok {
		return false
	}
	var buf [maxPongFrame]byte
	for {
		n, err := netpoll.Peek(nc, buf[:])
		switch {
		case errors.Is(err, netpoll.ErrWouldBlock):
			return true
		case err != nil, n < 2:
			return false // an error or end of stream: gorilla reports it
		}
		// FIN + opcode 0xA, masked, a control-frame length: anything else is gorilla's.
		size := 6 + int(buf[1]&0x7f)
		if buf[0] != 0x8a || buf[1]&0x80 == 0 || buf[1]&0x7f > 125 || n < size {
			return false
		}
		if _, err := io.ReadFull(s.conn.NetConn(), buf[:size]); err != nil {
			return false
		}
		s.extendDeadline()
	}
}

// parkReader parks the connection and reports whether it did; the caller's goroutine then
// ends and the session lives on in the poller. It does not park a closing session (its
// reader waits for the peer's close frame) nor one whose deadline has passed (the reader
// must see the timeout).
func (s *Session) parkReader(ctx context.Context) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.ended || !s.opts.Now().Before(s.readDeadline) {
		return false
	}
	// While parked the deadline is the sweep's job; clearing the socket's frees its timer.
	// Cleared first: once parked, a new reader may start at any moment and set its own.
	_ = s.conn.SetReadDeadline(time.Time{})
	// Parked under s.mu so closeWith, which sets closing under s.mu and then wakes, either
	// stops this park or finds the connection parked.
	if err := s.park.Park(func() { go s.serve(ctx) }); err != nil {
		_ = s.conn.SetReadDeadline(s.readDeadline)
		return false
	}
	return true
}

// wakeReader gives a parked connection its reader back (closing, or the connection failed).
func (s *Session) wakeReader() {
	if s.park != nil {
		s.park.Wake()
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
		s.park.Wake()
	}
}
