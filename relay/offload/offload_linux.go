package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"structs"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/switchboard-rtc/switchboard/relay"
)

// Offloader is the eBPF fast path. Its program is attached with TCX links, which the
// kernel removes when the process exits, however it exits: nothing is pinned, so a
// kill -9 leaves no program or map behind.
type Offloader struct {
	// static after Attach
	objs  channelDataObjects
	links []link.Link
	ifs   []net.Interface

	mu     sync.Mutex
	routes *router // guarded by mu
	closed bool    // guarded by mu
}

var _ relay.Offloader = (*Offloader)(nil)

// Attach loads the program and attaches it at TC ingress of the configured interfaces,
// in the network namespace of the calling thread. It needs CAP_BPF, CAP_NET_ADMIN and
// CAP_PERFMON (or root). Close detaches it.
func Attach(cfg Config) (*Offloader, error) {
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = defaultMaxFlows
	}
	if cfg.MaxFlows < 0 {
		return nil, fmt.Errorf("offload: MaxFlows %d is negative", cfg.MaxFlows)
	}
	ifs, err := interfaces(cfg.Interfaces)
	if err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones ignore it.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("offload: %w", err)
	}
	spec, err := loadChannelData()
	if err != nil {
		return nil, fmt.Errorf("offload: %w", err)
	}
	spec.Maps[channelDataMapC2p].MaxEntries = uint32(cfg.MaxFlows)
	spec.Maps[channelDataMapP2c].MaxEntries = uint32(cfg.MaxFlows)
	routes, err := newRouter()
	if err != nil {
		return nil, err
	}
	o := &Offloader{ifs: ifs, routes: routes}
	if err := spec.LoadAndAssign(&o.objs, nil); err != nil {
		routes.close()
		// A verifier rejection prints as its last lines only; the whole log is
		// in the *ebpf.VerifierError for whoever needs it.
		return nil, fmt.Errorf("offload: load program: %w", err)
	}
	for _, ifc := range ifs {
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: ifc.Index,
			Program:   o.objs.Channeldata,
			Attach:    ebpf.AttachTCXIngress,
		})
		if err != nil {
			o.close()
			return nil, fmt.Errorf("offload: attach to %s: %w", ifc.Name, err)
		}
		o.links = append(o.links, l)
	}
	return o, nil
}

// Interfaces names the interfaces the program is attached to.
func (o *Offloader) Interfaces() []string {
	names := make([]string, len(o.ifs))
	for i, ifc := range o.ifs {
		names[i] = ifc.Name
	}
	return names
}

// interfaces resolves names, or picks the default set (see Config.Interfaces).
func interfaces(names []string) ([]net.Interface, error) {
	if len(names) > 0 {
		out := make([]net.Interface, 0, len(names))
		for _, n := range names {
			ifc, err := net.InterfaceByName(n)
			if err != nil {
				return nil, fmt.Errorf("offload: interface %q: %w", n, err)
			}
			if !usable(*ifc) {
				return nil, fmt.Errorf("offload: interface %q has no Ethernet-style header", n)
			}
			out = append(out, *ifc)
		}
		return out, nil
	}
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("offload: list interfaces: %w", err)
	}
	var out []net.Interface
	for _, ifc := range all {
		if ifc.Flags&net.FlagUp == 0 || !usable(ifc) {
			continue
		}
		if ifc.Flags&net.FlagLoopback == 0 {
			addrs, err := ifc.Addrs()
			if err != nil || len(addrs) == 0 {
				continue
			}
		}
		out = append(out, ifc)
	}
	if len(out) == 0 {
		return nil, errors.New("offload: no usable interface")
	}
	return out, nil
}

// usable: the program reads an Ethernet header, which loopback has (zeroed) and L3
// devices (WireGuard, tun) do not.
func usable(ifc net.Interface) bool {
	return ifc.Flags&net.FlagLoopback != 0 || len(ifc.HardwareAddr) == 6
}

