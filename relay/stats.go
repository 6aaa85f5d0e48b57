package relay

import "sync/atomic"

// Stats is a snapshot of the relay's counters; a later layer turns them into metrics.
type Stats struct {
	AllocationsActive  int64
	AllocationsCreated uint64
	// AllocationsRefused counts refused Allocate requests by reason: "quota-user",
	// "quota-total", "draining".
	AllocationsRefused map[string]uint64
	// AuthFailures counts refused authenticated requests by reason: "expired",
	// "bad-signature", "malformed", "too-far-future", "stale-nonce", "wrong-realm",
	// "wrong-user", "no-allocation".
	AuthFailures map[string]uint64
	// PermissionsRefused counts CreatePermission/ChannelBind requests refused by the peer
	// policy or the permission cap.
	PermissionsRefused uint64
	// PacketsToPeer/BytesToPeer count datagrams sent from relay sockets to peers (hairpin
	// included); PacketsFromPeer/BytesFromPeer count datagrams received on relay sockets.
	// The byte counters include RFC 6062 TCP relays' streams, both ways; the packet
	// counters are datagrams only.
	PacketsToPeer, BytesToPeer, PacketsFromPeer, BytesFromPeer uint64
	// PeerDataDropped counts datagrams dropped in the data path because they targeted one of
	// the server's own addresses on a port that is not a live relay port.
	PeerDataDropped uint64
	// TCPConnsRefused counts TCP/TLS connections closed at accept by MaxTCPConns.
	TCPConnsRefused uint64
	// UnauthRateLimited counts unauthenticated requests dropped by the per-source limit.
	UnauthRateLimited uint64
}

// Reasons, as enums so the counters are fixed-size atomics; names are the Stats map keys.
type authReason int

const (
	authExpired authReason = iota
	authBadSignature
	authMalformed
	authTooFarFuture
	authStaleNonce
	authWrongRealm
	authWrongUser
	authNoAllocation
	numAuthReasons
)

var authReasonNames = [numAuthReasons]string{
	"expired", "bad-signature", "malformed", "too-far-future", "stale-nonce",
	"wrong-realm", "wrong-user", "no-allocation",
}

type refuseReason int

const (
	refuseQuotaUser refuseReason = iota
	refuseQuotaTotal
	refuseDraining
	numRefuseReasons
)

var refuseReasonNames = [numRefuseReasons]string{"quota-user", "quota-total", "draining"}

// counters are the server's atomics. The per-packet ones sit on their own cache lines so
// the two directions, written from different goroutines, do not false-share.
type counters struct {
	allocsActive  atomic.Int64
	allocsCreated atomic.Uint64
	refused       [numRefuseReasons]atomic.Uint64
	auth          [numAuthReasons]atomic.Uint64
	permsRefused  atomic.Uint64
	tcpRefused    atomic.Uint64
	rateLimited   atomic.Uint64
	dropped       atomic.Uint64

	_           [64]byte
	pktsToPeer  atomic.Uint64
	bytesToPeer atomic.Uint64
	_           [48]byte
	pktsFrom    atomic.Uint64
	bytesFrom   atomic.Uint64
	_           [48]byte
}

func (c *counters) snapshot() Stats {
	st := Stats{
		AllocationsActive:  c.allocsActive.Load(),
		AllocationsCreated: c.allocsCreated.Load(),
		AllocationsRefused: make(map[string]uint64, numRefuseReasons),
		AuthFailures:       make(map[string]uint64, numAuthReasons),
		PermissionsRefused: c.permsRefused.Load(),
		PacketsToPeer:      c.pktsToPeer.Load(),
		BytesToPeer:        c.bytesToPeer.Load(),
		PacketsFromPeer:    c.pktsFrom.Load(),
		BytesFromPeer:      c.bytesFrom.Load(),
		PeerDataDropped:    c.dropped.Load(),
		TCPConnsRefused:    c.tcpRefused.Load(),
		UnauthRateLimited:  c.rateLimited.Load(),
	}
	for i := range c.refused {
		st.AllocationsRefused[refuseReasonNames[i]] = c.refused[i].Load()
	}
	for i := range c.auth {
		st.AuthFailures[authReasonNames[i]] = c.auth[i].Load()
	}
	return st
}
