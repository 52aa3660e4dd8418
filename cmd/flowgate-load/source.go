package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
)

// loopbackNet is the only range --source-net accepts: the tool must never send traffic from
// or to an address that leaves the machine.
var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")

// sourceNet spreads connections over the addresses of a loopback prefix. One source address
// has ~28,000 ephemeral ports (ip_local_port_range) and is one client IP to the gateway's
// per-IP caps; 100,000 connections from distinct addresses run into neither.
type sourceNet struct {
	prefix netip.Prefix
	first  uint32 // first usable address
	n      uint64 // usable addresses
}

func parseSourceNet(s string) (*sourceNet, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, usageError(fmt.Sprintf("--source-net %q is not a CIDR prefix (e.g. 127.0.0.0/8)", s))
	}
	p = p.Masked()
	if !p.Addr().Is4() || p.Bits() < loopbackNet.Bits() || !loopbackNet.Contains(p.Addr()) {
		return nil, usageError(fmt.Sprintf("--source-net %s is outside %s: only loopback sources are allowed", p, loopbackNet))
	}
	a := p.Addr().As4()
	base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	size := uint64(1) << (32 - p.Bits())
	sn := &sourceNet{prefix: p, first: base, n: size}
	// /31 and /32 have no network or broadcast address to skip (RFC 3021).
	if size > 2 {
		sn.first, sn.n = base+1, size-2
	}
	return sn, nil
}

// addr is the source address of connection i: consecutive connections get consecutive
// addresses, wrapping round when there are more connections than addresses.
func (s *sourceNet) addr(i int) netip.Addr {
	v := s.first + uint32(uint64(i)%s.n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// dialFunc is a websocket.Dialer NetDialContext that binds connection i's socket to its
// source address (port 0: the kernel picks one in that address's own port space).
func (s *sourceNet) dialFunc(i int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.addr(i), 0))}
	return d.DialContext
}

// loopbackURL reports whether the URL's host is a loopback IPv4 address or localhost: a
// loopback source cannot reach anything else, and the tool must not try.
func loopbackURL(u *url.URL) bool {
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && loopbackNet.Contains(a.Unmap())
}
