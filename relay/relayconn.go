package relay

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
)

var (
	errFamilyDisabled   = errors.New("relay: address family not served")
	errNoRelayPort      = errors.New("relay: no free relay port")
	errPortOutsideRange = errors.New("relay: requested port outside relay range")
)

// relayFamily holds the relay sockets of one address family. ports is indexed by
// port-RelayPortMin and read lock-free in the data path (hairpin lookups).
type relayFamily struct {
	enabled bool
	network string     // "udp4" or "udp6"
	bind    netip.Addr // relay sockets bind here (may be unspecified)
	public  netip.Addr // advertised in XOR-RELAYED-ADDRESS; "self" for the data path guard
	pubIP   net.IP     // public as net.IP, shared read-only
	// hairpinDst is where a datagram for a local relay port is delivered: the bind address,
	// or loopback when the bind address is unspecified.
	hairpinDst netip.Addr
	ports      []atomic.Pointer[relayConn]
}

// relays implements turn.RelayAddressGenerator: UDP relay sockets inside
// RelayPortMin..RelayPortMax, advertised on the public address, wrapped in relayConn.
type relays struct {
	s        *Server
	min, max uint16
	v4, v6   relayFamily
	live     sync.WaitGroup // one per open relay socket; Done at Close
	tcpPeers tcpPeerConns   // RFC 6062 outgoing connections per user (tcprelay.go)
	// readers counts relay sockets whose pion read loop may still call in (see
	// relayConn.readState); Done when ReadFrom returns the loop-ending error, the last call
	// the loop makes into us, or at Close for a socket nobody has started reading.
	readers sync.WaitGroup
}

var _ turn.RelayAddressGenerator = (*relays)(nil)

func (r *relays) Validate() error { return nil }

func (r *relays) family(network string) *relayFamily {
	if network == "udp6" {
		return &r.v6
	}
	return &r.v4
}

func (r *relays) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	fam := r.family(conf.Network)
	if !fam.enabled {
		return nil, nil, errFamilyDisabled
	}
	bind := func(port int) (*net.UDPConn, error) {
		return net.ListenUDP(fam.network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(fam.bind, uint16(port))))
	}
	var pending pendingAlloc
	if conf.UserID != "" { // pion's EVEN-PORT probes have none
		pending = r.s.resv.take(conf.UserID, time.Now())
		if conf.RequestedPort == 0 {
			conf.RequestedPort = pending.port
		}
	}
	now := time.Now()
	conn, err := bindPort(r, conf.RequestedPort, func(port int) bool {
		return fam.ports[port-int(r.min)].Load() != nil || r.s.resv.isHeld(port, now)
	}, bind)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetReadBuffer(relayBuffer)
	_ = conn.SetWriteBuffer(relayBuffer)
	if pending.df {
		if err := setDontFragment(conn, fam == &r.v6); err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("relay: DONT-FRAGMENT: %w", err)
		}
	}
	port := uint16(conn.LocalAddr().(*net.UDPAddr).Port)
	sock, err := newUDPSocket(conn, relayBatch, maxFrame)
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("relay: relay socket: %w", err)
	}
	rc := &relayConn{UDPConn: conn, r: r, fam: fam, port: port, sock: sock, done: make(chan struct{})}
	sock.flush = rc.flush
	r.live.Add(1)
	r.readers.Add(1)
	fam.ports[port-r.min].Store(rc)
	return rc, &net.UDPAddr{IP: fam.pubIP, Port: int(port)}, nil
}

// bindPort binds requested (a reserved or client-requested port, which must lie in the
// range) or else the first port of the range that bind accepts, from a random start: random
// so ports are not predictable, linear so a nearly full range still finds its last free
// port. skip passes over ports known to be taken without trying them.
func bindPort[C any](r *relays, requested int, skip func(port int) bool, bind func(port int) (C, error)) (C, error) {
	var zero C
	if requested != 0 {
		if requested < int(r.min) || requested > int(r.max) {
			return zero, errPortOutsideRange
		}
		c, err := bind(requested)
		if err != nil {
			return zero, fmt.Errorf("relay: bind relay port %d: %w", requested, err)
		}
		return c, nil
	}
	n := int(r.max) - int(r.min) + 1
	start := rand.IntN(n)
	for i := range n {
		port := int(r.min) + (start+i)%n
		if skip(port) {
			continue
		}
		if c, err := bind(port); err == nil {
			return c, nil
		}
	}
	return zero, errNoRelayPort
}

