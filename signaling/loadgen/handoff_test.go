package loadgen

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/signaling"
)

// startHubs starts n independent hubs (not a cluster) sharing one auth
// secret and returns their WebSocket URLs and a token function.
func startHubs(t *testing.T, n int) ([]string, func(int) string) {
	t.Helper()
	secret := []byte("0123456789abcdef0123456789abcdef")
	var urls []string
	for range n {
		hub, err := signaling.New(signaling.Config{ICE: staticICE{}, AuthSecret: secret, PingInterval: time.Second})
		if err != nil {
			t.Fatalf("signaling.New: %v", err)
		}
		srv := httptest.NewServer(hub)
		t.Cleanup(func() {
			hub.Close()
			srv.Close()
		})
		urls = append(urls, wsURL(srv, "/ws"))
	}
	return urls, func(i int) string {
		tok, err := signaling.MintToken(secret, "bench-"+strconv.Itoa(i), "", time.Minute)
		if err != nil {
			t.Errorf("MintToken: %v", err)
		}
		return tok
	}
}

// TestHandoff: on one hub every cut session resumes with its queued signals
// replayed, and relays again afterwards; on two hubs that are not a cluster
// the resume on the other one is refused with 4002, and the result says so.
func TestHandoff(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name        string
		nodes       int
		wantResumed bool
	}{
		{"one hub: resume on the same one", 1, true},
		{"two hubs, no cluster: resume unknown", 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			urls, token := startHubs(t, tt.nodes)
			r, err := New(Config{Nodes: urls, Sessions: 12, ConnectRate: 2000, Token: token})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(func() { r.Close() })
			if cres, err := r.Connect(t.Context()); err != nil || cres.Connected != 12 {
				t.Fatalf("Connect = %+v, %v; want 12 connected", cres, err)
			}
			res, err := r.Handoff(t.Context(), HandoffConfig{Count: 4, Queued: 3})
			if err != nil {
				t.Fatalf("Handoff: %v", err)
			}
			if res.Attempted != 4 || res.Queued != 12 {
				t.Errorf("Handoff attempted %d queued %d, want 4 and 12", res.Attempted, res.Queued)
			}
			if wantOther := 4 * (tt.nodes - 1); res.OtherNode != wantOther {
				t.Errorf("Handoff OtherNode = %d, want %d", res.OtherNode, wantOther)
			}
			if !tt.wantResumed {
				if res.Resumed != 0 || res.Failures["close 4002 (resume unknown)"] != 4 {
					t.Errorf("Handoff = resumed %d, failures %v; want 0 and 4 × close 4002", res.Resumed, res.Failures)
				}
				return
			}
			if res.Resumed != 4 || res.Replayed != 12 || len(res.Failures) != 0 {
				t.Errorf("Handoff = resumed %d replayed %d failures %v; want 4, 12, none", res.Resumed, res.Replayed, res.Failures)
			}
			if res.Welcome.Count != 4 || res.Replay.Count != 4 {
				t.Errorf("Handoff latencies: welcome %+v replay %+v; want 4 samples each", res.Welcome, res.Replay)
			}
			if n := r.Active(); n != 12 {
				t.Errorf("Active after handoff = %d, want 12 (the resumed links replace the cut ones)", n)
			}
			rel, err := r.Relay(t.Context(), 400, 200*time.Millisecond)
			if err != nil || rel.Sent == 0 || rel.Delivered != rel.Sent || rel.Dropped != 0 || rel.Senders != 12 {
				t.Errorf("Relay after handoff = %+v, %v; want every pair relaying, all delivered", rel, err)
			}
		})
	}
}

// TestNodesPlacement: pair k spans nodes k and k+1 (mod N), and a cut
// session resumes on a third node when there is one.
func TestNodesPlacement(t *testing.T) {
	tests := []struct {
		nodes      int
		wantHome   []int // sessions 0..5
		wantResume []int // resumeNode of nodes 0..N-1
	}{
		{1, []int{0, 0, 0, 0, 0, 0}, []int{0}},
		{2, []int{0, 1, 1, 0, 0, 1}, []int{1, 0}},
		{3, []int{0, 1, 1, 2, 2, 0}, []int{2, 0, 1}},
	}
	for _, tt := range tests {
		var urls []string
		for i := range tt.nodes {
			urls = append(urls, "ws://127.0.0.1:"+strconv.Itoa(9000+i)+"/ws")
		}
		r, err := New(Config{Nodes: urls})
		if err != nil {
			t.Fatalf("New(%d nodes): %v", tt.nodes, err)
		}
		for i, want := range tt.wantHome {
			if got := r.Home(i); got != want {
				t.Errorf("%d nodes: Home(%d) = %d, want %d", tt.nodes, i, got, want)
			}
		}
		for h, want := range tt.wantResume {
			if got := r.resumeNode(h); got != want {
				t.Errorf("%d nodes: resumeNode(%d) = %d, want %d", tt.nodes, h, got, want)
			}
		}
		r.Close()
	}
	if _, err := New(Config{Nodes: []string{"ws://127.0.0.1:1/ws", "ws://192.0.2.1:1/ws"}}); err == nil {
		t.Error("New with a node off loopback = nil error")
	}
	if _, err := New(Config{Nodes: []string{"ws://127.0.0.1:1/peerjs"}, Protocol: PeerJS}); err == nil {
		t.Error("New with PeerJS nodes = nil error")
	}
}
