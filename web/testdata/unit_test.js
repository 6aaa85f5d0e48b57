// Tests of the client library that need a browser (real RTCPeerConnections,
// MediaStream), run inside headless Chromium by
// cmd/switchboard/browser_unit_test.go (TestBrowserUnit). run() resolves with
// one {name, ok, error} per test; the Go side turns each into a subtest.
// The pure modules' tests run under node --test: web/test/.

import { Negotiator } from "/negotiation.js";
import { Session } from "/switchboard.js";

/** @type {Array<{name: string, fn: () => any}>} */
const tests = [];
const test = (/** @type {string} */ name, /** @type {() => any} */ fn) => tests.push({ name, fn });

function eq(got, want, what = "") {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what} = ${g}, want ${w}`);
}
function ok(cond, what) {
  if (!cond) throw new Error(what);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${typeof what === "function" ? what() : what}`);
    await sleep(10);
  }
}

// ---- negotiation with real peer connections ----

/**
 * Two real RTCPeerConnections wired through Negotiators and an in-page
 * "server" that keeps per-direction order (as the hub does) but can delay.
 */
function pair({ delay = () => 0, waitForOffer = true } = {}) {
  const a = new RTCPeerConnection();
  const b = new RTCPeerConnection();
  const chain = { ab: Promise.resolve(), ba: Promise.resolve() };
  const link = (from, to, key) => (s) => {
    const msg = JSON.parse(JSON.stringify(s)); // it crosses a wire
    chain[key] = chain[key].then(async () => {
      const d = delay(msg);
      if (d) await sleep(d);
      to.n.handle(msg);
    });
  };
  const A = { pc: a, n: /** @type {any} */ (null) };
  const B = { pc: b, n: /** @type {any} */ (null) };
  const errors = [];
  A.n = new Negotiator({ pc: a, polite: false, send: link(A, B, "ab"), onError: (e) => errors.push(`A: ${e}`) });
  B.n = new Negotiator({ pc: b, polite: true, send: link(B, A, "ba"), waitForOffer, onError: (e) => errors.push(`B: ${e}`) });
  A.errors = errors;

  for (const side of [A, B]) {
    side.pc.onnegotiationneeded = () => side.n.negotiationNeeded();
    side.pc.onicecandidate = (e) => side.n.localCandidate(e.candidate);
  }
  return { A, B, close: () => (a.close(), b.close()) };
}

async function connected(p) {
  const states = () =>
    JSON.stringify([p.A, p.B].map((x) => [x.pc.connectionState, x.pc.iceConnectionState, x.pc.signalingState, x.n.stats, x.pc.getTransceivers().length, x.errors]));
  await until(() => p.A.pc.connectionState === "connected" && p.B.pc.connectionState === "connected", () => `both connected: ${states()}`, 10000);
  await until(() => p.A.pc.signalingState === "stable" && p.B.pc.signalingState === "stable", "both stable");
}

/** A live audio+video stream without camera or microphone. */
function syntheticStream() {
  const canvas = document.createElement("canvas");
  canvas.width = 160;
  canvas.height = 120;
  const g = canvas.getContext("2d");
  const timer = setInterval(() => {
    g.fillStyle = `hsl(${Date.now() % 360} 70% 50%)`;
    g.fillRect(0, 0, 160, 120);
  }, 33);
  const ac = new AudioContext();
  const osc = ac.createOscillator();
  const dest = ac.createMediaStreamDestination();
  osc.connect(dest);
  osc.start();
  const s = new MediaStream([...dest.stream.getAudioTracks(), ...canvas.captureStream(30).getVideoTracks()]);
  return { stream: s, stop: () => (clearInterval(timer), ac.close(), s.getTracks().forEach((t) => t.stop())) };
}

