package relay

import (
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
)

// flowTable shadows pion's channel bindings and permissions to drive an Offloader: a Flow
// is added the moment a channel binding and the permission for its peer's IP are both live,
// and removed the moment either ends. pion reports every end through its EventHandler:
// channel expiry (OnChannelDeleted), permission expiry (OnPermissionDeleted), Refresh 0,
// allocation expiry and deletion (pion's Allocation.Close removes every permission and
// channel, with their events, before OnAllocationDeleted), and shutdown (close). Peer
// policy and quotas are fixed for the server's life, so a change to them is a restart,
// which is a shutdown here.
//
// Only UDP clients are offloaded (a fast path sees datagrams, not TCP streams), and never a
// peer on the server's own public address: that is the hairpin, delivered to another relay
// socket inside the process (relayConn.WriteTo), which a kernel path toward the public
// address would send out to the router instead.
//
// The callbacks run on pion's goroutines, some under pion's allocation locks; the table
// takes only its own mutex, and the Offloader's methods do not block on the network.
type flowTable struct {
	off  Offloader // nil: user space only
	self func(netip.Addr) bool
	// local maps an advertised relay address to the locally bound one.
	local func(netip.AddrPort) netip.AddrPort
	// relayOf finds the relay socket of an advertised relay address (nil: none), whose
	// chanTable the table keeps current for the user-space data path (datapath.go).
	relayOf func(net.Addr) *relayConn

	mu     sync.Mutex
	allocs map[allocKey]*flowAlloc // guarded by mu
	// live are the flows the Offloader holds, with the counts already folded into the
	// server's counters; guarded by mu.
	live   map[Flow]FlowCounts
	closed bool // guarded by mu
}

// flowAlloc is one allocation's channels and permissions, as pion reported them.
type flowAlloc struct {
	client, server, relay netip.AddrPort
	rc                    *relayConn // nil when relayOf found none (tests)
	tcp                   bool       // a TCP/TLS client: user space only
	perms                 map[netip.Addr]struct{}
	chans                 map[uint16]netip.AddrPort
}

func newFlowTable(off Offloader, self func(netip.Addr) bool, local func(netip.AddrPort) netip.AddrPort,
	relayOf func(net.Addr) *relayConn) *flowTable {
	return &flowTable{off: off, self: self, local: local, relayOf: relayOf, allocs: map[allocKey]*flowAlloc{}, live: map[Flow]FlowCounts{}}
}

// publishLocked hands the data path a fresh copy of a's channels.
func (t *flowTable) publishLocked(a *flowAlloc) {
	if a.rc != nil {
		a.rc.chans.Store(newChanTable(a))
	}
}

// allocLocked returns the allocation's entry, creating it when relayAddr is known.
func (t *flowTable) allocLocked(src, dst, relayAddr net.Addr) (*flowAlloc, allocKey) {
	k := allocKeyOf(src, dst)
	a := t.allocs[k]
	if a == nil && relayAddr != nil {
		a = &flowAlloc{
			client: k.src, server: k.dst, relay: t.local(addrPortOf(relayAddr)), rc: t.relayOf(relayAddr), tcp: k.tcp,
			perms: map[netip.Addr]struct{}{}, chans: map[uint16]netip.AddrPort{},
		}
		t.allocs[k] = a
	}
	return a, k
}

func (t *flowTable) flow(a *flowAlloc, ch uint16, peer netip.AddrPort) Flow {
	return Flow{Client: a.client, Server: a.server, Relay: a.relay, Peer: peer, Channel: ch}
}

// addLocked starts f in the fast path; a refusal leaves it in user space.
func (t *flowTable) addLocked(a *flowAlloc, f Flow) {
	if _, ok := t.live[f]; ok || a.tcp || t.off == nil || t.closed || t.self(f.Peer.Addr()) {
		return
	}
	if t.off.Add(f) == nil {
		t.live[f] = FlowCounts{}
	}
}

