package loadgen

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
)

func TestFastSignal(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		seq  uint64
		mk   mark
		ok   bool
	}{
		{"switchboard", `{"seq":7,"type":"signal","from":"aB-_9","data":{"r":2,"n":41,"t":123456789,"p":"xx"}}`, 7, mark{2, 41, 123456789}, true},
		{"peerjs", `{"type":"CANDIDATE","src":"bench-1","dst":"bench-0","payload":{"r":1,"n":0,"t":5,"p":""}}`, 0, mark{1, 0, 5}, true},
		{"pong", `{"type":"pong","ack":3}`, 0, mark{}, false},
		{"other signal data", `{"seq":1,"type":"signal","from":"x","data":{"sdp":"v=0"}}`, 0, mark{}, false},
		{"whitespace", `{"type": "signal", "data": {"r": 1, "n": 2, "t": 3}}`, 0, mark{}, false},
		{"zero time", `{"type":"signal","data":{"r":1,"n":2,"t":0}}`, 0, mark{}, false},
		{"run overflow", `{"type":"signal","data":{"r":4294967296,"n":2,"t":3}}`, 0, mark{}, false},
		{"time overflow", `{"type":"signal","data":{"r":1,"n":2,"t":9223372036854775808}}`, 0, mark{}, false},
		{"negative", `{"type":"signal","data":{"r":1,"n":-2,"t":3}}`, 0, mark{}, false},
		{"empty", ``, 0, mark{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq, mk, ok := fastSignal([]byte(tt.msg))
			if ok != tt.ok || (ok && (seq != tt.seq || mk != tt.mk)) {
				t.Errorf("fastSignal(%s) = %d, %+v, %v; want %d, %+v, %v", tt.msg, seq, mk, ok, tt.seq, tt.mk, tt.ok)
			}
		})
	}
}

// FuzzFastSignal checks that the fast path never panics and, whenever it
// accepts a message that is valid JSON, agrees with the full decoder; and
// that every message the hub or PeerJS would relay round-trips.
func FuzzFastSignal(f *testing.F) {
	f.Add([]byte(`{"seq":7,"type":"signal","from":"aB-_9","data":{"r":2,"n":41,"t":123456789,"p":"xx"}}`), uint32(2), uint64(41), int64(123456789), uint64(7))
	f.Add([]byte(`{"type":"CANDIDATE","src":"a","dst":"b","payload":{"r":1,"n":0,"t":5,"p":""}}`), uint32(1), uint64(0), int64(5), uint64(0))
	f.Add([]byte(`{"type":"signal","data":{"r":"1"}}`), uint32(0), uint64(0), int64(1), uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, run uint32, n uint64, ts int64, seq uint64) {
		// Duplicate keys decode differently (first vs last wins): the
		// agreement only holds for messages with one of each.
		unique := true
		for _, k := range []string{`"r":`, `"n":`, `"t":`, `"seq":`} {
			unique = unique && bytes.Count(b, []byte(k)) <= 1
		}
		if gotSeq, mk, ok := fastSignal(b); ok && unique && json.Valid(b) {
			var m inbound
			if err := json.Unmarshal(b, &m); err == nil {
				data := m.Data
				if m.Type == "CANDIDATE" {
					data = m.Payload
				}
				var want mark
				if json.Unmarshal(data, &want) == nil && (want != mk || (m.Seq != 0 && m.Seq != gotSeq)) {
					t.Errorf("fastSignal(%s) = %d %+v, full decoder %d %+v", b, gotSeq, mk, m.Seq, want)
				}
			}
		}
		if ts <= 0 {
			return
		}
		msg := `{"seq":` + strconv.FormatUint(seq, 10) + `,"type":"signal","from":"id","data":{"r":` +
			strconv.FormatUint(uint64(run), 10) + `,"n":` + strconv.FormatUint(n, 10) + `,"t":` +
			strconv.FormatInt(ts, 10) + `,"p":"xxxx"}}`
		gotSeq, mk, ok := fastSignal([]byte(msg))
		if !ok || gotSeq != seq || mk != (mark{run, n, ts}) {
			t.Errorf("fastSignal(%s) = %d %+v %v; want %d {%d %d %d} true", msg, gotSeq, mk, ok, seq, run, n, ts)
		}
	})
}
