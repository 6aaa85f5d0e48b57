// Unit tests of the /check page's pure helpers (node --test web/test/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseIceURL, linesFrom, conclusion } from "../static/check.js";

test("parseIceURL splits STUN and TURN URLs", () => {
  const table = [
    ["stun:1.2.3.4:3478", { scheme: "stun", host: "1.2.3.4", port: 3478, transport: "udp" }],
    ["turn:h.example:3479?transport=tcp", { scheme: "turn", host: "h.example", port: 3479, transport: "tcp" }],
    ["turns:h.example:5349?transport=tcp", { scheme: "turns", host: "h.example", port: 5349, transport: "tcp" }],
    ["turn:[::1]:3478?transport=udp", { scheme: "turn", host: "[::1]", port: 3478, transport: "udp" }],
    ["turn:host", { scheme: "turn", host: "host", port: 3478, transport: "udp" }],
    ["http://x", null],
  ];
  for (const [url, want] of table) assert.deepEqual(parseIceURL(url), want, `parseIceURL(${url})`);
  assert.deepEqual(
    linesFrom([{ urls: ["stun:h:1"] }, { urls: ["turn:h:1?transport=udp", "turn:h:1?transport=tcp", "turns:d:5349?transport=tcp"], username: "u", credential: "c" }]).map((l) => l.kind),
    ["stun", "turn-udp", "turn-tcp", "turn-tls"],
  );
});

test("conclusion says whether calls will work and what to open", () => {
  const row = (kind, ok, port = 3478) => ({ line: { kind, port, proto: kind === "turn-udp" || kind === "stun" ? "UDP" : "TCP" }, result: { ok } });
  const table = [
    { rows: [row("stun", true), row("turn-udp", true), row("turn-tcp", true)], call: { ok: true }, ok: true, has: "will work" },
    { rows: [row("stun", false), row("turn-udp", false), row("turn-tcp", true)], call: { ok: true }, ok: true, has: "UDP to the server is blocked" },
    { rows: [row("stun", true), row("turn-udp", true)], call: { ok: false }, ok: false, has: "relay port range" },
    { rows: [row("stun", false), row("turn-udp", false), row("turn-tcp", false)], call: null, ok: false, has: "UDP 3478, TCP 3478" },
  ];
  for (const tt of table) {
    const c = conclusion(/** @type {any} */ (tt.rows), tt.call);
    assert.equal(c.ok, tt.ok, `conclusion ok for ${tt.has}`);
    assert.ok(c.text.includes(tt.has), `conclusion ${JSON.stringify(c.text)} lacks ${JSON.stringify(tt.has)}`);
  }
});