// familyEnabled reports whether relays of the family are offered.
func (r *relays) familyEnabled(v6 bool) bool {
	if v6 {
		return r.v6.enabled
	}
	return r.v4.enabled
}

func (r *relays) lookup(fam *relayFamily, port int) *relayConn {
	if port < int(r.min) || port > int(r.max) {
		return nil
	}
	return fam.ports[port-int(r.min)].Load()
}

// pollClient is where a polled relay socket's datagrams go: dst through the listening
// socket sock; key is the client address pion keeps (Server.clients).
type pollClient struct {
	p    *poller
	sock *udpSocket
	dst  netip.AddrPort
	key  *net.UDPAddr
}

// relayConn is one allocation's relay socket. pion reads peer datagrams from it and writes
// client data to peers through it; both directions are counted here, and WriteTo guards
// the server's own addresses: only live relay ports are reachable there, delivered through
// loopback to the target socket (hairpin), so two relayed clients of one server connect
// even behind a router that does not hairpin, and nothing else on the host is reachable.
// The data path is allocation-free: atomics, no locks, no logging.
type relayConn struct {
	*net.UDPConn
	r         *relays
	fam       *relayFamily
	port      uint16
	sock      *udpSocket // reads owned by pion's read goroutine for this allocation
	closeOnce sync.Once

	// readState: pion starts a read loop for the socket of every allocation right after
	// creating it, but GetRandomEvenPort (EVEN-PORT) allocates sockets only to close them
	// unread. The first of ReadFrom and Close to move it from readIdle settles who calls
	// readers.Done, exactly once.
	readState atomic.Int32
	reading   bool // the read goroutine has moved readState to readActive; owned by it
	// done is closed by Close: pion's loop for a polled socket waits for it.
	done chan struct{}

	// polled, set once the allocation is known (Server.onAllocationCreated) for a UDP
	// client, hands the socket's reads to a poller (poller_linux.go); then pion's loop
	// never reads it, and out is unused.
	polled atomic.Pointer[pollClient]

	// out defers the read loop's ChannelData to the client (see sendbatch.go); set once
	// the allocation is known (Server.onAllocationCreated), for clients on UDP.
	out atomic.Pointer[outBatch]
	// chans are the allocation's channels for the data path (datapath.go), replaced whole
	// by the flow table on every change.
	chans atomic.Pointer[chanTable]
	// tcpOut is the allocation's TCP/TLS client, written directly (net.Conn writes are safe
	// from several goroutines); frame is the read loop's ChannelData buffer for it.
	tcpOut atomic.Pointer[tcpConn]
	frame  []byte
	// Datagrams and bytes read since the last flush, published to the shared counters
	// once per batch rather than per datagram. Owned by the read goroutine.
	nFrom, bytesFrom uint64
}

const (
	readIdle   int32 = iota // nobody has read yet
	readActive              // pion's loop reads; it calls readers.Done on its last read
	readDone                // readers.Done called
)

