package relay

import "net/netip"

// Flow is one live ChannelData binding that a kernel fast path may forward
// without user space: a client's channel on an allocation, bound to one peer
// that has a live permission. The relay adds a Flow to its Offloader when both
// the channel binding and the permission are live, and removes it the moment
// either ends (expiry, Refresh 0, deletion, quota or policy change, shutdown).
type Flow struct {
	// Client is the client's transport address as the server sees it (after any
	// NAT in front of the server).
	Client netip.AddrPort
	// Server is the listener address the client sends to. Its IP is unspecified
	// when the listener is bound to a wildcard; the fast path then answers from
	// the destination address of the client's own packets.
	Server netip.AddrPort
	// Relay is the allocation's relay socket, as bound locally (not the
	// advertised public address, which may belong to a NAT in front).
	Relay netip.AddrPort
	// Peer is the peer bound to Channel.
	Peer netip.AddrPort
	// Channel is the channel number (0x4000-0x4FFF).
	Channel uint16
}

// FlowCounts is what a fast path forwarded for one Flow, so that metrics and
// quotas count the same with and without it.
type FlowCounts struct {
	ToPeerPackets, ToPeerBytes     uint64 // client → peer, payload bytes
	ToClientPackets, ToClientBytes uint64 // peer → client, payload bytes
}

// Offloader is a kernel fast path for ChannelData (relay/offload implements it
// with eBPF). User space stays the authority: a Flow is forwarded only between
// Add and Remove, and every packet it does not take (STUN, unbound channels,
// Send/Data indications, fragments, TCP/TLS clients) still reaches the relay's
// sockets untouched. Methods must not block on the network and are safe for
// concurrent use.
type Offloader interface {
	// Add starts forwarding f in both directions.
	Add(f Flow) error
	// Remove stops forwarding f and returns what it forwarded since Add.
	Remove(f Flow) (FlowCounts, error)
	// Counts reads what f forwarded since Add without stopping it.
	Counts(f Flow) (FlowCounts, bool)
	// Close removes every flow and detaches the fast path.
	Close() error
}
