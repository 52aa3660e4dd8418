package netpoll

import (
	"errors"
	"syscall"
)

// ErrUnsupported is returned by New where there is no epoll (every OS but Linux); callers
// keep a reading goroutine per connection instead.
var ErrUnsupported = errors.New("netpoll: not supported on this platform")

// ErrClosed is returned by Park once the poller has stopped.
var ErrClosed = errors.New("netpoll: poller stopped")

// ErrWouldBlock is returned by Peek when the socket holds no data.
var ErrWouldBlock = errors.New("netpoll: no data")

// Conn is what a parked connection must offer: its file descriptor (net.TCPConn does).
type Conn interface {
	SyscallConn() (syscall.RawConn, error)
}
