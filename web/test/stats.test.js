// Unit tests of stats.js (node --test web/test/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { summarizeStats, describePath } from "../static/stats.js";

test("summarizeStats finds the path and computes bitrates", () => {
  const t0 = new Map([
    ["T", { id: "T", type: "transport", selectedCandidatePairId: "P" }],
    ["P", { id: "P", type: "candidate-pair", localCandidateId: "L", remoteCandidateId: "R", state: "succeeded", currentRoundTripTime: 0.0234, timestamp: 1000 }],
    ["L", { id: "L", type: "local-candidate", candidateType: "relay", protocol: "udp", relayProtocol: "tcp" }],
    ["R", { id: "R", type: "remote-candidate", candidateType: "relay", protocol: "udp" }],
    ["I", { id: "I", type: "inbound-rtp", kind: "video", bytesReceived: 1000, framesDecoded: 10, timestamp: 1000 }],
    ["O", { id: "O", type: "outbound-rtp", kind: "video", bytesSent: 2000, timestamp: 1000 }],
  ]);
  const s0 = summarizeStats(t0);
  assert.deepEqual([s0.path, s0.transport, s0.localType, s0.rtt, s0.inKbps, s0.framesDecoded], ["relay", "tcp", "relay", 23, null, 10]);
  assert.equal(describePath(s0), "Relayed · TCP · 23 ms");
  const t1 = new Map(t0);
  t1.set("I", { ...t0.get("I"), bytesReceived: 126000, timestamp: 2000 });
  t1.set("O", { ...t0.get("O"), bytesSent: 252000, timestamp: 2000 });
  const s1 = summarizeStats(t1, s0);
  assert.deepEqual([s1.inKbps, s1.outKbps], [1000, 2000], "bitrates over 1 s");
});

test("summarizeStats falls back to the nominated pair", () => {
  const direct = new Map([
    ["P", { id: "P", type: "candidate-pair", localCandidateId: "L", remoteCandidateId: "R", state: "succeeded", nominated: true }],
    ["L", { id: "L", type: "local-candidate", candidateType: "host", protocol: "udp" }],
    ["R", { id: "R", type: "remote-candidate", candidateType: "srflx", protocol: "udp" }],
  ]);
  const s = summarizeStats(direct);
  assert.deepEqual([s.path, s.transport, s.rtt], ["direct", "udp", null]);
  assert.equal(describePath(s), "Direct · UDP");
});

test("summarizeStats of an empty report", () => {
  assert.equal(summarizeStats(new Map()).path, "unknown");
  assert.equal(describePath(summarizeStats(new Map())), "Connecting…");
});
