// Unit tests of the Session in switchboard.js against a fake WebSocket the
// test drives as the server (node --test web/test/). Tests that need calls
// (RTCPeerConnection, MediaStream) run in Chromium: web/testdata/unit_test.js.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { Session } from "../static/switchboard.js";

// Node 18 (Debian 12's nodejs) has no global CustomEvent without a flag.
globalThis.CustomEvent ??= class CustomEvent extends Event {
  constructor(type, init = {}) {
    super(type, init);
    this.detail = init.detail ?? null;
  }
};

/** A WebSocket stand-in the test drives as the server. */
function fakeServer() {
  /** @type {FakeWS[]} */
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

/** Polls cond until true; the deadline is generous, it only stops a hang. */
async function until(cond, what, ms = 20000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const hb = { interval: 60000, timeout: 120000 };
const welcome = (extra = {}) => ({ type: "welcome", id: "me", resume: "tok", resumed: false, iceServers: [], ttl: 60, heartbeat: hb, room: "", peers: [], ack: 0, ...extra });

/** @param {Record<string, unknown>} [opts] */
function session(opts = {}) {
  const { FakeWS, sockets } = fakeServer();
  const s = new Session("ws://x/ws", { name: "Ada", WebSocket: /** @type {any} */ (FakeWS), ...opts });
  s.open();
  return { s, sockets };
}

test("hello, welcome and presence", async () => {
  const { s, sockets } = session({ room: "r1", token: "jwt1" });
  await until(() => sockets[0]?.sent.length === 1, "hello");
  assert.deepEqual(sockets[0].sent[0], { type: "hello", name: "Ada", room: "r1", token: "jwt1", attempt: 1 });
  sockets[0].push(welcome({ room: "r1", iceServers: [{ urls: ["stun:h:1"] }], peers: [{ id: "p1", name: "Bob", nearby: true }, { id: "me", name: "Ada" }, { bad: 1 }] }));
  assert.equal(s.state, "open");
  assert.deepEqual([...s.peers.keys()], ["p1"], "peers: not ourselves, not malformed entries");
  assert.deepEqual(s.iceServers, [{ urls: ["stun:h:1"] }]);
  sockets[0].push({ seq: 1, type: "peer-joined", peer: { id: "p2", name: "Cy", nearby: false } });
  sockets[0].push({ seq: 2, type: "peer-left", id: "p1", reason: "left" });
  assert.deepEqual([...s.peers.keys()], ["p2"], "peers after join/leave");
  sockets[0].push({ seq: 3, type: "ice-servers", iceServers: [{ urls: ["turn:h:1"], username: "u", credential: "c" }], ttl: 60 });
  assert.equal(s.iceServers[0].username, "u", "pushed iceServers");
  s.close();
  assert.equal(sockets[0].closedBy, 1000);
});

test("hello.attempt counts the sockets of one session", async () => {
  const { s, sockets } = session();
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push(welcome());
  sockets[0].drop(1006);
  await until(() => sockets[1]?.sent.length === 1, "second hello");
  assert.deepEqual([sockets[1].sent[0].attempt, sockets[1].sent[0].resume], [2, "tok"], "resume hello");
  sockets[1].drop(1006); // refused before any welcome
  await until(() => sockets[2]?.sent.length === 1, "third hello");
  assert.equal(sockets[2].sent[0].attempt, 3);
  sockets[2].drop(4002); // the server forgot us: a fresh session starts counting again
  await until(() => sockets[3]?.sent.length === 1, "fresh hello");
  assert.deepEqual([sockets[3].sent[0].attempt, "resume" in sockets[3].sent[0]], [1, false], "fresh hello");
  s.close();
});

test("a token push replaces the sign-in token of the next hello", async () => {
  const { s, sockets } = session({ token: "old" });
  const got = [];
  s.addEventListener("token", (e) => got.push(e.detail));
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push(welcome());
  sockets[0].push({ seq: 1, type: "token", token: "new", ttl: 3600 });
  assert.deepEqual(got, [{ token: "new", ttl: 3600 }]);
  assert.equal(s.token, "new");
  sockets[0].drop(1006);
  await until(() => sockets[1]?.sent.length === 1, "resume hello");
  assert.equal(sockets[1].sent[0].token, "new");
  s.close();
});

test("unauthorized closes for good with the error first", async () => {
  const { s, sockets } = session({ token: "expired" });
  const events = [];
  s.addEventListener("error", (e) => events.push(`error ${e.detail.code}`));
  s.addEventListener("closed", (e) => events.push(`closed ${e.detail.code} ${e.detail.fatal}`));
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push({ type: "error", code: "unauthorized", message: "token expired" });
  sockets[0].drop(1008);
  assert.deepEqual(events, ["error unauthorized", "closed 1008 true"]);
  assert.equal(s.state, "closed");
  await sleep(600);
  assert.equal(sockets.length, 1, "no reconnect");
});

test("resume resends unacked requests and drops replayed messages", async () => {
  const { s, sockets } = session();
  const got = [];
  s.addEventListener("signal", (e) => got.push(e.detail.data));
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push(welcome({ peers: [{ id: "p", name: "P" }] }));
  s.signal("p", "one");
  s.signal("p", "two");
  assert.deepEqual(sockets[0].of("signal").map((m) => [m.seq, m.data]), [[1, "one"], [2, "two"]]);
  sockets[0].push({ type: "pong", ack: 1 }); // the server processed "one" only
  sockets[0].push({ seq: 1, type: "signal", from: "p", data: "a" });
  sockets[0].push({ seq: 2, type: "signal", from: "p", data: "b" });
  sockets[0].drop(1006);
  assert.equal(s.state, "reconnecting");
  s.signal("p", "three"); // while disconnected: queued
  await until(() => sockets.length === 2 && sockets[1].sent.length === 1, "reconnect hello");
  assert.deepEqual(sockets[1].sent[0], { type: "hello", name: "Ada", resume: "tok", ack: 2, attempt: 2 });
  sockets[1].push(welcome({ resumed: true, peers: [{ id: "p", name: "P" }], ack: 1 }));
  assert.deepEqual(sockets[1].of("signal").map((m) => [m.seq, m.data]), [[2, "two"], [3, "three"]], "resent after resume");
  sockets[1].push({ seq: 2, type: "signal", from: "p", data: "b" }); // replayed twice
  sockets[1].push({ seq: 3, type: "signal", from: "p", data: "c" });
  assert.deepEqual(got, ["a", "b", "c"], "received exactly once");
  assert.equal(s.state, "open");
  s.close();
});

test("close codes decide between stop, resume and a fresh start", async () => {
  const table = [
    { code: 4001, state: "closed", sockets: 1 },
    { code: 1008, state: "closed", sockets: 1 },
    { code: 4002, state: "reconnecting", sockets: 2, fresh: true },
    { code: 1012, state: "reconnecting", sockets: 2, fresh: false },
  ];
  for (const tt of table) {
    const { s, sockets } = session();
    await until(() => sockets[0]?.sent.length === 1, "hello");
    sockets[0].push(welcome());
    sockets[0].drop(tt.code);
    assert.equal(s.state, tt.state, `state after close ${tt.code}`);
    if (tt.sockets === 2) {
      await until(() => sockets.length === 2 && sockets[1].sent.length === 1, `reconnect after ${tt.code}`);
      assert.equal("resume" in sockets[1].sent[0], !tt.fresh, `hello after ${tt.code} resumes`);
    } else {
      await sleep(700);
      assert.equal(sockets.length, 1, `sockets after close ${tt.code}`);
    }
    s.close();
  }
});

test("silence past the heartbeat timeout reconnects", async () => {
  const { s, sockets } = session();
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push(welcome({ heartbeat: { interval: 100, timeout: 500 } }));
  await until(() => sockets[0].of("ping").length >= 2, "pings");
  assert.equal(sockets[0].of("ping")[0].ack, 0);
  // The fake server never answers: after 500 ms the client gives up on this socket.
  await until(() => sockets.length === 2, "reconnect after silence");
  assert.ok(sockets[0].closedBy >= 4000, `closed the dead socket with ${sockets[0].closedBy}`);
  s.close();
});

test("offline after failed reconnects, open again when the server answers", async () => {
  const { s, sockets } = session({ offlineAfter: 400 });
  const states = [];
  s.addEventListener("state", (e) => states.push(e.detail.state));
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push(welcome());
  sockets[0].drop(1006);
  // The server stays unreachable: every new socket fails at once.
  const down = setInterval(() => {
    for (const ws of sockets) if (ws.readyState === 1 && !ws.failed) (ws.failed = true), ws.drop(1006);
  }, 5);
  try {
    await until(() => s.state === "offline", () => `state offline, got ${states}`);
  } finally {
    clearInterval(down);
  }
  assert.ok(sockets.length >= 2, `only ${sockets.length} connection attempts before offline`);
  await until(() => sockets.at(-1).readyState === 1 && !sockets.at(-1).failed && sockets.at(-1).sent.length === 1, "a new attempt");
  sockets.at(-1).push(welcome({ resumed: true }));
  assert.equal(s.state, "open");
  assert.deepEqual([states[0], states[1], states.includes("offline"), states.at(-1)], ["open", "reconnecting", true, "open"], `state sequence ${states}`);
  s.close();
});

test("malformed and unknown server messages are ignored", async () => {
  const { s, sockets } = session();
  const errors = [];
  s.addEventListener("error", (e) => errors.push(e.detail.code));
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].onmessage?.({ data: "{not json" });
  sockets[0].push({ type: "welcome", id: 5 }); // missing fields
  assert.equal(s.state, "connecting");
  sockets[0].push(welcome());
  sockets[0].push({ seq: 1, type: "from-the-future", x: 1 });
  sockets[0].push({ seq: 2, type: "error", code: "rate-limited", message: "slow down" });
  assert.deepEqual(errors, ["rate-limited"]);
  s.close();
});

/** RTCPeerConnection and MediaStream stand-ins: enough for a call's setup, recording what the session does to them. */
function fakeRTC() {
  /** @type {FakePC[]} */
  const pcs = [];
  class FakePC {
    constructor(config) {
      this.config = { ...config };
      this.configs = [];
      this.restarts = 0;
      this.signalingState = "stable";
      this.localDescription = this.remoteDescription = null;
      pcs.push(this);
    }
    getConfiguration() {
      return { ...this.config };
    }
    setConfiguration(c) {
      this.config = { ...c };
      this.configs.push(this.config);
    }
    restartIce() {
      this.restarts++;
    }
    createDataChannel() {
      return { close() {} };
    }
    addTrack() {}
    addTransceiver() {}
    getSenders() {
      return [];
    }
    async setLocalDescription(d) {
      if (d?.type === "rollback") this.signalingState = "stable";
    }
    close() {
      this.signalingState = "closed";
    }
  }
  class FakeStream {
    getTracks() {
      return [];
    }
  }
  globalThis.RTCPeerConnection = /** @type {any} */ (FakePC);
  globalThis.MediaStream ??= /** @type {any} */ (FakeStream);
  return pcs;
}

test("welcome.lost: unacked requests dropped, numbering goes on, calls restart ICE on the new node's relay", async () => {
  const table = [
    { name: "lost", lost: true, resent: [], restarts: 1 },
    { name: "lost absent", lost: undefined, resent: [[2, "two"]], restarts: 0 },
    { name: "lost false", lost: false, resent: [[2, "two"]], restarts: 0 },
  ];
  for (const tt of table) {
    const pcs = fakeRTC();
    const { s, sockets } = session({ iceTransportPolicy: "relay" });
    const welcomes = [];
    s.addEventListener("welcome", (e) => welcomes.push(e.detail));
    await until(() => sockets[0]?.sent.length === 1, "hello");
    sockets[0].push(welcome({ peers: [{ id: "p", name: "P" }], iceServers: [{ urls: ["turn:a:1"], username: "u", credential: "c" }] }));
    sockets[0].push({ seq: 1, type: "call", call: "c1", from: "p", name: "P" });
    const call = s.calls.get("c1");
    assert.ok(call, `${tt.name}: incoming call`);
    call.accept(); // seq 1
    assert.equal(pcs.length, 1, `${tt.name}: one peer connection`);
    assert.deepEqual(pcs[0].config, { iceServers: [{ urls: ["turn:a:1"], username: "u", credential: "c" }], iceTransportPolicy: "relay" });
    sockets[0].push({ type: "pong", ack: 1 });
    s.signal("p", "two"); // never acked: the node holding the session dies
    sockets[0].drop(1006);
    await until(() => sockets[1]?.sent.length === 1, `${tt.name}: resume hello`);
    const fresh = [{ urls: ["turn:b:2"], username: "u2", credential: "c2" }];
    const w = welcome({ resumed: true, ack: 1, peers: [{ id: "p", name: "P" }], iceServers: fresh });
    if (tt.lost !== undefined) w.lost = tt.lost;
    sockets[1].push(w);
    assert.equal(s.state, "open", tt.name);
    assert.deepEqual(sockets[1].of("signal").map((m) => [m.seq, m.data]), tt.resent, `${tt.name}: resent after the welcome`);
    assert.equal(welcomes.at(-1).lost, tt.lost === true, `${tt.name}: welcome event lost`);
    // setConfiguration gets the welcome's servers and keeps the relay policy.
    assert.deepEqual(pcs[0].config, { iceServers: fresh, iceTransportPolicy: "relay" }, `${tt.name}: configuration`);
    await until(() => pcs[0].restarts === tt.restarts, `${tt.name}: ${tt.restarts} ICE restarts`, 2000);
    await sleep(20); // a second (wrong) restart would come from the same turn of the event loop
    assert.equal(pcs[0].restarts, tt.restarts, `${tt.name}: ICE restarts`);
    assert.equal(call.state, "connecting", `${tt.name}: the call goes on`);
    s.signal("p", "three");
    assert.deepEqual(sockets[1].of("signal").at(-1).seq, 3, `${tt.name}: numbering continues above the dropped message`);
    sockets[1].push({ type: "pong", ack: 3 });
    sockets[1].drop(1006);
    await until(() => sockets[2]?.sent.length === 1, `${tt.name}: second resume hello`);
    sockets[2].push(welcome({ resumed: true, ack: 3, peers: [{ id: "p", name: "P" }], iceServers: fresh }));
    assert.deepEqual(sockets[2].of("signal"), [], `${tt.name}: nothing left to resend`);
    s.close();
  }
});

test("welcome.lost rolls back a local offer that may never have reached the peer before restarting ICE", async () => {
  const pcs = fakeRTC();
  const { s, sockets } = session();
  await until(() => sockets[0]?.sent.length === 1, "hello");
  sockets[0].push(welcome({ peers: [{ id: "p", name: "P" }] }));
  sockets[0].push({ seq: 1, type: "call", call: "c1", from: "p", name: "P" });
  s.calls.get("c1").accept();
  pcs[0].signalingState = "have-local-offer"; // our offer went out just before the node died
  sockets[0].drop(1006);
  await until(() => sockets[1]?.sent.length === 1, "resume hello");
  sockets[1].push(welcome({ resumed: true, lost: true, ack: 0, peers: [{ id: "p", name: "P" }] }));
  await until(() => pcs[0].restarts === 1, "ICE restart", 2000);
  assert.equal(pcs[0].signalingState, "stable", "rolled back first");
  s.close();
});
