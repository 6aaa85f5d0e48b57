package main

// A relayed browser call that outlives the node its caller's session and
// TURN allocation were on (issue 14, "a node dies mid-call").

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// pathCandidate is the local candidate of a call's selected ICE pair: for a
// relayed call, the relay's address, i.e. which node's TURN carries it.
type pathCandidate struct {
	Type, Address string
}

func (p *page) localCandidate() pathCandidate {
	p.t.Helper()
	var c pathCandidate
	p.eval(`(async () => {
		const call = [...switchboardApp.calls.values()][0];
		if (!call?.pc) return {};
		const r = await call.pc.getStats();
		let pair;
		r.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pair = r.get(s.selectedCandidatePairId); });
		const l = pair && r.get(pair.localCandidateId);
		return l ? {Type: l.candidateType, Address: l.address ?? l.ip} : {};
	})()`, &c)
	return c
}

// frameSample is one reading of the remote video's frame counter.
type frameSample struct {
	T      int64 // Date.now(), ms (same clock as the test's)
	Frames int
}

// videoResumed finds, in samples taken after the kill, the stall of the
// remote video (no new frame for at least 500 ms) and the first new frame
// after it, confirmed by 10 more. ok false: not (yet) resumed.
func videoResumed(samples []frameSample) (at int64, stalled, ok bool) {
	for i := 0; i < len(samples); i++ {
		j := i
		for j+1 < len(samples) && samples[j+1].Frames == samples[i].Frames {
			j++
		}
		if samples[j].T-samples[i].T < 500 {
			i = j
			continue
		}
		stalled = true
		if j+1 >= len(samples) {
			return 0, true, false
		}
		resume := samples[j+1]
		last := samples[len(samples)-1]
		return resume.T, true, last.Frames >= samples[i].Frames+10
	}
	return 0, stalled, false
}

