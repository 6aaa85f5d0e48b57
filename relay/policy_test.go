package relay

import (
	"net/netip"
	"testing"
)

// These tests only ask the policy; nothing is ever sent to these addresses.
func TestPeerPolicyDefault(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		// IPv4 global unicast.
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"100.63.255.255", true},  // just below CGNAT
		{"100.128.0.0", true},     // just above CGNAT
		{"172.15.255.255", true},  // just below RFC 1918
		{"172.32.0.0", true},      // just above RFC 1918
		{"192.0.1.1", true},       // between 192.0.0/24 and 192.0.2/24
		{"198.17.255.255", true},  // below benchmarking
		{"198.20.0.0", true},      // above benchmarking
		{"223.255.255.255", true}, // last before multicast
		// IPv4 refused.
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"10.0.0.1", false},
		{"10.255.255.255", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"169.254.169.254", false}, // cloud metadata
		{"169.254.0.1", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.0.0.8", false},
		{"192.0.0.170", false},
		{"192.0.2.1", false},
		{"192.88.99.1", false},
		{"192.168.1.1", false},
		{"198.18.0.1", false},
		{"198.19.255.255", false},
		{"198.51.100.7", false},
		{"203.0.113.9", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"240.0.0.1", false},
		{"255.255.255.255", false},
		// IPv6 global unicast.
		{"2001:4860:4860::8888", true},
		{"2606:4700:4700::1111", true},
		{"2a00:1450:4001::1", true},
		{"2001:200::1", true}, // just above 2001::/23
		// IPv6 refused.
		{"::", false},
		{"::1", false},
		{"100::1", false},           // discard-only
		{"fc00::1", false},          // ULA
		{"fd12:3456::1", false},     // ULA
		{"fe80::1", false},          // link-local
		{"fe80::1%eth0", false},     // zone stripped, still link-local
		{"fec0::1", false},          // site-local
		{"ff02::1", false},          // multicast
		{"ff0e::1", false},          // global-scope multicast
		{"2001:db8::1", false},      // documentation
		{"3fff::1", false},          // documentation (RFC 9637)
		{"2001:2::1", false},        // benchmarking
		{"2001:10::1", false},       // ORCHID
		{"5f00::1", false},          // SRv6 SIDs
		{"4000::1", false},          // outside 2000::/3
		{"64:ff9b:1::a00:1", false}, // NAT64 local-use, refused whatever it carries
		{"64:ff9b:1::808:808", false},
		// IPv6 embedding IPv4: judged by the IPv4 address.
		{"::ffff:127.0.0.1", false}, // IPv4-mapped
		{"::ffff:10.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:0.0.0.0", false},
		{"::ffff:8.8.8.8", true},
		{"::127.0.0.1", false}, // IPv4-compatible
		{"::10.1.2.3", false},
		{"::8.8.8.8", true},
		{"::0.0.0.1", false},          // = ::1 through the compatible form
		{"64:ff9b::127.0.0.1", false}, // NAT64 well-known
		{"64:ff9b::192.168.0.1", false},
		{"64:ff9b::8.8.8.8", true},
		{"2002:7f00:1::", false},     // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", false}, // 6to4 of 169.254.169.254
		{"2002:c0a8:101::1", false},  // 6to4 of 192.168.1.1
		{"2002:808:808::1", true},    // 6to4 of 8.8.8.8
		// Teredo: server 65.54.227.120, client 8.8.8.8 obfuscated (f7f7:f7f7).
		{"2001:0:4136:e378:8000:63bf:f7f7:f7f7", true},
		// Teredo with client 127.0.0.1 (obfuscated 80ff:fffe).
		{"2001:0:4136:e378:8000:63bf:80ff:fffe", false},
		// Teredo with server 10.0.0.1 and a public client.
		{"2001:0:a00:1:8000:63bf:f7f7:f7f7", false},
	}
	p := &peerPolicy{}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(tt.ip)
			if got := p.allowed(ip); got != tt.want {
				t.Errorf("allowed(%s) = %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
	if p.allowed(netip.Addr{}) {
		t.Error("allowed(invalid) = true, want false")
	}
}

func TestPeerPolicyOverrides(t *testing.T) {
	pfx := func(ss ...string) []netip.Prefix { return mustPrefixes(ss...) }
	tests := []struct {
		name  string
		allow []netip.Prefix
		deny  []netip.Prefix
		self  []netip.Addr
		ip    string
		want  bool
	}{
		{"allow loopback", pfx("127.0.0.0/8"), nil, nil, "127.0.0.1", true},
		{"allow loopback covers mapped form", pfx("127.0.0.0/8"), nil, nil, "::ffff:127.0.0.1", true},
		{"allow loopback covers 6to4 form", pfx("127.0.0.0/8"), nil, nil, "2002:7f00:1::", true},
		{"allow is not wider than written", pfx("127.0.0.0/8"), nil, nil, "10.0.0.1", false},
		{"allow v6 loopback", pfx("::1/128"), nil, nil, "::1", true},
		{"allow ULA", pfx("fd00::/8"), nil, nil, "fd00::5", true},
		{"allow private LAN", pfx("192.168.0.0/16"), nil, nil, "192.168.7.7", true},
		{"deny global", nil, pfx("8.8.8.0/24"), nil, "8.8.8.8", false},
		{"deny global through mapped form", nil, pfx("8.8.8.0/24"), nil, "::ffff:8.8.8.8", false},
		{"deny global through NAT64 form", nil, pfx("8.8.8.0/24"), nil, "64:ff9b::8.8.8.8", false},
		{"deny global through 6to4 form", nil, pfx("8.8.8.0/24"), nil, "2002:808:808::1", false},
		{"deny wins over allow", pfx("10.0.0.0/8"), pfx("10.1.0.0/16"), nil, "10.1.2.3", false},
		{"allow outside deny", pfx("10.0.0.0/8"), pfx("10.1.0.0/16"), nil, "10.2.0.1", true},
		{"deny v6", nil, pfx("2001:4860::/32"), nil, "2001:4860:4860::8888", false},
		{"self allowed though loopback", nil, nil, []netip.Addr{netip.MustParseAddr("127.0.0.2")}, "127.0.0.2", true},
		{"self allowed in mapped form", nil, nil, []netip.Addr{netip.MustParseAddr("127.0.0.2")}, "::ffff:127.0.0.2", true},
		{"self does not open neighbours", nil, nil, []netip.Addr{netip.MustParseAddr("127.0.0.2")}, "127.0.0.1", false},
		{"deny wins over self", nil, pfx("127.0.0.2/32"), []netip.Addr{netip.MustParseAddr("127.0.0.2")}, "127.0.0.2", false},
		// The own address is open only in its exact form (the data path guards its ports);
		// an embedding of it would route around that guard through a NAT64 or 6to4 gateway.
		// Unspecified is the host itself: refused even when an allow covers everything.
		{"allow all still refuses 0.0.0.0", pfx("0.0.0.0/0"), nil, nil, "0.0.0.0", false},
		{"allow all still refuses ::", pfx("::/0"), nil, nil, "::", false},
		{"allow all still refuses mapped 0.0.0.0", pfx("0.0.0.0/0", "::/0"), nil, nil, "::ffff:0.0.0.0", false},
		{"allow all still refuses NAT64 0.0.0.0", pfx("0.0.0.0/0", "::/0"), nil, nil, "64:ff9b::", false},
		{"allow all still refuses 6to4 0.0.0.0", pfx("0.0.0.0/0", "::/0"), nil, nil, "2002::1", false},
		{"allow all opens the rest", pfx("0.0.0.0/0"), nil, nil, "10.0.0.1", true},
		{"self through NAT64 form", nil, nil, []netip.Addr{netip.MustParseAddr("8.8.4.4")}, "64:ff9b::8.8.4.4", false},
		{"self through 6to4 form", nil, nil, []netip.Addr{netip.MustParseAddr("8.8.4.4")}, "2002:808:404::1", false},
		{"self through compatible form", nil, nil, []netip.Addr{netip.MustParseAddr("8.8.4.4")}, "::8.8.4.4", false},
		{"self through Teredo client", nil, nil, []netip.Addr{netip.MustParseAddr("8.8.4.4")}, "2001:0:4136:e378:8000:63bf:f7f7:fbfb", false},
		{"self through NAT64 form, allowed range", pfx("8.8.4.0/24"), nil, []netip.Addr{netip.MustParseAddr("8.8.4.4")}, "64:ff9b::8.8.4.4", false},
		{"neighbour of self through NAT64 form", nil, nil, []netip.Addr{netip.MustParseAddr("8.8.4.4")}, "64:ff9b::8.8.4.5", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &peerPolicy{allow: tt.allow, deny: tt.deny, self: tt.self}
			if got := p.allowed(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("allowed(%s) = %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
}

// TestPeerPolicyMappedPrefixes: an override written in IPv4-mapped form means the IPv4
// prefix it carries; the policy judges peers by their IPv4 form, so unnormalised, a mapped
// deny would refuse nothing and a mapped allow would open nothing.
func TestPeerPolicyMappedPrefixes(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny string
		ip          string
		want        bool
	}{
		{"mapped deny refuses plain IPv4", "", "::ffff:8.8.8.0/120", "8.8.8.8", false},
		{"mapped deny refuses mapped IPv4", "", "::ffff:8.8.8.0/120", "::ffff:8.8.8.8", false},
		{"mapped deny refuses NAT64 form", "", "::ffff:8.8.8.0/120", "64:ff9b::8.8.8.8", false},
		{"mapped deny leaves the rest", "", "::ffff:8.8.8.0/120", "8.8.4.4", true},
		{"mapped allow opens plain IPv4", "::ffff:10.0.0.0/104", "", "10.1.2.3", true},
		{"mapped allow is not wider than written", "::ffff:10.0.0.0/104", "", "192.168.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Secrets: []string{testSecret}}
			if tt.allow != "" {
				cfg.PeerAllow = mustPrefixes(tt.allow)
			}
			if tt.deny != "" {
				cfg.PeerDeny = mustPrefixes(tt.deny)
			}
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.policy.allowed(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("allowed(%s) with allow %q deny %q = %v, want %v", tt.ip, tt.allow, tt.deny, got, tt.want)
			}
		})
	}
}
