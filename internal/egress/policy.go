package egress

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// MaxAllow bounds engine.egress.allow.
const MaxAllow = 256

// Policy is the set of destinations engines may reach, as host:port. A listed name must
// resolve to public addresses; a loopback, private, link-local or metadata address it resolves
// to is reached only when that address:port is listed too (or the name was trusted with
// Trust: the operator's own API endpoint). An address listed literally is reached whatever its
// class.
type Policy struct {
	allow   map[string]bool // lower-cased host:port; IPv6 hosts in brackets
	trusted map[string]bool
}

// ParsePolicy checks each entry of engine.egress.allow; errors name the entry's key.
func ParsePolicy(key string, entries []string) (*Policy, error) {
	if len(entries) > MaxAllow {
		return nil, fmt.Errorf("%s: %d entries, at most %d", key, len(entries), MaxAllow)
	}
	p := &Policy{allow: map[string]bool{}, trusted: map[string]bool{}}
	for i, e := range entries {
		hp, err := normalize(e)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %q: %w", key, i, truncate(e, 64), err)
		}
		p.allow[hp] = true
	}
	return p, nil
}

// Trust lists hostport and lets it resolve to any address (engine.anthropic_base_url).
func (p *Policy) Trust(hostport string) error {
	hp, err := normalize(hostport)
	if err != nil {
		return err
	}
	p.allow[hp], p.trusted[hp] = true, true
	return nil
}

// reachable reports whether addr, which the listed name hostport resolved to, may be dialed.
func (p *Policy) reachable(hostport string, addr netip.Addr, port string) (bool, string) {
	why := special(addr)
	if why == "" || p.trusted[hostport] {
		return true, ""
	}
	if p.allow[net.JoinHostPort(addr.Unmap().String(), port)] {
		return true, ""
	}
	return false, why
}

// Allowed reports whether host:port is listed.
func (p *Policy) Allowed(hostport string) bool {
	hp, err := normalize(hostport)
	return err == nil && p.allow[hp]
}

// Entries lists the allowed destinations (for logs and doctor).
func (p *Policy) Entries() []string {
	out := make([]string, 0, len(p.allow))
	for k := range p.allow {
		out = append(out, k)
	}
	return out
}

// normalize checks host:port and returns it lower-cased, with a numeric port.
func normalize(hostport string) (string, error) {
	if len(hostport) > 300 {
		return "", fmt.Errorf("longer than 300 bytes")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("not host:port")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", fmt.Errorf("port %q is not 1-65535", port)
	}
	if host == "" {
		return "", fmt.Errorf("empty host")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("zoned addresses are not allowed")
		}
		return net.JoinHostPort(a.Unmap().String(), port), nil
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !validHostname(host) {
		return "", fmt.Errorf("host %q is neither an IP address nor a DNS name", truncate(host, 64))
	}
	return net.JoinHostPort(host, port), nil
}

func validHostname(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// special reports why addr must not be reached through a DNS name: loopback, private,
// link-local (cloud metadata lives at 169.254.169.254 and fd00:ec2::254), unspecified,
// multicast, shared (CGNAT) or otherwise not a public unicast address.
func special(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "link-local"
	case a.IsPrivate():
		return "private"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast"
	case metadataAddrs[a]:
		return "metadata"
	}
	for _, p := range reservedPrefixes {
		if p.Contains(a) {
			return "reserved"
		}
	}
	return ""
}

var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("169.254.169.254"): true,
	netip.MustParseAddr("fd00:ec2::254"):   true,
	netip.MustParseAddr("100.100.100.200"): true, // Alibaba Cloud
}

var reservedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // shared address space (CGNAT, some clouds' metadata)
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("255.255.255.255/32"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001::/23"),
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