// Add starts forwarding f. It looks up the routes to the peer and to the client once,
// now: a route that changes later (a new default gateway, an interface going away)
// takes effect for f only when it is added again. Flows the program cannot forward stay
// in user space, and Add says why: client and peer in different address families (no
// IPv4/IPv6 translation), or a route out of an interface it is not attached to.
func (o *Offloader) Add(f relay.Flow) error {
	ck, pk, err := keys(f)
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errors.New("offload: closed")
	}
	toPeer, err := o.hop(f.Peer.Addr())
	if err != nil {
		return err
	}
	toClient, err := o.hop(f.Client.Addr())
	if err != nil {
		return err
	}
	cv := channelDataC2pVal{RelayPort: be16(f.Relay.Port()), PeerPort: be16(f.Peer.Port())}
	cv.Peer.B = f.Peer.Addr().As16()
	cv.Relay.B = source(f.Relay.Addr(), toPeer).As16()
	cv.Hop = toPeer.h
	pv := channelDataP2cVal{ClientPort: be16(f.Client.Port()), ServerPort: be16(f.Server.Port()), Channel: be16(f.Channel)}
	pv.Client.B = f.Client.Addr().As16()
	pv.Server.B = source(f.Server.Addr(), toClient).As16()
	pv.Hop = toClient.h

	// The peer side first: until the client side exists nothing is forwarded, and the
	// client side is what Remove deletes first.
	if err := o.objs.P2c.Update(&pk, &pv, ebpf.UpdateNoExist); err != nil {
		if errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("offload: add %v: peer %v already bound on relay port %d", f.Client, f.Peer, f.Relay.Port())
		}
		return fmt.Errorf("offload: add %v: %w", f.Client, err)
	}
	if err := o.objs.C2p.Update(&ck, &cv, ebpf.UpdateNoExist); err != nil {
		_ = o.objs.P2c.Delete(&pk)
		if errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("offload: add %v: channel %#x already bound", f.Client, f.Channel)
		}
		return fmt.Errorf("offload: add %v: %w", f.Client, err)
	}
	return nil
}

// hopTo is a route in the program's terms.
type hopTo struct {
	h   channelDataHop
	src netip.Addr
}

// channelDataHop is the generated type of struct hop.
type channelDataHop = struct {
	_        structs.HostLayout
	Ifindex  uint32
	Local    uint32
	NhFamily uint32
	NhAddr   [16]uint8
}

// hop finds how to reach dst, refusing routes out of interfaces the program is not on.
func (o *Offloader) hop(dst netip.Addr) (hopTo, error) {
	rt, err := o.routes.get(dst)
	if err != nil {
		return hopTo{}, err
	}
	var h hopTo
	h.src = rt.src
	if rt.local {
		h.h.Local = 1
		return h, nil
	}
	if !slices.ContainsFunc(o.ifs, func(ifc net.Interface) bool { return ifc.Index == rt.ifindex }) {
		return hopTo{}, fmt.Errorf("offload: route to %v leaves through interface %d, which the fast path is not attached to", dst, rt.ifindex)
	}
	h.h.Ifindex = uint32(rt.ifindex)
	nh := rt.nexthop.Unmap()
	if nh.Is4() {
		h.h.NhFamily = unix.AF_INET
		a := nh.As4()
		copy(h.h.NhAddr[:], a[:])
	} else {
		h.h.NhFamily = unix.AF_INET6
		h.h.NhAddr = nh.As16()
	}
	return h, nil
}

// source is the address a forwarded packet leaves from: the socket's own address, or
// for a socket bound to a wildcard the one the kernel picks for the route, as it does
// for the socket's own sends.
func source(bound netip.Addr, h hopTo) netip.Addr {
	if bound.IsValid() && !bound.IsUnspecified() {
		return bound
	}
	return h.src
}

// Remove stops forwarding f and returns what it forwarded.
func (o *Offloader) Remove(f relay.Flow) (relay.FlowCounts, error) {
	ck, pk, err := keys(f)
	if err != nil {
		return relay.FlowCounts{}, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return relay.FlowCounts{}, errors.New("offload: closed")
	}
	var (
		c    relay.FlowCounts
		cv   channelDataC2pVal
		pv   channelDataP2cVal
		errs []error
	)
	cerr := o.objs.C2p.LookupAndDelete(&ck, &cv)
	perr := o.objs.P2c.LookupAndDelete(&pk, &pv)
	if errors.Is(cerr, ebpf.ErrKeyNotExist) && errors.Is(perr, ebpf.ErrKeyNotExist) {
		return c, fmt.Errorf("%w: %v channel %#x", ErrUnknownFlow, f.Client, f.Channel)
	}
	if cerr == nil {
		c.ToPeerPackets, c.ToPeerBytes = cv.Packets, cv.Bytes
	} else if !errors.Is(cerr, ebpf.ErrKeyNotExist) {
		errs = append(errs, cerr)
	}
	if perr == nil {
		c.ToClientPackets, c.ToClientBytes = pv.Packets, pv.Bytes
	} else if !errors.Is(perr, ebpf.ErrKeyNotExist) {
		errs = append(errs, perr)
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("offload: remove %v: %w", f.Client, err)
	}
	return c, nil
}

