package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pion/stun/v4"
)

// ProbeSTUN sends one STUN Binding request to the UDP address addr and
// waits up to 100ms for the answer: nil means a STUN server is serving
// there. Benchmarks use it to wait for a TURN server they started.
func ProbeSTUN(ctx context.Context, addr string) error {
	to, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return fmt.Errorf("loadgen: probe %s: %w", addr, err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("loadgen: probe %s: %w", addr, err)
	}
	defer conn.Close()
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return err
	}
	if _, err := conn.WriteToUDP(req.Raw, to); err != nil {
		return fmt.Errorf("loadgen: probe %s: %w", addr, err)
	}
	// 100ms: a started server answers in well under 1ms; one that is still
	// starting is asked again by the caller.
	deadline := time.Now().Add(100 * time.Millisecond)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return errors.New("loadgen: no STUN answer") // timeout (or ICMP refused)
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if res.Decode() == nil && res.TransactionID == req.TransactionID && res.Type == stun.BindingSuccess {
			return nil
		}
	}
}
