// Unit tests of transfer.js with a fake data channel (node --test web/test/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { sendFile, FileReceiver, CHUNK, HIGH_WATER } from "../static/transfer.js";

/** A data channel whose buffer drains when the test says so. */
class FakeChannel {
  readyState = "open";
  bufferedAmount = 0;
  /** @type {Array<string | ArrayBuffer>} */
  sent = [];
  /** @type {Array<() => void>} */
  low = [];
  send(d) {
    this.sent.push(d);
    if (typeof d !== "string") this.bufferedAmount += d.byteLength;
  }
  addEventListener(_type, fn) {
    this.low.push(fn);
  }
  drain() {
    this.bufferedAmount = 0;
    for (const fn of this.low.splice(0)) fn();
  }
}

function bytes(n) {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) & 0xff;
  return b;
}

/** Feeds what a sender sent into a receiver, as the remote side would see it. */
function deliver(sent, rx) {
  for (const d of sent) {
    if (typeof d === "string") rx.control(JSON.parse(d));
    else rx.chunk(d);
  }
}

test("a file arrives whole, in order, with progress both ways", async () => {
  const ch = new FakeChannel();
  const data = bytes(3 * CHUNK + 123);
  const out = [];
  // Drain as soon as the sender waits, so the test never blocks.
  const drainer = setInterval(() => ch.low.length && ch.drain(), 1);
  try {
    await sendFile(ch, Object.assign(new Blob([data], { type: "application/x-test" }), { name: "a.bin" }), "id1", (p) => out.push(p.done));
  } finally {
    clearInterval(drainer);
  }
  assert.deepEqual(out, [CHUNK, 2 * CHUNK, 3 * CHUNK, data.length], "sender progress");
  assert.deepEqual(JSON.parse(/** @type {string} */ (ch.sent[0])), { t: "file", id: "id1", name: "a.bin", size: data.length, mime: "application/x-test" });
  assert.deepEqual(JSON.parse(/** @type {string} */ (ch.sent.at(-1))), { t: "file-end", id: "id1" });
  const progress = [];
  const files = [];
  const rx = new FileReceiver((p) => progress.push(p.done), (f) => files.push(f));
  deliver(ch.sent, rx);
  assert.equal(files.length, 1);
  assert.deepEqual([files[0].name, files[0].size, files[0].mime], ["a.bin", data.length, "application/x-test"]);
  assert.deepEqual(new Uint8Array(await files[0].blob.arrayBuffer()), data, "bytes");
  assert.deepEqual(progress, [0, CHUNK, 2 * CHUNK, 3 * CHUNK, data.length], "receiver progress");
});

test("the sender waits while the channel buffer is full", async () => {
  const ch = new FakeChannel();
  const n = Math.ceil((HIGH_WATER * 2) / CHUNK) * CHUNK;
  let finished = false;
  const p = sendFile(ch, new Blob([bytes(n)]), "id2", () => {}).then(() => (finished = true));
  // Let it fill the buffer: it stops once more than HIGH_WATER is queued.
  while (ch.low.length === 0) await new Promise((r) => setImmediate(r));
  assert.ok(ch.bufferedAmount > HIGH_WATER && ch.bufferedAmount <= HIGH_WATER + CHUNK, `stopped at ${ch.bufferedAmount} buffered`);
  assert.equal(finished, false);
  const drainer = setInterval(() => ch.low.length && ch.drain(), 1);
  await p;
  clearInterval(drainer);
  assert.equal(finished, true);
});

test("a channel closing midway rejects the send", async () => {
  const ch = new FakeChannel();
  const p = sendFile(ch, new Blob([bytes(HIGH_WATER * 2)]), "id3", () => {});
  while (ch.low.length === 0) await new Promise((r) => setImmediate(r));
  ch.readyState = "closed";
  ch.drain();
  await assert.rejects(p, /closed during the transfer/);
  await assert.rejects(sendFile(ch, new Blob([]), "id4", () => {}), /not open/);
});

test("an empty file is a header and a trailer", async () => {
  const ch = new FakeChannel();
  const out = [];
  await sendFile(ch, new Blob([]), "e", (p) => out.push([p.size, p.done]));
  assert.equal(ch.sent.length, 2);
  assert.deepEqual(out, [[0, 0]]);
  const files = [];
  deliver(ch.sent, new FileReceiver(() => {}, (f) => files.push(f)));
  assert.deepEqual([files.length, files[0].size, files[0].name], [1, 0, "file"]);
});

test("the receiver ignores stray chunks, foreign trailers and oversize data", () => {
  const files = [];
  const rx = new FileReceiver(() => {}, (f) => files.push(f));
  rx.chunk(new ArrayBuffer(10)); // no header yet
  rx.control({ t: "file", id: "x", name: "n", size: 4, mime: "" });
  rx.chunk(new ArrayBuffer(8)); // more than announced
  rx.control({ t: "file-end", id: "other" });
  assert.equal(files.length, 0);
  rx.chunk(new ArrayBuffer(4));
  rx.control({ t: "file-end", id: "x" });
  assert.deepEqual(files.map((f) => [f.size, f.mime]), [[4, ""]]);
  rx.control({ t: "file", id: "y", name: "n", size: "lots" });
  rx.control({ t: "file-end", id: "y" });
  assert.equal(files[1].size, 0, "a bad size counts as 0");
});