// ReadFrom is pion's read loop for the allocation. Datagrams from a peer on a channel are
// relayed here, as ChannelData in the allocation's send batch, and never reach pion; pion
// gets the others (Data indications, or drops), in an address the socket reuses
// (peerAddrReusable).
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if !c.reading {
		c.reading = true
		c.readState.CompareAndSwap(readIdle, readActive)
	}
	if c.polled.Load() != nil {
		// A poller reads the socket (set before pion starts this loop): wait for the end.
		<-c.done
		if c.readState.CompareAndSwap(readActive, readDone) {
			c.r.readers.Done()
		}
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: net.ErrClosed}
	}
	for {
		b, from, err := c.sock.readView()
		if err != nil {
			// pion's loop ends on any error: it deletes the allocation and returns.
			if c.readState.CompareAndSwap(readActive, readDone) {
				c.r.readers.Done()
			}
			return 0, nil, err
		}
		c.nFrom++
		c.bytesFrom += uint64(len(b))
		from = c.unhairpin(from)
		t := c.chans.Load()
		if t != nil {
			if e, ok := t.byPeer[from]; ok {
				if !e.live {
					continue // the permission ended: nothing is relayed (RFC 8656 §9)
				}
				if out := c.out.Load(); out != nil {
					out.addChannelData(e.ch, b)
					continue
				}
				if tc := c.tcpOut.Load(); tc != nil {
					c.frame = appendChannelData(c.frame[:0], e.ch, b)
					_, _ = tc.Write(c.frame) // as pion's loop does: a failed send is not retried
					continue
				}
			}
		}
		if len(b) > len(p) { // pion's buffer is 1,600 bytes
			c.dataIndication(t, b, from)
			continue
		}
		return copy(p, b), c.sock.reusedAddr(from), nil
	}
}

// unhairpin: a datagram from one of our own relay sockets arrived over loopback (hairpin):
// present it as coming from the public address, which is what the receiving allocation's
// permission names.
func (c *relayConn) unhairpin(from netip.AddrPort) netip.AddrPort {
	if from.Addr() == c.fam.hairpinDst {
		if src := c.r.lookup(c.fam, int(from.Port())); src != nil && src != c {
			return netip.AddrPortFrom(c.fam.public, from.Port())
		}
	}
	return from
}

// flush runs on the read goroutine before each recvmmsg: it publishes the batch's counts
// and sends what the loop wrote to the client meanwhile.
func (c *relayConn) flush() {
	if c.nFrom > 0 {
		st := &c.r.s.stats
		st.pktsFrom.Add(c.nFrom)
		st.bytesFrom.Add(c.bytesFrom)
		c.nFrom, c.bytesFrom = 0, 0
	}
	if b := c.out.Load(); b != nil {
		b.flush()
	}
}

// fromHairpin reports whether ip is the address hairpin deliveries leave from.
func (c *relayConn) fromHairpin(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	return ok && a.Unmap() == c.fam.hairpinDst
}

// WriteTo is pion relaying a Send indication, or ChannelData from a TCP/TLS client.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("relay: peer address %T is not UDP", addr)
	}
	st := &c.r.s.stats
	dst := ua.AddrPort()
	if c.fam.pubIP != nil && ua.IP.Equal(c.fam.pubIP) {
		to := c.r.lookup(c.fam, ua.Port)
		if to == nil {
			// The server's own address, but not a live relay port: HTTP, metrics, ssh...
			// Report success so pion does not log per packet; the drop is counted.
			st.dropped.Add(1)
			return len(p), nil
		}
		dst = netip.AddrPortFrom(c.fam.hairpinDst, to.port)
	}
	n, err := c.sock.writeTo(p, dst)
	if err == nil {
		st.pktsToPeer.Add(1)
		st.bytesToPeer.Add(uint64(n))
	}
	return n, err
}

// peerAddrReusable says pion may be handed a reused address for every datagram read from a
// relay socket: pion/turn v5.1.1's allocation loop (packetConnHandler) only compares it
// with its channels and permissions, copies it into a Data indication and formats it in
// log calls, all before its next read; it never keeps it. Saves an allocation per packet.
func peerAddrReusable(byte) bool { return true }

func (c *relayConn) Close() error {
	err := c.sock.close()
	c.closeOnce.Do(func() {
		c.fam.ports[c.port-c.r.min].CompareAndSwap(c, nil)
		if b := c.out.Load(); b != nil {
			c.r.s.clients.CompareAndDelete(b.key, c)
			c.r.s.byClient.remove(b.dst, c)
		}
		if pc := c.polled.Load(); pc != nil {
			c.r.s.clients.CompareAndDelete(pc.key, c)
			c.r.s.byClient.remove(pc.dst, c)
		}
		close(c.done)
		c.r.live.Done()
		if c.readState.CompareAndSwap(readIdle, readDone) {
			c.r.readers.Done() // no read loop yet; one starting now finds the socket closed
		}
	})
	return err
}