test("real/glare-mid-call-both-renegotiate-at-once", async () => {
  // As in the app: both sides send camera+microphone and have a negotiated
  // data channel. Once connected, both renegotiate at the same moment (both
  // see the network change and restart ICE, or both add a track): the offers
  // cross, the impolite side ignores, the polite side rolls back, and they
  // converge on the impolite side's offer and then on the polite side's.
  for (let round = 0; round < 3; round++) {
    const p = pair();
    const sa = syntheticStream();
    const sb = syntheticStream();
    try {
      for (const [side, s] of [[p.A, sa.stream], [p.B, sb.stream]]) {
        side.pc.createDataChannel("x", { negotiated: true, id: 0 });
        for (const t of s.getTracks()) side.pc.addTrack(t, s);
      }
      await connected(p);
      const ufrags = () => [p.A.pc, p.B.pc].map((pc) => pc.localDescription?.sdp.match(/a=ice-ufrag:(\S+)/)?.[1]);
      const before = ufrags();
      p.A.pc.restartIce();
      p.B.pc.restartIce();
      await until(() => p.A.n.stats.offersIgnored + p.B.n.stats.rollbacks >= 1, () => `a collision: ${JSON.stringify([p.A.n.stats, p.B.n.stats])}`);
      await connected(p);
      await until(() => ufrags().every((u, i) => u !== before[i]), "new ICE credentials on both sides");
      await until(
        () => [p.A.pc, p.B.pc].every((pc) => pc.getTransceivers().length === 2 && pc.getTransceivers().every((t) => t.currentDirection === "sendrecv")),
        () => `sendrecv both ways: ${JSON.stringify([p.A.pc, p.B.pc].map((pc) => pc.getTransceivers().map((t) => [t.mid, t.currentDirection])))}`,
      );
    } finally {
      p.close();
      sa.stop();
      sb.stop();
    }
  }
});

test("real/polite-side-changes-are-negotiated-after-the-first-offer", async () => {
  const p = pair();
  try {
    p.A.pc.createDataChannel("x", { negotiated: true, id: 0 });
    p.B.pc.createDataChannel("x", { negotiated: true, id: 0 });
    p.A.pc.addTransceiver("audio");
    p.B.pc.addTransceiver("video");
    await connected(p);
    await until(() => p.A.pc.getTransceivers().length === 2 && p.B.pc.getTransceivers().every((t) => t.mid !== null), "both transceivers negotiated");
    eq(p.B.n.stats.rollbacks, 0, "polite rollbacks");
  } finally {
    p.close();
  }
});

test("real/candidates-before-description-are-buffered", async () => {
  // Descriptions take 300 ms, candidates none: the answerer sees candidates first.
  const p = pair({ delay: (m) => (m.description ? 300 : 0) });
  try {
    // The in-page wire keeps order per direction like the hub does, so
    // overtaking needs a second route: deliver candidates directly too.
    const origSend = p.A.n.send;
    p.A.n.send = (s) => {
      if (s.candidate) p.B.n.handle(JSON.parse(JSON.stringify(s)));
      else origSend(s);
    };
    p.A.pc.createDataChannel("x");
    await connected(p);
    ok(p.B.n.stats.candidatesBuffered > 0, "no candidate was buffered");
  } finally {
    p.close();
  }
});

test("real/ice-restart-renegotiates", async () => {
  const p = pair();
  try {
    p.A.pc.createDataChannel("x");
    await connected(p);
    const ufrag = (pc) => pc.remoteDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1];
    const before = ufrag(p.B.pc);
    const offers = p.A.n.stats.offersSent;
    p.A.pc.restartIce();
    await until(() => p.A.n.stats.offersSent > offers, "restart offer");
    await connected(p);
    await until(() => ufrag(p.B.pc) !== before, "new ICE credentials");
  } finally {
    p.close();
  }
});

// ---- session against a fake server ----

/** A WebSocket stand-in the test drives as the server. */
function fakeServer() {
  const sockets = [];
  class FakeWS {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
      setTimeout(() => {
        if (this.readyState !== 0) return;
        this.readyState = 1;
        this.onopen?.({});
      }, 0);
    }
    send(s) {
      this.sent.push(JSON.parse(s));
    }
    close(code = 1000) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.closedBy = code;
    }
    // server side
    push(m) {
      this.onmessage?.({ data: JSON.stringify(m) });
    }
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code, reason: "" });
    }
    of(type) {
      return this.sent.filter((m) => m.type === type);
    }
  }
  return { FakeWS, sockets };
}

const hb = { interval: 60000, timeout: 120000 };

test("session/call-errors-end-the-call", async () => {
  const { FakeWS, sockets } = fakeServer();
  const s = new Session("ws://x/ws", { name: "Ada", WebSocket: /** @type {any} */ (FakeWS) });
  s.open();
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push({ type: "welcome", id: "me", resume: "tok", resumed: false, iceServers: [], heartbeat: hb, room: "", peers: [{ id: "p", name: "P" }], seq: 0 });
  const table = [
    { push: (id) => ({ seq: 0, type: "error", code: "peer-unavailable", ref: id, to: "p" }), want: "unavailable" },
    { push: (id) => ({ seq: 0, type: "busy", call: id, from: "p" }), want: "busy" },
    { push: (id) => ({ seq: 0, type: "declined", call: id, from: "p" }), want: "declined" },
    { push: (id) => ({ seq: 0, type: "timeout", call: id }), want: "timeout" },
  ];
  let seq = 0;
  for (const tt of table) {
    const call = s.call("p", { stream: null });
    const sent = sockets[0].of("call").at(-1);
    eq([sent.to, sent.call], ["p", call.id], "call request");
    sockets[0].push({ seq: ++seq, type: "ringing", call: call.id, to: "p" });
    eq(call.state, "ringing", "state after ringing");
    sockets[0].push({ ...tt.push(call.id), seq: ++seq });
    eq([call.state, call.endReason], ["ended", tt.want], `after ${tt.want}`);
  }
  s.close();
});

