package relay

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
)

// Nonces. pion issues its own nonces (a per-minute timestamp and an HMAC, the same for
// every client in that minute) and validates them itself. We wrap each one, per challenge,
// as "<pion nonce>.<salt><mac>" (base64url): 6 random bytes and a 9-byte HMAC binding the
// wrapped nonce to the transport and address the challenge was sent to. 48 random bits make
// every challenge's nonce fresh; a 72-bit MAC cannot be guessed at any packet rate; both
// stay short because every challenge is an unauthenticated response (amplification). A request whose nonce does not open
// for its own source gets 438 with a fresh nonce; one that opens is handed to pion with
// the inner nonce (and re-signed, see filterConn.pass).
const (
	nonceSaltLen = 6
	nonceMACLen  = 9
	nonceTailLen = (nonceSaltLen + nonceMACLen) * 4 / 3 // unpadded base64url of 15 bytes
)

func nonceMAC(key, inner, salt []byte, addr netip.AddrPort, tcp bool) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(inner)
	m.Write(salt)
	a := addr.Addr().Unmap().As16()
	m.Write(a[:])
	port := addr.Port()
	t := byte(0)
	if tcp {
		t = 1
	}
	m.Write([]byte{byte(port >> 8), byte(port), t})
	return m.Sum(nil)[:nonceMACLen]
}

// sealNonce wraps pion's nonce for one challenge toward addr.
func sealNonce(key, inner []byte, addr netip.AddrPort, tcp bool) []byte {
	var salt [nonceSaltLen]byte
	_, _ = rand.Read(salt[:]) // crypto/rand.Read never fails (Go 1.24+).
	out := make([]byte, 0, len(inner)+1+nonceTailLen)
	out = append(out, inner...)
	out = append(out, '.')
	var tail [nonceSaltLen + nonceMACLen]byte
	copy(tail[:], salt[:])
	copy(tail[nonceSaltLen:], nonceMAC(key, inner, salt[:], addr, tcp))
	return base64.RawURLEncoding.AppendEncode(out, tail[:])
}

// openNonce returns the inner pion nonce if n was sealed for addr.
func openNonce(key, n []byte, addr netip.AddrPort, tcp bool) ([]byte, bool) {
	i := bytes.LastIndexByte(n, '.')
	if i < 0 || len(n)-i-1 != nonceTailLen {
		return nil, false
	}
	var tail [nonceSaltLen + nonceMACLen]byte
	if m, err := base64.RawURLEncoding.Decode(tail[:], n[i+1:]); err != nil || m != len(tail) {
		return nil, false
	}
	inner := n[:i]
	want := nonceMAC(key, inner, tail[:nonceSaltLen], addr, tcp)
	if !hmac.Equal(want, tail[nonceSaltLen:]) {
		return nil, false
	}
	return inner, true
}
