// Unit tests of the client library's logic, run inside headless Chromium by
// cmd/switchboard/browser_unit_test.go (TestBrowserUnit). run() resolves with
// one {name, ok, error} per test; the Go side turns each into a subtest.

import { backoffDelay, closeAction, Outbox, Inbox, Negotiator, summarizeStats, describePath } from "/negotiation.js";
import { Session } from "/switchboard.js";
import { parseIceURL, linesFrom, conclusion } from "/check.js";

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

// ---- backoff ----

test("backoff/full-jitter-bounds", () => {
  const table = [
    { attempt: 0, max: 500 },
    { attempt: 1, max: 1000 },
    { attempt: 3, max: 4000 },
    { attempt: 5, max: 15000 }, // 16000 capped
    { attempt: 50, max: 15000 },
  ];
  for (const tt of table) {
    eq(backoffDelay(tt.attempt, { random: () => 0 }), 0, `backoffDelay(${tt.attempt}, random=0)`);
    eq(backoffDelay(tt.attempt, { random: () => 0.999999 }), tt.max - 1, `backoffDelay(${tt.attempt}, random≈1)`);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(tt.attempt);
      ok(d >= 0 && d < tt.max, `backoffDelay(${tt.attempt}) = ${d}, want in [0, ${tt.max})`);
    }
  }
  eq(backoffDelay(2, { base: 100, cap: 250, random: () => 0.5 }), 125, "backoffDelay(2, base 100, cap 250)");
});

test("backoff/jitter-spreads", () => {
  const seen = new Set();
  for (let i = 0; i < 100; i++) seen.add(Math.floor(backoffDelay(4) / 500));
  ok(seen.size >= 8, `100 delays fell in only ${seen.size} of 16 buckets: not jittered`);
});

// ---- close codes ----

test("close-code/decisions", () => {
  const table = [
    [1000, "stop"],
    [4001, "stop"],
    [4002, "fresh"],
    [1008, "fatal"],
    [1009, "fatal"],
    [1001, "resume"],
    [1006, "resume"],
    [1011, "resume"],
    [1012, "resume"],
    [1013, "resume"],
    [4000, "resume"],
  ];
  for (const [code, want] of table) eq(closeAction(code), want, `closeAction(${code})`);
});

// ---- seq / ack ----

test("outbox/numbers-and-acks", () => {
  const o = new Outbox();
  eq(o.add({ type: "a" }).seq, 1, "first seq");
  eq(o.add({ type: "b" }).seq, 2, "second seq");
  eq(o.add({ type: "c" }).seq, 3, "third seq");
  o.ack(1);
  eq(o.pending.map((m) => m.type), ["b", "c"], "pending after ack 1");
  o.ack(undefined);
  eq(o.pending.length, 2, "pending after ack undefined");
  eq(o.unacked(2).map((m) => m.seq), [3], "unacked(2)");
  o.ack(10);
  eq(o.pending.length, 0, "pending after ack 10");
  eq(o.add({ type: "d" }).seq, 4, "seq continues after acks");
  o.reset();
  eq(o.add({ type: "e" }).seq, 1, "seq after reset");
});

test("inbox/dedupe", () => {
  const in_ = new Inbox();
  const table = [
    [{ type: "welcome" }, true],
    [{ seq: 1 }, true],
    [{ seq: 2 }, true],
    [{ seq: 2 }, false],
    [{ seq: 1 }, false],
    [{ type: "pong" }, true],
    [{ seq: 3 }, true],
  ];
  for (const [m, want] of table) eq(in_.accept(m), want, `accept(${JSON.stringify(m)})`);
  eq(in_.last, 3, "last");
});

// ---- negotiation with fake peer connections ----

