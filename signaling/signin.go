package signaling

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// inviteUse is the "use" claim of an invite link's token. Session tokens carry no
// "use" (verifyToken refuses one that does), so neither can stand in for the other.
const inviteUse = "invite"

// DefaultSignInTTL is the lifetime of the session token /api/signin hands out.
// 12 h: a working day or an evening of calls, and a token left in a browser on a
// shared or lost device dies by the next day. A tab that stays connected never
// sees it expire (the hub pushes a successor at 80 %, see renewToken), and a person
// whose token lapsed opens their link again.
const DefaultSignInTTL = 12 * time.Hour

// Invite is what an invite link grants.
type Invite struct {
	Room string        // room the signed-in session is limited to; "" any room
	Name string        // display name suggested to the person; "" none
	TTL  time.Duration // how long the link can be opened
	Uses int           // sign-ins allowed in total; 0 unlimited
	// ID identifies the link for its use count (jti); empty: a random one.
	ID string
}

// inviteClaims is an invite link's JWT payload.
type inviteClaims struct {
	Use  string `json:"use"`
	Room string `json:"room,omitempty"`
	Name string `json:"name,omitempty"`
	Uses int    `json:"uses,omitempty"`
	jwt.RegisteredClaims
}

// MintInvite returns the token of an invite link, issued at now (HS256 with the
// auth secret). It is what `switchboard invite` puts behind "#invite=".
func MintInvite(secret []byte, inv Invite, now time.Time) (string, error) {
	switch {
	case len(secret) == 0:
		return "", errors.New("signaling: mint invite: empty secret")
	case inv.TTL <= 0:
		return "", errors.New("signaling: mint invite: the lifetime must be positive")
	case inv.Uses < 0:
		return "", errors.New("signaling: mint invite: uses must not be negative")
	case inv.Room != "" && !validRoom(inv.Room):
		return "", fmt.Errorf("signaling: mint invite: room %q: use 1-64 of A-Z a-z 0-9 . _ -", inv.Room)
	case inv.Name != "" && !validName(inv.Name):
		return "", fmt.Errorf("signaling: mint invite: name %q is not a usable display name", inv.Name)
	}
	if inv.ID == "" {
		inv.ID = rand.Text()
	}
	c := inviteClaims{Use: inviteUse, Room: inv.Room, Name: inv.Name, Uses: inv.Uses,
		RegisteredClaims: jwt.RegisteredClaims{
			ID:        inv.ID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(inv.TTL)),
		}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("signaling: mint invite: %w", err)
	}
	return s, nil
}

var (
	errInviteInvalid = errors.New("invalid invite")
	errInviteExpired = errors.New("invite expired")
)

// parseInvite verifies an invite link's token: signature, "use":"invite", exp,
// iat, jti and well-formed room, name and uses.
func parseInvite(secret []byte, tok string, now time.Time) (*inviteClaims, error) {
	var c inviteClaims
	_, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithLeeway(5*time.Second), jwt.WithTimeFunc(func() time.Time { return now }))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, errInviteExpired
	case err != nil:
		return nil, errInviteInvalid
	case c.Use != inviteUse, c.ID == "", c.IssuedAt == nil, c.Uses < 0,
		c.Room != "" && !validRoom(c.Room), c.Name != "" && !validName(c.Name):
		return nil, errInviteInvalid
	}
	return &c, nil
}

// InviteState is what the sign-in endpoint keeps about invite links across
// restarts. InviteStore implements it with files.
type InviteState interface {
	// Use records one sign-in with link id, which allows max of them (max > 0) and
	// expires at exp (the record may be forgotten after). ok is false when the
	// link is used up. A use is granted only once it is stored.
	Use(ctx context.Context, id string, max int, exp time.Time) (ok bool, err error)
	// RevokedBefore is when the operator last revoked every link: links issued
	// before it are refused. Zero: never.
	RevokedBefore() (time.Time, error)
}

// SignInConfig configures the sign-in endpoint. The zero value is a disabled
// endpoint (no auth secret: the server is open and needs no sign-in).
type SignInConfig struct {
	// Secret is the auth secret (SWITCHBOARD_AUTH_SECRET): it verifies invite
	// links and signs the session tokens handed out. Empty: sign-in is off.
	Secret []byte
	// Passcode is a shared passcode (SWITCHBOARD_PASSCODE); PasscodeHash a bcrypt
	// hash of one (SWITCHBOARD_PASSCODE_HASH). At most one; neither: no passcode
	// sign-in, only links.
	Passcode     []byte
	PasscodeHash []byte
	// TokenTTL is the lifetime of the session tokens handed out. Default
	// DefaultSignInTTL.
	TokenTTL time.Duration
	// Invites counts limited links' uses and holds the revocation time. Nil:
	// nothing is kept, links with a use limit are refused.
	Invites InviteState
	// TrustedProxies are the proxies whose X-Forwarded-For is believed when
	// counting failed attempts per client address.
	TrustedProxies []netip.Prefix
	// FailRate and FailBurst bound failed sign-ins (wrong passcode, bad link) per
	// client address (IPv6: per /64). Defaults one per 12 s and 5: someone
	// mistyping has five tries at once, then five a minute; guessing an 8-letter
	// passcode at 300 an hour per address is hopeless.
	FailRate  rate.Limit
	FailBurst int
	Logger    *slog.Logger
	// Now is the clock; nil: time.Now. For tests.
	Now func() time.Time
}

