package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket/wsjson"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func scrape(tb testing.TB, url string) map[string]*dto.MetricFamily {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		tb.Fatalf("GET %s = %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value sums the samples of a family whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			match := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					match = true
				}
			}
			if !match {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		}
	}
	return sum, found
}

// TestMetrics scrapes /metrics after a session, an allocation and relayed
// packets both ways, then checks the figures, the names and the labels.
func TestMetrics(t *testing.T) {
	for _, separate := range []bool{false, true} {
		name := "on http listener"
		env := map[string]string{}
		if separate {
			name = "on METRICS_ADDR"
			env["METRICS_ADDR"] = "127.0.0.1:0"
		}
		t.Run(name, func(t *testing.T) {
			a := startStack(t, env)
			url := a.httpURL() + "/metrics"
			if separate {
				url = "http://" + a.metricLn.Addr().String() + "/metrics"
				resp, err := http.Get(a.httpURL() + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode == 200 && !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
					t.Errorf("/metrics still served on the main listener with METRICS_ADDR set")
				}
			}

			ws, servers := hello(t, t.Context(), a.httpURL())
			// join gets a sequenced answer (welcome and pong are not counted
			// as sent messages).
			if err := wsjson.Write(t.Context(), ws, map[string]any{"type": "join", "room": "metrics"}); err != nil {
				t.Fatal(err)
			}
			var joined struct{ Type string }
			if err := wsjson.Read(t.Context(), ws, &joined); err != nil || joined.Type != "joined" {
				t.Fatalf("join: %+v, %v", joined, err)
			}
			user, pass := turnCreds(t, servers)
			_, relayConn, err := turnClient(t, a, user, pass)
			if err != nil {
				t.Fatal(err)
			}
			// A UDP echo peer on loopback (allowed by the stack's PEER_ALLOW).
			// Not 127.0.0.1: that is the stack's public IP, where the relay
			// reaches only its own relay ports.
			peer, err := net.ListenPacket("udp4", "127.0.0.2:0")
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			go func() {
				buf := make([]byte, 1500)
				for {
					n, from, err := peer.ReadFrom(buf)
					if err != nil {
						return
					}
					peer.WriteTo(buf[:n], from)
				}
			}()
			const packets = 5
			buf := make([]byte, 1500)
			for i := range packets {
				if _, err := relayConn.WriteTo([]byte("ping"), peer.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				relayConn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, _, err := relayConn.ReadFrom(buf); err != nil {
					t.Fatalf("echo %d through the relay: %v", i, err)
				}
			}

			// The relay counts a datagram after its write returns, which may
			// be after the echo came back: let the counters settle.
			waitFor(t, 5*time.Second, "relay counters", func() bool {
				st := a.relay.Stats()
				return st.PacketsToPeer >= packets && st.PacketsFromPeer >= packets
			})
			fams := scrape(t, url)
			checks := []struct {
				name   string
				labels map[string]string
				min    float64
			}{
				{"switchboard_ready", nil, 1},
				{"switchboard_signaling_sessions", nil, 1},
				{"switchboard_signaling_messages_received_total", nil, 1},
				{"switchboard_signaling_messages_sent_total", nil, 1},
				{"switchboard_credentials_issued_total", nil, 1},
				{"switchboard_turn_allocations", nil, 1},
				{"switchboard_turn_allocations_created_total", nil, 1},
				{"switchboard_turn_relayed_packets_total", map[string]string{"direction": "to_peer"}, packets},
				{"switchboard_turn_relayed_packets_total", map[string]string{"direction": "from_peer"}, packets},
				{"switchboard_turn_relayed_bytes_total", map[string]string{"direction": "to_peer"}, 4 * packets},
				{"switchboard_turn_relayed_bytes_total", map[string]string{"direction": "from_peer"}, 4 * packets},
				{"switchboard_signaling_rooms", nil, 1},
				{"switchboard_signaling_calls", nil, 0},
				{"switchboard_signaling_rate_limited_total", nil, 0},
				{"switchboard_signaling_auth_refused_total", nil, 0},
				{"switchboard_turn_permissions_refused_total", nil, 0},
			}
			for _, c := range checks {
				v, ok := value(fams, c.name, c.labels)
				if !ok || v < c.min {
					t.Errorf("%s%v = %v (present %v), want >= %v", c.name, c.labels, v, ok, c.min)
				}
			}
			// The exposed figures are the relay's own counters (nothing moves
			// between the scrape and this snapshot: the traffic is over).
			rs := a.relay.Stats()
			for _, c := range []struct {
				dir        string
				pkts, byts uint64
			}{{"to_peer", rs.PacketsToPeer, rs.BytesToPeer}, {"from_peer", rs.PacketsFromPeer, rs.BytesFromPeer}} {
				p, _ := value(fams, "switchboard_turn_relayed_packets_total", map[string]string{"direction": c.dir})
				b, _ := value(fams, "switchboard_turn_relayed_bytes_total", map[string]string{"direction": c.dir})
				if p != float64(c.pkts) || b != float64(c.byts) {
					t.Errorf("%s: scraped %v packets / %v bytes, relay.Stats says %d / %d", c.dir, p, b, c.pkts, c.byts)
				}
			}
			for name, f := range fams {
				if !strings.HasPrefix(name, "switchboard_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
					t.Errorf("metric %s lacks the switchboard_ prefix", name)
				}
				for _, m := range f.GetMetric() {
					for _, l := range m.GetLabel() {
						if strings.Contains(l.GetValue(), user) || strings.Contains(l.GetValue(), ":") && l.GetName() != "version" {
							t.Errorf("metric %s has a per-user label %s=%q", name, l.GetName(), l.GetValue())
						}
					}
				}
			}
		})
	}
}
