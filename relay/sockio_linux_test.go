//go:build linux

package relay

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestUDPSocketSockaddr: a source address is decoded only when the kernel wrote a whole
// sockaddr of its family; anything shorter, or another family, skips the datagram instead
// of reading stale bytes.
func TestUDPSocketSockaddr(t *testing.T) {
	v4 := netip.MustParseAddrPort("192.0.2.7:4660")
	v6 := netip.MustParseAddrPort("[2001:db8::7]:4660")
	tests := []struct {
		name    string
		family  uint16
		addr    netip.AddrPort
		namelen uint32
		want    netip.AddrPort // zero: skipped
	}{
		{"ipv4", unix.AF_INET, v4, unix.SizeofSockaddrInet4, v4},
		{"ipv6", unix.AF_INET6, v6, unix.SizeofSockaddrInet6, v6},
		{"ipv4-mapped in ipv6", unix.AF_INET6, netip.MustParseAddrPort("[::ffff:192.0.2.7]:4660"), unix.SizeofSockaddrInet6, v4},
		{"no name", unix.AF_INET6, v6, 0, netip.AddrPort{}},
		{"ipv4 name cut short", unix.AF_INET, v4, 4, netip.AddrPort{}},
		{"ipv6 family, ipv4 length", unix.AF_INET6, v6, unix.SizeofSockaddrInet4, netip.AddrPort{}},
		{"unix family", unix.AF_UNIX, v6, unix.SizeofSockaddrInet6, netip.AddrPort{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sa := &unix.RawSockaddrInet6{Family: tt.family}
			port := (*[2]byte)(unsafe.Pointer(&sa.Port))
			port[0], port[1] = byte(tt.addr.Port()>>8), byte(tt.addr.Port())
			if tt.family == unix.AF_INET {
				sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
				sa4.Addr = tt.addr.Addr().As4()
			} else {
				sa.Addr = tt.addr.Addr().As16()
			}
			got, ok := decodeSockaddr(sa, tt.namelen)
			if ok != tt.want.IsValid() || got != tt.want {
				t.Errorf("decodeSockaddr = %v, %v; want %v, %v", got, ok, tt.want, tt.want.IsValid())
			}
		})
	}
}

// TestSendGSO: on this kernel a run goes out as one GSO send (not the per-datagram
// fallback, which TestSendSegments would accept too), and arrives as its datagrams.
func TestSendGSO(t *testing.T) {
	sock, recv, dst := udpPair(t, "udp4", "127.0.0.1:0", "127.0.0.1:0")
	if !sock.gso {
		t.Skip("kernel without UDP_SEGMENT (before 4.18)")
	}
	if gsoOff.Load() {
		t.Fatal("GSO turned off by an earlier EIO on loopback")
	}
	buf, msgs := datagrams([]int{200, 200, 200, 90})
	var rsa rawSockaddr
	sa, salen, ok := sock.fillSockaddr(dst, &rsa)
	if !ok {
		t.Fatal("fillSockaddr refused an IPv4 destination")
	}
	done, err := sock.sendGSO(buf, 200, sa, salen)
	if !done || err != nil {
		t.Fatalf("sendGSO = %v, %v; want one GSO send", done, err)
	}
	expect(t, recv, addrPortOf(sock.conn.LocalAddr()), msgs)
}