// SignIn serves /api/signin: it trades an invite link or the passcode for a
// renewable session token. Construct with NewSignIn.
type SignIn struct {
	// Static after NewSignIn.
	cfg  SignInConfig
	log  *slog.Logger
	fail *failLimiter
	// hashing bounds concurrent bcrypt comparisons (each ~50 ms of CPU) so a
	// flood from many addresses cannot take every core.
	hashing chan struct{}

	stats signInCounters
}

// signInCounters are atomics read by Stats.
type signInCounters struct {
	invite, passcode atomic.Uint64
	refused          [numRefusals]atomic.Uint64
}

// Refusal reasons, also the "error" codes of the answer.
const (
	refuseBadRequest = iota
	refuseInvalidInvite
	refuseExpiredInvite
	refuseRevokedInvite
	refuseUsedUp
	refuseWrongPasscode
	refuseRateLimited
	refuseDisabled
	numRefusals
)

var refusalCodes = [numRefusals]string{
	"bad-request", "invalid-invite", "invite-expired", "invite-revoked", "invite-used-up",
	"wrong-passcode", "rate-limited", "signin-disabled",
}

// SignInStats are the endpoint's counters.
type SignInStats struct {
	Invite, Passcode uint64            // sign-ins granted, by method
	Refused          map[string]uint64 // refusals by error code
}

// NewSignIn checks cfg and builds the endpoint. It does no I/O.
func NewSignIn(cfg SignInConfig) (*SignIn, error) {
	if len(cfg.Passcode) > 0 && len(cfg.PasscodeHash) > 0 {
		return nil, errors.New("signaling: sign-in: a passcode and a passcode hash: pick one")
	}
	if len(cfg.PasscodeHash) > 0 {
		if _, err := bcrypt.Cost(cfg.PasscodeHash); err != nil {
			return nil, fmt.Errorf("signaling: sign-in: passcode hash is not a bcrypt hash: %w", err)
		}
	}
	if (len(cfg.Passcode) > 0 || len(cfg.PasscodeHash) > 0) && len(cfg.Secret) == 0 {
		return nil, errors.New("signaling: sign-in: a passcode needs the auth secret")
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultSignInTTL
	}
	if cfg.TokenTTL < 0 {
		return nil, errors.New("signaling: sign-in: negative token lifetime")
	}
	if cfg.FailRate == 0 {
		cfg.FailRate = rate.Every(12 * time.Second)
	}
	if cfg.FailBurst == 0 {
		cfg.FailBurst = 5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &SignIn{
		cfg: cfg, log: cfg.Logger,
		// 10000 addresses: ~1 MiB of buckets; more distinct failing addresses at
		// once evict idle ones first (see failLimiter.evictLocked).
		fail:    newFailLimiter(cfg.FailRate, cfg.FailBurst, 10000),
		hashing: make(chan struct{}, 2),
	}, nil
}

func (s *SignIn) passcodeOn() bool { return len(s.cfg.Passcode) > 0 || len(s.cfg.PasscodeHash) > 0 }

// Stats returns a snapshot of the counters.
func (s *SignIn) Stats() SignInStats {
	st := SignInStats{Invite: s.stats.invite.Load(), Passcode: s.stats.passcode.Load(), Refused: map[string]uint64{}}
	for i := range s.stats.refused {
		if n := s.stats.refused[i].Load(); n > 0 {
			st.Refused[refusalCodes[i]] = n
		}
	}
	return st
}

// signInRequest is the POST body: exactly one of Invite and Passcode.
type signInRequest struct {
	Invite   string `json:"invite,omitempty"`
	Passcode string `json:"passcode,omitempty"`
	Name     string `json:"name,omitempty"`
}

// signInMaxBody bounds the POST body: an invite token is ~300 bytes, a passcode
// and a name far less.
const signInMaxBody = 4096

// errBadRequest carries the human text of a 400.
type errBadRequest string

func (e errBadRequest) Error() string { return string(e) }

// decodeSignInRequest parses and checks a POST body.
func decodeSignInRequest(b []byte) (signInRequest, error) {
	var req signInRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return req, errBadRequest("the body is not a JSON object")
	}
	switch {
	case req.Invite != "" && req.Passcode != "":
		return req, errBadRequest("send either an invite or a passcode, not both")
	case req.Invite == "" && req.Passcode == "":
		return req, errBadRequest("send an invite or a passcode")
	case req.Name != "" && !validName(req.Name):
		return req, errBadRequest("the name is not a usable display name (1-64 visible characters)")
	case len(req.Passcode) > 1024:
		return req, errBadRequest("the passcode is too long")
	}
	return req, nil
}

