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

// Binding requests over UDP are answered here, not by pion, for RFC 5780 NAT behaviour
// discovery: RESPONSE-PORT is honoured always (the answer goes to that port of the
// requester's own IP), and with Config.OtherAddr set the server answers from four
// addresses, the listener's (A1:P1) and the combinations with OtherAddr's (A2:P2), with
// RESPONSE-ORIGIN, OTHER-ADDRESS and CHANGE-REQUEST. Without OtherAddr a CHANGE-REQUEST
// gets 420 (RFC 5780 §6.2), sent where RESPONSE-PORT says, so a client such as
// turnutils_stunclient -f, which waits on that port, gets its answer instead of hanging.
//
// The extra sockets answer Binding requests only; they are not TURN listeners.
type bindingResponder struct {
	s *Server
	// addrs[ip][port]: index 0 is the listener's IP or port, 1 OtherAddr's. Static after
	// listen.
	addrs [2][2]netip.AddrPort
	conns [2][2]*net.UDPConn // [0][0] is nil: the listeners answer for A1:P1
	on    bool               // OtherAddr is set
	// sendMain sends from A1:P1 for the extra sockets (a CHANGE-REQUEST back to it).
	sendMain func([]byte, netip.AddrPort)
}

// RFC 5780 §7.2 CHANGE-REQUEST flags.
const (
	changeIP   = 0x04
	changePort = 0x02
)

// listen binds the three extra sockets and starts their loops (owned by s.loops).
func (b *bindingResponder) listen(ctx context.Context, main, other netip.AddrPort, sendMain func([]byte, netip.AddrPort)) error {
	b.sendMain = sendMain
	b.addrs = [2][2]netip.AddrPort{
		{main, netip.AddrPortFrom(main.Addr(), other.Port())},
		{netip.AddrPortFrom(other.Addr(), main.Port()), other},
	}
	var lc net.ListenConfig
	for i := range 2 {
		for j := range 2 {
			if i == 0 && j == 0 {
				continue
			}
			pc, err := lc.ListenPacket(ctx, "udp", b.addrs[i][j].String())
			if err != nil {
				b.close()
				return fmt.Errorf("relay: listen RFC 5780 address %s: %w", b.addrs[i][j], err)
			}
			b.conns[i][j] = pc.(*net.UDPConn)
		}
	}
	b.on = true
	for i := range 2 {
		for j := range 2 {
			if c := b.conns[i][j]; c != nil {
				b.s.loops.Go(func() { b.serve(c, i, j) })
			}
		}
	}
	return nil
}

func (b *bindingResponder) close() error {
	var errs []error
	for i := range 2 {
		for j := range 2 {
			if c := b.conns[i][j]; c != nil {
				errs = append(errs, c.Close())
			}
		}
	}
	return errors.Join(errs...)
}

// serve answers Binding requests arriving on an extra socket until it is closed.
func (b *bindingResponder) serve(c *net.UDPConn, i, j int) {
	buf := make([]byte, 1500)
	var m stun.Message
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(time.Millisecond) // as the listeners do: only Close ends a UDP socket
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		m.Raw = append(m.Raw[:0], buf[:n]...)
		if m.Decode() != nil || m.Type != stun.BindingRequest {
			continue
		}
		if m.Contains(stun.AttrFingerprint) && stun.Fingerprint.Check(&m) != nil {
			continue
		}
		if !b.s.limiter.allow(src.Addr()) {
			b.s.stats.rateLimited.Add(1)
			continue
		}
		b.answer(&m, src, i, j, b.sendMain)
	}
}

// answer responds to a Binding request that arrived at addrs[i][j] from src. sendMain
// sends from the listener that received it (A1:P1).
func (b *bindingResponder) answer(m *stun.Message, src netip.AddrPort, i, j int, sendMain func([]byte, netip.AddrPort)) {
	dst := src
	if v, err := m.Get(stun.AttrResponsePort); err == nil {
		if len(v) != 4 {
			b.send(b.errorResponse(m, stun.CodeBadRequest, nil), dst, i, j, sendMain)
			return
		}
		if p := uint16(v[0])<<8 | uint16(v[1]); p != 0 {
			dst = netip.AddrPortFrom(src.Addr(), p)
		}
	}
	fi, fj := i, j // where the answer comes from
	if v, err := m.Get(stun.AttrChangeRequest); err == nil {
		if len(v) != 4 {
			b.send(b.errorResponse(m, stun.CodeBadRequest, nil), dst, i, j, sendMain)
			return
		}
		flags := v[3]
		if flags&(changeIP|changePort) != 0 && !b.on {
			b.send(b.errorResponse(m, stun.CodeUnknownAttribute, []stun.AttrType{stun.AttrChangeRequest}), dst, i, j, sendMain)
			return
		}
		if flags&changeIP != 0 {
			fi ^= 1
		}
		if flags&changePort != 0 {
			fj ^= 1
		}
	}
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: src.Addr().AsSlice(), Port: int(src.Port())},
	}
	if b.on {
		origin, other := b.addrs[fi][fj], b.addrs[i^1][j^1]
		setters = append(setters,
			addrAttr{stun.AttrResponseOrigin, origin},
			addrAttr{stun.AttrOtherAddress, other})
	}
	if b.s.cfg.Software != "" {
		setters = append(setters, stun.NewSoftware(b.s.cfg.Software))
	}
	setters = append(setters, stun.Fingerprint)
	resp, err := stun.Build(setters...)
	if err != nil {
		return
	}
	b.send(resp.Raw, dst, fi, fj, sendMain)
}

func (b *bindingResponder) errorResponse(m *stun.Message, code stun.ErrorCode, unknown []stun.AttrType) []byte {
	setters := []stun.Setter{
		stun.NewTransactionIDSetter(m.TransactionID), stun.NewType(stun.MethodBinding, stun.ClassErrorResponse), code,
	}
	if len(unknown) > 0 {
		setters = append(setters, stun.UnknownAttributes(unknown))
	}
	setters = append(setters, stun.Fingerprint)
	resp, err := stun.Build(setters...)
	if err != nil {
		return nil
	}
	return resp.Raw
}

func (b *bindingResponder) send(p []byte, dst netip.AddrPort, i, j int, sendMain func([]byte, netip.AddrPort)) {
	if p == nil {
		return
	}
	if c := b.conns[i][j]; c != nil {
		_, _ = c.WriteToUDPAddrPort(p, dst)
		return
	}
	if sendMain != nil {
		sendMain(p, dst)
	}
}

// addrAttr is a plain (not XOR'ed) address attribute: RESPONSE-ORIGIN, OTHER-ADDRESS
// (RFC 5780 §7.3, §7.4), in MAPPED-ADDRESS format.
type addrAttr struct {
	t  stun.AttrType
	ap netip.AddrPort
}

func (a addrAttr) AddTo(m *stun.Message) error {
	ma := stun.MappedAddress{IP: a.ap.Addr().AsSlice(), Port: int(a.ap.Port())}
	return ma.AddToAs(m, a.t)
}
