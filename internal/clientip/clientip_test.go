package clientip

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestNewRejectsInvalid(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "10.0.0", "fe80::1%eth0", "", "10.0.0.1/8/8", "2001:db8::/129"} {
		_, err := New(Options{TrustedProxies: []string{"10.0.0.0/8", bad}})
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "server.trusted_proxies[1]") {
			t.Errorf("%q: error %q does not name the key", bad, err)
		}
	}
	if _, err := New(Options{TrustedProxies: []string{" 10.0.0.0/8 ", "192.168.1.1", "2001:db8::/32", "::1", "::ffff:172.16.0.0/108"}}); err != nil {
		t.Fatal(err)
	}
}

func TestIP(t *testing.T) {
	trusted := []string{"10.0.0.0/8", "192.0.2.1", "2001:db8:ffff::/48", "::ffff:172.16.0.0/108"}
	tests := []struct {
		name    string
		trusted []string // nil: the default list above
		remote  string
		xff     []string // one entry per header
		want    string
	}{
		// No trusted proxies: the header is ignored whatever it says.
		{name: "no proxies, no header", trusted: []string{}, remote: "203.0.113.7:5555", want: "203.0.113.7"},
		{name: "no proxies, header ignored", trusted: []string{}, remote: "203.0.113.7:5555", xff: []string{"1.1.1.1"}, want: "203.0.113.7"},
		// An untrusted peer cannot speak for anyone else.
		{name: "untrusted peer, spoofed header", remote: "203.0.113.7:5555", xff: []string{"10.0.0.1"}, want: "203.0.113.7"},
		{name: "untrusted peer claims trusted hop", remote: "198.51.100.9:1", xff: []string{"1.2.3.4, 10.0.0.5"}, want: "198.51.100.9"},
		// Behind a trusted proxy.
		{name: "trusted peer, no header", remote: "10.1.2.3:443", want: "10.1.2.3"},
		{name: "trusted peer, one hop", remote: "10.1.2.3:443", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "leftmost spoof ignored", remote: "10.1.2.3:443", xff: []string{"6.6.6.6, 203.0.113.7"}, want: "203.0.113.7"},
		{name: "spoofed trusted address on the left", remote: "10.1.2.3:443", xff: []string{"10.9.9.9, 203.0.113.7"}, want: "203.0.113.7"},
		{name: "two trusted hops", remote: "10.1.2.3:443", xff: []string{"6.6.6.6, 203.0.113.7, 192.0.2.1, 10.0.0.9"}, want: "203.0.113.7"},
		{name: "multiple headers read as one list", remote: "10.1.2.3:443", xff: []string{"6.6.6.6", "203.0.113.7, 10.0.0.9"}, want: "203.0.113.7"},
		{name: "multiple headers, client in the first", remote: "10.1.2.3:443", xff: []string{"6.6.6.6, 203.0.113.7", "10.0.0.9", "192.0.2.1"}, want: "203.0.113.7"},
		{name: "all trusted: leftmost", remote: "10.1.2.3:443", xff: []string{"10.0.0.7, 10.0.0.9"}, want: "10.0.0.7"},
		{name: "spaces and ports", remote: "10.1.2.3:443", xff: []string{"  203.0.113.7:61000  ,10.0.0.9:80"}, want: "203.0.113.7"},
		// Garbage stops the walk: the peer it is.
		{name: "garbage rightmost", remote: "10.1.2.3:443", xff: []string{"1.2.3.4, garbage"}, want: "10.1.2.3"},
		{name: "garbage behind trusted hop", remote: "10.1.2.3:443", xff: []string{"garbage, 10.0.0.9"}, want: "10.1.2.3"},
		{name: "empty entry", remote: "10.1.2.3:443", xff: []string{"1.2.3.4,,10.0.0.9"}, want: "10.1.2.3"},
		{name: "trailing comma", remote: "10.1.2.3:443", xff: []string{"1.2.3.4,"}, want: "10.1.2.3"},
		{name: "empty header", remote: "10.1.2.3:443", xff: []string{""}, want: "10.1.2.3"},
		{name: "hostname", remote: "10.1.2.3:443", xff: []string{"evil.example"}, want: "10.1.2.3"},
		{name: "unknown", remote: "10.1.2.3:443", xff: []string{"unknown"}, want: "10.1.2.3"},
		{name: "injected header syntax", remote: "10.1.2.3:443", xff: []string{"1.2.3.4\r\nX-Admin: 1"}, want: "10.1.2.3"},
		{name: "huge entry", remote: "10.1.2.3:443", xff: []string{strings.Repeat("1", 10000)}, want: "10.1.2.3"},
		{name: "bracketed v4", remote: "10.1.2.3:443", xff: []string{"[1.2.3.4]"}, want: "10.1.2.3"},
		{name: "too many trusted hops", remote: "10.1.2.3:443", xff: []string{"203.0.113.7," + strings.Repeat("10.0.0.1,", MaxHops) + "10.0.0.1"}, want: "10.1.2.3"},
		// IPv6.
		{name: "v6 peer untrusted", remote: "[2001:db8::1]:443", xff: []string{"1.2.3.4"}, want: "2001:db8::1"},
		{name: "v6 trusted peer, v6 client", remote: "[2001:db8:ffff::10]:443", xff: []string{"2001:db8:1::2"}, want: "2001:db8:1::2"},
		{name: "v6 bracketed with port", remote: "[2001:db8:ffff::10]:443", xff: []string{"[2001:db8:1::2]:5000, 2001:db8:ffff::11"}, want: "2001:db8:1::2"},
		{name: "v6 zone dropped", remote: "[2001:db8:ffff::10]:443", xff: []string{"fe80::1%eth0"}, want: "fe80::1"},
		{name: "mapped peer unmapped and trusted", remote: "[::ffff:10.1.2.3]:443", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "mapped client unmapped", remote: "10.1.2.3:443", xff: []string{"::ffff:203.0.113.7"}, want: "203.0.113.7"},
		{name: "mapped trusted hop skipped", remote: "10.1.2.3:443", xff: []string{"203.0.113.7, ::ffff:10.0.0.9"}, want: "203.0.113.7"},
		{name: "trusted from mapped prefix", remote: "172.16.5.5:443", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "untrusted mapped peer", remote: "[::ffff:203.0.113.9]:443", xff: []string{"1.1.1.1"}, want: "203.0.113.9"},
		// A RemoteAddr without a port (tests, some servers) still works.
		{name: "remote without port", remote: "10.1.2.3", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list := tt.trusted
			if list == nil {
				list = trusted
			}
			r, err := New(Options{TrustedProxies: list})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "/ws", nil)
			req.RemoteAddr = tt.remote
			for _, h := range tt.xff {
				req.Header.Add("X-Forwarded-For", h)
			}
			if got := r.IP(req); got != netip.MustParseAddr(tt.want) {
				t.Fatalf("IP = %v; want %s", got, tt.want)
			}
		})
	}
}

