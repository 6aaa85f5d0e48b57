// Package offload forwards live TURN ChannelData flows in the Linux kernel (eBPF at TC
// ingress), implementing relay.Offloader.
package offload

import "errors"

// Config configures Attach. The zero value is usable.
type Config struct {
	// Interfaces are the names of the interfaces to attach to. Default: loopback and
	// every up interface with an IP address and an Ethernet-style (6-byte) hardware
	// address, the ones that can carry the listener's and relay sockets' traffic.
	Interfaces []string
	// MaxFlows caps the flows forwarded at once; Add fails beyond it and the flow stays
	// in user space. Default 65536: 16384 allocations (the default relay port range)
	// with four bound channels each; a map entry costs about 150 bytes in each of the
	// two maps, ~20 MB at the cap, allocated as flows are added.
	MaxFlows int
}

const defaultMaxFlows = 65536

// ErrUnknownFlow is returned by Remove for a flow that was not added.
var ErrUnknownFlow = errors.New("offload: unknown flow")

// Stats counts what the program did with packets of flows it holds, since Attach.
type Stats struct {
	ToPeer, ToClient uint64 // forwarded
	// Left to user space: ChannelData whose length does not fit the datagram
	// (more than 3 bytes of padding, or longer than it); over the egress MTU or
	// a local destination for a packet from a NIC; a checksum the kernel has yet
	// to finish on a packet that would leave the host (senders on this host with
	// checksum offload), or IPv6 ChannelData from a local client; a failed resize.
	Length, Route, Checksum, Resize uint64
}
