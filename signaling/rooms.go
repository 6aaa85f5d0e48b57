package signaling

import (
	"encoding/json"
	"errors"

	"github.com/switchboard-rtc/switchboard/signaling/wire"
)

// roomAllowed checks room against a token's room claim ("" = any) and the lobby switch.
func (e *env) roomAllowed(claim, room string) *wireError {
	if claim != "" && room != claim {
		return errf(codeForbiddenRoom, "your token is for another room")
	}
	if room == "" && e.cfg.NoLobby {
		return errf(codeForbiddenRoom, "this server has no lobby; join a named room")
	}
	return nil
}

// handleJoin moves s to another room: the old room hears peer-left (moved), a
// call ends (the partner hears hangup, left), the new room hears peer-joined.
func (s *session) handleJoin(r request) *wireError {
	room := *r.m.Room
	if we := s.e.roomAllowed(s.roomClaim(), room); we != nil {
		return we
	}
	router := s.e.router
	if room == r.room {
		s.pushJoined(room, router.Members(room), r.m.Ref)
		return nil
	}
	others, err := router.Join(room, s.member(), s.e.cfg.MaxRoomSize)
	switch {
	case errors.Is(err, ErrRoomFull):
		return errf(codeRoomFull, "room %q is full", room)
	case err != nil:
		return nil // the session ended meanwhile
	}
	s.leaveCall()
	router.Broadcast(Envelope{Kind: KindClient, Room: r.room, Body: peerLeftBody(s.id, wire.ReasonMoved)})
	s.mu.Lock()
	s.room = room
	s.mu.Unlock()
	s.announce(room, others, peerJoined(s))
	s.pushJoined(room, others, r.m.Ref)
	return nil
}

func (s *session) pushJoined(room string, members []Member, ref json.RawMessage) {
	_ = s.push(wire.Joined{Type: wire.TypeJoined, Room: room, Peers: s.peerList(members), Ref: ref})
}

// joinedBodies is s's peer-joined in both flavours: nearby or not depends on the
// receiver, and encoded bodies are far smaller than values while peers hold them.
type joinedBodies struct{ near, far []byte }

func peerJoined(s *session) joinedBodies {
	enc := func(nearby bool) []byte {
		b, _ := json.Marshal(wire.PeerJoined{Type: wire.TypePeerJoined, Peer: peerInfo{ID: s.id, Name: s.name, Nearby: nearby}})
		return b
	}
	return joinedBodies{near: enc(true), far: enc(false)}
}

func peerLeftBody(id, why string) []byte {
	b, _ := json.Marshal(wire.PeerLeft{Type: wire.TypePeerLeft, ID: id, Reason: why})
	return b
}

// announce tells others, members of room, that s arrived; nearby is relative to
// each receiver. Room-checked: one that left meanwhile does not hear it.
func (s *session) announce(room string, others []Member, jb joinedBodies) {
	for _, o := range others {
		body := jb.far
		if o.Net.IsValid() && o.Net == s.net {
			body = jb.near
		}
		s.e.router.Send(Envelope{Kind: KindClient, To: o.ID, Room: room, InRoom: true, Body: body})
	}
}
