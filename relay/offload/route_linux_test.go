package offload

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// routeMsg builds an rtnetlink answer as the kernel sends it.
func routeMsg(typ uint16, rtType uint8, attrs map[uint16][]byte) []byte {
	body := make([]byte, unix.SizeofRtMsg)
	*(*unix.RtMsg)(unsafe.Pointer(&body[0])) = unix.RtMsg{Family: unix.AF_INET, Dst_len: 32, Type: rtType}
	for _, k := range []uint16{unix.RTA_DST, unix.RTA_OIF, unix.RTA_PREFSRC, unix.RTA_GATEWAY, unix.RTA_VIA} {
		v, ok := attrs[k]
		if !ok {
			continue
		}
		a := make([]byte, (unix.SizeofRtAttr+len(v)+3)&^3)
		binary.NativeEndian.PutUint16(a, uint16(unix.SizeofRtAttr+len(v)))
		binary.NativeEndian.PutUint16(a[2:], k)
		copy(a[unix.SizeofRtAttr:], v)
		body = append(body, a...)
	}
	h := make([]byte, unix.SizeofNlMsghdr)
	binary.NativeEndian.PutUint32(h, uint32(len(h)+len(body)))
	binary.NativeEndian.PutUint16(h[4:], typ)
	return append(h, body...)
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func TestParseRoute(t *testing.T) {
	dst := netip.MustParseAddr("192.0.2.7")
	errAnswer := routeMsg(unix.NLMSG_ERROR, 0, nil)
	binary.NativeEndian.PutUint32(errAnswer[unix.SizeofNlMsghdr:], uint32(0x100000000-int64(unix.ENETUNREACH)))
	for _, tt := range []struct {
		name    string
		msg     []byte
		want    route
		wantErr bool
	}{
		{"via gateway", routeMsg(unix.RTM_NEWROUTE, unix.RTN_UNICAST, map[uint16][]byte{
			unix.RTA_OIF: u32(3), unix.RTA_PREFSRC: []byte{198, 51, 100, 1}, unix.RTA_GATEWAY: []byte{198, 51, 100, 254},
		}), route{ifindex: 3, src: netip.MustParseAddr("198.51.100.1"), nexthop: netip.MustParseAddr("198.51.100.254")}, false},
		{"on link", routeMsg(unix.RTM_NEWROUTE, unix.RTN_UNICAST, map[uint16][]byte{
			unix.RTA_OIF: u32(2), unix.RTA_PREFSRC: []byte{192, 0, 2, 1},
		}), route{ifindex: 2, src: netip.MustParseAddr("192.0.2.1"), nexthop: dst}, false},
		{"local", routeMsg(unix.RTM_NEWROUTE, unix.RTN_LOCAL, map[uint16][]byte{unix.RTA_OIF: u32(1)}),
			route{local: true, ifindex: 1, nexthop: dst}, false},
		{"blackhole", routeMsg(unix.RTM_NEWROUTE, unix.RTN_BLACKHOLE, map[uint16][]byte{unix.RTA_OIF: u32(1)}), route{}, true},
		{"no interface", routeMsg(unix.RTM_NEWROUTE, unix.RTN_UNICAST, nil), route{}, true},
		{"via ipv6", routeMsg(unix.RTM_NEWROUTE, unix.RTN_UNICAST, map[uint16][]byte{unix.RTA_OIF: u32(2), unix.RTA_VIA: {10, 0}}), route{}, true},
		{"unreachable", errAnswer, route{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := syscall.ParseNetlinkMessage(tt.msg)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("ParseNetlinkMessage = %d, %v", len(msgs), err)
			}
			got, err := parseRoute(dst, msgs[0])
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseRoute = %+v, %v, want %+v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// FuzzParseRoute: any kernel answer gives a route or an error, never a panic, and a
// route always has an interface.
func FuzzParseRoute(f *testing.F) {
	f.Add(routeMsg(unix.RTM_NEWROUTE, unix.RTN_UNICAST, map[uint16][]byte{unix.RTA_OIF: u32(3), unix.RTA_GATEWAY: []byte{1, 2, 3, 4}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := syscall.ParseNetlinkMessage(b)
		if err != nil {
			return
		}
		for _, m := range msgs {
			rt, err := parseRoute(netip.MustParseAddr("192.0.2.7"), m)
			if err == nil && rt.ifindex == 0 {
				t.Fatalf("parseRoute(%x) = %+v without an interface", b, rt)
			}
		}
	})
}