// signInAnswer is the 200 answer.
type signInAnswer struct {
	Token string `json:"token"`
	TTL   int64  `json:"ttl"` // seconds
	Room  string `json:"room"`
	Name  string `json:"name"`
}

type signInError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func (s *SignIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeJSON(w, http.StatusOK, struct {
			Required bool `json:"required"`
			Passcode bool `json:"passcode"`
		}{len(s.cfg.Secret) > 0, s.passcodeOn()})
	case http.MethodPost:
		s.post(w, r)
	default:
		h.Set("Allow", "GET, HEAD, POST")
		writeJSON(w, http.StatusMethodNotAllowed, signInError{"method-not-allowed", "use GET or POST"})
	}
}

func (s *SignIn) post(w http.ResponseWriter, r *http.Request) {
	if len(s.cfg.Secret) == 0 {
		s.refuse(w, http.StatusNotFound, refuseDisabled, "this server is open: no sign-in needed")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		s.stats.refused[refuseBadRequest].Add(1)
		writeJSON(w, http.StatusUnsupportedMediaType, signInError{"bad-request", "send the body as application/json"})
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, signInMaxBody))
	if err != nil {
		s.stats.refused[refuseBadRequest].Add(1)
		writeJSON(w, http.StatusRequestEntityTooLarge, signInError{"bad-request", "the body is too large"})
		return
	}
	req, err := decodeSignInRequest(b)
	if err != nil {
		s.refuse(w, http.StatusBadRequest, refuseBadRequest, err.Error())
		return
	}
	now := s.cfg.Now()
	ip := clientIP(r, s.cfg.TrustedProxies)
	if wait := s.fail.wait(ip, now); wait > 0 {
		h := w.Header()
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		s.log.Info("sign-in refused", "reason", "rate-limited", "remote", ip)
		s.refuse(w, http.StatusTooManyRequests, refuseRateLimited, "too many failed sign-ins from your address; try again later")
		return
	}
	if req.Invite != "" {
		s.signInInvite(r.Context(), w, ip, req.Invite, now)
	} else {
		s.signInPasscode(r.Context(), w, ip, req, now)
	}
}

func (s *SignIn) signInInvite(ctx context.Context, w http.ResponseWriter, ip netip.Addr, tok string, now time.Time) {
	c, err := parseInvite(s.cfg.Secret, tok, now)
	if err != nil {
		reason, msg := refuseInvalidInvite, "this invite link is not valid: ask for a new one"
		if errors.Is(err, errInviteExpired) {
			reason, msg = refuseExpiredInvite, "this invite link has expired: ask for a new one"
		}
		s.fail.fail(ip, now)
		s.log.Info("sign-in refused", "method", "invite", "reason", refusalCodes[reason], "remote", ip)
		s.refuse(w, http.StatusUnauthorized, reason, msg)
		return
	}
	var revoked time.Time
	if s.cfg.Invites != nil {
		if revoked, err = s.cfg.Invites.RevokedBefore(); err != nil {
			// Fail closed: a revocation that cannot be read must not let every
			// revoked link back in.
			s.log.Error("sign-in: read invite revocation", "err", err)
			writeJSON(w, http.StatusInternalServerError, signInError{"internal-error", "the server cannot check invite links right now"})
			return
		}
	}
	if !revoked.IsZero() && c.IssuedAt.Before(revoked) {
		s.fail.fail(ip, now)
		s.log.Info("sign-in refused", "method", "invite", "reason", "invite-revoked", "invite", c.ID, "remote", ip)
		s.refuse(w, http.StatusUnauthorized, refuseRevokedInvite, "this invite link was revoked: ask for a new one")
		return
	}
	if c.Uses > 0 {
		ok := false
		if s.cfg.Invites != nil {
			ok, err = s.cfg.Invites.Use(ctx, c.ID, c.Uses, c.ExpiresAt.Time)
		} else {
			err = errors.New("no invite state configured")
		}
		if err != nil {
			s.log.Error("sign-in: count invite use", "invite", c.ID, "err", err)
			writeJSON(w, http.StatusInternalServerError, signInError{"internal-error", "the server cannot count this link's uses right now"})
			return
		}
		if !ok {
			s.log.Info("sign-in refused", "method", "invite", "reason", "invite-used-up", "invite", c.ID, "remote", ip)
			s.refuse(w, http.StatusGone, refuseUsedUp, "this invite link has been used up: ask for a new one")
			return
		}
	}
	s.grant(w, "invite", c.ID, c.Room, c.Name, now)
}