test("session/ice-servers-push-reaches-live-calls", async () => {
  const { FakeWS, sockets } = fakeServer();
  const s = new Session("ws://x/ws", { name: "Ada", iceTransportPolicy: "relay", WebSocket: /** @type {any} */ (FakeWS) });
  s.open();
  await until(() => sockets[0]?.sent.length === 1, "hello");
  const first = [{ urls: ["turn:127.0.0.1:3478?transport=udp"], username: "1:a", credential: "old" }];
  sockets[0].push({ type: "welcome", id: "me", resume: "tok", resumed: false, iceServers: first, heartbeat: hb, room: "r", peers: [{ id: "a", name: "A" }], seq: 0 });
  const call = s.meshCall("a", { stream: null });
  const cfg = () => call.pc?.getConfiguration();
  eq([cfg()?.iceServers?.[0].credential, cfg()?.iceTransportPolicy], ["old", "relay"], "configuration at start");
  sockets[0].push({ seq: 1, type: "ice-servers", iceServers: [{ urls: ["turn:127.0.0.1:3478?transport=udp"], username: "2:a", credential: "new" }], ttl: 600 });
  eq([cfg()?.iceServers?.[0].username, cfg()?.iceServers?.[0].credential, cfg()?.iceTransportPolicy], ["2:a", "new", "relay"], "configuration after the push");
  // A network change restarts ICE on live calls.
  let restarts = 0;
  const pc = /** @type {RTCPeerConnection} */ (call.pc);
  pc.restartIce = () => restarts++;
  window.dispatchEvent(new Event("online"));
  eq(restarts, 1, "ICE restarts after the online event");
  s.close();
  eq(call.state, "ended", "call state after close");
});

test("session/media-state-goes-both-ways", async () => {
  const { FakeWS, sockets } = fakeServer();
  const s = new Session("ws://x/ws", { name: "Ada", WebSocket: /** @type {any} */ (FakeWS) });
  s.open();
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push({ type: "welcome", id: "me", resume: "tok", resumed: false, iceServers: [], heartbeat: hb, room: "r", peers: [{ id: "a", name: "A" }], ack: 0 });
  const call = s.meshCall("a", { stream: null });
  const media = () => sockets[0].of("signal").filter((m) => m.data.media).map((m) => [m.to, m.data.call, m.data.media]);
  call.setMedia({ audio: false, video: true });
  call.setMedia({ audio: false, video: true }); // unchanged: not sent again
  eq(media(), [["a", call.id, { audio: false, video: true }]], "media signals sent");
  const seen = [];
  call.addEventListener("media", (e) => seen.push(e.detail));
  eq(call.remoteMedia, null, "remote media before the peer said");
  sockets[0].push({ seq: 1, type: "signal", from: "a", data: { call: call.id, media: { audio: true, video: false } } });
  eq([call.remoteMedia, seen], [{ audio: true, video: false }, [{ audio: true, video: false }]], "remote media");
  // An outgoing call tells its state once the call starts, not while ringing.
  const out = s.call("a", { stream: null });
  out.setMedia({ audio: true, video: false });
  eq(media().length, 1, "media signals while ringing");
  sockets[0].push({ seq: 2, type: "accepted", call: out.id, peer: "a", polite: false });
  eq(media().at(-1), ["a", out.id, { audio: true, video: false }], "media signal once accepted");
  s.close();
});

/** Runs every test (optionally only names containing filter). */
export async function run(filter = "") {
  const out = [];
  for (const t of tests) {
    if (filter && !t.name.includes(filter)) continue;
    const start = performance.now();
    try {
      await t.fn();
      out.push({ name: t.name, ok: true, error: "", ms: Math.round(performance.now() - start) });
    } catch (err) {
      out.push({ name: t.name, ok: false, error: String(err?.stack || err), ms: Math.round(performance.now() - start) });
    }
  }
  return out;
}
