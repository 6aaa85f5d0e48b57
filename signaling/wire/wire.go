// Package wire is the JSON of the signaling protocol (signaling/PROTOCOL.md), once, for every Go client.
//
// Client requests embed Meta (ref, seq, ack); server messages carry Seq. Each
// struct sets its own Type when built with its constructor-free literal: use the
// Type* constants. Unknown fields are ignored by both sides, so a client decoding
// into these structs keeps working when the server grows.
package wire

import "encoding/json"

// Message types (the "type" field).
const (
	// client → server
	TypeHello   = "hello"
	TypeSignal  = "signal" // both directions
	TypeJoin    = "join"
	TypeCall    = "call" // both directions
	TypeAccept  = "accept"
	TypeDecline = "decline"
	TypeCancel  = "cancel"
	TypeHangup  = "hangup" // both directions
	TypePing    = "ping"

	// server → client
	TypeWelcome    = "welcome"
	TypePeerJoined = "peer-joined"
	TypePeerLeft   = "peer-left"
	TypeJoined     = "joined"
	TypeRinging    = "ringing"
	TypeAccepted   = "accepted"
	TypeDeclined   = "declined"
	TypeCancelled  = "cancelled"
	TypeBusy       = "busy"
	TypeTimeout    = "timeout"
	TypeICEServers = "ice-servers"
	TypeToken      = "token"
	TypeError      = "error"
	TypePong       = "pong"
)

// Error codes (PROTOCOL.md, "Error codes").
const (
	CodeBadMessage      = "bad-message"
	CodeUnknownType     = "unknown-type"
	CodeHelloRequired   = "hello-required"
	CodePeerUnavailable = "peer-unavailable"
	CodeRateLimited     = "rate-limited"
	CodeUnauthorized    = "unauthorized"
	CodeForbiddenRoom   = "forbidden-room"
	CodeTooLarge        = "too-large"
	CodeRoomFull        = "room-full"
	CodeNoSuchCall      = "no-such-call"
	CodeBusy            = "busy"
	CodeUndeliverable   = "undeliverable"
	CodeServerFull      = "server-full"
	CodeInternal        = "internal-error"
)

// WebSocket close codes of the protocol beyond RFC 6455's (PROTOCOL.md, "Close codes").
const (
	// CloseReplaced: the session was resumed on another connection; stop.
	CloseReplaced = 4001
	// CloseResumeFailed: the resume token is unknown or expired; start fresh.
	CloseResumeFailed = 4002
)

// Reasons in peer-left and hangup.
const (
	ReasonLeft    = "left"    // peer-left, hangup: the peer's session ended (or, for hangup, it moved)
	ReasonMoved   = "moved"   // peer-left: the peer joined another room
	ReasonTimeout = "timeout" // peer-left: the peer's resume grace ran out
	ReasonHangup  = "hangup"  // hangup: the peer hung up
)

// Meta is what every client request may carry.
type Meta struct {
	// Ref is echoed in the answer or error (a JSON string or number, at most 64 bytes).
	Ref json.RawMessage `json:"ref,omitempty"`
	// Seq numbers the client's messages (1, 2, 3, …) so that each is processed once.
	Seq uint64 `json:"seq,omitempty"`
	// Ack is the highest server seq the client has processed.
	Ack uint64 `json:"ack,omitempty"`
}

// Hello opens (or, with Resume, resumes) a session.
type Hello struct {
	Type  string  `json:"type"` // TypeHello
	Name  string  `json:"name"`
	Room  *string `json:"room,omitempty"` // nil: the token's room, else the lobby
	Token string  `json:"token,omitempty"`
	// Resume is the resume token of a previous welcome.
	Resume string `json:"resume,omitempty"`
	// Attempt counts the sockets a client opened for one session (1, 2, 3, …):
	// a resume with an attempt not above one the hub already accepted is stale
	// and refused (close 4001). 0: not counted (older clients).
	Attempt uint64 `json:"attempt,omitempty"`
	Meta
}

