package server

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/flowgate/flowgate/internal/clientip"
	"github.com/flowgate/flowgate/internal/protocol"
)

// ConnCaps bounds TCP connections at accept, before a byte of the request is read (DESIGN
// §16): every connection counts, idle HTTP keep-alive included, so one address cannot hold
// the process's file descriptors. A WebSocket keeps the slot its connection took here.
type ConnCaps struct {
	Counter ConnCounter
	// Global and PerIP are limits.global_connections and limits.ip_connections.
	Global, PerIP int
	// Trusted reports the peers that carry other clients' connections (trusted proxies):
	// they are not capped per address here; the handshake caps the client they name.
	Trusted func(netip.Addr) bool
	// Rejected counts a refused connection by scope (connections_global, connections_ip).
	Rejected func(scope string)
}

// countedConn is what a connection's caps already hold, carried into its requests' context
// so the WebSocket handshake does not take a second slot for the same connection.
type countedConn struct {
	global bool
	block  string // the client block counted, "" when not counted per address
}

type countedKey struct{}

// connContext is http.Server.ConnContext: it records the caps a connection holds.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if bc, ok := c.(*batchConn); ok && (bc.counted.global || bc.counted.block != "") {
		return context.WithValue(ctx, countedKey{}, bc.counted)
	}
	return ctx
}

func countedFrom(ctx context.Context) countedConn {
	c, _ := ctx.Value(countedKey{}).(countedConn)
	return c
}

// admit takes c's slots, or reports the scope that is full.
func (cc *ConnCaps) admit(c *batchConn) (scope string, ok bool) {
	if cc.Counter == nil {
		return "", true
	}
	release, ok := cc.Counter.Acquire("global", cc.Global)
	if !ok {
		return "connections_global", false
	}
	releases := []func(){release}
	c.counted.global = true
	if peer := peerAddr(c.RemoteAddr()); peer.IsValid() && (cc.Trusted == nil || !cc.Trusted(peer)) {
		block := clientip.Block(peer).String()
		releaseIP, ok := cc.Counter.Acquire("ip:"+block, cc.PerIP)
		if !ok {
			release()
			return "connections_ip", false
		}
		releases = append(releases, releaseIP)
		c.counted.block = block
	}
	c.release = func() {
		for _, r := range releases {
			r()
		}
	}
	return "", true
}

func peerAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// capRefusals are the responses written to a connection refused at accept: the same problem+json a
// refused handshake gets, written without reading the request (a client sending one reads it
// as the answer), then the connection is closed.
var capRefusals = map[string][]byte{
	"connections_global": refusalBytes("the server is at its connection limit"),
	"connections_ip":     refusalBytes("too many connections from this address"),
}

const capRetryAfter = 5 * time.Second

func refusalBytes(detail string) []byte {
	body, _ := json.Marshal(problem{
		Type: "https://flowgate.dev/errors/" + protocol.CodeRateLimited, Title: "Too Many Requests",
		Status: 429, Code: protocol.CodeRateLimited, Detail: detail, RetryAfterMs: capRetryAfter.Milliseconds(),
	})
	return []byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/problem+json\r\n" +
		"Cache-Control: no-store\r\nRetry-After: " + strconv.Itoa(int(capRetryAfter/time.Second)) +
		"\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body))
}

// refuse answers and closes a connection over a cap, off the accept loop: a client that
// connects and sends nothing must not slow other clients' accepts. At most maxRefusing
// answers are in flight; past that a connection is closed without one.
func (l *BatchListener) refuse(c net.Conn, scope string) {
	select {
	case l.refusing <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		answerAndClose(c, capRefusals[scope])
	}()
}

// maxRefusing bounds the refusals being answered at once.
const maxRefusing = 64

// answerAndClose writes msg, ends the write side, and reads what the client sent until it
// closes (bounded in time and bytes): closing a socket with unread input resets it, and the
// reset would discard the answer before the client reads it.
func answerAndClose(c net.Conn, msg []byte) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(msg); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	var buf [4096]byte
	for n := 0; n < 64<<10; {
		k, err := c.Read(buf[:])
		n += k
		if err != nil {
			return
		}
	}
}
