package relay

import (
	"crypto/hmac"
	"crypto/md5"  //nolint:gosec // RFC 8489 long-term key derivation mandates MD5.
	"crypto/sha1" //nolint:gosec // the TURN REST API (coturn) mandates HMAC-SHA1.
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Credential is a TURN REST API credential: valid until Expires, for any server sharing the
// secret it was minted with.
type Credential struct {
	Username string
	Password string
	Expires  time.Time
}

// NewCredential mints a coturn-compatible TURN REST credential: username
// "<unix-expiry>:<user>", password base64(HMAC-SHA1(secret, username)).
func NewCredential(secret, user string, expires time.Time) Credential {
	username := strconv.FormatInt(expires.Unix(), 10) + ":" + user
	return Credential{
		Username: username,
		Password: restPassword(secret, username),
		Expires:  time.Unix(expires.Unix(), 0),
	}
}

func restPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// longTermKey is the RFC 8489 §9.2.2 key MD5(username ":" realm ":" password).
func longTermKey(username, realm, password string) []byte {
	h := md5.New() //nolint:gosec // see import.
	h.Write([]byte(username))
	h.Write([]byte{':'})
	h.Write([]byte(realm))
	h.Write([]byte{':'})
	h.Write([]byte(password))
	return h.Sum(nil)
}

var errMalformedUsername = errors.New("malformed REST username")

// maxUserLen bounds the user part; with the timestamp it stays under the STUN limit.
const maxUserLen = 256

// parseRESTUsername splits "<unix-expiry>:<user>". It accepts only a plain decimal
// timestamp and a non-empty printable UTF-8 user without control characters, so odd
// forms (signs, spaces, NULs, huge numbers, "::", missing parts) are refused rather than
// guessed at.
func parseRESTUsername(username string) (expires time.Time, user string, err error) {
	if len(username) > maxUsernameLen {
		return time.Time{}, "", errMalformedUsername
	}
	ts, user, ok := strings.Cut(username, ":")
	if !ok || ts == "" || len(ts) > 12 || user == "" || len(user) > maxUserLen {
		return time.Time{}, "", errMalformedUsername
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return time.Time{}, "", errMalformedUsername
		}
	}
	if !utf8.ValidString(user) {
		return time.Time{}, "", errMalformedUsername
	}
	for _, r := range user {
		if r < 0x20 || r == 0x7f {
			return time.Time{}, "", errMalformedUsername
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", errMalformedUsername
	}
	return time.Unix(sec, 0), user, nil
}
