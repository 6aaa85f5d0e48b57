package natsrouter

import (
	"bytes"
	"testing"

	"github.com/switchboard-rtc/switchboard/signaling"
)

// FuzzFrames: whatever arrives on a node subject or the heartbeat subject,
// decoding never panics, and an envelope frame that decodes re-encodes to the
// same bytes.
func FuzzFrames(f *testing.F) {
	e := signaling.Envelope{Kind: signaling.KindClient, From: "a", To: "b", Room: "r", InRoom: true, Body: []byte(`{"type":"signal"}`)}
	b, _ := appendEnvelopeFrame(nil, opSend, "n1", e)
	f.Add(b)
	r := bareRouter()
	f.Add(r.stateFrame(true, []memberOp{{Op: opJoin, ID: "x", Name: "x", Room: "r", Saw: []string{"y"}}}))
	f.Add([]byte("a" + `{"room":"r","id":"x","max":8}`))
	f.Add([]byte(`{"node":"n1","inc":"1","heard":["n2"],"marks":{"SWITCHBOARD_CLUSTER_SECRET":"00"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseHeartbeat(data)
		if len(data) == 0 {
			return
		}
		switch data[0] {
		case opSend, opBroadcast:
			node, e, err := parseEnvelopeFrame(data[1:])
			if err != nil {
				return
			}
			again, err := appendEnvelopeFrame(nil, data[0], node, e)
			if err != nil || !bytes.Equal(again, data) {
				t.Fatalf("re-encoded %q as %q (%v)", data, again, err)
			}
		case opAdmit:
			if a, err := parseAdmit(data[1:]); err == nil && (a.ID == "" || a.Max < 0) {
				t.Fatalf("admission %+v accepted", a)
			}
		case opState:
			s, err := parseState(data[1:])
			if err == nil && !validToken(s.Node) {
				t.Fatalf("state from node %q accepted", s.Node)
			}
		}
	})
}