class FakePC {
  constructor() {
    this.signalingState = "stable";
    this.remoteDescription = null;
    this.localDescription = null;
    this.added = [];
    this.log = [];
  }
  async setLocalDescription() {
    await sleep(1);
    if (this.signalingState === "have-remote-offer") {
      this.localDescription = { type: "answer", sdp: "answer" };
      this.signalingState = "stable";
    } else {
      this.localDescription = { type: "offer", sdp: "offer" };
      this.signalingState = "have-local-offer";
    }
    this.log.push(`local ${this.localDescription.type}`);
  }
  async setRemoteDescription(d) {
    await sleep(1);
    if (d.type === "offer" && this.signalingState === "have-local-offer") this.log.push("rollback");
    this.remoteDescription = d;
    this.signalingState = d.type === "offer" ? "have-remote-offer" : "stable";
    this.log.push(`remote ${d.type}`);
  }
  async addIceCandidate(c) {
    if (!this.remoteDescription) throw new Error("no remote description");
    if (c && c.candidate === "bad") throw new Error("bad candidate");
    this.added.push(c ?? null);
  }
}

test("negotiator/buffers-candidates-until-remote-description", async () => {
  const pc = new FakePC();
  const sent = [];
  const n = new Negotiator({ pc, polite: true, send: (s) => sent.push(s) });
  n.handle({ candidate: { candidate: "c1" } });
  n.handle({ candidate: { candidate: "c2" } });
  await n.queue;
  eq(pc.added, [], "added before the offer");
  eq(n.pendingCandidates.length, 2, "buffered");
  await n.handle({ description: { type: "offer", sdp: "x" } });
  eq(pc.added.map((c) => c.candidate), ["c1", "c2"], "added after the offer, in order");
  eq(sent.map((s) => s.description?.type), ["answer"], "sent");
  await n.handle({ candidate: { candidate: "c3" } });
  await n.handle({ candidate: null });
  eq(pc.added.map((c) => c && c.candidate), ["c1", "c2", "c3", null], "later candidates go straight in");
});

test("negotiator/impolite-ignores-colliding-offer", async () => {
  const pc = new FakePC();
  const sent = [];
  const n = new Negotiator({ pc, polite: false, send: (s) => sent.push(s) });
  await n.negotiationNeeded();
  eq(pc.signalingState, "have-local-offer", "state after our offer");
  await n.handle({ description: { type: "offer", sdp: "theirs" } });
  eq(n.stats.offersIgnored, 1, "offers ignored");
  eq(pc.remoteDescription, null, "remote description");
  // Candidates of the ignored offer must not raise errors.
  const errors = [];
  n.onError = (e) => errors.push(e);
  await n.handle({ candidate: { candidate: "bad" } });
  eq(errors.length, 0, "errors from ignored candidates");
  await n.handle({ description: { type: "answer", sdp: "a" } });
  eq(pc.signalingState, "stable", "state after their answer");
});

test("negotiator/polite-rolls-back-for-their-offer", async () => {
  const pc = new FakePC();
  const sent = [];
  const n = new Negotiator({ pc, polite: true, send: (s) => sent.push(s), waitForOffer: false });
  await n.negotiationNeeded();
  await n.handle({ description: { type: "offer", sdp: "theirs" } });
  eq(n.stats.rollbacks, 1, "rollbacks");
  eq(pc.log, ["local offer", "rollback", "remote offer", "local answer"], "pc calls");
  eq(sent.map((s) => s.description.type), ["offer", "answer"], "sent");
});

test("negotiator/polite-waits-for-the-first-offer", async () => {
  const pc = new FakePC();
  pc.getTransceivers = () => [{ mid: "0" }, { mid: null }]; // one of ours is not negotiated yet
  const sent = [];
  const n = new Negotiator({ pc, polite: true, send: (s) => sent.push(s) });
  await n.negotiationNeeded();
  eq(sent, [], "sent before the first offer");
  await n.handle({ description: { type: "offer", sdp: "theirs" } });
  await sleep(20);
  eq(sent.map((s) => s.description.type), ["answer", "offer"], "answer, then our own offer for what is left");
});

test("negotiator/offer-while-making-offer-is-a-collision", async () => {
  const pc = new FakePC();
  const n = new Negotiator({ pc, polite: false, send: () => {} });
  const making = n.negotiationNeeded(); // still in setLocalDescription
  await n.handle({ description: { type: "offer", sdp: "theirs" } });
  await making;
  eq(n.stats.offersIgnored, 1, "offers ignored while making an offer");
});