func TestIPUnparseableRemote(t *testing.T) {
	r, _ := New(Options{})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr = "@unix"
	if a := r.IP(req); a.IsValid() {
		t.Fatalf("IP = %v; want the zero Addr", a)
	}
}

func TestBlock(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":               "203.0.113.7/32",
		"::ffff:203.0.113.7":        "203.0.113.7/32",
		"2001:db8:1:2:3:4:5:6":      "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1%eth0": "2001:db8:1:2::/64",
	} {
		if got := Block(netip.MustParseAddr(in)); got != netip.MustParsePrefix(want) {
			t.Errorf("Block(%s) = %v; want %s", in, got, want)
		}
	}
}

func FuzzIP(f *testing.F) {
	f.Add("10.1.2.3:443", "6.6.6.6, 203.0.113.7, 10.0.0.9")
	f.Add("[2001:db8:ffff::10]:443", "[2001:db8:1::2]:5000, garbage")
	f.Add("203.0.113.7:1", "10.0.0.1")
	f.Add("10.1.2.3", ",,,")
	r, err := New(Options{TrustedProxies: []string{"10.0.0.0/8", "2001:db8:ffff::/48"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = remote
		req.Header["X-Forwarded-For"] = []string{xff}
		got := r.IP(req)
		peer := parseHost(remote)
		if got != peer {
			// Only a trusted peer lets the header speak, and only with an address it carries.
			if !r.Trusted(peer) || !got.IsValid() || got.Is4In6() || got.Zone() != "" {
				t.Fatalf("IP(%q, %q) = %v; peer %v", remote, xff, got, peer)
			}
		}
	})
}
