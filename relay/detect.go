package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// stunQueryTimeout bounds one STUN server's answer when ctx has no earlier deadline: a
// STUN server answers in one RTT, and 3 s covers a retransmission on a lossy link.
const stunQueryTimeout = 3 * time.Second

// DetectPublicIP finds the address to advertise. With no stunServers it takes the primary
// interface's global or private unicast IPv4 address (how = "interface eth0"); otherwise it
// asks each STUN server in turn for our mapped address and returns the first answer
// (how = "stun 1.2.3.4:3478").
func DetectPublicIP(ctx context.Context, stunServers []string) (netip.Addr, string, error) {
	if len(stunServers) == 0 {
		ip, name, err := interfaceIP(false)
		if err != nil {
			return netip.Addr{}, "", err
		}
		return ip, "interface " + name, nil
	}
	var errs []error
	for _, srv := range stunServers {
		ip, err := stunMappedIP(ctx, srv)
		if err == nil {
			return ip, "stun " + srv, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", srv, err))
		if ctx.Err() != nil {
			break
		}
	}
	return netip.Addr{}, "", fmt.Errorf("relay: detect public IP: %w", errors.Join(errs...))
}

func stunMappedIP(ctx context.Context, server string) (netip.Addr, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	deadline := time.Now().Add(stunQueryTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := conn.Write(req.Raw); err != nil {
		return netip.Addr{}, err
	}
	buf := make([]byte, 1500)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return netip.Addr{}, err
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() != nil || m.TransactionID != req.TransactionID {
			continue // stray datagram; keep waiting until the deadline
		}
		var xma stun.XORMappedAddress
		if err := xma.GetFrom(m); err != nil {
			var ma stun.MappedAddress
			if err2 := ma.GetFrom(m); err2 != nil {
				return netip.Addr{}, fmt.Errorf("no mapped address in answer: %w", err)
			}
			xma.IP = ma.IP
		}
		ip, ok := netip.AddrFromSlice(xma.IP)
		if !ok {
			return netip.Addr{}, errors.New("bad mapped address")
		}
		return ip.Unmap(), nil
	}
}

// interfaceIP returns the first global-or-private unicast address of the wanted family on
// the primary interface: the one the default route uses (found by connecting a UDP socket,
// which sends nothing), else the first up, non-loopback interface that has one.
func interfaceIP(v6 bool) (netip.Addr, string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("relay: list interfaces: %w", err)
	}
	usable := func(a netip.Addr) bool {
		a = a.Unmap()
		if v6 != a.Is6() || !a.IsGlobalUnicast() {
			return false // IsGlobalUnicast is true for RFC 1918 too: "global or private"
		}
		return !v6 || !a.IsPrivate() // v6: a ULA would not be reachable from outside
	}
	// Route lookup: which local address would reach a documentation (never routed) address.
	probe := "192.0.2.1:9"
	network := "udp4"
	if v6 {
		probe, network = "[2001:db8::1]:9", "udp6"
	}
	var preferred netip.Addr
	if c, err := net.Dial(network, probe); err == nil {
		preferred = addrPortOf(c.LocalAddr()).Addr()
		_ = c.Close()
	}
	var first netip.Addr
	var firstName string
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			p, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(p.IP)
			if !ok || !usable(ip) {
				continue
			}
			ip = ip.Unmap()
			if ip == preferred {
				return ip, ifc.Name, nil
			}
			if !first.IsValid() {
				first, firstName = ip, ifc.Name
			}
		}
	}
	if first.IsValid() {
		return first, firstName, nil
	}
	fam := "IPv4"
	if v6 {
		fam = "IPv6"
	}
	return netip.Addr{}, "", fmt.Errorf("relay: no usable %s interface address", fam)
}