// Signal relays Data to one peer (To) or to the whole room (To == "*").
type Signal struct {
	Type string          `json:"type"` // TypeSignal
	To   string          `json:"to"`
	Data json.RawMessage `json:"data"`
	Meta
}

// Join moves the session to Room ("" is the lobby).
type Join struct {
	Type string `json:"type"` // TypeJoin
	Room string `json:"room"`
	Meta
}

// Call rings peer To; Call is the client-chosen call id (1–64 bytes).
type Call struct {
	Type string `json:"type"` // TypeCall
	To   string `json:"to"`
	Call string `json:"call"`
	Meta
}

// CallAction is accept, decline, cancel or hangup of call Call.
type CallAction struct {
	Type string `json:"type"` // TypeAccept, TypeDecline, TypeCancel or TypeHangup
	Call string `json:"call"`
	Meta
}

// Ping asks for a pong and confirms messages up to Ack.
type Ping struct {
	Type string `json:"type"` // TypePing
	Meta
}

// ICEServer is one entry of an RTCConfiguration.iceServers list.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Peer is another session as this one sees it.
type Peer struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Nearby: both reach the server from the same public address (IPv6: /64).
	Nearby bool `json:"nearby"`
}

// Heartbeat tells the client how often to ping and when to give a link up (ms).
type Heartbeat struct {
	Interval int64 `json:"interval"`
	Timeout  int64 `json:"timeout"`
}

// Welcome answers a hello; it has no seq.
type Welcome struct {
	Type       string      `json:"type"` // TypeWelcome
	ID         string      `json:"id"`
	Resume     string      `json:"resume"`
	Resumed    bool        `json:"resumed"`
	ICEServers []ICEServer `json:"iceServers"`
	TTL        int64       `json:"ttl"` // seconds
	Heartbeat  Heartbeat   `json:"heartbeat"`
	Room       string      `json:"room"`
	Peers      []Peer      `json:"peers"`
	// Ack is the last client seq processed (0 on a fresh session).
	Ack uint64 `json:"ack"`
	// Lost (resume): the node that held the session died; messages it held
	// for the client, and client messages above Ack, may be gone.
	Lost bool            `json:"lost,omitempty"`
	Ref  json.RawMessage `json:"ref,omitempty"`
}

// PeerJoined: Peer entered the room.
type PeerJoined struct {
	Type string `json:"type"` // TypePeerJoined
	Seq  uint64 `json:"seq,omitempty"`
	Peer Peer   `json:"peer"`
}

