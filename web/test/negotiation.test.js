// Unit tests of negotiation.js with fake peer connections (node --test
// web/test/). The tests with real RTCPeerConnections run in Chromium
// (web/testdata/unit_test.js).
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { Negotiator } from "../static/negotiation.js";

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

/** Polls cond until true; the deadline is generous, it only stops a hang. */
async function until(cond, what) {
  const end = Date.now() + 10000;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

test("candidates wait for the remote description", async () => {
  const pc = new FakePC();
  const sent = [];
  const n = new Negotiator({ pc, polite: true, send: (s) => sent.push(s) });
  n.handle({ candidate: { candidate: "c1" } });
  n.handle({ candidate: { candidate: "c2" } });
  await n.queue;
  assert.deepEqual(pc.added, [], "added before the offer");
  assert.equal(n.pendingCandidates.length, 2, "buffered");
  await n.handle({ description: { type: "offer", sdp: "x" } });
  assert.deepEqual(pc.added.map((c) => c.candidate), ["c1", "c2"], "added after the offer, in order");
  assert.deepEqual(sent.map((s) => s.description?.type), ["answer"]);
  await n.handle({ candidate: { candidate: "c3" } });
  await n.handle({ candidate: null });
  assert.deepEqual(pc.added.map((c) => c && c.candidate), ["c1", "c2", "c3", null], "later candidates go straight in");
});

test("the impolite side ignores a colliding offer", async () => {
  const pc = new FakePC();
  const n = new Negotiator({ pc, polite: false, send: () => {} });
  await n.negotiationNeeded();
  assert.equal(pc.signalingState, "have-local-offer");
  await n.handle({ description: { type: "offer", sdp: "theirs" } });
  assert.equal(n.stats.offersIgnored, 1);
  assert.equal(pc.remoteDescription, null);
  // Candidates of the ignored offer must not raise errors.
  const errors = [];
  n.onError = (e) => errors.push(e);
  await n.handle({ candidate: { candidate: "bad" } });
  assert.equal(errors.length, 0, "errors from ignored candidates");
  await n.handle({ description: { type: "answer", sdp: "a" } });
  assert.equal(pc.signalingState, "stable");
});

test("the polite side rolls back for their offer", async () => {
  const pc = new FakePC();
  const sent = [];
  const n = new Negotiator({ pc, polite: true, send: (s) => sent.push(s), waitForOffer: false });
  await n.negotiationNeeded();
  await n.handle({ description: { type: "offer", sdp: "theirs" } });
  assert.equal(n.stats.rollbacks, 1);
  assert.deepEqual(pc.log, ["local offer", "rollback", "remote offer", "local answer"]);
  assert.deepEqual(sent.map((s) => s.description.type), ["offer", "answer"]);
});

test("the polite side waits for the first offer, then offers what is left", async () => {
  const pc = new FakePC();
  pc.getTransceivers = () => [{ mid: "0" }, { mid: null }]; // one of ours is not negotiated yet
  const sent = [];
  const n = new Negotiator({ pc, polite: true, send: (s) => sent.push(s) });
  await n.negotiationNeeded();
  assert.deepEqual(sent, [], "sent before the first offer");
  await n.handle({ description: { type: "offer", sdp: "theirs" } });
  await until(() => sent.length === 2, "our own offer");
  assert.deepEqual(sent.map((s) => s.description.type), ["answer", "offer"]);
});

test("an offer while making one is a collision", async () => {
  const pc = new FakePC();
  const n = new Negotiator({ pc, polite: false, send: () => {} });
  const making = n.negotiationNeeded(); // still in setLocalDescription
  await n.handle({ description: { type: "offer", sdp: "theirs" } });
  await making;
  assert.equal(n.stats.offersIgnored, 1);
});

test("a closed negotiator sends nothing", async () => {
  const pc = new FakePC();
  const sent = [];
  const n = new Negotiator({ pc, polite: true, send: (s) => sent.push(s) });
  n.close();
  await n.negotiationNeeded();
  await n.handle({ description: { type: "offer", sdp: "x" } });
  n.localCandidate({ candidate: "c" });
  assert.deepEqual(sent, []);
});
