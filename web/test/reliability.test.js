// Unit tests of reliability.js (node --test web/test/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, closeAction, Outbox, Inbox } from "../static/reliability.js";

test("backoffDelay stays within full-jitter bounds", () => {
  const table = [
    { attempt: 0, max: 500 },
    { attempt: 1, max: 1000 },
    { attempt: 3, max: 4000 },
    { attempt: 5, max: 15000 }, // 16000 capped
    { attempt: 50, max: 15000 },
  ];
  for (const tt of table) {
    assert.equal(backoffDelay(tt.attempt, { random: () => 0 }), 0, `backoffDelay(${tt.attempt}, random=0)`);
    assert.equal(backoffDelay(tt.attempt, { random: () => 0.999999 }), tt.max - 1, `backoffDelay(${tt.attempt}, random≈1)`);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(tt.attempt);
      assert.ok(d >= 0 && d < tt.max, `backoffDelay(${tt.attempt}) = ${d}, want in [0, ${tt.max})`);
    }
  }
  assert.equal(backoffDelay(2, { base: 100, cap: 250, random: () => 0.5 }), 125);
  assert.equal(backoffDelay(-3, { random: () => 0.5 }), 250, "negative attempt counts as 0");
});

test("backoffDelay spreads a crowd", () => {
  const seen = new Set();
  for (let i = 0; i < 100; i++) seen.add(Math.floor(backoffDelay(4) / 500));
  assert.ok(seen.size >= 8, `100 delays fell in only ${seen.size} of 16 buckets: not jittered`);
});

test("closeAction decides from the close code", () => {
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
  for (const [code, want] of table) assert.equal(closeAction(code), want, `closeAction(${code})`);
});

test("Outbox numbers messages and forgets acked ones", () => {
  const o = new Outbox();
  assert.equal(o.add({ type: "a" }).seq, 1);
  assert.equal(o.add({ type: "b" }).seq, 2);
  assert.equal(o.add({ type: "c" }).seq, 3);
  o.ack(1);
  assert.deepEqual(o.pending.map((m) => m.type), ["b", "c"], "pending after ack 1");
  o.ack(undefined);
  assert.equal(o.pending.length, 2, "pending after ack undefined");
  assert.deepEqual(o.unacked(2).map((m) => m.seq), [3], "unacked(2)");
  o.ack(10);
  assert.equal(o.pending.length, 0, "pending after ack 10");
  assert.equal(o.add({ type: "d" }).seq, 4, "seq continues after acks");
  o.reset();
  assert.equal(o.add({ type: "e" }).seq, 1, "seq after reset");
});

test("Outbox.drop forgets the unacked messages and keeps numbering", () => {
  const o = new Outbox();
  o.add({ type: "a" });
  o.add({ type: "b" });
  o.drop();
  assert.deepEqual(o.unacked(0), [], "nothing to resend after drop");
  assert.equal(o.add({ type: "c" }).seq, 3, "seq continues above the dropped messages");
});

test("Inbox drops replayed messages", () => {
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
  for (const [m, want] of table) assert.equal(in_.accept(m), want, `accept(${JSON.stringify(m)})`);
  assert.equal(in_.last, 3);
});