// PeerLeft: peer ID left the room (Reason*).
type PeerLeft struct {
	Type   string `json:"type"` // TypePeerLeft
	Seq    uint64 `json:"seq,omitempty"`
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// Relayed is a signal from peer From.
type Relayed struct {
	Type string          `json:"type"` // TypeSignal
	Seq  uint64          `json:"seq,omitempty"`
	From string          `json:"from"`
	Data json.RawMessage `json:"data"`
}

// Joined answers a join.
type Joined struct {
	Type  string          `json:"type"` // TypeJoined
	Seq   uint64          `json:"seq,omitempty"`
	Room  string          `json:"room"`
	Peers []Peer          `json:"peers"`
	Ref   json.RawMessage `json:"ref,omitempty"`
}

// Ringing: the callee To was reached and its phone rings.
type Ringing struct {
	Type string          `json:"type"` // TypeRinging
	Seq  uint64          `json:"seq,omitempty"`
	Call string          `json:"call"`
	To   string          `json:"to"`
	Ref  json.RawMessage `json:"ref,omitempty"`
}

// Incoming is a call from From (display name Name) to this session.
type Incoming struct {
	Type string `json:"type"` // TypeCall
	Seq  uint64 `json:"seq,omitempty"`
	Call string `json:"call"`
	From string `json:"from"`
	Name string `json:"name"`
}

// Accepted: the call is up; Peer is the other side's id. The caller is impolite
// (Polite false), the callee polite.
type Accepted struct {
	Type   string          `json:"type"` // TypeAccepted
	Seq    uint64          `json:"seq,omitempty"`
	Call   string          `json:"call"`
	Peer   string          `json:"peer"`
	Polite bool            `json:"polite"`
	Ref    json.RawMessage `json:"ref,omitempty"`
}

// CallEnded is declined, cancelled or busy (Type) of call Call by peer From.
type CallEnded struct {
	Type string          `json:"type"` // TypeDeclined, TypeCancelled or TypeBusy
	Seq  uint64          `json:"seq,omitempty"`
	Call string          `json:"call"`
	From string          `json:"from"`
	Ref  json.RawMessage `json:"ref,omitempty"`
}

// Hangup: From ended call Call (Reason ReasonHangup or ReasonLeft).
type Hangup struct {
	Type   string `json:"type"` // TypeHangup
	Seq    uint64 `json:"seq,omitempty"`
	Call   string `json:"call"`
	From   string `json:"from"`
	Reason string `json:"reason"`
}

// Timeout: nobody answered call Call within the ring timeout (sent to both sides).
type Timeout struct {
	Type string `json:"type"` // TypeTimeout
	Seq  uint64 `json:"seq,omitempty"`
	Call string `json:"call"`
}

// Credentials are fresh ICE servers pushed before the current ones expire.
type Credentials struct {
	Type       string      `json:"type"` // TypeICEServers
	Seq        uint64      `json:"seq,omitempty"`
	ICEServers []ICEServer `json:"iceServers"`
	TTL        int64       `json:"ttl"` // seconds
}

// Token is a fresh sign-in token pushed before the session's current one expires
// (only for tokens the server minted at sign-in); use it for the next hello.
type Token struct {
	Type  string `json:"type"` // TypeToken
	Seq   uint64 `json:"seq,omitempty"`
	Token string `json:"token"`
	TTL   int64  `json:"ttl"` // seconds
}

// Error is a refusal; To names the peer for undeliverable and peer-unavailable.
type Error struct {
	Type    string          `json:"type"` // TypeError
	Seq     uint64          `json:"seq,omitempty"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	To      string          `json:"to,omitempty"`
	Ref     json.RawMessage `json:"ref,omitempty"`
}

// Pong answers a ping; it has no seq. Ack is the last client seq processed.
type Pong struct {
	Type string `json:"type"` // TypePong
	Ack  uint64 `json:"ack"`
}

// Any is every field of every server message, for clients that decode a frame
// before they know its type. Peer stays raw: an object in peer-joined, an id
// in accepted (see PeerInfo and PeerID).
type Any struct {
	Type       string          `json:"type"`
	Seq        uint64          `json:"seq,omitempty"`
	ID         string          `json:"id,omitempty"`
	Resume     string          `json:"resume,omitempty"`
	Resumed    bool            `json:"resumed,omitempty"`
	Lost       bool            `json:"lost,omitempty"`
	ICEServers []ICEServer     `json:"iceServers,omitempty"`
	TTL        int64           `json:"ttl,omitempty"`
	Heartbeat  *Heartbeat      `json:"heartbeat,omitempty"`
	Room       *string         `json:"room,omitempty"`
	Peers      []Peer          `json:"peers,omitempty"`
	Peer       json.RawMessage `json:"peer,omitempty"`
	Call       string          `json:"call,omitempty"`
	From       string          `json:"from,omitempty"`
	To         string          `json:"to,omitempty"`
	Name       string          `json:"name,omitempty"`
	Polite     *bool           `json:"polite,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	Token      string          `json:"token,omitempty"`
	Code       string          `json:"code,omitempty"`
	Message    string          `json:"message,omitempty"`
	Ack        *uint64         `json:"ack,omitempty"`
	Ref        json.RawMessage `json:"ref,omitempty"`
}

// PeerInfo decodes Peer of a peer-joined.
func (a *Any) PeerInfo() (Peer, error) {
	var p Peer
	err := json.Unmarshal(a.Peer, &p)
	return p, err
}

// PeerID decodes Peer of an accepted.
func (a *Any) PeerID() (string, error) {
	var id string
	err := json.Unmarshal(a.Peer, &id)
	return id, err
}