// removeLocked stops f and folds what it forwarded since the last fold into st.
func (t *flowTable) removeLocked(f Flow, st *counters) {
	if t.off == nil {
		return
	}
	folded, ok := t.live[f]
	if !ok {
		return
	}
	delete(t.live, f)
	c, err := t.off.Remove(f)
	if err == nil {
		foldCounts(st, c, folded)
	}
}

func foldCounts(st *counters, now, before FlowCounts) {
	if d := now.ToPeerPackets - before.ToPeerPackets; d > 0 && now.ToPeerPackets >= before.ToPeerPackets {
		st.pktsToPeer.Add(d)
		st.bytesToPeer.Add(now.ToPeerBytes - before.ToPeerBytes)
	}
	if d := now.ToClientPackets - before.ToClientPackets; d > 0 && now.ToClientPackets >= before.ToClientPackets {
		st.pktsFrom.Add(d)
		st.bytesFrom.Add(now.ToClientBytes - before.ToClientBytes)
	}
}

func (t *flowTable) channelCreated(src, dst, relayAddr, peer net.Addr, ch uint16) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, _ := t.allocLocked(src, dst, relayAddr)
	if a == nil {
		return
	}
	p := addrPortOf(peer)
	a.chans[ch] = p
	t.publishLocked(a)
	if _, ok := a.perms[p.Addr()]; ok {
		t.addLocked(a, t.flow(a, ch, p))
	}
}

func (t *flowTable) channelDeleted(src, dst net.Addr, peer net.Addr, ch uint16, st *counters) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, _ := t.allocLocked(src, dst, nil)
	if a == nil {
		return
	}
	p, ok := a.chans[ch]
	if !ok {
		return
	}
	delete(a.chans, ch)
	t.publishLocked(a)
	t.removeLocked(t.flow(a, ch, p), st)
}

func (t *flowTable) permissionCreated(src, dst, relayAddr net.Addr, peer net.IP) {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	ip = ip.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	a, _ := t.allocLocked(src, dst, relayAddr)
	if a == nil {
		return
	}
	a.perms[ip] = struct{}{}
	t.publishLocked(a)
	for _, ch := range slices.Sorted(maps.Keys(a.chans)) { // in order: calls are reproducible
		p := a.chans[ch]
		if p.Addr() == ip {
			t.addLocked(a, t.flow(a, ch, p))
		}
	}
}

func (t *flowTable) permissionDeleted(src, dst net.Addr, peer net.IP, st *counters) {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	ip = ip.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	a, _ := t.allocLocked(src, dst, nil)
	if a == nil {
		return
	}
	delete(a.perms, ip)
	t.publishLocked(a)
	for _, ch := range slices.Sorted(maps.Keys(a.chans)) { // in order: calls are reproducible
		p := a.chans[ch]
		if p.Addr() == ip {
			t.removeLocked(t.flow(a, ch, p), st)
		}
	}
}

// allocationDeleted forgets the allocation; its flows are normally gone already (pion
// deletes channels and permissions first), this removes any that are not.
func (t *flowTable) allocationDeleted(src, dst net.Addr, st *counters) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, k := t.allocLocked(src, dst, nil)
	if a == nil {
		return
	}
	for _, ch := range slices.Sorted(maps.Keys(a.chans)) { // in order: calls are reproducible
		p := a.chans[ch]
		t.removeLocked(t.flow(a, ch, p), st)
	}
	if a.rc != nil {
		a.rc.chans.Store(nil)
	}
	delete(t.allocs, k)
}

// fold adds what live flows forwarded since the last fold to st, so Stats counts the fast
// path's packets as if user space had relayed them.
func (t *flowTable) fold(st *counters) {
	if t.off == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for f, before := range t.live {
		if now, ok := t.off.Counts(f); ok {
			foldCounts(st, now, before)
			t.live[f] = now
		}
	}
}

// close removes every flow (folding its counts), then closes the Offloader; later events
// find nothing to do.
func (t *flowTable) close(st *counters) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	for f := range t.live {
		t.removeLocked(f, st)
	}
	clear(t.allocs)
	if t.off == nil {
		return nil
	}
	return t.off.Close()
}
