//go:build !linux

package netpoll

import "context"

// Poller is unavailable off Linux; New always fails with ErrUnsupported.
type Poller struct{}

// Handle is unavailable off Linux.
type Handle struct{}

// New returns ErrUnsupported.
func New() (*Poller, error) { return nil, ErrUnsupported }

// Register returns ErrUnsupported.
func (p *Poller) Register(Conn) (*Handle, error) { return nil, ErrUnsupported }

// Park returns ErrUnsupported.
func (h *Handle) Park(func()) error { return ErrUnsupported }

// Wake reports false.
func (h *Handle) Wake() bool { return false }

// Close does nothing.
func (h *Handle) Close() {}

// Parked is zero.
func (p *Poller) Parked() int { return 0 }

// Run returns at once.
func (p *Poller) Run(context.Context) error { return ErrUnsupported }

// Done is closed.
func (p *Poller) Done() <-chan struct{} { c := make(chan struct{}); close(c); return c }

// Peek returns ErrUnsupported.
func Peek(Conn, []byte) (int, error) { return 0, ErrUnsupported }
