package signaling

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeMessage(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
		code    string // validate() code, "" if valid
	}{
		{in: `{"type":"hello","name":"Patrick"}`},
		{in: `{"type":"hello","name":"Patrick","room":"demo","token":"t","resume":"r","ack":3}`},
		{in: ` {"type":"ping","ack":1,"seq":2,"ref":"abc"} `},
		{in: `{"type":"signal","to":"*","data":{"a": [1, 2 ,3]}}`},
		{in: `{"type":"signal","to":"x"}`, code: codeBadMessage},
		{in: `{"type":"hello","name":""}`, code: codeBadMessage},
		{in: `{"type":"hello","name":"a\u0000b"}`, code: codeBadMessage},
		{in: `{"type":"join","room":"a b"}`, code: codeBadMessage},
		{in: `{"type":"join"}`, code: codeBadMessage},
		{in: `{"type":"join","room":""}`},
		{in: `{"type":"call","to":"x"}`, code: codeBadMessage},
		{in: `{"type":"hangup","call":"c"}`},
		{in: `{"type":"nope"}`, code: codeUnknownType},
		{in: `{"type":"ping","ref":{"a":1}}`, wantErr: true},
		{in: `{"type":"ping","ref":"` + string(bytes.Repeat([]byte("x"), 70)) + `"}`, wantErr: true},
		{in: `{"type":1}`, wantErr: true},
		{in: `{}`, wantErr: true},
		{in: `[]`, wantErr: true},
		{in: `null`, wantErr: true},
		{in: ``, wantErr: true},
		{in: `{"type":"ping","seq":-1}`, wantErr: true},
		{in: `{"type":"ping"} trailing`, wantErr: true},
		{in: `{"type":"ping"}{"type":"ping"}`, wantErr: true},
		{in: `{"type":"signal","to":"x","data":{"a":1}`, wantErr: true},
		{in: `{"type":"signal","to":"x","data":{"b" :  2}}`},
	}
	var rd reusedDecoder // shared: each case is decoded after the ones before it
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := decodeMessage([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("decodeMessage(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			rd.check(t, []byte(tt.in), m, err)
			if err != nil {
				return
			}
			code := ""
			if we := m.validate(); we != nil {
				code = we.code
			}
			if code != tt.code {
				t.Fatalf("decodeMessage(%q).validate() = %q, want %q", tt.in, code, tt.code)
			}
		})
	}
}

