package signaling

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// Error codes on the wire (PROTOCOL.md, "Error codes").
const (
	codeBadMessage      = wire.CodeBadMessage
	codeUnknownType     = wire.CodeUnknownType
	codeHelloRequired   = wire.CodeHelloRequired
	codePeerUnavailable = wire.CodePeerUnavailable
	codeRateLimited     = wire.CodeRateLimited
	codeUnauthorized    = wire.CodeUnauthorized
	codeTooLarge        = wire.CodeTooLarge
	codeRoomFull        = wire.CodeRoomFull
	codeNoSuchCall      = wire.CodeNoSuchCall
	codeBusy            = wire.CodeBusy
	codeUndeliverable   = wire.CodeUndeliverable
	codeServerFull      = wire.CodeServerFull
	codeForbiddenRoom   = wire.CodeForbiddenRoom
	codeInternal        = wire.CodeInternal
)

// maxRef bounds the encoded "ref" so a client cannot make the hub echo big blobs.
const maxRef = 64

// inMsg is any client message; which fields matter depends on Type.
type inMsg struct {
	Type   string          `json:"type"`
	Ref    json.RawMessage `json:"ref,omitempty"`
	Seq    uint64          `json:"seq,omitempty"`
	Ack    uint64          `json:"ack,omitempty"`
	Name   string          `json:"name,omitempty"`
	Room   *string         `json:"room,omitempty"`
	Token  string          `json:"token,omitempty"`
	Resume string          `json:"resume,omitempty"`
	// Attempt is hello.attempt: which socket of the client's for this session.
	Attempt uint64          `json:"attempt,omitempty"`
	To      string          `json:"to,omitempty"`
	Call    string          `json:"call,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// wireError is an error that becomes an {"type":"error"} message. Every handler
// returns these; toError in hub.go is the one place mapping errors to the wire.
type wireError struct {
	code string
	msg  string
	to   string
}

func (e *wireError) Error() string { return e.code + ": " + e.msg }

func errf(code, format string, args ...any) *wireError {
	return &wireError{code: code, msg: fmt.Sprintf(format, args...)}
}

// decodeMessage parses one client frame. It checks only what is common to every
// message (a JSON object with a string type, a small scalar ref); per-type checks
// live in validate.
func decodeMessage(b []byte) (inMsg, error) {
	var m inMsg
	var scratch []byte
	if err := decodeInto(&m, b, &scratch, nil); err != nil {
		return inMsg{}, err
	}
	return m, nil
}

// decodeInto is decodeMessage into a reused m: the hub's hot path decodes every
// frame this way so that m (which json.Unmarshal makes escape) and the copies of
// its data are not allocated per message. m.Data and *scratch keep their backing
// arrays across calls: m.Data aliases them afterwards, so it is only valid until
// the next decodeInto with the same m and scratch. Everything else in m is freshly
// allocated (Ref in particular is queued in replies and must not be reused).
// dec, if not nil, is reused for the JSON decoding.
func decodeInto(m *inMsg, b []byte, scratch *[]byte, dec *frameDecoder) error {
	*m = inMsg{Data: m.Data[:0]} // RawMessage.UnmarshalJSON appends into Data[:0]
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	if err := dec.unmarshal(b, m); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if m.Type == "" {
		return errors.New(`missing "type"`)
	}
	if len(m.Ref) > 0 {
		if len(m.Ref) > maxRef {
			return fmt.Errorf(`"ref" longer than %d bytes`, maxRef)
		}
		switch c := m.Ref[0]; {
		case c == '"', c == '-', c >= '0' && c <= '9':
		default:
			return errors.New(`"ref" must be a string or a number`)
		}
		m.Ref = compactJSON(m.Ref)
	}
	if len(m.Data) > 0 {
		// Compact into scratch and swap: both buffers stay for the next frame.
		buf := bytes.NewBuffer((*scratch)[:0])
		if err := json.Compact(buf, m.Data); err == nil { // cannot fail: Unmarshal validated it
			m.Data, *scratch = buf.Bytes(), m.Data[:0]
		}
	}
	return nil
}

// frameDecoder is json.Unmarshal for one frame after another with a json.Decoder
// kept between them: Unmarshal allocates its decoder state (~150 bytes, a GC
// object per relayed message), a Decoder reuses its own. The zero value is ready;
// a nil *frameDecoder is plain json.Unmarshal.
type frameDecoder struct {
	r   bytes.Reader
	dec *json.Decoder
}

// unmarshal decodes b, a whole JSON object (whitespace trimmed), into m with
// exactly json.Unmarshal's result: anything unusual (an error, bytes after the
// object) is redone by json.Unmarshal, whose error is the one returned.
func (d *frameDecoder) unmarshal(b []byte, m *inMsg) error {
	if d != nil {
		if d.dec == nil {
			d.dec = json.NewDecoder(&d.r)
		}
		d.r.Reset(b)
		start := d.dec.InputOffset()
		if err := d.dec.Decode(m); err == nil && d.dec.InputOffset()-start == int64(len(b)) {
			return nil
		}
		d.dec = nil // it keeps its error and any unread input
		*m = inMsg{Data: m.Data[:0]}
	}
	return json.Unmarshal(b, m)
}

// compactJSON strips insignificant whitespace so relayed data and echoed refs are
// byte-stable (and the fuzz round trip is exact).
func compactJSON(raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw // cannot happen: Unmarshal already validated it
	}
	return buf.Bytes()
}

// encode is the inverse of decodeMessage (used by tests and the fuzz round trip).
// HTML escaping is off so relayed data keeps its bytes.
func (m inMsg) encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// validName accepts 1-64 code points with something visible, refusing controls
// and what would change how the text around the name is displayed in another
// user's UI: bidi marks, embeddings, overrides and isolates ("Alice\u202Etxt.exe"
// renders reversed), and line or paragraph separators. Joiners (U+200C/D) stay:
// emoji sequences need them.
func validName(s string) bool {
	if s == "" || utf8.RuneCountInString(s) > 64 || !utf8.ValidString(s) {
		return false
	}
	visible := false
	for _, r := range s {
		switch {
		case unicode.IsControl(r), unicode.In(r, unicode.Zl, unicode.Zp, unicode.Bidi_Control):
			return false
		case !unicode.IsSpace(r):
			visible = true
		}
	}
	return visible
}

// validRoom accepts "" (the lobby) and 1-64 of [A-Za-z0-9._-].
func validRoom(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validCallID(s string) bool { return s != "" && len(s) <= 64 && utf8.ValidString(s) }

// validate applies the per-type field rules of PROTOCOL.md.
func (m *inMsg) validate() *wireError {
	switch m.Type {
	case "hello":
		if !validName(m.Name) {
			return errf(codeBadMessage, "hello: name must be 1-64 printable characters, no bidi controls or line separators")
		}
		if m.Room != nil && !validRoom(*m.Room) {
			return errf(codeBadMessage, "hello: invalid room name")
		}
	case "signal":
		if m.To == "" || len(m.To) > 64 {
			return errf(codeBadMessage, `signal: missing "to"`)
		}
		if len(m.Data) == 0 {
			return errf(codeBadMessage, `signal: missing "data"`)
		}
	case "join":
		if m.Room == nil || !validRoom(*m.Room) {
			return errf(codeBadMessage, "join: missing or invalid room")
		}
	case "call":
		if m.To == "" || len(m.To) > 64 {
			return errf(codeBadMessage, `call: missing "to"`)
		}
		if !validCallID(m.Call) {
			return errf(codeBadMessage, `call: "call" must be 1-64 bytes`)
		}
	case "accept", "decline", "cancel", "hangup":
		if !validCallID(m.Call) {
			return errf(codeBadMessage, `%s: "call" must be 1-64 bytes`, m.Type)
		}
	case "ping":
	default:
		if len(m.Type) > 32 {
			return errf(codeUnknownType, "unknown type")
		}
		return errf(codeUnknownType, "unknown type %q", m.Type)
	}
	return nil
}

// Outgoing messages are the structs of package wire. Values are immutable once
// queued: the writer encodes them outside every lock, possibly twice (replay).

type (
	peerInfo  = wire.Peer
	heartbeat = wire.Heartbeat
)

// ICEServer is one entry of an RTCConfiguration.iceServers list.
type ICEServer = wire.ICEServer

// errorMsg is an error written directly (before hello, or right before a close).
func errorMsg(code, msg string, ref json.RawMessage) wire.Error {
	return wire.Error{Type: wire.TypeError, Code: code, Message: msg, Ref: ref}
}

// appendSignalBody appends {"type":"signal","from":...,"data":...} to b without
// reflection: it is the hot path, and data is already validated, compacted JSON.
func appendSignalBody(b []byte, from string, data json.RawMessage) []byte {
	b = slices.Grow(b, len(`{"type":"signal","from":"","data":}`)+len(from)+len(data))
	b = append(b, `{"type":"signal","from":`...)
	b = strconv.AppendQuote(b, from) // ids are base64url: quoting is plain JSON
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}')
}

// withSeq prefixes an encoded object with its sequence number: {"seq":N,...}.
func withSeq(dst []byte, seq uint64, body []byte) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	if len(body) > 2 {
		dst = append(dst, ',')
	}
	return append(dst, body[1:]...)
}
