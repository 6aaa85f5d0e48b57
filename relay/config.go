package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"time"
)

// Config configures a Server. The zero value of every field is a usable default.
type Config struct {
	// ListenAddr is the UDP+TCP STUN/TURN listen address. Default ":3478".
	// A specific IP also becomes the relay sockets' bind address.
	ListenAddr string
	// TLSListenAddrs are TURN-over-TLS listen addresses (":5349", ":443"). Default: none.
	TLSListenAddrs []string
	// TLSConfig serves TLSListenAddrs; required iff TLSListenAddrs is non-empty.
	TLSConfig *tls.Config

	// Secrets are the TURN REST shared secrets: Secrets[0] mints, every secret verifies, so a
	// rotation adds the new secret in front and drops the old one a credential TTL later.
	// Default: New generates a random 32-byte secret (GeneratedSecret reports it).
	Secrets []string

	// PublicIPv4 is advertised in XOR-RELAYED-ADDRESS for IPv4 relays. It is also treated as
	// the server's own address: peers on it are reachable only on live relay ports, and those
	// are delivered inside the process (hairpin). Default: the ListenAddr IP when it is a
	// specific IPv4 address; 127.0.0.1 when it is ::1; otherwise the primary interface's
	// IPv4 address found at Listen. cmd normally sets it (SWITCHBOARD_PUBLIC_IP or
	// DetectPublicIP).
	PublicIPv4 netip.Addr
	// PublicIPv6 is the same for IPv6 relays. Default: the ListenAddr IP when it is a
	// specific IPv6 address; ::1 when ListenAddr is IPv4 loopback and the host has IPv6;
	// with no host or "::" in ListenAddr, a global (non-ULA) IPv6 interface address found at
	// Listen. Otherwise (including a specific non-loopback IPv4 ListenAddr) IPv6 relays are
	// not offered: an Allocate asking for one gets 440.
	PublicIPv6 netip.Addr

	// RelayPortMin and RelayPortMax bound the relay sockets, inclusive, so a router can
	// forward exactly that range. Default 49152-65535 (the IANA dynamic range).
	RelayPortMin, RelayPortMax uint16

	// MaxCredentialTTL refuses credentials expiring further ahead than this. Default 24h.
	MaxCredentialTTL time.Duration
	// MaxAllocationAge lets Refresh, CreatePermission and ChannelBind on an existing
	// allocation succeed after its credential expired, until the allocation is this old, so a
	// call outlives the credential it started with. Default 4h.
	MaxAllocationAge time.Duration

	// UserQuota caps live allocations per REST user (the part after the colon). Default 48:
	// a mesh room of 8 makes 7 peer connections per browser, each gathering one relay per TURN
	// URL (udp, tcp, tls) = 21 allocations; an ICE restart gathers a second set while the
	// first still lives = 42; rounded up to 48 for a reconnect overlapping its own leftovers.
	UserQuota int
	// TotalQuota caps live allocations on the server. Default: the number of relay ports
	// (each UDP allocation holds one port), 16384 with the default range.
	TotalQuota int
	// MaxPermissions caps distinct peer IPs per allocation. Default 32: a remote browser
	// offers a handful of host, server-reflexive and relay candidates (one per TURN URL and
	// address family), each needing one permission; 32 leaves room for multi-homed peers.
	MaxPermissions int

	// PeerAllow and PeerDeny adjust the peer policy (see policy.go): PeerDeny wins over
	// PeerAllow, PeerAllow wins over the built-in deny list. Whatever PeerAllow says, the
	// unspecified address and the host's own non-loopback addresses (other than the public
	// ones, open to relay ports only) stay refused: both reach the host itself. IPv4-mapped
	// prefixes (::ffff:10.0.0.0/104) count as the IPv4 prefix they carry. Default: none.
	PeerAllow, PeerDeny []netip.Prefix

	// OtherAddr enables RFC 5780 NAT behaviour discovery: a second address whose IP and port
	// both differ from ListenAddr's (which must name a specific IP of the same family). The
	// server then also answers Binding requests on OtherAddr and on the two mixed
	// combinations, with OTHER-ADDRESS, RESPONSE-ORIGIN and CHANGE-REQUEST. Default: none
	// (CHANGE-REQUEST gets 420).
	OtherAddr netip.AddrPort

	// Realm is the long-term credential realm. Default "switchboard".
	Realm string
	// Software, when set, is sent as SOFTWARE in unauthenticated responses (Binding
	// responses, challenges). Default empty: no SOFTWARE, keeping responses small and the
	// server anonymous.
	Software string

	// Sockets is the number of UDP sockets per listener, bound with SO_REUSEPORT so the
	// kernel spreads clients over them and every core reads. Default runtime.NumCPU().
	Sockets int

	// MaxTCPConns caps concurrent TURN-over-TCP/TLS connections across listeners; excess
	// connections are closed at accept. Default 4096 (each costs two goroutines and two
	// 9 KiB frame buffers, ours and pion's, ~80 MiB at the cap; 4096 holds ~190
	// eight-person rooms all on TCP).
	MaxTCPConns int
	// TCPAuthTimeout is how long a new TCP/TLS connection has to complete its TLS handshake
	// and send an authenticated request. Default 5s: a browser needs about four round trips
	// (TCP, TLS 1.3, the challenge, the authenticated Allocate), 2 s on a 500 ms satellite
	// link, and 5 s leaves room for a retransmission; longer only helps slowloris.
	TCPAuthTimeout time.Duration
	// TCPUnauthPerSource caps the TCP/TLS connections one source IPv4 address or IPv6 /64
	// may hold before they authenticate; excess connections are closed at accept, so one
	// address cannot fill MaxTCPConns and lock everyone else out. Default 128: an office
	// NAT with a whole mesh room of 8 behind it opens 8×7 peer connections × 2 (TCP and
	// TLS) = 112 at once, each unauthenticated for a few round trips.
	TCPUnauthPerSource int
	// TCPIdleTimeout closes an authenticated TCP/TLS connection that sent nothing for this
	// long. Default 11m: an idle allocation is refreshed at least every 10 minutes (the
	// allocation lifetime), so only dead connections hit it.
	TCPIdleTimeout time.Duration

	// UnauthRate limits responses to unauthenticated requests (Binding, challenges, auth
	// failures) per source IPv4 address or IPv6 /64, in responses per second. Default 50: an office NAT with a
	// whole mesh room behind it gathers ~170 challenges at once (absorbed by UnauthBurst),
	// while a spoofed reflection attack gets at most ~50 small packets/s per victim.
	UnauthRate float64
	// UnauthBurst is the per-source burst for UnauthRate. Default 200.
	UnauthBurst int

	// Offload is a kernel fast path for ChannelData (relay/offload). The relay adds a Flow
	// when a UDP client's channel binding and its permission are both live, removes it when
	// either ends, and folds what it forwarded into Stats. Default nil: user space only.
	Offload Offloader

	// Logger receives the relay's logs and pion's; nothing is written to it once Close has
	// returned. Default: discard.
	Logger *slog.Logger
}