// Counts reads what f forwarded so far.
func (o *Offloader) Counts(f relay.Flow) (relay.FlowCounts, bool) {
	ck, pk, err := keys(f)
	if err != nil {
		return relay.FlowCounts{}, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return relay.FlowCounts{}, false
	}
	var (
		c  relay.FlowCounts
		cv channelDataC2pVal
		pv channelDataP2cVal
	)
	if err := o.objs.C2p.Lookup(&ck, &cv); err != nil {
		return c, false
	}
	c.ToPeerPackets, c.ToPeerBytes = cv.Packets, cv.Bytes
	if err := o.objs.P2c.Lookup(&pk, &pv); err == nil {
		c.ToClientPackets, c.ToClientBytes = pv.Packets, pv.Bytes
	}
	return c, true
}

// Stats sums the program's counters over all CPUs.
func (o *Offloader) Stats() (Stats, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return Stats{}, errors.New("offload: closed")
	}
	var v [6]uint64
	for i := range v {
		var per []uint64
		if err := o.objs.Stats.Lookup(uint32(i), &per); err != nil {
			return Stats{}, fmt.Errorf("offload: stats: %w", err)
		}
		for _, c := range per {
			v[i] += c
		}
	}
	return Stats{ToPeer: v[0], ToClient: v[1], Length: v[2], Route: v[3], Checksum: v[4], Resize: v[5]}, nil
}

// Close detaches the program from every interface and frees its maps. Packets of the
// flows it forwarded reach user space again from then on.
func (o *Offloader) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	return o.close()
}

func (o *Offloader) close() error {
	var errs []error
	for _, l := range o.links {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	o.links = nil
	if err := o.objs.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := o.routes.close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("offload: close: %w", err)
	}
	return nil
}

// keys builds the two map keys of f, or refuses a flow the program cannot forward.
func keys(f relay.Flow) (channelDataC2pKey, channelDataP2cKey, error) {
	var (
		ck channelDataC2pKey
		pk channelDataP2cKey
	)
	if !f.Client.IsValid() || !f.Peer.IsValid() || !f.Relay.IsValid() || f.Server.Port() == 0 {
		return ck, pk, fmt.Errorf("offload: incomplete flow %+v", f)
	}
	if f.Channel < 0x4000 || f.Channel > 0x4fff {
		return ck, pk, fmt.Errorf("offload: channel %#x out of range 0x4000-0x4fff", f.Channel)
	}
	if is4(f.Client.Addr()) != is4(f.Peer.Addr()) {
		return ck, pk, fmt.Errorf("offload: client %v and peer %v differ in address family", f.Client, f.Peer)
	}
	for _, a := range []netip.Addr{f.Server.Addr(), f.Relay.Addr()} {
		if a.IsValid() && !a.IsUnspecified() && is4(a) != is4(f.Client.Addr()) {
			return ck, pk, fmt.Errorf("offload: flow %+v mixes address families", f)
		}
	}
	ck.Client.B = f.Client.Addr().As16()
	ck.ClientPort = be16(f.Client.Port())
	ck.ServerPort = be16(f.Server.Port())
	ck.Channel = be16(f.Channel)
	pk.Peer.B = f.Peer.Addr().As16()
	pk.PeerPort = be16(f.Peer.Port())
	pk.RelayPort = be16(f.Relay.Port())
	return ck, pk, nil
}

func is4(a netip.Addr) bool { return a.Unmap().Is4() }

// be16 returns the value whose in-memory form is v in network byte order, for map
// fields the program compares with packet bytes.
func be16(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
