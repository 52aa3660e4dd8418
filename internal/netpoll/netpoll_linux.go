//go:build linux

package netpoll

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller watches parked connections. Its Run loop is the only goroutine it has; a parked
// connection costs one map entry and one epoll registration.
//
// Registrations are one-shot: an event disarms the socket and hands the connection back
// exactly once, through the ready function given to Park; the owner reads on a goroutine of
// its own and parks again when it is idle. Events carry a 64-bit handle id, never a file
// descriptor number, so an event for a socket that was closed (and whose number was reused)
// cannot reach another connection.
type Poller struct {
	epfd int
	evfd int // written to stop Run

	mu      sync.Mutex
	parked  map[uint64]*Handle
	nextID  uint64
	stopped bool
	done    chan struct{}
}

// Handle is one connection's registration with a Poller.
type Handle struct {
	p     *Poller
	rc    syscall.RawConn
	id    uint64
	added bool   // registered with epoll (armed or disarmed); under p.mu
	ready func() // while parked; under p.mu
}

// New creates a poller. Run must be called for parked connections to come back.
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: eventfd: %w", err)
	}
	// The eventfd's id is 0; handles count from 1.
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: epoll_ctl eventfd: %w", err)
	}
	return &Poller{epfd: epfd, evfd: evfd, parked: map[uint64]*Handle{}, done: make(chan struct{})}, nil
}

// Register prepares c for parking. It does not arm anything yet.
func (p *Poller) Register(c Conn) (*Handle, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil, ErrClosed
	}
	p.nextID++
	return &Handle{p: p, rc: rc, id: p.nextID}, nil
}

// Park arms the handle: once its socket is readable (or hung up, or in error), ready is
// called, once, on the poller's goroutine — it must only start the reader and return. When
// Park returns an error the connection is not parked and the caller keeps reading; when it
// returns nil the caller must not touch the connection's read side again until ready runs
// (which may already have happened).
func (h *Handle) Park(ready func()) error {
	p := h.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return ErrClosed
	}
	op := unix.EPOLL_CTL_MOD
	if !h.added {
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	ev.Fd, ev.Pad = int32(uint32(h.id)), int32(uint32(h.id>>32))
	var ctlErr error
	// Control holds the descriptor open for the call, so a concurrent Close cannot hand its
	// number to another socket under us; after Close it fails and the caller keeps reading.
	err := h.rc.Control(func(fd uintptr) { ctlErr = unix.EpollCtl(p.epfd, op, int(fd), &ev) })
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		return fmt.Errorf("netpoll: park: %w", err)
	}
	h.added = true
	h.ready = ready
	p.parked[h.id] = h
	return nil
}

// Wake hands a parked connection back now, as if it had become readable: ready runs on the
// calling goroutine. It reports whether the handle was parked; if not, its reader is
// already running (or the handle was never parked) and nothing happens.
func (h *Handle) Wake() bool {
	p := h.p
	p.mu.Lock()
	ready := p.takeLocked(h.id)
	p.mu.Unlock()
	if ready == nil {
		return false
	}
	ready()
	return true
}

// Close forgets the handle. A parked handle is not woken: its owner is closing it. Call it
// before closing the connection, so the epoll registration goes with it.
func (h *Handle) Close() {
	p := h.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.takeLocked(h.id)
	if h.added && !p.stopped {
		_ = h.rc.Control(func(fd uintptr) { _ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
	}
	h.added = false
}

func (p *Poller) takeLocked(id uint64) func() {
	h := p.parked[id]
	if h == nil {
		return nil
	}
	delete(p.parked, id)
	ready := h.ready
	h.ready = nil
	return ready
}

// Parked is the number of connections parked now.
func (p *Poller) Parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// Run waits for events until ctx ends, then wakes every connection still parked (their
// owners go back to reading on goroutines of their own; Park fails from then on) and
// releases the epoll instance. Call it once.
func (p *Poller) Run(ctx context.Context) error {
	defer close(p.done)
	stop := context.AfterFunc(ctx, func() {
		var one = [8]byte{1}
		_, _ = unix.Write(p.evfd, one[:])
	})
	defer stop()

	events := make([]unix.EpollEvent, 256)
	var runErr error
loop:
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			runErr = fmt.Errorf("netpoll: epoll_wait: %w", err)
			break
		}
		for i := range events[:n] {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if id == 0 {
				break loop
			}
			p.mu.Lock()
			ready := p.takeLocked(id)
			p.mu.Unlock()
			if ready != nil {
				ready()
			}
		}
	}

	p.mu.Lock()
	p.stopped = true
	waiting := make([]func(), 0, len(p.parked))
	for id := range p.parked {
		if ready := p.takeLocked(id); ready != nil {
			waiting = append(waiting, ready)
		}
	}
	unix.Close(p.epfd)
	unix.Close(p.evfd)
	p.mu.Unlock()
	for _, ready := range waiting {
		ready()
	}
	return runErr
}

// Done is closed when Run has returned.
func (p *Poller) Done() <-chan struct{} { return p.done }

// Peek copies what the socket holds, up to len(buf), without consuming it and without
// blocking: ErrWouldBlock when there is nothing, (0, nil) at end of stream.
func Peek(c Conn, buf []byte) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("netpoll: %w", err)
	}
	var (
		n     int
		opErr error
	)
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, opErr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if opErr != syscall.EINTR {
				return true // never wait: the caller parks instead
			}
		}
	})
	switch {
	case err != nil:
		return 0, fmt.Errorf("netpoll: %w", err)
	case opErr == syscall.EAGAIN:
		return 0, ErrWouldBlock
	case opErr != nil:
		return 0, fmt.Errorf("netpoll: peek: %w", opErr)
	}
	return n, nil
}
