package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// router asks the kernel (rtnetlink RTM_GETROUTE, what `ip route get` does) how this
// host would send to an address. Its socket belongs to the network namespace Attach ran
// in, so lookups answer for that namespace whichever thread calls. Not safe for
// concurrent use: the Offloader's mutex guards it.
type router struct {
	fd  int
	seq uint32
}

// route is the answer for one destination.
type route struct {
	local   bool       // the destination is this host
	ifindex int        // outgoing interface
	src     netip.Addr // the source address the kernel would pick
	nexthop netip.Addr // gateway, or the destination itself on a link
}

func newRouter() (*router, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("offload: netlink socket: %w", err)
	}
	// A receive timeout of 1 s: the kernel answers a route lookup from its tables at
	// once, so this only keeps a wedged socket from blocking Add forever.
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("offload: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("offload: netlink bind: %w", err)
	}
	return &router{fd: fd}, nil
}

func (r *router) close() error { return unix.Close(r.fd) }

// get looks up the route to dst.
func (r *router) get(dst netip.Addr) (route, error) {
	dst = dst.Unmap()
	fam, bits := uint8(unix.AF_INET), uint8(32)
	if dst.Is6() {
		fam, bits = unix.AF_INET6, 128
	}
	a := dst.AsSlice()
	r.seq++
	hl, ml, al := unix.SizeofNlMsghdr, unix.SizeofRtMsg, unix.SizeofRtAttr+len(a)
	b := make([]byte, hl+ml+al)
	hdr := (*unix.NlMsghdr)(unsafe.Pointer(&b[0]))
	*hdr = unix.NlMsghdr{Len: uint32(len(b)), Type: unix.RTM_GETROUTE, Flags: unix.NLM_F_REQUEST, Seq: r.seq}
	*(*unix.RtMsg)(unsafe.Pointer(&b[hl])) = unix.RtMsg{Family: fam, Dst_len: bits}
	*(*unix.RtAttr)(unsafe.Pointer(&b[hl+ml])) = unix.RtAttr{Len: uint16(al), Type: unix.RTA_DST}
	copy(b[hl+ml+unix.SizeofRtAttr:], a)
	if err := unix.Sendto(r.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return route{}, fmt.Errorf("offload: route to %v: %w", dst, err)
	}
	buf := make([]byte, 4096)
	for {
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			return route{}, fmt.Errorf("offload: route to %v: %w", dst, err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return route{}, fmt.Errorf("offload: route to %v: %w", dst, err)
		}
		for _, m := range msgs {
			if m.Header.Seq != r.seq {
				continue // an answer to an earlier lookup that timed out
			}
			return parseRoute(dst, m)
		}
	}
}

func parseRoute(dst netip.Addr, m syscall.NetlinkMessage) (route, error) {
	switch m.Header.Type {
	case unix.NLMSG_ERROR:
		if len(m.Data) >= 4 {
			if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				return route{}, fmt.Errorf("offload: route to %v: %w", dst, unix.Errno(errno))
			}
		}
		return route{}, fmt.Errorf("offload: route to %v: empty answer", dst)
	case unix.RTM_NEWROUTE:
	default:
		return route{}, fmt.Errorf("offload: route to %v: unexpected message type %d", dst, m.Header.Type)
	}
	if len(m.Data) < unix.SizeofRtMsg {
		return route{}, fmt.Errorf("offload: route to %v: short answer", dst)
	}
	rtm := (*unix.RtMsg)(unsafe.Pointer(&m.Data[0]))
	attrs, err := routeAttrs(m.Data[unix.SizeofRtMsg:])
	if err != nil {
		return route{}, fmt.Errorf("offload: route to %v: %w", dst, err)
	}
	rt := route{nexthop: dst}
	switch rtm.Type {
	case unix.RTN_LOCAL:
		rt.local = true
	case unix.RTN_UNICAST:
	default:
		return route{}, fmt.Errorf("offload: route to %v: type %d, not unicast", dst, rtm.Type)
	}
	for _, at := range attrs {
		switch at.typ {
		case unix.RTA_OIF:
			if len(at.val) == 4 {
				rt.ifindex = int(binary.NativeEndian.Uint32(at.val))
			}
		case unix.RTA_PREFSRC:
			if a, ok := netip.AddrFromSlice(at.val); ok {
				rt.src = a
			}
		case unix.RTA_GATEWAY:
			if a, ok := netip.AddrFromSlice(at.val); ok {
				rt.nexthop = a
			}
		case unix.RTA_VIA:
			return route{}, fmt.Errorf("offload: route to %v: via another address family", dst)
		}
	}
	if rt.ifindex == 0 {
		return route{}, errors.New("offload: route to " + dst.String() + ": no output interface")
	}
	return rt, nil
}

type rtAttr struct {
	typ uint16
	val []byte
}

// routeAttrs splits rtnetlink attributes. (syscall.ParseNetlinkRouteAttr panics on an
// attribute whose length is below its header's; the fuzz test found it.)
func routeAttrs(b []byte) ([]rtAttr, error) {
	var out []rtAttr
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b))
		if l < unix.SizeofRtAttr || l > len(b) {
			return nil, fmt.Errorf("attribute length %d of %d bytes", l, len(b))
		}
		out = append(out, rtAttr{typ: binary.NativeEndian.Uint16(b[2:]) &^ unix.NLA_F_NESTED, val: b[unix.SizeofRtAttr:l]})
		l = (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if l > len(b) {
			break
		}
		b = b[l:]
	}
	return out, nil
}
