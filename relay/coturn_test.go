package relay

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// coturnTool finds one of coturn's client tools; absent, the test is skipped, unless
// SWITCHBOARD_E2E=1 makes absence a failure.
func coturnTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("SWITCHBOARD_E2E") == "1" {
			t.Fatalf("%s not on PATH (install coturn's package): %v", name, err)
		}
		t.Skipf("%s not on PATH (install coturn's package; SWITCHBOARD_E2E=1 makes this fail)", name)
	}
	return p
}

// toolTimeout bounds one run of a coturn tool. It only ends a hung tool: stunclient answers
// in milliseconds and uclient spends its ~6 s mostly asleep (start jitter up to 5 s, then
// its messages), so a busy machine stretches neither near it.
const toolTimeout = 2 * time.Minute

func runTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// TestCoturnUclient: coturn's own client, authenticating with the shared secret (TURN REST
// API), relays to an echo peer through us with no loss, over UDP and TCP.
func TestCoturnUclient(t *testing.T) {
	uclient := coturnTool(t, "turnutils_uclient")
	tests := []struct {
		name  string
		flags []string
		// hairpin: the clients talk to each other's relayed addresses (-y), on the
		// public address 127.0.0.2 where nothing listens, under the default peer policy.
		hairpin bool
	}{
		{"udp channels", nil, false},
		{"udp send indications", []string{"-s"}, false},
		{"tcp", []string{"-t"}, false},
		{"dont fragment", []string{"-g"}, false},
		{"client to client through hairpin", []string{"-y"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // uclient spends most of its ~5 s waiting
			cfg := baseConfig(t)
			if tt.hairpin {
				cfg.PeerAllow = nil
			}
			s := startServer(t, cfg)
			peer := echoPeer(t, "udp4", "127.0.0.1:0")
			const clients, messages = 4, 50
			args := append([]string{
				"-W", testSecret, "-u", "coturn",
				"-e", "127.0.0.1", "-r", strconv.Itoa(peer.Port),
				"-p", strconv.Itoa(int(addrPortOf(s.UDPAddr()).Port())),
				"-m", strconv.Itoa(clients), "-n", strconv.Itoa(messages),
				"-c", // no RTCP allocations
				"-z", "5",
			}, tt.flags...)
			args = append(args, "127.0.0.1")
			out := runTool(t, uclient, args...)
			checkUclientLoss(t, out)
			if tt.hairpin && s.Stats().PermissionsRefused != 0 {
				t.Errorf("PermissionsRefused = %d, want 0", s.Stats().PermissionsRefused)
			}
			waitFor(t, "relay counters", func() bool {
				st := s.Stats()
				return st.AllocationsCreated >= clients && st.PacketsToPeer >= clients*messages && st.PacketsFromPeer >= clients*messages
			})
		})
	}
}

// TestCoturnStunclient: coturn's STUN client gets its mapped address from us.
func TestCoturnStunclient(t *testing.T) {
	stunclient := coturnTool(t, "turnutils_stunclient")
	s := startServer(t, baseConfig(t))
	out := runTool(t, stunclient, "-p", strconv.Itoa(int(addrPortOf(s.UDPAddr()).Port())), "127.0.0.1")
	if !regexp.MustCompile(`(?i)UDP reflexive addr: 127\.0\.0\.1:\d+`).MatchString(out) {
		t.Fatalf("no reflexive address in turnutils_stunclient output:\n%s", out)
	}
}

// checkUclientLoss fails unless uclient's report says nothing was lost or dropped.
func checkUclientLoss(t testing.TB, out string) {
	t.Helper()
	m := regexp.MustCompile(`Total lost packets (\d+) \(([\d.]+)%\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no loss report in uclient output:\n%s", out)
	}
	if m[1] != "0" {
		t.Fatalf("uclient lost %s packets (%s%%):\n%s", m[1], m[2], out)
	}
	sent := regexp.MustCompile(`Total send dropped (\d+)`).FindStringSubmatch(out)
	if sent != nil && sent[1] != "0" {
		t.Fatalf("uclient send dropped %s:\n%s", sent[1], out)
	}
}

// TestCoturnStunclientRFC5780: turnutils_stunclient -f (RFC 5780 NAT behaviour discovery)
// gets its answers, with and without a second address; it waits for ever for an answer
// that does not come.
func TestCoturnStunclientRFC5780(t *testing.T) {
	stunclient := coturnTool(t, "turnutils_stunclient")
	for _, other := range []bool{false, true} {
		t.Run(fmt.Sprintf("OtherAddr %v", other), func(t *testing.T) {
			cfg := baseConfig(t)
			if other {
				cfg.OtherAddr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), freeUDPPort(t, "127.0.0.3"))
			}
			s := startServer(t, cfg)
			out := runTool(t, stunclient, "-f", "-p", strconv.Itoa(int(addrPortOf(s.UDPAddr()).Port())), "127.0.0.1")
			want := `error 420`
			if other {
				want = `Response origin: : ` + regexp.QuoteMeta(cfg.OtherAddr.String()) + `(?s:.*)Other addr: : ` + regexp.QuoteMeta(cfg.OtherAddr.String())
			}
			if !regexp.MustCompile(want).MatchString(out) {
				t.Fatalf("turnutils_stunclient -f output does not match %q:\n%s", want, out)
			}
		})
	}
}

// freeUDPPort returns a UDP port free on ip a moment ago.
func freeUDPPort(t testing.TB, ip string) uint16 {
	t.Helper()
	c, err := net.ListenPacket("udp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return addrPortOf(c.LocalAddr()).Port()
}