func (s *SignIn) signInPasscode(ctx context.Context, w http.ResponseWriter, ip netip.Addr, req signInRequest, now time.Time) {
	if !s.passcodeOn() {
		s.refuse(w, http.StatusNotFound, refuseDisabled, "this server has no passcode sign-in: ask for an invite link")
		return
	}
	ok, err := s.passcodeMatches(ctx, req.Passcode)
	if err != nil {
		return // the client went away while waiting for a bcrypt slot
	}
	if !ok {
		s.fail.fail(ip, now)
		// The passcode itself is never logged, not even a wrong one: it is
		// often the right one with a typo.
		s.log.Warn("sign-in refused", "method", "passcode", "reason", "wrong-passcode", "remote", ip)
		s.refuse(w, http.StatusUnauthorized, refuseWrongPasscode, "wrong passcode")
		return
	}
	s.grant(w, "passcode", "", "", req.Name, now)
}

// passcodeMatches compares in constant time: plain passcodes by their SHA-256
// (so the length does not leak either), hashes with bcrypt.
func (s *SignIn) passcodeMatches(ctx context.Context, p string) (bool, error) {
	if len(s.cfg.PasscodeHash) > 0 {
		select {
		case s.hashing <- struct{}{}:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		defer func() { <-s.hashing }()
		return bcrypt.CompareHashAndPassword(s.cfg.PasscodeHash, []byte(p)) == nil, nil
	}
	a, b := sha256.Sum256([]byte(p)), sha256.Sum256(s.cfg.Passcode)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1, nil
}

// grant mints the session token: a fresh subject, the link's room, renewable.
func (s *SignIn) grant(w http.ResponseWriter, method, invite, room, name string, now time.Time) {
	c := claims{Room: room, Name: name, Renew: true, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   rand.Text(),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.TokenTTL)),
	}}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.cfg.Secret)
	if err != nil {
		s.log.Error("sign-in: mint token", "err", err)
		writeJSON(w, http.StatusInternalServerError, signInError{"internal-error", "the server could not sign you in"})
		return
	}
	if method == "invite" {
		s.stats.invite.Add(1)
		s.log.Info("signed in", "method", method, "invite", invite, "room", room)
	} else {
		s.stats.passcode.Add(1)
		s.log.Info("signed in", "method", method)
	}
	writeJSON(w, http.StatusOK, signInAnswer{Token: tok, TTL: int64(s.cfg.TokenTTL / time.Second), Room: room, Name: name})
}

func (s *SignIn) refuse(w http.ResponseWriter, status, reason int, msg string) {
	s.stats.refused[reason].Add(1)
	writeJSON(w, status, signInError{refusalCodes[reason], msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// failLimiter is a token bucket of failed attempts per client address (IPv6: per
// /64, see netKey). Unlike ipLimiter it is only charged on failure, so a crowd
// behind one NAT opening the same good link is never slowed down.
type failLimiter struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[netip.Addr]*rate.Limiter // guarded by mu
}

func newFailLimiter(limit rate.Limit, burst, max int) *failLimiter {
	return &failLimiter{limit: limit, burst: burst, max: max, m: make(map[netip.Addr]*rate.Limiter)}
}

// wait returns how long ip must wait before its next attempt; 0: go ahead.
func (l *failLimiter) wait(ip netip.Addr, now time.Time) time.Duration {
	ip = netKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.m[ip]
	if lim == nil {
		return 0
	}
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(l.limit) * float64(time.Second))
}

// fail charges one failure to ip.
func (l *failLimiter) fail(ip netip.Addr, now time.Time) {
	ip = netKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.m[ip]
	if lim == nil {
		if len(l.m) >= l.max {
			l.evictLocked(now)
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.m[ip] = lim
	}
	lim.AllowN(now, 1)
}

// evictLocked drops buckets that are full again (forgetting them changes
// nothing), then random ones if still full.
func (l *failLimiter) evictLocked(now time.Time) {
	for ip, lim := range l.m {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, ip)
		}
	}
	for ip := range l.m {
		if len(l.m) < l.max*9/10 {
			break
		}
		delete(l.m, ip)
	}
}
