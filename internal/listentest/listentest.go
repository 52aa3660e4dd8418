// Package listentest runs the small servers tests point engines and proxies at (an echo, a
// port that accepts and hangs up) on loopback or a Unix socket, until the test ends.
package listentest

import (
	"io"
	"net"
	"testing"
)

// Serve listens on network/addr and hands every accepted connection to handle on its own
// goroutine. The listener closes when the test ends, which ends the accepting goroutine.
func Serve(t testing.TB, network, addr string, handle func(net.Conn)) net.Listener {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l
}

// Loopback serves handle on a fresh 127.0.0.1 port and returns its host:port. Tests probe
// loopback only, never another address.
func Loopback(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	return Serve(t, "tcp4", "127.0.0.1:0", handle).Addr().String()
}

// Echo writes back what it reads until the peer closes.
func Echo(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(c, c)
}

// Drop hangs up at once: a service that is there, for tests that only ask whether a connect
// gets through.
func Drop(c net.Conn) { c.Close() }