// Defaults and limits; see the Config fields for why each is that number.
const (
	defaultListenAddr       = ":3478"
	defaultRelayPortMin     = 49152
	defaultRelayPortMax     = 65535
	defaultMaxCredentialTTL = 24 * time.Hour
	defaultMaxAllocationAge = 4 * time.Hour
	defaultUserQuota        = 48
	defaultMaxPermissions   = 32
	defaultRealm            = "switchboard"
	defaultMaxTCPConns      = 4096
	defaultTCPAuthTimeout   = 5 * time.Second
	defaultTCPUnauthPerSrc  = 128
	defaultTCPIdleTimeout   = 11 * time.Minute
	defaultUnauthRate       = 50
	defaultUnauthBurst      = 200

	// maxUsernameLen is the STUN USERNAME limit (RFC 8489 §14.3).
	maxUsernameLen = 513
	// clockSkew tolerates clocks of minting and verifying hosts disagreeing a little when
	// judging "too far in the future".
	clockSkew = time.Minute
)

// withDefaults returns cfg with zero fields replaced by defaults, and validates it.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = defaultListenAddr
	}
	if _, _, err := net.SplitHostPort(cfg.ListenAddr); err != nil {
		return cfg, fmt.Errorf("relay: ListenAddr %q: %w", cfg.ListenAddr, err)
	}
	for _, a := range cfg.TLSListenAddrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return cfg, fmt.Errorf("relay: TLSListenAddrs %q: %w", a, err)
		}
	}
	if len(cfg.TLSListenAddrs) > 0 && cfg.TLSConfig == nil {
		return cfg, errors.New("relay: TLSConfig is required with TLSListenAddrs")
	}
	for i, s := range cfg.Secrets {
		if s == "" {
			return cfg, fmt.Errorf("relay: Secrets[%d] is empty", i)
		}
	}
	if cfg.OtherAddr.IsValid() {
		host, port, _ := net.SplitHostPort(cfg.ListenAddr)
		ip, err := netip.ParseAddr(host)
		other := netip.AddrPortFrom(cfg.OtherAddr.Addr().Unmap(), cfg.OtherAddr.Port())
		switch {
		case err != nil || ip.IsUnspecified():
			return cfg, errors.New("relay: OtherAddr needs ListenAddr with a specific IP")
		case ip.Unmap().Is4() != other.Addr().Is4():
			return cfg, fmt.Errorf("relay: OtherAddr %s is not of ListenAddr's family", other)
		case ip.Unmap() == other.Addr() || port == strconv.Itoa(int(other.Port())) || other.Port() == 0:
			return cfg, fmt.Errorf("relay: OtherAddr %s must differ from ListenAddr in both IP and port", other)
		}
		cfg.OtherAddr = other
	}
	cfg.PeerAllow, cfg.PeerDeny = unmapPrefixes(cfg.PeerAllow), unmapPrefixes(cfg.PeerDeny)
	if cfg.PublicIPv4.IsValid() && !cfg.PublicIPv4.Unmap().Is4() {
		return cfg, fmt.Errorf("relay: PublicIPv4 %s is not an IPv4 address", cfg.PublicIPv4)
	}
	cfg.PublicIPv4 = cfg.PublicIPv4.Unmap()
	if cfg.PublicIPv6.IsValid() && (!cfg.PublicIPv6.Is6() || cfg.PublicIPv6.Is4In6()) {
		return cfg, fmt.Errorf("relay: PublicIPv6 %s is not an IPv6 address", cfg.PublicIPv6)
	}
	if cfg.PublicIPv4.IsUnspecified() || cfg.PublicIPv6.IsUnspecified() {
		return cfg, errors.New("relay: public IP must not be unspecified")
	}
	if cfg.RelayPortMin == 0 && cfg.RelayPortMax == 0 {
		cfg.RelayPortMin, cfg.RelayPortMax = defaultRelayPortMin, defaultRelayPortMax
	}
	if cfg.RelayPortMin == 0 || cfg.RelayPortMax < cfg.RelayPortMin {
		return cfg, fmt.Errorf("relay: relay port range %d-%d is invalid", cfg.RelayPortMin, cfg.RelayPortMax)
	}
	if cfg.MaxCredentialTTL == 0 {
		cfg.MaxCredentialTTL = defaultMaxCredentialTTL
	}
	if cfg.MaxAllocationAge == 0 {
		cfg.MaxAllocationAge = defaultMaxAllocationAge
	}
	if cfg.UserQuota == 0 {
		cfg.UserQuota = defaultUserQuota
	}
	if cfg.TotalQuota == 0 {
		cfg.TotalQuota = int(cfg.RelayPortMax) - int(cfg.RelayPortMin) + 1
	}
	if cfg.MaxPermissions == 0 {
		cfg.MaxPermissions = defaultMaxPermissions
	}
	if cfg.Realm == "" {
		cfg.Realm = defaultRealm
	}
	if cfg.Sockets == 0 {
		cfg.Sockets = runtime.NumCPU()
	}
	if cfg.MaxTCPConns == 0 {
		cfg.MaxTCPConns = defaultMaxTCPConns
	}
	if cfg.TCPAuthTimeout == 0 {
		cfg.TCPAuthTimeout = defaultTCPAuthTimeout
	}
	if cfg.TCPUnauthPerSource == 0 {
		cfg.TCPUnauthPerSource = defaultTCPUnauthPerSrc
	}
	if cfg.TCPIdleTimeout == 0 {
		cfg.TCPIdleTimeout = defaultTCPIdleTimeout
	}
	if cfg.UnauthRate == 0 {
		cfg.UnauthRate = defaultUnauthRate
	}
	if cfg.UnauthBurst == 0 {
		cfg.UnauthBurst = defaultUnauthBurst
	}
	switch {
	case cfg.MaxCredentialTTL < 0, cfg.MaxAllocationAge < 0, cfg.TCPAuthTimeout < 0, cfg.TCPIdleTimeout < 0:
		return cfg, errors.New("relay: durations must not be negative")
	case cfg.UserQuota < 0, cfg.TotalQuota < 0, cfg.MaxPermissions < 0, cfg.MaxTCPConns < 0, cfg.TCPUnauthPerSource < 0,
		cfg.Sockets < 0, cfg.UnauthRate < 0, cfg.UnauthBurst < 0:
		return cfg, errors.New("relay: limits must not be negative")
	case cfg.Sockets > 64:
		return cfg, fmt.Errorf("relay: Sockets %d is more than 64", cfg.Sockets)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}