func TestSignalBodyAndSeq(t *testing.T) {
	body := appendSignalBody([]byte("stale")[:0], "id-1", json.RawMessage(`{"sdp":"v=0\r\n<x>"}`))
	framed := withSeq(nil, 42, body)
	var got struct {
		Seq  uint64          `json:"seq"`
		Type string          `json:"type"`
		From string          `json:"from"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(framed, &got); err != nil {
		t.Fatalf("withSeq(appendSignalBody) = %s: %v", framed, err)
	}
	if got.Seq != 42 || got.Type != "signal" || got.From != "id-1" || string(got.Data) != `{"sdp":"v=0\r\n<x>"}` {
		t.Fatalf("decoded %+v from %s", got, framed)
	}
}

// FuzzDecodeMessage: decoding never panics; whatever decodes re-encodes to a message
// that decodes to the same value and the same bytes; a relayed signal is valid JSON
// carrying the same data.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","name":"Patrick","room":"demo","token":"x.y.z","resume":"r","ack":7}`,
		`{"type":"signal","to":"*","data":{"candidate":"candidate:1 1 udp 1 10.0.0.1 9 typ host","sdpMid":"0"},"seq":3,"ref":"a"}`,
		`{"type":"call","to":"abc","call":"c1","ref":12}`,
		`{"type":"ping","ack":18446744073709551615}`,
		`{"type":"join","room":""}`,
		`{"type":"signal","to":"x","data":"<\u2028>\ud800"}`,
		`{"TYPE":"ping","Ack":1}`,
		`{"type":"signal","to":"x","data":[1e400]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		var rd reusedDecoder
		_ = decodeInto(&rd.m, []byte(`{"type":"signal","to":"x","data":{"earlier": "frame", "n": [1, 2]}}`), &rd.scratch, &rd.dec)
		rd.check(t, b, m, err)
		if err != nil {
			return
		}
		_ = m.validate()
		enc, err := m.encode()
		if err != nil {
			t.Fatalf("encode(%+v): %v", m, err)
		}
		m2, err := decodeMessage(enc)
		if err != nil {
			t.Fatalf("decode(encode(decode(%q))) = %v (encoded %q)", b, err, enc)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip of %q: %+v != %+v", b, m, m2)
		}
		enc2, _ := m2.encode()
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %q then %q", enc, enc2)
		}
		if len(m.Data) > 0 {
			framed := withSeq(nil, 1, appendSignalBody(nil, "from", m.Data))
			var got struct {
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(framed, &got); err != nil {
				t.Fatalf("relayed %q is not JSON: %v", framed, err)
			}
			if !bytes.Equal(compactJSON(got.Data), m.Data) {
				t.Fatalf("relayed data %q != %q", got.Data, m.Data)
			}
		}
	})
}

// TestSmallReaderKeepsReadAhead: bytes net/http read ahead before the hijack must
// survive coder/websocket's reset of the reader's source.
func TestSmallReaderKeepsReadAhead(t *testing.T) {
	tests := []struct {
		name  string
		ahead int
	}{
		{name: "nothing ahead", ahead: 0},
		{name: "first byte ahead", ahead: 1},
		{name: "a frame ahead", ahead: 200},
		{name: "more than fits", ahead: 3000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := make([]byte, 5000)
			for i := range stream {
				stream[i] = byte(i * 7)
			}
			conn := bytes.NewReader(stream)
			br := bufio.NewReaderSize(conn, 4096)
			if tt.ahead > 0 {
				if _, err := br.Peek(tt.ahead); err != nil {
					t.Fatal(err)
				}
			}
			rd := smallReader(br, conn)
			// What coder/websocket's accept does with the hijacked reader.
			b, _ := rd.Peek(rd.Buffered())
			rd.Reset(io.MultiReader(bytes.NewReader(b), conn))
			got, err := io.ReadAll(rd)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, stream) {
				t.Fatalf("smallReader with %d bytes ahead: got %d bytes, want the %d-byte stream intact", tt.ahead, len(got), len(stream))
			}
		})
	}
}

// TestValidName: names are shown to other people, so characters that change how
// the text around them is displayed (bidi overrides and isolates, line and
// paragraph separators) and names with nothing visible are refused. Joiners stay:
// emoji sequences need them.
func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "ascii", in: "Patrick", want: true},
		{name: "accents and CJK", in: "Zoë 李", want: true},
		{name: "emoji ZWJ sequence", in: "👩\u200d👩\u200d👧", want: true},
		{name: "64 runes", in: strings.Repeat("é", 64), want: true},
		{name: "65 runes", in: strings.Repeat("é", 65), want: false},
		{name: "empty", in: "", want: false},
		{name: "spaces only", in: "   ", want: false},
		{name: "ideographic space only", in: "\u3000", want: false},
		{name: "control", in: "a\tb", want: false},
		{name: "right-to-left override", in: "Alice\u202etxt.exe", want: false},
		{name: "left-to-right embedding", in: "a\u202ab", want: false},
		{name: "first strong isolate", in: "a\u2068b", want: false},
		{name: "right-to-left mark", in: "a\u200fb", want: false},
		{name: "line separator", in: "a\u2028b", want: false},
		{name: "paragraph separator", in: "a\u2029b", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validName(tt.in); got != tt.want {
				t.Fatalf("validName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// reusedDecoder decodes frames the way the hub does (decodeInto with state kept
// from earlier frames); check asserts it agrees with decodeMessage exactly.
type reusedDecoder struct {
	m       inMsg
	scratch []byte
	dec     frameDecoder
}

func (r *reusedDecoder) check(t testing.TB, b []byte, want inMsg, wantErr error) {
	t.Helper()
	err := decodeInto(&r.m, b, &r.scratch, &r.dec)
	if fmt.Sprint(err) != fmt.Sprint(wantErr) {
		t.Fatalf("decodeInto(%q) error = %v, want %v (decodeMessage)", b, err, wantErr)
	}
	if err != nil {
		return
	}
	got := r.m
	if len(got.Data) == 0 {
		got.Data = nil // decodeMessage leaves an absent data nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeInto(%q) = %+v, want %+v (decodeMessage)", b, got, want)
	}
}
