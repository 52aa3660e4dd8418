package server

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// BatchListener wraps accepted connections so that a WebSocket session can gather several
// frames into one write system call. gorilla/websocket writes every frame to the connection
// separately; a session with many events queued brackets its frames with Batch and Flush,
// and the kernel sees one write per burst instead of one per event.
//
// With caps, it is also where connections are counted (ConnCaps).
type BatchListener struct {
	net.Listener
	caps     *ConnCaps
	refusing chan struct{}
}

// NewBatchListener wraps ln; caps may be nil (no connection caps at accept).
func NewBatchListener(ln net.Listener, caps *ConnCaps) *BatchListener {
	return &BatchListener{Listener: ln, caps: caps, refusing: make(chan struct{}, maxRefusing)}
}

// Accept implements net.Listener. A connection over a cap is answered 429 and closed
// here; Accept goes on to the next one.
func (l *BatchListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		bc := &batchConn{Conn: c}
		if l.caps == nil {
			return bc, nil
		}
		scope, ok := l.caps.admit(bc)
		if ok {
			return bc, nil
		}
		if l.caps.Rejected != nil {
			l.caps.Rejected(scope)
		}
		l.refuse(c, scope)
	}
}

// maxBatch bounds the bytes held before a batch is written out early.
const maxBatch = 256 << 10

var batchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

type batchConn struct {
	net.Conn

	mu       sync.Mutex
	batching bool
	buf      *[]byte
	err      error
	// deadline set during a batch, applied once at Flush: gorilla sets the write deadline
	// before every frame, a system call each time.
	deadline    time.Time
	hasDeadline bool

	// counted and release are the connection caps this connection holds (ConnCaps).
	counted     countedConn
	release     func()
	releaseOnce sync.Once
}

// Close implements net.Conn and gives back the connection's cap slots; net/http and a
// WebSocket session may both close it.
func (c *batchConn) Close() error {
	err := c.Conn.Close()
	if c.release != nil {
		c.releaseOnce.Do(c.release)
	}
	return err
}

// SetWriteDeadline implements net.Conn; during a batch it only records the deadline.
func (c *batchConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	if c.batching {
		c.deadline, c.hasDeadline = t, true
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

// Batch starts gathering writes. Only the session's writer calls it; writes from other
// goroutines (gorilla's pong and close replies) join the batch, in order, under gorilla's
// own write lock.
func (c *batchConn) Batch() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

// Flush writes what was gathered in one call and ends the batch.
func (c *batchConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	err := c.flushLocked()
	if c.buf != nil {
		*c.buf = (*c.buf)[:0]
		batchBuffers.Put(c.buf)
		c.buf = nil
	}
	if err == nil {
		err, c.err = c.err, nil
	}
	return err
}

func (c *batchConn) flushLocked() error {
	if c.hasDeadline {
		c.hasDeadline = false
		if err := c.Conn.SetWriteDeadline(c.deadline); err != nil {
			return err
		}
	}
	if c.buf == nil || len(*c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	return err
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if !c.batching {
		c.mu.Unlock()
		return c.Conn.Write(p)
	}
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.buf == nil {
		c.buf = batchBuffers.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= maxBatch {
		if err := c.flushLocked(); err != nil {
			c.err = err
			return 0, err
		}
	}
	return len(p), nil
}

// SyscallConn exposes the socket, so an idle session can park it (internal/netpoll).
func (c *batchConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("batchconn: not a socket")
	}
	return sc.SyscallConn()
}
