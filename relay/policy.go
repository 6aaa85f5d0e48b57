package relay

import (
	"net/netip"
)

// peerPolicy decides which peer IPs an allocation may get a permission for. It is pure:
// no I/O, no clock, safe for concurrent use after construction.
//
// The default refuses everything that is not global unicast, so the relay cannot be used
// to reach the operator's own networks (coturn CVE-2020-26262 and CVE-2026-27624 were
// loopback and 0.0.0.0 reached through alternative encodings). Addresses are normalised
// first: an IPv6 address embedding an IPv4 address is judged by the IPv4 address(es) it
// carries, or refused when the embedding is local-use.
type peerPolicy struct {
	allow, deny []netip.Prefix
	// self are the server's own public addresses. They are allowed as peers because two
	// allocations of this server talk to each other through them (relay-to-relay); the data
	// path then only lets traffic through to live relay ports (see relayConn.WriteTo).
	self []netip.Addr
}

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// deniedV4 are the IPv4 ranges that are not global unicast (IANA special-purpose registry).
var deniedV4 = mustPrefixes(
	"0.0.0.0/8",       // "this network", incl. 0.0.0.0
	"10.0.0.0/8",      // RFC 1918
	"100.64.0.0/10",   // shared address space (CGNAT)
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, incl. cloud metadata 169.254.169.254
	"172.16.0.0/12",   // RFC 1918
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // TEST-NET-1
	"192.88.99.0/24",  // deprecated 6to4 relay anycast
	"192.168.0.0/16",  // RFC 1918
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // TEST-NET-2
	"203.0.113.0/24",  // TEST-NET-3
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // class E, incl. broadcast 255.255.255.255
)

var (
	// globalV6 is the only IPv6 global unicast space allocated today; everything outside it
	// (::/8 incl. loopback and unspecified, 100::/64 discard, 5f00::/16 SRv6, ULA fc00::/7,
	// link-local fe80::/10, site-local fec0::/10, multicast ff00::/8) is refused.
	globalV6 = netip.MustParsePrefix("2000::/3")
	// deniedV6 are the non-global parts of 2000::/3 that do not embed IPv4.
	deniedV6 = mustPrefixes(
		"2001::/23",     // IETF protocol assignments (Teredo 2001::/32 is judged separately)
		"2001:db8::/32", // documentation
		"3fff::/20",     // documentation (RFC 9637)
	)
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96")   // RFC 6052, judged by the IPv4
	nat64Local     = netip.MustParsePrefix("64:ff9b:1::/48") // RFC 8215 local use: refused
	sixToFour      = netip.MustParsePrefix("2002::/16")      // RFC 3056, judged by the IPv4
	teredo         = netip.MustParsePrefix("2001::/32")      // RFC 4380, judged by both IPv4s
	v4Compatible   = netip.MustParsePrefix("::/96")          // deprecated RFC 4291 §2.5.5.1
)

// embeddedV4 returns the IPv4 addresses an IPv6 address carries, whether it is an
// embedding form at all, and whether the form is acceptable in principle.
func embeddedV4(ip netip.Addr) (v4s []netip.Addr, embedding, ok bool) {
	b := ip.As16()
	v4at := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]}) }
	switch {
	case ip.Is4In6():
		return []netip.Addr{ip.Unmap()}, true, true
	case v4Compatible.Contains(ip):
		// Includes :: and ::1, which carry 0.0.0.0 and 0.0.0.1 and are refused through them.
		return []netip.Addr{v4at(12)}, true, true
	case nat64WellKnown.Contains(ip):
		return []netip.Addr{v4at(12)}, true, true
	case nat64Local.Contains(ip):
		// The local-use prefix may carry the IPv4 address at any RFC 6052 offset, chosen by
		// the operator; we cannot know which, and it is not global anyway.
		return nil, true, false
	case sixToFour.Contains(ip):
		return []netip.Addr{v4at(2)}, true, true
	case teredo.Contains(ip):
		// Server IPv4 in bits 32-63, client IPv4 obfuscated (inverted) in bits 96-127.
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return []netip.Addr{v4at(4), netip.AddrFrom4(client)}, true, true
	}
	return nil, false, true
}

// unmapPrefixes returns ps with IPv4-mapped prefixes (::ffff:10.0.0.0/104) written as the
// IPv4 prefixes they mean (10.0.0.0/8). The policy judges every peer by its IPv4 form, which
// an IPv6 prefix never contains: PeerDeny=::ffff:10.0.0.0/104 would otherwise deny nothing.
func unmapPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p)
	}
	return out
}

func inAny(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// builtinAllowed reports whether ip (plain IPv4 or IPv6, no embedding) is global unicast.
func builtinAllowed(ip netip.Addr) bool {
	if ip.Is4() {
		return !inAny(deniedV4, ip)
	}
	return globalV6.Contains(ip) && !inAny(deniedV6, ip)
}

// allowed reports whether a permission toward ip may be installed.
func (p *peerPolicy) allowed(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("")
	var forms []netip.Addr // the address itself, then what it embeds
	v4s, embedding, ok := []netip.Addr(nil), false, true
	if ip.Is6() {
		v4s, embedding, ok = embeddedV4(ip)
	}
	forms = append(append(forms, ip), v4s...)

	for _, f := range forms {
		// The unspecified address is refused whatever PeerAllow says: a datagram sent to
		// 0.0.0.0 or :: is delivered to the host itself (coturn CVE-2020-26262), so even
		// PeerAllow=0.0.0.0/0 ("relay anywhere") must not open every port of the box.
		if f.IsUnspecified() || inAny(p.deny, f) {
			return false
		}
	}
	if p.isSelf(ip.Unmap()) {
		return true
	}
	if inAny(p.allow, ip) {
		return true
	}
	if !ok {
		return false
	}
	if !embedding {
		return builtinAllowed(ip)
	}
	// An embedding is acceptable when every IPv4 address it carries is, by the override or
	// by the built-in list, and is not one of our own: the server's own address is open
	// only in its exact form, where the data path lets traffic through to relay ports alone
	// (relayConn.WriteTo); 64:ff9b::<own IPv4> through a NAT64 gateway, or its 6to4 form,
	// would reach every port of the host.
	for _, v4 := range v4s {
		if p.isSelf(v4) || (!inAny(p.allow, v4) && !builtinAllowed(v4)) {
			return false
		}
	}
	return true
}

func (p *peerPolicy) isSelf(ip netip.Addr) bool {
	for _, s := range p.self {
		if s == ip {
			return true
		}
	}
	return false
}
