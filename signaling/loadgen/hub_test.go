package loadgen

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rtc/switchboard/signaling"
)

type staticICE struct{}

func (staticICE) ICEServers(context.Context, string) ([]signaling.ICEServer, time.Time, error) {
	return []signaling.ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}}, time.Now().Add(time.Hour), nil
}

// TestRelayThroughHub drives the real hub, in process, the way
// `switchboard bench signaling` drives `switchboard serve`: JWT hellos,
// pairs in their own rooms, signals relayed and acked.
func TestRelayThroughHub(t *testing.T) {
	checkLeaks(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name      string
		heartbeat time.Duration
		ackEvery  int
	}{
		{"welcome heartbeat, ack every 32", 0, 0},
		{"fast heartbeat, acks only in heartbeats", 50 * time.Millisecond, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub, err := signaling.New(signaling.Config{ICE: staticICE{}, AuthSecret: secret, PingInterval: time.Second})
			if err != nil {
				t.Fatalf("signaling.New: %v", err)
			}
			srv := httptest.NewServer(hub)
			t.Cleanup(func() {
				hub.Close()
				srv.Close()
			})
			r, err := New(Config{
				URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", Sessions: 16, ConnectRate: 2000,
				Heartbeat: tt.heartbeat, AckEvery: tt.ackEvery,
				Token: func(i int) string {
					tok, err := signaling.MintToken(secret, "bench-"+strconv.Itoa(i), "", time.Minute)
					if err != nil {
						t.Errorf("MintToken: %v", err)
					}
					return tok
				},
			})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(func() { r.Close() })
			cres, err := r.Connect(t.Context())
			if err != nil || cres.Connected != 16 {
				t.Fatalf("Connect = %+v, %v; want 16 connected", cres, err)
			}
			if cres.Heartbeat <= 0 {
				t.Errorf("Connect heartbeat = %v, want the welcome's or the configured one", cres.Heartbeat)
			}
			if st := hub.Stats(); st.Sessions != 16 || st.Rooms != 8 {
				t.Errorf("hub has %d sessions in %d rooms, want 16 in 8", st.Sessions, st.Rooms)
			}
			res, err := r.Relay(t.Context(), 400, 500*time.Millisecond)
			if err != nil {
				t.Fatalf("Relay: %v", err)
			}
			// How many are sent depends on how much CPU the senders get; that
			// all of them arrive does not.
			if res.Sent == 0 || res.Delivered != res.Sent || len(res.ServerErrors) != 0 || res.Dropped != 0 {
				t.Errorf("Relay = sent %d delivered %d errors %v dropped %d; want some sent, all delivered, no errors",
					res.Sent, res.Delivered, res.ServerErrors, res.Dropped)
			}
			if res.Latency.Count != res.Delivered || res.Latency.P50 <= 0 {
				t.Errorf("Latency = %+v; want one sample per delivery", res.Latency)
			}
			if st := hub.Stats(); st.MessagesIn < res.Sent || st.MessagesOut < res.Delivered {
				t.Errorf("hub counted %d in / %d out, client sent %d / got %d", st.MessagesIn, st.MessagesOut, res.Sent, res.Delivered)
			}
		})
	}
}
