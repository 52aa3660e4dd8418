//go:build linux

package netpoll

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// startPoller runs a poller until the test ends.
func startPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-p.Done()
	})
	return p
}

// pair returns both ends of a loopback TCP connection, closed when the test ends.
func pair(t *testing.T) (server *net.TCPConn, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		s.Close()
	})
	return s.(*net.TCPConn), client
}

// readyChan returns a ready function and the channel it signals.
func readyChan() (func(), chan struct{}) {
	ch := make(chan struct{}, 4)
	return func() { ch <- struct{}{} }, ch
}

func waitReady(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: ready was not called", what)
	}
}

func noReady(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: ready was called", what)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestParkWakesOnData(t *testing.T) {
	p := startPoller(t)
	srv, cli := pair(t)
	h := register(t, p, srv)
	ready, ch := readyChan()
	for round := range 3 { // the first park adds, later ones re-arm
		if err := h.Park(ready); err != nil {
			t.Fatal(err)
		}
		if got := p.Parked(); got != 1 {
			t.Fatalf("round %d: Parked = %d, want 1", round, got)
		}
		noReady(t, ch, "idle socket")
		if _, err := cli.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		waitReady(t, ch, "after a write")
		if got := p.Parked(); got != 0 {
			t.Fatalf("round %d: Parked after wake = %d, want 0", round, got)
		}
		buf := make([]byte, 1)
		if _, err := io.ReadFull(srv, buf); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOneShot(t *testing.T) {
	p := startPoller(t)
	srv, cli := pair(t)
	h := register(t, p, srv)
	ready, ch := readyChan()
	if err := h.Park(ready); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ch, "first write")
	// Unread data and more writes must not call ready again until the owner parks again.
	if _, err := cli.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	noReady(t, ch, "second write while not parked")
	if err := h.Park(ready); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ch, "parked with data already waiting")
}

func TestWakeAndClose(t *testing.T) {
	p := startPoller(t)
	srv, cli := pair(t)
	h := register(t, p, srv)
	ready, ch := readyChan()
	if h.Wake() {
		t.Fatal("Wake of a handle that was never parked reported true")
	}
	if err := h.Park(ready); err != nil {
		t.Fatal(err)
	}
	if !h.Wake() {
		t.Fatal("Wake of a parked handle reported false")
	}
	waitReady(t, ch, "Wake")
	if _, err := cli.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	noReady(t, ch, "data after Wake")
	// Consume it: parked with data waiting, ready fires at once (TestOneShot), and could then
	// land after Close below and be mistaken for a call after Close.
	if _, err := io.ReadFull(srv, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}

	if err := h.Park(ready); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if p.Parked() != 0 {
		t.Fatal("Close left the handle parked")
	}
	if _, err := cli.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	noReady(t, ch, "data after Close")
	if h.Wake() {
		t.Fatal("Wake after Close reported true")
	}
}

func TestPeerHangUpWakes(t *testing.T) {
	p := startPoller(t)
	srv, cli := pair(t)
	h := register(t, p, srv)
	ch := park(t, h)
	cli.Close()
	waitReady(t, ch, "peer close")
	buf := make([]byte, 8)
	if n, err := Peek(srv, buf); n != 0 || err != nil {
		t.Fatalf("Peek at end of stream = %d, %v; want 0, nil", n, err)
	}
}

func TestParkClosedConn(t *testing.T) {
	p := startPoller(t)
	srv, _ := pair(t)
	h := register(t, p, srv)
	srv.Close()
	ready, _ := readyChan()
	if err := h.Park(ready); err == nil {
		t.Fatal("Park of a closed connection succeeded")
	}
	if p.Parked() != 0 {
		t.Fatal("a failed Park left the handle parked")
	}
}

// A socket closed while parked leaves epoll with its last reference; its descriptor number,
// reused by the next socket, must not deliver the old handle's events or the new one's to
// the old owner.
func TestClosedWhileParkedDescriptorReuse(t *testing.T) {
	p := startPoller(t)
	srvA, _ := pair(t)
	hA := register(t, p, srvA)
	chA := park(t, hA)
	srvA.Close() // no Handle.Close: the owner lost the race

	srvB, cliB := pair(t)
	hB := register(t, p, srvB)
	chB := park(t, hB)
	if _, err := cliB.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitReady(t, chB, "the new socket")
	noReady(t, chA, "the closed socket")
	// The stale handle can still be woken by its owner, and only once.
	if !hA.Wake() {
		t.Fatal("the stale handle was no longer parked")
	}
	waitReady(t, chA, "explicit Wake of the stale handle")
}

func TestStopWakesEveryone(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	const n = 5
	ch := make(chan struct{}, n)
	ready := func() { ch <- struct{}{} }
	for range n {
		srv, _ := pair(t)
		h, err := p.Register(srv)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Park(ready); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	for range n {
		waitReady(t, ch, "stop")
	}
	srv, _ := pair(t)
	if _, err := p.Register(srv); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after stop = %v, want ErrClosed", err)
	}
}

func TestParkAfterStop(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := pair(t)
	h := register(t, p, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Park(func() {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Park after stop = %v, want ErrClosed", err)
	}
	h.Close() // must not touch the closed epoll descriptor
}

func TestPeek(t *testing.T) {
	srv, cli := pair(t)
	buf := make([]byte, 16)
	if _, err := Peek(srv, buf); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("Peek of an empty socket = %v, want ErrWouldBlock", err)
	}
	if _, err := cli.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var n int
	var err error
	for time.Now().Before(deadline) {
		if n, err = Peek(srv, buf); !errors.Is(err, ErrWouldBlock) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Peek = %q, %v; want hello", buf[:n], err)
	}
	// Peeking consumed nothing.
	got := make([]byte, 5)
	if _, err := io.ReadFull(srv, got); err != nil || string(got) != "hello" {
		t.Fatalf("read after Peek = %q, %v", got, err)
	}
}

// register registers conn with p, failing the test on error.
func register(t *testing.T, p *Poller, conn Conn) *Handle {
	t.Helper()
	h, err := p.Register(conn)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// park parks h and returns the channel its readiness callback signals.
func park(t *testing.T, h *Handle) <-chan struct{} {
	t.Helper()
	ready, ch := readyChan()
	if err := h.Park(ready); err != nil {
		t.Fatal(err)
	}
	return ch
}
