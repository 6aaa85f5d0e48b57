package natsrouter

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/switchboard-rtc/switchboard/signaling"
)

// What a node sends another on its node subject (<cluster>.node.<name>): one
// op byte, then
//
//	opSend, opBroadcast: the sending node's name (uvarint length + bytes),
//	                     then the envelope (signaling.Envelope.AppendBinary)
//	opState:             JSON stateMsg (membership of the sender's sessions)
//
// Heartbeats go to <cluster>.hb as JSON (heartbeat).
const (
	opSend      byte = 's'
	opBroadcast byte = 'b'
	opState     byte = 'm'
	opAdmit     byte = 'a' // request: JSON admitReq; answer: one byte, 1 admitted, 0 full
	opPing      byte = 'p' // request: nothing; answer: nothing
	opForward   byte = 'f' // as opSend: an envelope for a session that moved on, from the node it came from
	opClaim     byte = 'c' // request: JSON claimReq; answer: JSON claimReply (handoff.go)
	opFlush     byte = 'x' // JSON flushMsg (handoff.go)
	opSent      byte = 'e' // JSON sentMsg (order.go)
)

// admitReq asks a room's owner whether session ID may enter Room of cap Max.
type admitReq struct {
	Room string `json:"room"`
	ID   string `json:"id"`
	Max  int    `json:"max"`
}

func parseAdmit(data []byte) (admitReq, error) {
	var a admitReq
	if err := json.Unmarshal(data, &a); err != nil {
		return admitReq{}, fmt.Errorf("natsrouter: admit: %w", err)
	}
	if a.ID == "" || a.Max < 0 {
		return admitReq{}, errors.New("natsrouter: admit: no session id or a negative cap")
	}
	return a, nil
}

// maxNodeName bounds a node name in a frame (subject tokens are short).
const maxNodeName = 255

// appendEnvelopeFrame encodes an envelope frame from node.
func appendEnvelopeFrame(b []byte, op byte, node string, e signaling.Envelope) ([]byte, error) {
	b = append(b, op)
	b = binary.AppendUvarint(b, uint64(len(node)))
	b = append(b, node...)
	return e.AppendBinary(b)
}

// parseEnvelopeFrame decodes the body of an opSend/opBroadcast frame (after the
// op byte). The envelope's Body and Ref alias data.
func parseEnvelopeFrame(data []byte) (node string, e signaling.Envelope, err error) {
	n, k := binary.Uvarint(data)
	if k <= 0 || n > maxNodeName || n > uint64(len(data)-k) {
		return "", e, errors.New("natsrouter: frame: bad node name")
	}
	node = string(data[k : k+int(n)])
	if !validToken(node) {
		return "", e, fmt.Errorf("natsrouter: frame: node name %q", node)
	}
	if err := e.UnmarshalBinary(data[k+int(n):]); err != nil {
		return "", e, err
	}
	return node, e, nil
}

// stateMsg tells a peer about the sender's own sessions: a snapshot of all of
// them (Snap, which replaces what the receiver knew of the node), or changes.
type stateMsg struct {
	Node string     `json:"node"`
	Inc  string     `json:"inc"` // the sender's incarnation (random per start)
	Snap bool       `json:"snap,omitempty"`
	Ops  []memberOp `json:"ops"`
}

// memberOp is one session's registration, room or removal.
type memberOp struct {
	Op   string     `json:"op"` // opReg, opJoin, opUnreg
	ID   string     `json:"id"`
	Name string     `json:"name,omitempty"`
	Net  netip.Addr `json:"net,omitzero"`
	Room string     `json:"room,omitempty"`
	// Saw (join): the members of Room the session was told about when it
	// joined (its welcome or joined list). A member of another node missing
	// here, which did not know the session either, joined at the same time:
	// its node tells it (see Router.applyState).
	Saw []string `json:"saw,omitempty"`
	// Epoch counts the session's moves between nodes: a newer epoch wins
	// over an older owner's word (handoff.go).
	Epoch uint64 `json:"epoch,omitempty"`
	// State (keep, or any op of a snapshot): the session's last kept state,
	// opaque here, adopted if its node dies. Tok: the hash of its resume
	// token, for the cluster's directory.
	State []byte `json:"state,omitempty"`
	Tok   string `json:"tok,omitempty"`
}

const (
	opReg   = "reg"   // a session exists, in no room yet
	opJoin  = "join"  // a session is in Room (with its member data)
	opUnreg = "unreg" // a session ended
	opKeep  = "keep"  // a session's kept state or resume token changed
)

// parseState decodes an opState frame (after the op byte) and checks it.
func parseState(data []byte) (stateMsg, error) {
	var s stateMsg
	if err := json.Unmarshal(data, &s); err != nil {
		return stateMsg{}, fmt.Errorf("natsrouter: state: %w", err)
	}
	if !validToken(s.Node) {
		return stateMsg{}, fmt.Errorf("natsrouter: state: node name %q", s.Node)
	}
	for _, o := range s.Ops {
		switch {
		case o.Op != opReg && o.Op != opJoin && o.Op != opUnreg && o.Op != opKeep:
			return stateMsg{}, fmt.Errorf("natsrouter: state: op %q", o.Op)
		case o.ID == "":
			return stateMsg{}, errors.New("natsrouter: state: op without a session id")
		}
	}
	return s, nil
}

// heartbeat is a node's periodic "alive" on <cluster>.hb.
type heartbeat struct {
	Node string `json:"node"`
	Inc  string `json:"inc"`
	// Heard lists the peers whose heartbeats this node gets (and accepts):
	// a peer that lists us can both hear us and be heard.
	Heard []string `json:"heard"`
	// Marks are HMAC-SHA256s (hex) of named secrets keyed by the cluster
	// secret: equal marks mean equal secrets, without sending them.
	Marks map[string]string `json:"marks"`
	// Bye: the node is leaving (Router.Close); peers forget it at once.
	Bye bool `json:"bye,omitempty"`
	// Info is what the node says of itself to the others (SetInfo), e.g.
	// the TURN URLs of its relay.
	Info map[string]string `json:"info,omitempty"`
}

func parseHeartbeat(data []byte) (heartbeat, error) {
	var h heartbeat
	if err := json.Unmarshal(data, &h); err != nil {
		return heartbeat{}, fmt.Errorf("natsrouter: heartbeat: %w", err)
	}
	if !validToken(h.Node) || h.Inc == "" {
		return heartbeat{}, fmt.Errorf("natsrouter: heartbeat: node %q, incarnation %q", h.Node, h.Inc)
	}
	return h, nil
}

// ValidName reports whether s can be a node or cluster name: one NATS subject
// token of letters, digits, '-' and '_', at most 64 bytes.
func ValidName(s string) bool { return validToken(s) && len(s) <= 64 }

func validToken(s string) bool {
	if s == "" || len(s) > maxNodeName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