test("negotiator/closed-sends-nothing", async () => {
  const pc = new FakePC();
  const sent = [];
  const n = new Negotiator({ pc, polite: true, send: (s) => sent.push(s) });
  n.close();
  await n.negotiationNeeded();
  await n.handle({ description: { type: "offer", sdp: "x" } });
  n.localCandidate({ candidate: "c" });
  eq(sent, [], "sent after close");
});

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

// ---- stats ----

test("stats/summary", () => {
  const t0 = new Map([
    ["T", { id: "T", type: "transport", selectedCandidatePairId: "P" }],
    ["P", { id: "P", type: "candidate-pair", localCandidateId: "L", remoteCandidateId: "R", state: "succeeded", currentRoundTripTime: 0.0234, timestamp: 1000 }],
    ["L", { id: "L", type: "local-candidate", candidateType: "relay", protocol: "udp", relayProtocol: "tcp" }],
    ["R", { id: "R", type: "remote-candidate", candidateType: "relay", protocol: "udp" }],
    ["I", { id: "I", type: "inbound-rtp", kind: "video", bytesReceived: 1000, framesDecoded: 10, timestamp: 1000 }],
    ["O", { id: "O", type: "outbound-rtp", kind: "video", bytesSent: 2000, timestamp: 1000 }],
  ]);
  const s0 = summarizeStats(t0);
  eq([s0.path, s0.transport, s0.localType, s0.rtt, s0.inKbps, s0.framesDecoded], ["relay", "tcp", "relay", 23, null, 10], "first summary");
  eq(describePath(s0), "Relayed · TCP · 23 ms", "describePath");
  const t1 = new Map(t0);
  t1.set("I", { ...t0.get("I"), bytesReceived: 126000, timestamp: 2000 });
  t1.set("O", { ...t0.get("O"), bytesSent: 252000, timestamp: 2000 });
  const s1 = summarizeStats(t1, s0);
  eq([s1.inKbps, s1.outKbps], [1000, 2000], "bitrates over 1 s");
  const direct = new Map([
    ["P", { id: "P", type: "candidate-pair", localCandidateId: "L", remoteCandidateId: "R", state: "succeeded", nominated: true }],
    ["L", { id: "L", type: "local-candidate", candidateType: "host", protocol: "udp" }],
    ["R", { id: "R", type: "remote-candidate", candidateType: "srflx", protocol: "udp" }],
  ]);
  const s2 = summarizeStats(direct);
  eq([s2.path, s2.transport, s2.rtt], ["direct", "udp", null], "direct via nominated pair");
  eq(summarizeStats(new Map()).path, "unknown", "empty report");
  eq(describePath(summarizeStats(new Map())), "Connecting…", "describePath(unknown)");
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

test("session/hello-welcome-presence", async () => {
  const { FakeWS, sockets } = fakeServer();
  const s = new Session("ws://x/ws", { name: "Ada", room: "r1", WebSocket: /** @type {any} */ (FakeWS) });
  s.open();
  await until(() => sockets[0]?.sent.length === 1, "hello");
  eq(sockets[0].sent[0], { type: "hello", name: "Ada", room: "r1" }, "hello");
  sockets[0].push({ type: "welcome", id: "me", resume: "tok", resumed: false, iceServers: [{ urls: ["stun:h:1"] }], heartbeat: hb, room: "r1", peers: [{ id: "p1", name: "Bob", nearby: true }], seq: 0 });
  eq(s.state, "open", "state");
  eq([...s.peers.keys()], ["p1"], "peers");
  eq(s.iceServers, [{ urls: ["stun:h:1"] }], "iceServers");
  sockets[0].push({ seq: 1, type: "peer-joined", peer: { id: "p2", name: "Cy", nearby: false } });
  sockets[0].push({ seq: 2, type: "peer-left", id: "p1", reason: "left" });
  eq([...s.peers.keys()], ["p2"], "peers after join/leave");
  sockets[0].push({ seq: 3, type: "ice-servers", iceServers: [{ urls: ["turn:h:1"], username: "u", credential: "c" }], ttl: 60 });
  eq(s.iceServers[0].username, "u", "pushed iceServers");
  s.close();
});

test("session/resume-resends-unacked-and-drops-replayed", async () => {
  const { FakeWS, sockets } = fakeServer();
  const s = new Session("ws://x/ws", { name: "Ada", WebSocket: /** @type {any} */ (FakeWS) });
  const got = [];
  s.addEventListener("signal", (e) => got.push(/** @type {CustomEvent} */ (e).detail.data));
  s.open();
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push({ type: "welcome", id: "me", resume: "tok", resumed: false, iceServers: [], heartbeat: hb, room: "", peers: [{ id: "p", name: "P" }], seq: 0 });
  s.signal("p", "one");
  s.signal("p", "two");
  eq(sockets[0].of("signal").map((m) => [m.seq, m.data]), [[1, "one"], [2, "two"]], "numbered signals");
  sockets[0].push({ type: "pong", ack: 1 }); // the server processed "one" only
  sockets[0].push({ seq: 1, type: "signal", from: "p", data: "a" });
  sockets[0].push({ seq: 2, type: "signal", from: "p", data: "b" });
  sockets[0].drop(1006);
  eq(s.state, "reconnecting", "state after the cut");
  s.signal("p", "three"); // while disconnected: queued
  await until(() => sockets.length === 2 && sockets[1].sent.length === 1, "reconnect hello", 3000);
  eq(sockets[1].sent[0], { type: "hello", name: "Ada", resume: "tok", ack: 2 }, "resume hello");
  sockets[1].push({ type: "welcome", id: "me", resume: "tok", resumed: true, iceServers: [], heartbeat: hb, room: "", peers: [{ id: "p", name: "P" }], ack: 1, seq: 3 });
  eq(sockets[1].of("signal").map((m) => [m.seq, m.data]), [[2, "two"], [3, "three"]], "resent after resume");
  sockets[1].push({ seq: 2, type: "signal", from: "p", data: "b" }); // replayed twice
  sockets[1].push({ seq: 3, type: "signal", from: "p", data: "c" });
  eq(got, ["a", "b", "c"], "received exactly once");
  eq(s.state, "open", "state");
  s.close();
});

test("session/close-codes", async () => {
  const table = [
    { code: 4001, state: "closed", sockets: 1 },
    { code: 1008, state: "closed", sockets: 1 },
    { code: 4002, state: "reconnecting", sockets: 2, fresh: true },
    { code: 1012, state: "reconnecting", sockets: 2, fresh: false },
  ];
  for (const tt of table) {
    const { FakeWS, sockets } = fakeServer();
    const s = new Session("ws://x/ws", { name: "Ada", WebSocket: /** @type {any} */ (FakeWS) });
    s.open();
    await until(() => sockets[0]?.sent.length === 1, "hello");
    sockets[0].push({ type: "welcome", id: "me", resume: "tok", resumed: false, iceServers: [], heartbeat: hb, room: "", peers: [], seq: 0 });
    sockets[0].drop(tt.code);
    eq(s.state, tt.state, `state after close ${tt.code}`);
    if (tt.sockets === 2) {
      await until(() => sockets.length === 2 && sockets[1].sent.length === 1, `reconnect after ${tt.code}`, 3000);
      eq("resume" in sockets[1].sent[0], !tt.fresh, `hello after ${tt.code} resumes`);
    } else {
      await sleep(700);
      eq(sockets.length, 1, `sockets after close ${tt.code}`);
    }
    s.close();
  }
});

test("session/heartbeat-timeout-reconnects", async () => {
  const { FakeWS, sockets } = fakeServer();
  const s = new Session("ws://x/ws", { name: "Ada", WebSocket: /** @type {any} */ (FakeWS) });
  s.open();
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push({ type: "welcome", id: "me", resume: "tok", resumed: false, iceServers: [], heartbeat: { interval: 100, timeout: 500 }, room: "", peers: [], seq: 4 });
  await until(() => sockets[0].of("ping").length >= 2, "pings", 2000);
  eq(sockets[0].of("ping")[0].ack, 0, "ping ack");
  // The fake server never answers: after 500 ms the client gives up on this socket.
  await until(() => sockets.length === 2, "reconnect after silence", 3000);
  ok(sockets[0].closedBy >= 4000, `closed the dead socket with ${sockets[0].closedBy}`);
  s.close();
});

test("session/offline-after-failed-reconnects-then-back", async () => {
  const { FakeWS, sockets } = fakeServer();
  const s = new Session("ws://x/ws", { name: "Ada", offlineAfter: 400, WebSocket: /** @type {any} */ (FakeWS) });
  const states = [];
  s.addEventListener("state", (e) => states.push(/** @type {CustomEvent} */ (e).detail.state));
  s.open();
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push({ type: "welcome", id: "me", resume: "tok", resumed: false, iceServers: [], heartbeat: hb, room: "", peers: [], seq: 0 });
  sockets[0].drop(1006);
  // The server stays unreachable: every new socket fails at once.
  const down = setInterval(() => {
    for (const ws of sockets) if (ws.readyState === 1 && !ws.failed) (ws.failed = true), ws.drop(1006);
  }, 5);
  try {
    await until(() => s.state === "offline", () => `state offline, got ${states}`, 8000);
  } finally {
    clearInterval(down);
  }
  ok(sockets.length >= 2, `only ${sockets.length} connection attempts before offline`);
  await until(() => sockets.at(-1).readyState === 1 && !sockets.at(-1).failed && sockets.at(-1).sent.length === 1, "a new attempt", 20000);
  sockets.at(-1).push({ type: "welcome", id: "me", resume: "tok", resumed: true, iceServers: [], heartbeat: hb, room: "", peers: [], ack: 0, seq: 0 });
  eq(s.state, "open", "state once the server answers");
  eq([states[0], states[1], states.includes("offline"), states.at(-1)], ["open", "reconnecting", true, "open"], `state sequence ${states}`);
  s.close();
});

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

// ---- /check helpers ----

test("check/parse-ice-url", () => {
  const table = [
    ["stun:1.2.3.4:3478", { scheme: "stun", host: "1.2.3.4", port: 3478, transport: "udp" }],
    ["turn:h.example:3479?transport=tcp", { scheme: "turn", host: "h.example", port: 3479, transport: "tcp" }],
    ["turns:h.example:5349?transport=tcp", { scheme: "turns", host: "h.example", port: 5349, transport: "tcp" }],
    ["turn:[::1]:3478?transport=udp", { scheme: "turn", host: "[::1]", port: 3478, transport: "udp" }],
    ["turn:host", { scheme: "turn", host: "host", port: 3478, transport: "udp" }],
    ["http://x", null],
  ];
  for (const [url, want] of table) eq(parseIceURL(url), want, `parseIceURL(${url})`);
  eq(
    linesFrom([{ urls: ["stun:h:1"] }, { urls: ["turn:h:1?transport=udp", "turn:h:1?transport=tcp", "turns:d:5349?transport=tcp"], username: "u", credential: "c" }]).map((l) => l.kind),
    ["stun", "turn-udp", "turn-tcp", "turn-tls"],
    "linesFrom kinds",
  );
});

test("check/conclusion", () => {
  const row = (kind, okv, port = 3478) => ({ line: { kind, port, proto: kind === "turn-udp" || kind === "stun" ? "UDP" : "TCP" }, result: { ok: okv } });
  const table = [
    { rows: [row("stun", true), row("turn-udp", true), row("turn-tcp", true)], call: { ok: true }, ok: true, has: "will work" },
    { rows: [row("stun", false), row("turn-udp", false), row("turn-tcp", true)], call: { ok: true }, ok: true, has: "UDP to the server is blocked" },
    { rows: [row("stun", true), row("turn-udp", true)], call: { ok: false }, ok: false, has: "relay port range" },
    { rows: [row("stun", false), row("turn-udp", false), row("turn-tcp", false)], call: null, ok: false, has: "UDP 3478, TCP 3478" },
  ];
  for (const tt of table) {
    const c = conclusion(/** @type {any} */ (tt.rows), tt.call);
    eq(c.ok, tt.ok, `conclusion ok for ${tt.has}`);
    ok(c.text.includes(tt.has), `conclusion ${JSON.stringify(c.text)} lacks ${JSON.stringify(tt.has)}`);
  }
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
