package clientip

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ConfigKey is the configuration key the trusted proxies come from; errors name it.
const ConfigKey = "server.trusted_proxies"

// MaxHops bounds how many X-Forwarded-For entries are read from the right. A chain of trusted
// proxies longer than this is not a real deployment; the peer is used instead.
const MaxHops = 32

// Options configures a Resolver.
type Options struct {
	// TrustedProxies lists the proxies (CIDR prefixes or single addresses) whose
	// X-Forwarded-For entries are believed. Empty: the header is ignored entirely.
	TrustedProxies []string
}

// Resolver finds the client address of a request.
type Resolver struct {
	trusted []netip.Prefix
}

// New parses the trusted proxies. An entry that is neither an IP address nor a CIDR prefix is
// an error naming the key and the index.
func New(opts Options) (*Resolver, error) {
	r := &Resolver{}
	for i, s := range opts.TrustedProxies {
		p, err := parseTrusted(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %q is not an IP address or CIDR prefix", ConfigKey, i, s)
		}
		r.trusted = append(r.trusted, p)
	}
	return r, nil
}

func parseTrusted(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		// ::ffff:10.0.0.0/104 means 10.0.0.0/8: addresses are compared unmapped.
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked(), nil
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zoned address")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Trusted reports whether a is one of the trusted proxies.
func (r *Resolver) Trusted(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// IP returns the address req came from. It is the socket peer (RemoteAddr), unless the peer is
// a trusted proxy: then X-Forwarded-For (every such header, in order, as one list) is read from
// the right, trusted hops are skipped, and the first untrusted address is the client — an
// entry the client wrote itself sits further left and is never reached. When every entry is
// trusted, the leftmost is the client. A malformed entry (or a chain longer than MaxHops)
// stops the walk and the peer is used: nothing behind a broken link can be believed.
//
// IPv4-mapped IPv6 addresses are unmapped and zones dropped. The result is the zero Addr only
// when RemoteAddr itself cannot be parsed (never the case for a real net/http connection).
func (r *Resolver) IP(req *http.Request) netip.Addr {
	peer := parseHost(req.RemoteAddr)
	if !peer.IsValid() || len(r.trusted) == 0 || !r.Trusted(peer) {
		return peer
	}
	headers := req.Header.Values("X-Forwarded-For")
	client := peer
	hops := 0
	for h := len(headers) - 1; h >= 0; h-- {
		list := headers[h]
		for {
			i := strings.LastIndexByte(list, ',')
			entry := list[i+1:]
			list = list[:max(i, 0)]
			if hops++; hops > MaxHops {
				return peer
			}
			a := parseHost(strings.TrimSpace(entry))
			if !a.IsValid() {
				return peer
			}
			if !r.Trusted(a) {
				return a
			}
			client = a
			if i < 0 {
				break
			}
		}
	}
	return client
}

// parseHost reads "1.2.3.4", "1.2.3.4:5678", "2001:db8::1", "[2001:db8::1]" and
// "[2001:db8::1]:443"; anything else is the zero Addr.
func parseHost(s string) netip.Addr {
	if s == "" || len(s) > 64 {
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
		if !strings.Contains(s, ":") { // [1.2.3.4] is not a thing
			return netip.Addr{}
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// Block is the address block one client usually controls: the address itself for IPv4, its
// /64 for IPv6 (a single host is routinely given a whole /64). Key per-IP limits and counters
// on it, or one IPv6 host brings 2^64 fresh buckets.
func Block(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	p, _ := a.Prefix(a.BitLen())
	return p
}
