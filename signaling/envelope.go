package signaling

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// envelopeVersion is the first byte of an encoded Envelope.
const envelopeVersion = 1

// AppendBinary appends e's encoding to b, for a Router that sends envelopes
// over a network: a version byte, kind, reason, bounced kind, flags, then
// From, To, Room, Ref and Body, each as a uvarint length and its bytes.
func (e Envelope) AppendBinary(b []byte) ([]byte, error) {
	var flags byte
	if e.InRoom {
		flags = 1
	}
	b = append(b, envelopeVersion, byte(e.Kind), byte(e.Reason), byte(e.Bounced), flags)
	for _, f := range [...][]byte{[]byte(e.From), []byte(e.To), []byte(e.Room), e.Ref, e.Body} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b, nil
}

// MarshalBinary is AppendBinary to a new slice.
func (e Envelope) MarshalBinary() ([]byte, error) {
	return e.AppendBinary(make([]byte, 0, 5+len(e.From)+len(e.To)+len(e.Room)+len(e.Ref)+len(e.Body)+10))
}

// UnmarshalBinary decodes an envelope made by AppendBinary. Ref and Body alias
// data; the strings are copies.
func (e *Envelope) UnmarshalBinary(data []byte) error {
	if len(data) < 5 {
		return errors.New("signaling: envelope: too short")
	}
	if data[0] != envelopeVersion {
		return fmt.Errorf("signaling: envelope: version %d", data[0])
	}
	kind, why, bounced, flags := Kind(data[1]), Reason(data[2]), Kind(data[3]), data[4]
	switch {
	case kind < KindClient || kind > KindBounce:
		return fmt.Errorf("signaling: envelope: kind %d", kind)
	case why > BounceLost || bounced > KindBounce || flags > 1:
		return errors.New("signaling: envelope: bad bounce or flags")
	}
	rest := data[5:]
	var fields [5][]byte
	for i := range fields {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return errors.New("signaling: envelope: truncated")
		}
		fields[i], rest = rest[k:k+int(n)], rest[k+int(n):]
	}
	if len(rest) != 0 {
		return errors.New("signaling: envelope: trailing bytes")
	}
	*e = Envelope{Kind: kind, Reason: why, Bounced: bounced, InRoom: flags == 1,
		From: string(fields[0]), To: string(fields[1]), Room: string(fields[2])}
	if len(fields[3]) > 0 {
		e.Ref = fields[3]
	}
	if len(fields[4]) > 0 {
		e.Body = fields[4]
	}
	return nil
}
