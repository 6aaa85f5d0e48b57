package relay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"
)

// RFC 6062 TCP relays. pion runs the protocol (Connect, ConnectionBind,
// ConnectionAttempt, copying between the client's data connection and the peer's); the
// relay provides the sockets, under the same rules as UDP relays: ports inside
// RelayPortMin..RelayPortMax, the allocation quotas (pion reports TCP allocations through
// the same events), and the peer policy on every connection in either direction. The
// server's own addresses are never a TCP peer: there is no hairpin for TCP.

// tcpConnectTimeout bounds a Connect's dial to the peer. RFC 6062 §5.2 asks for at least
// 30 s before answering 447.
const tcpConnectTimeout = 30 * time.Second

var (
	errPeerRefused  = errors.New("relay: peer refused by policy")
	errTooManyPeers = errors.New("relay: too many TCP peer connections for this user")
)

// maxTCPPeerConns caps a user's open outgoing TCP relay connections (Connect). Browsers do
// not use TCP relays; a native client needs one per peer, and MaxPermissions (32) distinct
// peer IPs with a couple of connections each stay below 64. Without a cap one credential
// could open a connection to every port of every permitted host from the relay's address.
const maxTCPPeerConns = 64

// tcpPeerConns counts open outgoing TCP relay connections per user.
type tcpPeerConns struct {
	mu sync.Mutex
	n  map[string]int // guarded by mu
}

func (p *tcpPeerConns) take(user string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == nil {
		p.n = map[string]int{}
	}
	if p.n[user] >= maxTCPPeerConns {
		return false
	}
	p.n[user]++
	return true
}

func (p *tcpPeerConns) release(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[user]--; p.n[user] <= 0 {
		delete(p.n, user)
	}
}

// countedConn releases its user's slot once, when closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// reuseAddrPort lets a relay's outgoing connections share the port of its listener.
func reuseAddrPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1))
	})
	return errors.Join(err, serr)
}

func (r *relays) tcpFamily(network string) *relayFamily {
	if network == "tcp6" {
		return &r.v6
	}
	return &r.v4
}

// AllocateListener binds a TCP allocation's relayed address.
func (r *relays) AllocateListener(conf turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	fam := r.tcpFamily(conf.Network)
	if !fam.enabled {
		return nil, nil, errFamilyDisabled
	}
	lc := net.ListenConfig{Control: reuseAddrPort}
	bind := func(port int) (net.Listener, error) {
		return lc.Listen(context.Background(), conf.Network, netip.AddrPortFrom(fam.bind, uint16(port)).String())
	}
	// SO_REUSEPORT would let two allocations share a port: a plain bind probes it first.
	ln, err := bindPort(r, conf.RequestedPort, func(int) bool { return false }, func(port int) (net.Listener, error) {
		if conf.RequestedPort == 0 {
			probe, err := net.Listen(conf.Network, netip.AddrPortFrom(fam.bind, uint16(port)).String())
			if err != nil {
				return nil, err
			}
			_ = probe.Close()
		}
		return bind(port)
	})
	if err != nil {
		return nil, nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return &tcpRelayListener{Listener: ln, r: r, fam: fam}, &net.TCPAddr{IP: fam.pubIP, Port: port}, nil
}

// AllocateConn dials a peer for Connect, from the allocation's relayed port.
func (r *relays) AllocateConn(conf turn.AllocateConnConfig) (net.Conn, error) {
	fam := r.tcpFamily(conf.Network)
	local, lok := conf.LocalAddr.(*net.TCPAddr)
	remote, rok := conf.RemoteAddr.(*net.TCPAddr)
	if !fam.enabled || !lok || !rok {
		return nil, errFamilyDisabled
	}
	peer := addrPortOf(remote)
	if !r.tcpPeerAllowed(fam, peer.Addr()) {
		return nil, errPeerRefused
	}
	if !r.tcpPeers.take(conf.UserID) {
		r.s.stats.permsRefused.Add(1)
		return nil, errTooManyPeers
	}
	d := net.Dialer{
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(fam.bind, uint16(local.Port))),
		Timeout:   tcpConnectTimeout,
		Control:   reuseAddrPort,
	}
	c, err := d.Dial(conf.Network, peer.String())
	if err != nil {
		r.tcpPeers.release(conf.UserID)
		return nil, err
	}
	return &countedConn{Conn: &tcpPeerConn{Conn: c, st: &r.s.stats}, release: func() { r.tcpPeers.release(conf.UserID) }}, nil
}

// tcpPeerConn counts what a TCP relay carries, as relay sockets count datagrams: written
// to the peer (BytesToPeer) and read from it (BytesFromPeer). pion copies each direction
// with io.Copy in its own goroutine; counting per Read and Write keeps /metrics current
// while a connection lasts. Packet counters stay datagrams: TCP segments are not counted.
type tcpPeerConn struct {
	net.Conn
	st *counters
}

func (c *tcpPeerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.st.bytesFrom.Add(uint64(n))
	}
	return n, err
}

func (c *tcpPeerConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.st.bytesToPeer.Add(uint64(n))
	}
	return n, err
}

// tcpPeerAllowed applies the peer policy to a TCP peer; the server's own public address
// is refused (the UDP hairpin has no TCP counterpart).
func (r *relays) tcpPeerAllowed(fam *relayFamily, ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip == fam.public || !r.s.policy.allowed(ip) {
		r.s.stats.permsRefused.Add(1)
		return false
	}
	return true
}

// tcpRelayListener accepts peers' connections to a TCP allocation; pion then checks the
// allocation's permissions, and the peer policy is applied here as well.
type tcpRelayListener struct {
	net.Listener
	r   *relays
	fam *relayFamily
}

func (l *tcpRelayListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.r.tcpPeerAllowed(l.fam, addrPortOf(c.RemoteAddr()).Addr()) {
			_ = c.Close()
			continue
		}
		return &tcpPeerConn{Conn: c, st: &l.r.s.stats}, nil
	}
}
