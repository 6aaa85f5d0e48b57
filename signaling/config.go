package signaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// ICEProvider mints a session's ICE servers; cmd implements it with relay.Server.Mint.
// user is the session id (or the JWT subject / client IP for /api/ice-servers), so a
// per-user TURN quota is per session. expires is when the credentials stop working;
// the zero time means they never expire (no refresh is pushed).
type ICEProvider interface {
	ICEServers(ctx context.Context, user string) (servers []ICEServer, expires time.Time, err error)
}

// Config configures a Hub. The zero value of every field but ICE is a usable default.
type Config struct {
	// ICE mints ICE servers for sessions and /api/ice-servers. Required.
	ICE ICEProvider

	// NoLobby turns the shared lobby (room "") off: sessions must name a room
	// (env SWITCHBOARD_LOBBY=false). Default false: the lobby exists.
	NoLobby bool

	// MaxRoomSize caps members per room. Default 8: a browser mesh of more peers than
	// that runs out of uplink long before the hub cares.
	MaxRoomSize int

	// MaxSessions caps concurrent connections plus sessions in resume grace.
	// Default 15000: the process file limit here is 20000 and TURN needs some too.
	MaxSessions int

	// PingInterval is how often the hub sends a WebSocket ping to each link.
	// Default 20s: below the 30s idle timeout of the most aggressive NATs and proxies
	// we know of (AWS ALB default is 60s, many home routers 30s+ for TCP).
	PingInterval time.Duration

	// PongTimeout is how long a ping may stay unanswered before the link is declared
	// dead and the session moves into its resume grace. Default PingInterval: a pong
	// later than a whole interval means the path is useless for signaling anyway.
	PongTimeout time.Duration

	// ResumeGrace is how long a session whose link dropped stays reserved for a resume.
	// Default 30s: long enough for a Wi-Fi to cellular switch or a laptop lid bounce,
	// short enough that peers are not left waiting for a ghost.
	ResumeGrace time.Duration

	// AllowedOrigins are Origin host patterns (path.Match syntax, as
	// coder/websocket's AcceptOptions.OriginPatterns) allowed to open /ws.
	// Default empty: only the same origin as the request's Host.
	AllowedOrigins []string

	// AuthSecret is the HS256 JWT secret. Empty: open mode (no tokens; credential
	// issuance rate-limited per client IP).
	AuthSecret []byte

	// ReadLimit caps one client message in bytes. Default 64 KiB: an SDP offer with
	// many codecs and simulcast is ~10 KiB; 64 KiB leaves room without letting a
	// client make the hub buffer megabytes.
	ReadLimit int64

	// MessageRate and MessageBurst limit client messages per session (token bucket).
	// Defaults 50/s and 200: trickle ICE sends a few dozen candidates in a burst at
	// call start; a human never needs more than that sustained.
	MessageRate  float64
	MessageBurst int

	// SendQueue is how many messages may wait to be written to one link. Over it the
	// client is a slow consumer: its link is closed and the session enters its resume
	// grace with the messages kept. Default 256: a call start is < 100 messages.
	SendQueue int

	// ReplayWindow is how many unacknowledged messages a session keeps for replay
	// (sent or not). A new message that would exceed it while none of the kept ones
	// has been written yet is refused (undeliverable to its sender, and a link still
	// attached is cut as a slow consumer); otherwise the
	// oldest written one is forgotten (a later resume behind it gets 4002).
	// Default 1024.
	ReplayWindow int

	// ReplayBytes bounds the same window in bytes (encoded message bodies; small
	// hub-made messages count as valueCost each), with the same rules. Default
	// max(1 MiB, 4×ReadLimit): a call start (two SDPs of ~10 KiB, a few dozen
	// candidates) is far below it, while ReplayWindow × ReadLimit alone would let one
	// sender make a session that never acks (or is away) hold 64 MiB.
	// Must be at least 2×ReadLimit so that any one message fits.
	ReplayBytes int

	// HelloTimeout is the deadline for the first message. Default 10s: a real client
	// sends hello right after the socket opens; an idle socket is a probe or an attack.
	HelloTimeout time.Duration

	// WriteTimeout bounds one write to a link. Default 10s: a write that cannot drain
	// a few KiB in that long means the client is gone or not reading.
	WriteTimeout time.Duration

	// RingTimeout is how long a call may ring unanswered. Default 30s (like a phone).
	RingTimeout time.Duration

	// RefreshAt is the fraction of a credential's lifetime after which the hub pushes
	// fresh ice-servers to the session. Default 0.8: leaves a fifth of the lifetime
	// for the push and an ICE restart even over a slow link.
	RefreshAt float64

	// TrustedProxies are the immediate peers whose X-Forwarded-For is believed.
	// Default empty: the socket address is the client IP.
	TrustedProxies []netip.Prefix

	// CredentialRate and CredentialBurst limit credential issuance (hello, resume does
	// not count, and /api/ice-servers) per client IP in open mode. Defaults 1/s and 20:
	// a household opening a few tabs is fine; a script minting TURN accounts is not.
	CredentialRate  float64
	CredentialBurst int

	// MaxPendingPerIP caps connections from one client address (IPv6: one /64)
	// that have not completed their hello; more get HTTP 429 before the upgrade.
	// Default 128: a real client leaves that state after one round trip, so even a
	// large office behind one NAT reconnecting at once after a restart stays under
	// it, while a silent socket holds a MaxSessions slot for HelloTimeout and one
	// address could otherwise hold them all.
	MaxPendingPerIP int

	// MaxTrackedIPs bounds the per-IP limiter map. Default 10000; when full, the
	// stalest entries are evicted (an evicted IP starts with a full bucket).
	MaxTrackedIPs int

	// Router is the only way sessions reach each other: directory, rooms and
	// delivery. Default: in-process (NewLocalRouter).
	Router Router

	// Directory finds a session by its resume token. Default: in-process
	// (NewLocalDirectory).
	Directory Directory

	// Logger receives the hub's logs. Default: discard.
	Logger *slog.Logger

	// Tick is the resolution of the shared timer that drives hello deadlines,
	// grace expiry and ring timeouts. Default: the smallest of the durations
	// involved / 10, clamped to [5ms, 1s]. One ticker for the whole hub instead of
	// a timer per session keeps idle sessions cheap. Pings, pong and write
	// deadlines and credential refresh ride the same ticker at min(Tick, 20ms),
	// a slice of the sessions each time, so that keepalive never comes in bursts.
	Tick time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.ICE == nil {
		return c, errors.New("signaling: Config.ICE is required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	defInt(&c.MaxRoomSize, 8)
	defInt(&c.MaxSessions, 15000)
	def(&c.PingInterval, 20*time.Second)
	def(&c.PongTimeout, c.PingInterval)
	def(&c.ResumeGrace, 30*time.Second)
	if c.ReadLimit == 0 {
		c.ReadLimit = 64 << 10
	}
	if c.MessageRate == 0 {
		c.MessageRate = 50
	}
	defInt(&c.MessageBurst, 200)
	defInt(&c.SendQueue, 256)
	defInt(&c.ReplayWindow, 1024)
	defInt(&c.ReplayBytes, int(max(1<<20, 4*c.ReadLimit)))
	def(&c.HelloTimeout, 10*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.RingTimeout, 30*time.Second)
	if c.RefreshAt == 0 {
		c.RefreshAt = 0.8
	}
	if c.CredentialRate == 0 {
		c.CredentialRate = 1
	}
	defInt(&c.CredentialBurst, 20)
	defInt(&c.MaxTrackedIPs, 10000)
	defInt(&c.MaxPendingPerIP, 128)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Tick == 0 {
		m := min(c.PingInterval, c.PongTimeout, c.ResumeGrace, c.HelloTimeout, c.RingTimeout) / 10
		c.Tick = max(5*time.Millisecond, min(m, time.Second))
	}
	switch {
	case c.MaxRoomSize < 2:
		return c, fmt.Errorf("signaling: MaxRoomSize %d: must be at least 2", c.MaxRoomSize)
	case c.MaxSessions < 1:
		return c, fmt.Errorf("signaling: MaxSessions %d: must be positive", c.MaxSessions)
	case c.PingInterval < 0 || c.PongTimeout < 0 || c.ResumeGrace < 0 || c.HelloTimeout < 0 ||
		c.WriteTimeout < 0 || c.RingTimeout < 0 || c.Tick < 0:
		return c, errors.New("signaling: durations must not be negative")
	case c.ReadLimit < 512:
		return c, fmt.Errorf("signaling: ReadLimit %d: must be at least 512 bytes", c.ReadLimit)
	case c.MessageRate < 0 || c.MessageBurst < 1:
		return c, fmt.Errorf("signaling: MessageRate %v / MessageBurst %d: must be positive", c.MessageRate, c.MessageBurst)
	case c.SendQueue < 1 || c.ReplayWindow < c.SendQueue:
		return c, fmt.Errorf("signaling: SendQueue %d / ReplayWindow %d: need 1 <= SendQueue <= ReplayWindow", c.SendQueue, c.ReplayWindow)
	case int64(c.ReplayBytes) < 2*c.ReadLimit:
		return c, fmt.Errorf("signaling: ReplayBytes %d: must be at least 2×ReadLimit (%d)", c.ReplayBytes, 2*c.ReadLimit)
	case c.RefreshAt <= 0 || c.RefreshAt >= 1:
		return c, fmt.Errorf("signaling: RefreshAt %v: must be in (0,1)", c.RefreshAt)
	case c.CredentialRate < 0 || c.CredentialBurst < 1 || c.MaxTrackedIPs < 1:
		return c, errors.New("signaling: CredentialRate, CredentialBurst and MaxTrackedIPs must be positive")
	case c.MaxPendingPerIP < 1:
		return c, fmt.Errorf("signaling: MaxPendingPerIP %d: must be positive", c.MaxPendingPerIP)
	}
	for _, p := range c.AllowedOrigins {
		if p == "" {
			return c, errors.New("signaling: AllowedOrigins: empty pattern")
		}
	}
	return c, nil
}
