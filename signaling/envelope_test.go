package signaling

import (
	"bytes"
	"reflect"
	"testing"
)

func TestEnvelopeBinary(t *testing.T) {
	tests := []Envelope{
		{Kind: KindClient, From: "a", To: "b", Room: "r", InRoom: true, Ref: []byte(`"x"`), Body: []byte(`{"type":"signal","from":"a","data":1}`)},
		{Kind: KindControl, From: "a", To: "b", Body: []byte(`{"op":"invite","call":"c"}`)},
		{Kind: KindBounce, From: "b", To: "a", Room: "", Reason: BounceLost, Bounced: KindClient, Body: []byte("3")},
		{Kind: KindClient, Room: "lobby-less", Body: bytes.Repeat([]byte("x"), 300)},
	}
	for _, e := range tests {
		b, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Envelope
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary(%x) = %v", b, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip = %+v, want %+v", got, e)
		}
	}
	bad := map[string][]byte{
		"empty":    nil,
		"version":  {2, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		"kind":     {1, 9, 0, 0, 0, 0, 0, 0, 0, 0},
		"flags":    {1, 1, 0, 0, 2, 0, 0, 0, 0, 0},
		"short":    {1, 1, 0, 0, 0, 5, 'a'},
		"trailing": {1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	for name, b := range bad {
		var e Envelope
		if err := e.UnmarshalBinary(b); err == nil {
			t.Errorf("%s: UnmarshalBinary(%x) = %+v, want an error", name, b, e)
		}
	}
}

// FuzzEnvelopeBinary: whatever decodes re-encodes to an envelope that decodes
// the same, and decoding never panics.
func FuzzEnvelopeBinary(f *testing.F) {
	for _, e := range []Envelope{
		{Kind: KindClient, From: "a", To: "b", Room: "r", InRoom: true, Ref: []byte("1"), Body: []byte(`{"type":"signal"}`)},
		{Kind: KindBounce, From: "b", To: "a", Reason: BounceBusy, Bounced: KindControl, Body: []byte(`{"op":"invite"}`)},
	} {
		b, _ := e.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Envelope
		if e.UnmarshalBinary(b) != nil {
			return
		}
		again, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var e2 Envelope
		if err := e2.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(e, e2) {
			t.Fatalf("re-decoded %+v, %v; want %+v", e2, err, e)
		}
	})
}
