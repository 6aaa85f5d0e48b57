// Unit tests of signin.js (node --test web/test/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { inviteFromHash, tokenClaims, tokenUsable, storedToken, refusal, signIn, signInInfo, TOKEN_KEY } from "../static/signin.js";

/** An unsigned JWT with the given claims (the client never verifies). */
function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.c2ln`;
}

test("inviteFromHash reads the invite fragment", () => {
  const table = [
    ["#invite=abc.def.ghi", "abc.def.ghi"],
    ["invite=abc", "abc"],
    ["#x=1&invite=tok", "tok"],
    ["#", ""],
    ["", ""],
    ["#invite=", ""],
    ["#inviter=tok", ""],
  ];
  for (const [hash, want] of table) assert.equal(inviteFromHash(hash), want, `inviteFromHash(${JSON.stringify(hash)})`);
});

test("tokenClaims reads a JWT's claims, and nothing else", () => {
  assert.deepEqual(tokenClaims(jwt({ sub: "u", exp: 100, room: "fam", name: "Ada", extra: 1 })), { sub: "u", exp: 100, room: "fam", name: "Ada" });
  assert.deepEqual(tokenClaims(jwt({ name: "Zoë 🎉" })), { name: "Zoë 🎉" }, "UTF-8 claims");
  assert.deepEqual(tokenClaims(jwt({ exp: "soon", room: 5 })), {}, "claims of the wrong type are dropped");
  for (const bad of ["", "a.b", "a..c", "a.!!!.c", `x.${Buffer.from("[1]").toString("base64url")}.y`, `x.${Buffer.from("nope").toString("base64url")}.y`, null, undefined]) {
    assert.equal(tokenClaims(bad), null, `tokenClaims(${JSON.stringify(bad)})`);
  }
});

test("tokenUsable checks expiry with a margin", () => {
  const now = 1_000_000;
  assert.equal(tokenUsable(jwt({ exp: now + 3600 }), now), true);
  assert.equal(tokenUsable(jwt({ exp: now + 10 }), now), false, "expires within the margin");
  assert.equal(tokenUsable(jwt({ exp: now - 1 }), now), false);
  assert.equal(tokenUsable(jwt({ sub: "x" }), now), true, "no exp: the server judges");
  assert.equal(tokenUsable("garbage", now), false);
});

test("storedToken returns a usable token and removes a stale one", () => {
  const mem = new Map();
  const store = { getItem: (k) => mem.get(k) ?? null, setItem: (k, v) => mem.set(k, v), removeItem: (k) => mem.delete(k) };
  assert.equal(storedToken(store, 0), "");
  const good = jwt({ exp: 5000 });
  store.setItem(TOKEN_KEY, good);
  assert.equal(storedToken(store, 1000), good);
  assert.equal(storedToken(store, 9000), "", "expired");
  assert.equal(mem.has(TOKEN_KEY), false, "the expired token is removed");
});

test("refusal words each status", () => {
  const table = [
    { status: 401, body: { error: "bad-passcode", message: "Wrong passcode." }, ra: null, code: "bad-passcode", has: "Wrong passcode." },
    { status: 401, body: null, ra: null, code: "http-401", has: "wrong passcode" },
    { status: 410, body: { error: "expired" }, ra: null, code: "expired", has: "expired or was used up" },
    { status: 429, body: { error: "rate-limited", message: "x" }, ra: "7", code: "rate-limited", has: "Wait 7 seconds", retry: 7 },
    { status: 429, body: null, ra: "1", code: "http-429", has: "Wait 1 second ", retry: 1 },
    { status: 429, body: null, ra: "soon", code: "http-429", has: "Wait a little" },
    { status: 500, body: "oops", ra: null, code: "http-500", has: "answered 500" },
  ];
  for (const tt of table) {
    const r = refusal(tt.status, tt.body, tt.ra);
    assert.equal(r.code, tt.code, `code for ${tt.status}`);
    assert.ok(r.message.includes(tt.has), `message ${JSON.stringify(r.message)} lacks ${JSON.stringify(tt.has)}`);
    assert.equal(r.retryAfter, tt.retry, `retryAfter for ${tt.status} ${tt.ra}`);
  }
});

/** A fetch that answers from a table and records the requests. */
function fakeFetch(answer) {
  const calls = [];
  const fn = async (url, init = {}) => {
    calls.push({ url, method: init.method ?? "GET", body: init.body ? JSON.parse(init.body) : undefined });
    const { status, body, headers = {} } = answer(url, init);
    return new Response(typeof body === "string" ? body : JSON.stringify(body), { status, headers });
  };
  return { fn, calls };
}

test("signIn posts the invite or passcode and reads the grant", async () => {
  const tok = jwt({ exp: 9e9, room: "fam" });
  const f = fakeFetch(() => ({ status: 200, body: { token: tok, ttl: 3600, room: "fam", name: "Ada" } }));
  const r = await signIn(f.fn, { invite: "inv" });
  assert.deepEqual(r, { ok: true, grant: { token: tok, ttl: 3600, room: "fam", name: "Ada" } });
  assert.deepEqual(f.calls, [{ url: "/api/signin", method: "POST", body: { invite: "inv" } }]);
  const limited = fakeFetch(() => ({ status: 429, body: { error: "rate-limited", message: "slow" }, headers: { "Retry-After": "3" } }));
  assert.deepEqual(await signIn(limited.fn, { passcode: "x" }), { ok: false, code: "rate-limited", message: "Too many tries from your network. Wait 3 seconds and try again.", retryAfter: 3 });
  const html = fakeFetch(() => ({ status: 502, body: "<html>bad gateway</html>" }));
  assert.equal((await signIn(html.fn, { passcode: "x" })).ok, false);
  const empty = fakeFetch(() => ({ status: 200, body: {} }));
  assert.deepEqual(await signIn(empty.fn, { passcode: "x" }), { ok: false, code: "bad-answer", message: "The server's answer had no sign-in token." });
});

test("signInInfo: what the server needs; an old server needs nothing", async () => {
  assert.deepEqual(await signInInfo(fakeFetch(() => ({ status: 200, body: { required: true, passcode: true } })).fn), { required: true, passcode: true });
  assert.deepEqual(await signInInfo(fakeFetch(() => ({ status: 200, body: { required: true } })).fn), { required: true, passcode: false });
  assert.deepEqual(await signInInfo(fakeFetch(() => ({ status: 404, body: "not found" })).fn), { required: false, passcode: false });
  await assert.rejects(signInInfo(fakeFetch(() => ({ status: 500, body: "" })).fn), /500/);
});
