package relay

import (
	"net/netip"
	"sync"

	"github.com/pion/stun/v4"
)

// The ChannelData path, served by the relay itself: pion keeps all STUN/TURN control
// (allocations, permissions, channel bindings, refreshes, Send indications and Data
// indications for peers without a channel), while ChannelData from UDP clients and peer
// datagrams on bound channels never reach pion. pion's own path cost a per-packet
// allocation (ChannelData.Encode, boxing in its debug log calls, SrcAddr.String()), a
// linear scan of the allocation's channels in both directions, and a 1,600-byte limit.
// Here a relayed packet is two map lookups (client → allocation, channel → peer, or
// peer → channel), a copy into the send batch, and no allocation.
//
// The tables are shadows of pion's state, built from its EventHandler callbacks
// (flowTable): a channel forwards only while pion has both the binding and the permission
// for the peer's IP, the same rule the Offloader follows.

// maxFrame is the largest datagram the relay reads: a 9,000-byte payload (a jumbo frame's,
// as coturn relays) plus the 4-byte ChannelData header, with room to spare. Listening
// sockets and TCP connections hold a few such buffers each; a relay socket holds
// relayBatch of them.
const maxFrame = 9216

// chanTable is one allocation's channels as the data path reads them: immutable, replaced
// whole on every change (changes are rare: a binding, an expiry).
type chanTable struct {
	byNum  map[uint16]chanEntry
	byPeer map[netip.AddrPort]chanEntry
	perms  map[netip.Addr]struct{} // live permissions, for Data indications (jumbo datagrams)
}

type chanEntry struct {
	ch   uint16
	peer netip.AddrPort
	live bool // the permission for peer's IP is live too; a binding without it drops
}

func newChanTable(a *flowAlloc) *chanTable {
	t := &chanTable{
		byNum:  make(map[uint16]chanEntry, len(a.chans)),
		byPeer: make(map[netip.AddrPort]chanEntry, len(a.chans)),
		perms:  make(map[netip.Addr]struct{}, len(a.perms)),
	}
	for ch, peer := range a.chans {
		_, live := a.perms[peer.Addr()]
		e := chanEntry{ch: ch, peer: peer, live: live}
		t.byNum[ch] = e
		t.byPeer[peer] = e
	}
	for ip := range a.perms {
		t.perms[ip] = struct{}{}
	}
	return t
}

// clientIndex maps a UDP client's address to its allocation's relay socket, for ChannelData
// arriving on any listening socket. Sharded so reads on different cores rarely meet on one
// lock; written twice per allocation.
type clientIndex struct {
	shards [clientShards]clientShard
}

const clientShards = 64

type clientShard struct {
	mu sync.RWMutex
	m  map[netip.AddrPort]*relayConn // guarded by mu
	_  [32]byte                      // keep shards on separate cache lines
}

func (x *clientIndex) shard(ap netip.AddrPort) *clientShard {
	a := ap.Addr().As16()
	return &x.shards[(ap.Port()^uint16(a[15])^uint16(a[14])<<3)%clientShards]
}

func (x *clientIndex) get(ap netip.AddrPort) *relayConn {
	sh := x.shard(ap)
	sh.mu.RLock()
	rc := sh.m[ap]
	sh.mu.RUnlock()
	return rc
}

func (x *clientIndex) put(ap netip.AddrPort, rc *relayConn) {
	sh := x.shard(ap)
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = map[netip.AddrPort]*relayConn{}
	}
	sh.m[ap] = rc
	sh.mu.Unlock()
}

// remove deletes ap's entry if it is still rc's.
func (x *clientIndex) remove(ap netip.AddrPort, rc *relayConn) {
	sh := x.shard(ap)
	sh.mu.Lock()
	if sh.m[ap] == rc {
		delete(sh.m, ap)
	}
	sh.mu.Unlock()
}

// serveChannelData relays one ChannelData datagram from a UDP client (RFC 8656 §12.5):
// on a live channel to its peer, through the listener's send batch; anything else is
// dropped, as pion would.
func (c *filterConn) serveChannelData(b []byte, src netip.AddrPort) {
	if len(b) < 4 {
		return
	}
	ch := uint16(b[0])<<8 | uint16(b[1])
	n := int(b[2])<<8 | int(b[3])
	if n > len(b)-4 {
		return
	}
	rc := c.s.byClient.get(src)
	if rc == nil {
		return
	}
	t := rc.chans.Load()
	if t == nil {
		return
	}
	if e, ok := t.byNum[ch]; ok && e.live {
		rc.toPeer(b[4:4+n], e.peer, &c.fan)
	}
}

// toPeer sends p from the relay socket to dst, in fan's batch. The server's own public
// address is reachable on live relay ports only, delivered through loopback (hairpin).
func (c *relayConn) toPeer(p []byte, dst netip.AddrPort, fan *fanBatch) {
	if dst.Addr() == c.fam.public {
		to := c.r.lookup(c.fam, int(dst.Port()))
		if to == nil {
			c.r.s.stats.dropped.Add(1)
			return
		}
		dst = netip.AddrPortFrom(c.fam.hairpinDst, to.port)
	}
	fan.add(c, dst, p)
}

// addChannelData appends p as ChannelData on channel ch.
func (b *outBatch) addChannelData(ch uint16, p []byte) {
	n := len(b.buf)
	b.buf = appendChannelData(b.buf, ch, p)
	b.sizes = append(b.sizes, len(b.buf)-n)
}

// appendChannelData appends p as ChannelData on channel ch, padded to 4 bytes as pion does
// (required over TCP, RFC 8656 §12.5).
func appendChannelData(buf []byte, ch uint16, p []byte) []byte {
	n := len(p)
	buf = append(buf, byte(ch>>8), byte(ch), byte(n>>8), byte(n))
	buf = append(buf, p...)
	pad := (4 - n%4) % 4
	return append(buf, make([]byte, pad)...) // at most 3 bytes; append of make does not allocate
}

// dataIndication sends a datagram too large for pion's buffer as a Data indication, if the
// peer has a live permission (RFC 8656 §11.6). Only jumbo datagrams from peers without a
// channel come here, so the STUN encoding may allocate.
func (c *relayConn) dataIndication(t *chanTable, b []byte, from netip.AddrPort) {
	out, tc := c.out.Load(), c.tcpOut.Load()
	if (out == nil && tc == nil) || t == nil {
		return
	}
	if _, ok := t.perms[from.Addr()]; !ok {
		return
	}
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication),
		xorPeerAddress(from), stun.RawAttribute{Type: stun.AttrData, Value: b})
	if err != nil {
		return
	}
	if out == nil {
		_, _ = tc.Write(m.Raw)
		return
	}
	out.flush()
	_, _ = out.sock.writeTo(m.Raw, out.dst)
}

// xorPeerAddress is an XOR-PEER-ADDRESS attribute.
type xorPeerAddress netip.AddrPort

func (a xorPeerAddress) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(a)
	return stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
}
