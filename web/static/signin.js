// @ts-check
// Sign-in for servers with an auth secret: invite links (#invite=<jwt>, a
// fragment, so it never reaches the server's logs or a Referer), the optional
// passcode, and the stored sign-in token (localStorage) that the call app
// and /check send in hello / Authorization. The helpers are pure (node
// --test); fetch and storage are passed in.

/** localStorage key of the sign-in token. */
export const TOKEN_KEY = "switchboard.token";

/**
 * @typedef {{required: boolean, passcode: boolean}} SignInInfo what GET /api/signin says
 * @typedef {{token: string, ttl: number, room: string, name: string}} SignInGrant the 200 answer
 * @typedef {{ok: true, grant: SignInGrant} | {ok: false, code: string, message: string, retryAfter?: number}} SignInResult
 * @typedef {{sub?: string, exp?: number, room?: string, name?: string}} Claims
 * @typedef {Pick<Storage, "getItem" | "setItem" | "removeItem">} TokenStore
 */

/**
 * The invite token in a location.hash like "#invite=<jwt>" (other fragment
 * parameters may come along), or "".
 * @param {string} hash
 * @returns {string}
 */
export function inviteFromHash(hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  return (params.get("invite") ?? "").trim();
}

/**
 * The claims of a JWT, read without verifying it (the server verifies; the
 * client only wants the room and the expiry). null when it is not a JWT.
 * @param {string | null | undefined} token
 * @returns {Claims | null}
 */
export function tokenClaims(token) {
  const parts = (token ?? "").split(".");
  if (parts.length !== 3 || !parts[1]) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const c = JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (ch) => ch.charCodeAt(0))));
    if (!c || typeof c !== "object" || Array.isArray(c)) return null;
    /** @type {Claims} */
    const out = {};
    if (typeof c.sub === "string") out.sub = c.sub;
    if (typeof c.exp === "number") out.exp = c.exp;
    if (typeof c.room === "string") out.room = c.room;
    if (typeof c.name === "string") out.name = c.name;
    return out;
  } catch {
    return null;
  }
}

/**
 * Whether a stored token is worth sending: a JWT not expired at now (unix
 * seconds), with a margin of 30 s for clocks that are a little off and the
 * time the hello takes. A token without exp is left to the server to judge.
 * @param {string | null | undefined} token
 * @param {number} now unix seconds
 */
export function tokenUsable(token, now) {
  const c = tokenClaims(token);
  if (!c) return false;
  return c.exp === undefined || c.exp > now + 30;
}

/**
 * The stored token when it is usable; an expired or malformed one is removed.
 * @param {TokenStore} store
 * @param {number} now unix seconds
 * @returns {string}
 */
export function storedToken(store, now) {
  const t = store.getItem(TOKEN_KEY) ?? "";
  if (t && !tokenUsable(t, now)) store.removeItem(TOKEN_KEY);
  return t && tokenUsable(t, now) ? t : "";
}

/**
 * Words for a refused sign-in, from the answer's status, its JSON body (if
 * any) and Retry-After.
 * @param {number} status
 * @param {unknown} body
 * @param {string | null} retryAfter
 * @returns {{ok: false, code: string, message: string, retryAfter?: number}}
 */
export function refusal(status, body, retryAfter) {
  const b = body && typeof body === "object" ? /** @type {Record<string, unknown>} */ (body) : {};
  const code = typeof b.error === "string" && b.error ? b.error : `http-${status}`;
  const server = typeof b.message === "string" ? b.message.trim() : "";
  if (status === 429) {
    const secs = Number(retryAfter);
    const wait = Number.isFinite(secs) && secs > 0 ? Math.ceil(secs) : undefined;
    const message = `Too many tries from your network. Wait ${wait ? `${wait} second${wait === 1 ? "" : "s"}` : "a little"} and try again.`;
    return wait ? { ok: false, code, message, retryAfter: wait } : { ok: false, code, message };
  }
  /** @type {Record<number, string>} */
  const fallback = {
    400: "The server did not understand the sign-in request.",
    401: "That did not work: wrong passcode, or the invite link is not valid.",
    403: "This invite link is not valid here.",
    404: "This server has no sign-in.",
    410: "This invite link has expired or was used up. Ask the host for a new one.",
  };
  return { ok: false, code, message: server || fallback[status] || `The server answered ${status}.` };
}

/**
 * Asks the server whether it needs a sign-in. An old server without
 * /api/signin (404) needs none.
 * @param {typeof fetch} fetchFn
 * @returns {Promise<SignInInfo>}
 */
export async function signInInfo(fetchFn) {
  const res = await fetchFn("/api/signin", { cache: "no-store" });
  if (res.status === 404) return { required: false, passcode: false };
  if (!res.ok) throw new Error(`the server answered ${res.status}`);
  const b = await res.json();
  return { required: b?.required === true, passcode: b?.passcode === true };
}

/**
 * Signs in with an invite token or a passcode.
 * @param {typeof fetch} fetchFn
 * @param {{invite: string} | {passcode: string}} body
 * @returns {Promise<SignInResult>}
 */
export async function signIn(fetchFn, body) {
  const res = await fetchFn("/api/signin", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    cache: "no-store",
  });
  let b = null;
  try {
    b = await res.json();
  } catch {
    /* not JSON: refusal() words it from the status */
  }
  if (!res.ok) return refusal(res.status, b, res.headers.get("Retry-After"));
  if (!b || typeof b.token !== "string" || !b.token) return { ok: false, code: "bad-answer", message: "The server's answer had no sign-in token." };
  return {
    ok: true,
    grant: { token: b.token, ttl: Number(b.ttl) || 0, room: typeof b.room === "string" ? b.room : "", name: typeof b.name === "string" ? b.name : "" },
  };
}
