// Unit tests of protocol.js (node --test web/test/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseServerMessage, validPeers } from "../static/protocol.js";

test("parseServerMessage accepts every server message of PROTOCOL.md", () => {
  const ok = [
    { type: "welcome", id: "a", resume: "r", resumed: false, iceServers: [], ttl: 60, heartbeat: { interval: 1, timeout: 2 }, room: "", peers: [], ack: 0 },
    { seq: 1, type: "peer-joined", peer: { id: "b", name: "Bob", nearby: true } },
    { seq: 2, type: "peer-left", id: "b", reason: "left" },
    { seq: 3, type: "signal", from: "b", data: null },
    { seq: 4, type: "joined", room: "x", peers: [] },
    { seq: 5, type: "ringing", call: "c", to: "b" },
    { seq: 6, type: "call", call: "c", from: "b", name: "Bob" },
    { seq: 7, type: "accepted", call: "c", peer: "b", polite: true },
    { seq: 8, type: "declined", call: "c", from: "b" },
    { seq: 9, type: "cancelled", call: "c", from: "b" },
    { seq: 10, type: "busy", call: "c", from: "b" },
    { seq: 11, type: "hangup", call: "c", from: "b", reason: "hangup" },
    { seq: 12, type: "timeout", call: "c" },
    { seq: 13, type: "ice-servers", iceServers: [{ urls: ["stun:h:1"] }], ttl: 60 },
    { seq: 14, type: "token", token: "jwt", ttl: 3600 },
    { seq: 15, type: "error", code: "peer-unavailable", message: "gone", to: "b", ref: 7 },
    { type: "pong", ack: 3 },
    { type: "error", code: "unauthorized", message: "bad token" },
  ];
  for (const m of ok) assert.deepEqual(parseServerMessage(JSON.stringify(m)), m, m.type);
});

test("parseServerMessage refuses what the client cannot act on", () => {
  const table = [
    ["not JSON", "{"],
    ["not an object", "[1]"],
    ["null", "null"],
    ["no type", "{}"],
    ["type not a string", '{"type":1}'],
    ["unknown type (newer server)", '{"type":"shiny","seq":1}'],
    ["prototype key as type", '{"type":"constructor"}'],
    ["call without call id", '{"type":"accepted","polite":true}'],
    ["accepted with string polite", '{"type":"accepted","call":"c","polite":"yes"}'],
    ["peer-joined without peer name", '{"type":"peer-joined","peer":{"id":"x"}}'],
    ["token without token", '{"type":"token","ttl":1}'],
    ["negative seq", '{"type":"timeout","call":"c","seq":-1}'],
    ["fractional seq", '{"type":"timeout","call":"c","seq":1.5}'],
    ["string ack", '{"type":"pong","ack":"1"}'],
    ["signal without data", '{"type":"signal","from":"b"}'],
  ];
  for (const [name, text] of table) assert.equal(parseServerMessage(text), null, name);
  assert.equal(parseServerMessage(new ArrayBuffer(2)), null, "binary frame");
});

test("validPeers keeps well-formed entries", () => {
  assert.deepEqual(validPeers([{ id: "a", name: "A" }, null, { id: 1, name: "B" }, { id: "c" }, "x"]), [{ id: "a", name: "A" }]);
});

test("parseServerMessage keeps welcome.lost", () => {
  const w = { type: "welcome", id: "a", resume: "r", resumed: true, iceServers: [], ttl: 60, heartbeat: { interval: 1, timeout: 2 }, room: "", peers: [], ack: 4, lost: true };
  assert.equal(parseServerMessage(JSON.stringify(w))?.lost, true);
});
