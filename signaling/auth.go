package signaling

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// claims is the JWT payload: sub and exp are required, room optional.
type claims struct {
	Room string `json:"room,omitempty"`
	// Name is the display name a sign-in (invite link) suggests; the client may
	// still choose another in hello.
	Name string `json:"name,omitempty"`
	// Renew marks a token the hub minted itself at sign-in (invite link or
	// passcode): the hub pushes a fresh one over the WebSocket before it expires.
	// Tokens from the operator's own web app do not carry it and are never
	// extended: their lifetime is the operator's decision.
	Renew bool `json:"rnw,omitempty"`
	// Use is empty on a session token. An invite link's token says "invite"
	// (signin.go): verifyToken refuses it, so a link can never stand in for a
	// sign-in, and the sign-in endpoint refuses everything else as an invite.
	Use string `json:"use,omitempty"`
	jwt.RegisteredClaims
}

// renewToken mints the successor of a renewable token: same subject, room, name
// and lifetime, counted from now. ok is false for tokens that are not renewable
// (no rnw claim, or no iat/exp to take the lifetime from).
func renewToken(secret []byte, c *claims, now time.Time) (tok string, exp time.Time, ok bool) {
	if c == nil || !c.Renew || c.IssuedAt == nil || c.ExpiresAt == nil || len(secret) == 0 {
		return "", time.Time{}, false
	}
	life := c.ExpiresAt.Sub(c.IssuedAt.Time)
	if life <= 0 {
		return "", time.Time{}, false
	}
	exp = now.Add(life)
	n := *c
	n.IssuedAt = jwt.NewNumericDate(now)
	n.ExpiresAt = jwt.NewNumericDate(exp)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, n).SignedString(secret)
	if err != nil {
		return "", time.Time{}, false
	}
	return tok, exp, true
}

// MintToken returns an HS256 JWT for sub, valid for ttl, limited to room when room
// is not empty. It is what `switchboard token` prints.
func MintToken(secret []byte, sub, room string, ttl time.Duration) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("signaling: mint token: empty secret")
	}
	if sub == "" || ttl <= 0 {
		return "", errors.New("signaling: mint token: need a subject and a positive ttl")
	}
	if room != "" && !validRoom(room) {
		return "", fmt.Errorf("signaling: mint token: invalid room %q", room)
	}
	now := time.Now()
	c := claims{Room: room, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("signaling: mint token: %w", err)
	}
	return s, nil
}

// verifyToken checks an HS256 token against secret: signature, exp (required), sub.
func verifyToken(secret []byte, tok string) (*claims, error) {
	if tok == "" {
		return nil, errors.New("token required")
	}
	var c claims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
	if err != nil {
		return nil, err
	}
	if c.Use != "" {
		return nil, errors.New("token is not a sign-in token (an invite link's token goes to /api/signin)")
	}
	if c.Subject == "" {
		return nil, errors.New("token has no sub")
	}
	if c.Room != "" && !validRoom(c.Room) {
		return nil, errors.New("token has an invalid room")
	}
	return &c, nil
}

// ClientIP is the address a request comes from, believing X-Forwarded-For only
// from trusted proxies (see clientIP). cmd uses it to keep /metrics local.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr { return clientIP(r, trusted) }

// clientIP is the socket peer, or the right-most untrusted X-Forwarded-For entry
// when the socket peer is a trusted proxy (entries further left are client-supplied
// and could be anything).
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	var ip netip.Addr
	if err == nil {
		ip = ap.Addr().Unmap()
	} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		ip, _ = netip.ParseAddr(host)
		ip = ip.Unmap()
	}
	if !ip.IsValid() || !inPrefixes(ip, trusted) {
		return ip
	}
	hops := r.Header.Values("X-Forwarded-For")
	var all []string
	for _, h := range hops {
		all = append(all, strings.Split(h, ",")...)
	}
	for i := len(all) - 1; i >= 0; i-- {
		a, err := parseHop(strings.TrimSpace(all[i]))
		if err != nil {
			return ip // garbage in the chain: stop believing it at this point
		}
		a = a.Unmap()
		if !inPrefixes(a, trusted) {
			return a
		}
		ip = a
	}
	return ip
}

// parseHop parses one X-Forwarded-For entry: an address, or an address with a
// port ("198.51.100.5:51234", "[2001:db8::7]:443"), which some proxies (Azure
// Application Gateway, IIS ARR) write. Refusing those would make every client
// behind such a proxy look like the proxy: one shared rate-limit bucket.
func parseHop(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err == nil {
		return a, nil
	}
	ap, err2 := netip.ParseAddrPort(s)
	if err2 != nil {
		return netip.Addr{}, err
	}
	return ap.Addr(), nil
}

func inPrefixes(ip netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// netKey reduces an address to what "nearby" compares: IPv4 as is, IPv6 by /64
// (one home network gets one /64, and its hosts rotate privacy addresses inside it).
func netKey(ip netip.Addr) netip.Addr {
	if ip.Is6() {
		p, err := ip.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return ip
}

// bearer extracts the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}
