package natsrouter

import (
	"encoding/json"
	"hash/fnv"
	"sort"
	"time"

	"github.com/switchboard-rtc/switchboard/signaling"
)

// Join moves local session m.ID into room.
//
// The cap is the cluster's: every room has an owner, the node ranked first
// for the room's name among the linked nodes (rendezvous hashing), which
// admits entries one at a time: it counts the members its replica knows plus
// the admissions it granted whose joins have not reached it yet. Nodes agree
// on the owner while the set of linked nodes is stable; while it changes (a
// node joining or gone) two owners may each admit one, and when the owner
// does not answer within admitTimeout this node decides on its own replica.
func (r *Router) Join(room string, m signaling.Member, max int) ([]signaling.Member, error) {
	r.mu.Lock()
	e, ok := r.entries[m.ID]
	if !ok || e.ep == nil {
		r.mu.Unlock()
		return nil, signaling.ErrNoSession
	}
	if e.in && e.room == room {
		defer r.mu.Unlock()
		return membersExcept(r.rooms[room], m.ID), nil
	}
	owner := r.ownerLocked(room)
	if owner == r.self {
		defer r.mu.Unlock()
		if !r.admitLocked(room, m.ID, max, false) {
			return nil, signaling.ErrRoomFull
		}
		return r.joinLocked(e, room, m), nil
	}
	r.mu.Unlock()
	admitted, answered := r.askAdmit(owner, room, m.ID, max)
	if answered && !admitted {
		return nil, signaling.ErrRoomFull
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok = r.entries[m.ID]
	if !ok || e.ep == nil {
		return nil, signaling.ErrNoSession // the owner's admission expires
	}
	if e.in && e.room == room {
		return membersExcept(r.rooms[room], m.ID), nil
	}
	if !answered && !r.admitLocked(room, m.ID, max, false) {
		return nil, signaling.ErrRoomFull
	}
	return r.joinLocked(e, room, m), nil
}

// admitTimeout bounds the wait for a room owner's admission.
const admitTimeout = 2 * time.Second

// admissionTTL is how long an admission counts on the owner before the
// join it admitted arrives.
const admissionTTL = 10 * time.Second

// ownerLocked is the node that admits entries to room.
func (r *Router) ownerLocked(room string) string {
	best, bh := r.self, rank(room, r.self)
	for name, p := range r.peers {
		if !p.linked || p.refused {
			continue
		}
		if h := rank(room, name); h > bh || h == bh && name < best {
			best, bh = name, h
		}
	}
	return best
}

func rank(room, node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(room))
	h.Write([]byte{0})
	h.Write([]byte(node))
	return h.Sum64()
}

// admitLocked counts room's members and pending admissions but id against
// max; reserve records an admission for a session of another node.
func (r *Router) admitLocked(room, id string, max int, reserve bool) bool {
	members := r.rooms[room]
	n := len(members)
	if members[id] != nil {
		n--
	}
	for rid := range r.admitted[room] {
		if rid != id && members[rid] == nil {
			n++
		}
	}
	if n >= max {
		return false
	}
	if reserve {
		if r.admitted[room] == nil {
			r.admitted[room] = make(map[string]time.Time)
		}
		r.admitted[room][id] = time.Now()
	}
	return true
}

// askAdmit asks owner whether id may enter room; answered is false when it
// did not answer in time.
func (r *Router) askAdmit(owner, room, id string, max int) (admitted, answered bool) {
	b, _ := json.Marshal(admitReq{Room: room, ID: id, Max: max})
	msg, err := r.nc.Request(r.nodeSubject(owner), append([]byte{opAdmit}, b...), admitTimeout)
	if err != nil || len(msg.Data) != 1 {
		r.log.Warn("cluster: room owner did not answer; deciding here", "room", room, "owner", owner, "err", err)
		return false, false
	}
	return msg.Data[0] == 1, true
}

// joinLocked puts local entry e into room (the cap was checked).
func (r *Router) joinLocked(e *entry, room string, m signaling.Member) []signaling.Member {
	members := r.rooms[room]
	r.leaveLocked(e)
	others := membersExcept(members, m.ID)
	e.m, e.room = m, room
	e.knows = make(map[string]bool, len(others))
	for _, o := range others {
		e.knows[o.ID] = true
	}
	r.enterLocked(e)
	r.tellLocked(memberOp{Op: opJoin, ID: m.ID, Name: m.Name, Net: m.Net, Room: room, Saw: knownIDs(e)})
	return others
}

// Members lists room on every node.
func (r *Router) Members(room string) []signaling.Member {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return membersExcept(r.rooms[room], "")
}

// Rooms counts the rooms with a member on this node.
func (r *Router) Rooms() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, ms := range r.rooms {
		for _, e := range ms {
			if e.ep != nil {
				n++
				break
			}
		}
	}
	return n
}

func membersExcept(ms map[string]*entry, id string) []signaling.Member {
	out := make([]signaling.Member, 0, len(ms))
	for _, e := range ms {
		if e.m.ID != id {
			out = append(out, e.m)
		}
	}
	return out
}

func (r *Router) enterLocked(e *entry) {
	ms := r.rooms[e.room]
	if ms == nil {
		ms = make(map[string]*entry)
		r.rooms[e.room] = ms
	}
	ms[e.m.ID] = e
	e.in = true
	if a := r.admitted[e.room]; a != nil {
		delete(a, e.m.ID) // a member now, counted as such
		if len(a) == 0 {
			delete(r.admitted, e.room)
		}
	}
}

func (r *Router) leaveLocked(e *entry) {
	if !e.in {
		return
	}
	if ms := r.rooms[e.room]; ms != nil {
		delete(ms, e.m.ID)
		for _, o := range ms {
			delete(o.knows, e.m.ID) // if it comes back, it is news again
		}
		if len(ms) == 0 {
			delete(r.rooms, e.room)
		}
	}
	e.in = false
	e.knows = nil
}

func knownIDs(e *entry) []string {
	ids := make([]string, 0, len(e.knows))
	for id := range e.knows {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
