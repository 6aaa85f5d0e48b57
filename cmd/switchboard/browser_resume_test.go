package main

// A WebSocket cut mid-call in the browser: the proxy that cuts it and the test.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// wsProxy sits between a page and the server so a test can cut the page's
// WebSocket (both TCP connections) and refuse reconnects for a while, as a
// network outage would.
type wsProxy struct {
	ln     net.Listener
	target string

	mu          sync.Mutex
	conns       map[net.Conn]bool // every open conn, both sides; true: carries /ws
	refuseUntil time.Time
	cuts        int

	wg sync.WaitGroup
}

func newWSProxy(tb testing.TB, target string) *wsProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &wsProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.accept)
	tb.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *wsProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *wsProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *wsProxy) track(c net.Conn, ws bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ws && time.Now().Before(p.refuseUntil) {
		return false
	}
	p.conns[c] = ws
	return true
}

func (p *wsProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *wsProxy) serve(c net.Conn) {
	defer c.Close()
	if !p.track(c, false) {
		return
	}
	defer p.untrack(c)
	br := bufio.NewReader(c)
	// The request line tells a WebSocket upgrade from page loads; browsers
	// open a dedicated connection for each WebSocket.
	head, err := br.Peek(8)
	if err != nil {
		return
	}
	ws := bytes.HasPrefix(head, []byte("GET /ws "))
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.track(c, ws) || !p.track(up, ws) {
		return // refused: the "network" is down for WebSockets
	}
	defer p.untrack(up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, br)
		up.Close()
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}

// cut closes every WebSocket connection through the proxy at once, without
// a close frame, and refuses new ones for d.
func (p *wsProxy) cut(d time.Duration) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuseUntil = time.Now().Add(d)
	n := 0
	for c, ws := range p.conns {
		if ws {
			c.Close()
			n++
		}
	}
	p.cuts++
	return n
}

// TestBrowserResume: the server side loses one page's WebSocket mid-call. The
// call keeps playing, the session resumes (same id, nothing lost, nothing
// twice), and messages sent during the cut arrive.
func TestBrowserResume(t *testing.T) {
	chromiumPath(t)
	a := startStack(t, nil)
	proxy := newWSProxy(t, strings.TrimPrefix(a.httpURL(), "http://"))
	ada := newPage(t, "ada")
	bob := newPage(t, "bob")
	adaID := ada.join(proxy.url()+"/", "Ada") // Ada's traffic goes through the proxy
	bobID := bob.join(a.httpURL()+"/", "Bob")
	ada.wait("Bob in the presence list", fmt.Sprintf(`document.querySelector('#peers li[data-peer=%q]')`, bobID), 10*time.Second)
	connectCall(t, ada, bob, "Ada", bobID)

	const record = `(() => {
		window.gotSignals = [];
		window.welcomes = [];
		switchboardApp.session.addEventListener("signal", (e) => gotSignals.push(e.detail.data));
		switchboardApp.session.addEventListener("welcome", (e) => welcomes.push(e.detail.resumed));
		return true })()`
	ada.eval(record, nil)
	bob.eval(record, nil)

	if n := proxy.cut(3 * time.Second); n != 2 {
		t.Fatalf("cut %d connections, want Ada's WebSocket (2 conns)", n)
	}
	ada.wait("Ada to notice the cut", `switchboardApp.session.state === "reconnecting" || switchboardApp.session.state === "offline"`, 10*time.Second)
	// During the cut: chat over the data channel, and signaling messages both
	// ways (Ada's wait in her outbox, Bob's in the server's queue for Ada).
	ada.sendChat("sent during the cut")
	ada.eval(fmt.Sprintf(`(switchboardApp.session.signal(%q, {note: "from Ada during the cut"}), true)`, bobID), nil)
	bob.eval(fmt.Sprintf(`(switchboardApp.session.signal(%q, {note: "from Bob during the cut"}), true)`, adaID), nil)
	bob.waitChat("sent during the cut")

	ada.wait("the session to resume", `switchboardApp.session.state === "open" && welcomes.length > 0`, 30*time.Second)
	var resumed []bool
	ada.eval(`welcomes`, &resumed)
	if len(resumed) != 1 || !resumed[0] {
		t.Errorf("welcomes after the cut: resumed = %v, want [true]", resumed)
	}
	if id := ada.str(`switchboardApp.session.id`); id != adaID {
		t.Errorf("peer id after resume %q, want %q", id, adaID)
	}
	bob.wait("Ada's signal", `gotSignals.length > 0`, 10*time.Second)
	ada.wait("Bob's signal", `gotSignals.length > 0`, 10*time.Second)
	// A duplicate (a replay after the resume) would come before anything sent
	// later on the same session, so one more signal each way marks the point by
	// which every duplicate would have arrived.
	ada.eval(fmt.Sprintf(`(switchboardApp.session.signal(%q, {note: "marker"}), true)`, bobID), nil)
	bob.eval(fmt.Sprintf(`(switchboardApp.session.signal(%q, {note: "marker"}), true)`, adaID), nil)
	for _, p := range []*page{ada, bob} {
		p.wait("the marker signal", `gotSignals.some((s) => s.note === "marker")`, 10*time.Second)
	}
	for _, c := range []struct {
		p    *page
		want string
	}{{bob, "from Ada during the cut"}, {ada, "from Bob during the cut"}} {
		var got []map[string]string
		c.p.eval(`gotSignals.filter((s) => s.note !== "marker")`, &got)
		if len(got) != 1 || got[0]["note"] != c.want {
			t.Errorf("%s received signals %v, want exactly one %q", c.p.label, got, c.want)
		}
	}
	// The call went on: same call, still connected, video still advancing.
	for _, p := range []*page{ada, bob} {
		if st := p.str(`[...switchboardApp.calls.values()][0]?.state ?? "none"`); st != "connected" {
			t.Errorf("%s: call state %q after the cut, want connected", p.label, st)
		}
		p.waitVideoPlaying()
	}
	ada.sendChat("after the cut")
	bob.waitChat("after the cut")
	if peers := bob.str(`[...switchboardApp.session.peers.keys()].join(",")`); peers != adaID {
		t.Errorf("Bob's peers after the cut %q, want only Ada %q (no leave/rejoin)", peers, adaID)
	}
}