// TestBrowserCluster: Ada (caller) reaches the cluster through a load
// balancer that prefers node1, Bob (callee) through one that prefers node2;
// both force relay, so Ada's media runs through node1's TURN. node1 is
// killed (SIGKILL) mid-call. Ada's page reconnects through its balancer to a
// survivor, which adopted her session: same id, same call, welcome.lost; her
// client restarts ICE through the survivor's relay and Bob's remote video
// plays again. The time from the kill to Bob's video advancing again is
// logged (the target: 5 s), not asserted: CI has two shared cores.
func TestBrowserCluster(t *testing.T) {
	chromiumPath(t)
	c := startProcCluster(t)
	node := func(i int) string { return strings.TrimPrefix(c.base(i), "http://") }
	adaLB := newFailoverProxy(t, node(0), node(1), node(2))
	bobLB := newFailoverProxy(t, node(1), node(2), node(0))
	ada := newPage(t, "ada")
	bob := newPage(t, "bob")
	adaID := ada.join(adaLB.url()+"/?relay=1", "Ada")
	bobID := bob.join(bobLB.url()+"/?relay=1", "Bob")
	if a, b := adaLB.lastWS(), bobLB.lastWS(); a != 0 || b != 0 {
		t.Fatalf("WebSockets on backends %d and %d of their balancers, want each on its first (Ada node1, Bob node2)", a, b)
	}
	ada.wait("Bob in the presence list (across nodes)", fmt.Sprintf(`document.querySelector('#peers li[data-peer=%q]')`, bobID), 15*time.Second)
	connectCall(t, ada, bob, "Ada", bobID)
	callID := ada.str(`[...switchboardApp.calls.keys()][0] ?? ""`)
	if got := bob.str(`[...switchboardApp.calls.keys()][0] ?? ""`); callID == "" || got != callID {
		t.Fatalf("call ids: Ada %q, Bob %q", callID, got)
	}
	ada.wait("a relayed path", `[...switchboardApp.stats.values()].some((s) => s.path === "relay")`, 15*time.Second)
	if lc := ada.localCandidate(); lc.Type != "relay" || lc.Address != c.ips[0] {
		t.Fatalf("Ada's local candidate %+v, want a relay candidate of node1's TURN (%s)", lc, c.ips[0])
	}

	ada.eval(`(() => { window.welcomes = []; window.states = [];
		switchboardApp.session.addEventListener("welcome", (e) => welcomes.push({resumed: e.detail.resumed, lost: e.detail.lost, id: e.detail.id}));
		switchboardApp.session.addEventListener("state", (e) => states.push({at: Date.now(), ...e.detail}));
		return true })()`, nil)
	// Bob's page samples its remote video's frame counter every 50 ms.
	bob.eval(`(() => { window.frameLog = [];
		window.frameTimer = setInterval(() => {
			const v = document.querySelector("#tiles figure.remote video");
			if (v) frameLog.push({T: Date.now(), Frames: v.getVideoPlaybackQuality().totalVideoFrames});
		}, 50);
		return true })()`, nil)

	killed := time.Now()
	c.kill(0)
	deadline := killed.Add(30 * time.Second)
	var (
		resumedAt int64
		stalled   bool
		samples   []frameSample
	)
	for {
		bob.eval(fmt.Sprintf(`frameLog.filter((s) => s.T >= %d)`, killed.UnixMilli()), &samples)
		var ok bool
		if resumedAt, stalled, ok = videoResumed(samples); ok {
			break
		}
		if time.Now().After(deadline) {
			var w string
			ada.eval(`JSON.stringify({state: switchboardApp.session.state, welcomes, states, calls: [...switchboardApp.calls.keys()]})`, &w)
			t.Fatalf("Bob's remote video did not play again within 30 s of node1's death (stalled %v, %d samples, last %+v); killed at %d; Ada: %s",
				stalled, len(samples), samples[len(samples)-1:], killed.UnixMilli(), w)
		}
		time.Sleep(200 * time.Millisecond)
	}
	gap := time.Duration(resumedAt-killed.UnixMilli()) * time.Millisecond
	t.Logf("node1 killed: Bob's remote video played again after %v (issue target 5 s)", gap)

	ada.wait("Ada's session to resume", `switchboardApp.session.state === "open" && welcomes.length > 0`, 30*time.Second)
	var openedAt int64
	ada.eval(`states.findLast((s) => s.state === "open")?.at ?? 0`, &openedAt)
	t.Logf("Ada's session open again (welcome) %v after the kill; Bob's video back %v after that welcome",
		time.Duration(openedAt-killed.UnixMilli())*time.Millisecond, time.Duration(resumedAt-openedAt)*time.Millisecond)
	var welcomes []struct {
		Resumed, Lost bool
		ID            string
	}
	ada.eval(`welcomes`, &welcomes)
	if len(welcomes) == 0 || !welcomes[0].Resumed || !welcomes[0].Lost || welcomes[0].ID != adaID {
		t.Errorf("Ada's welcomes after node1 died: %+v, want resumed and lost, id %q", welcomes, adaID)
	}
	if to := adaLB.lastWS(); to == 0 {
		t.Errorf("Ada's WebSocket is on node1 still")
	}
	for _, p := range []struct {
		p  *page
		id string
	}{{ada, adaID}, {bob, bobID}} {
		if id := p.p.str(`switchboardApp.session.id`); id != p.id {
			t.Errorf("%s: session id %q after node1 died, want %q", p.p.label, id, p.id)
		}
		if got := p.p.str(`[...switchboardApp.calls.keys()].join(",")`); got != callID {
			t.Errorf("%s: calls %q after node1 died, want the same call %q", p.p.label, got, callID)
		}
		p.p.wait("the call connected", `[...switchboardApp.calls.values()][0]?.state === "connected"`, 15*time.Second)
		p.p.waitVideoPlaying()
	}
	if lc := ada.localCandidate(); lc.Type != "relay" || lc.Address == c.ips[0] {
		t.Errorf("Ada's local candidate %+v after node1 died, want a relay candidate of a survivor's TURN", lc)
	}
	bob.eval(`(clearInterval(frameTimer), true)`, nil)
}
