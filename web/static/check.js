// @ts-check
// The network self-check at /check: opens the signaling WebSocket through
// the client library (hello → welcome), tries every STUN and TURN URL the
// server hands out, one at a time in its own RTCPeerConnection, then makes a
// call through the relay between two connections in this page.

import { connect } from "./switchboard.js";
import { summarizeStats } from "./stats.js";
import { storedToken, tokenClaims } from "./signin.js";

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return /** @type {T} */ (el);
}

/** How long to wait for one URL's candidates: an answering server takes
 * milliseconds; a dropped UDP packet is retried by the browser for several
 * seconds, so 8 s separates "slow" from "blocked" without making people wait. */
const GATHER_TIMEOUT = 8000;
/** How long the relay-only call may take to connect. */
const CALL_TIMEOUT = 15000;
/** How long the hello may take to be welcomed: the server answers at once;
 * a proxy that holds the upgrade open gets this long to let it through. */
const SIGNAL_TIMEOUT = 10000;

/**
 * @typedef {object} SignalingResult
 * @property {"ok" | "unauthorized" | "blocked" | "refused"} kind
 * @property {string} verdict
 * @property {import("./switchboard.js").IceServer[]} [iceServers] from the welcome
 */

/**
 * Opens a session the way the app does and waits for the welcome. It joins
 * a room of its own (the token's room if the token allows only one), so it
 * does not show up in anyone's lobby, and leaves at once.
 * @param {string} token
 * @returns {Promise<SignalingResult>}
 */
function signalingCheck(token) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const room = tokenClaims(token)?.room || `check-${Math.random().toString(36).slice(2, 10)}`;
    const s = connect(null, { name: "Network check", room, token: token || undefined });
    let code = "";
    let settled = false;
    /** @param {SignalingResult} r */
    const done = (r) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.close();
      resolve(r);
    };
    const blocked = (/** @type {string} */ how) => ({
      kind: /** @type {const} */ ("blocked"),
      verdict: `Signaling: blocked. This page loaded, but ${how}: a proxy, firewall or security software between you and the server blocks WebSocket connections (on the server side: a reverse proxy that does not pass the Upgrade header).`,
    });
    const timer = setTimeout(() => done(blocked(`the WebSocket to /ws got no answer in ${SIGNAL_TIMEOUT / 1000} s`)), SIGNAL_TIMEOUT);
    s.addEventListener("welcome", () =>
      done({ kind: "ok", verdict: `Signaling: works. The server answered over the WebSocket in ${Math.round(performance.now() - t0)} ms.`, iceServers: s.iceServers }),
    );
    s.addEventListener("error", (e) => (code = e.detail.code));
    s.addEventListener("closed", (e) => {
      if (code === "unauthorized") done({ kind: "unauthorized", verdict: "Signaling: not signed in. This server is private and refused the connection without a valid sign-in." });
      else done({ kind: "refused", verdict: `Signaling: the server refused the session (${code || e.detail.reason || `close ${e.detail.code}`}).` });
    });
    s.addEventListener("state", (e) => {
      // A drop before any welcome: the upgrade failed or the socket was cut.
      if (e.detail.state !== "reconnecting") return;
      if (e.detail.code === 1006) done(blocked("the WebSocket to /ws could not be opened"));
      else done({ kind: "refused", verdict: `Signaling: the server closed the connection (${code || `close ${e.detail.code}`}).` });
    });
  });
}

/**
 * @typedef {object} Line
 * @property {string} url
 * @property {string} [username]
 * @property {string} [credential]
 * @property {"stun" | "turn-udp" | "turn-tcp" | "turn-tls"} kind
 * @property {string} label
 * @property {string} host
 * @property {number} port
 * @property {string} proto udp or tcp, for the advice
 */

/**
 * @typedef {object} Result
 * @property {boolean} ok
 * @property {string} verdict
 * @property {string[]} candidates
 * @property {string} [publicAddress]
 */

/**
 * Splits a STUN/TURN URL (RFC 7064/7065) into what the page needs.
 * @param {string} url
 * @returns {{scheme: string, host: string, port: number, transport: string} | null}
 */
export function parseIceURL(url) {
  const m = url.match(/^(stuns?|turns?):(\[[^\]]+\]|[^:?]+)(?::(\d+))?(?:\?transport=(udp|tcp))?$/i);
  if (!m) return null;
  const scheme = m[1].toLowerCase();
  const secure = scheme.endsWith("s");
  const port = m[3] ? Number(m[3]) : secure ? 5349 : 3478;
  const transport = (m[4] || (secure ? "tcp" : "udp")).toLowerCase();
  return { scheme, host: m[2], port, transport };
}

/**
 * @param {{urls: string | string[], username?: string, credential?: string}[]} servers
 * @returns {Line[]}
 */
export function linesFrom(servers) {
  /** @type {Line[]} */
  const out = [];
  for (const s of servers) {
    for (const url of Array.isArray(s.urls) ? s.urls : [s.urls]) {
      const p = parseIceURL(url);
      if (!p) continue;
      /** @type {Line["kind"]} */
      let kind;
      let label;
      if (p.scheme.startsWith("stun")) {
        kind = "stun";
        label = "STUN";
      } else if (p.scheme === "turns") {
        kind = "turn-tls";
        label = "TURN over TLS";
      } else if (p.transport === "tcp") {
        kind = "turn-tcp";
        label = "TURN over TCP";
      } else {
        kind = "turn-udp";
        label = "TURN over UDP";
      }
      out.push({ url, username: s.username, credential: s.credential, kind, label, host: p.host, port: p.port, proto: p.scheme === "turns" || p.transport === "tcp" ? "TCP" : "UDP" });
    }
  }
  return out;
}

/**
 * Gathers candidates against one URL only.
 * @param {Line} line
 * @returns {Promise<Result>}
 */
async function gather(line) {
  const turn = line.kind !== "stun";
  const pc = new RTCPeerConnection({
    iceServers: [{ urls: [line.url], username: line.username, credential: line.credential }],
    iceTransportPolicy: turn ? "relay" : "all",
  });
  /** @type {RTCIceCandidate[]} */
  const cands = [];
  /** @type {RTCPeerConnectionIceErrorEvent[]} */
  const errors = [];
  pc.createDataChannel("check");
  const done = new Promise((resolve) => {
    const timer = setTimeout(() => resolve("timeout"), GATHER_TIMEOUT);
    pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) {
        cands.push(e.candidate);
        // One relay candidate answers the TURN question; no need to wait for the rest.
        if (turn && e.candidate.type === "relay") {
          clearTimeout(timer);
          resolve("found");
        }
      }
      if (!e.candidate) {
        clearTimeout(timer);
        resolve("complete");
      }
    };
    pc.onicecandidateerror = (e) => errors.push(/** @type {RTCPeerConnectionIceErrorEvent} */ (e));
  });
  try {
    await pc.setLocalDescription();
    const how = await done;
    return verdict(line, cands, errors, how === "timeout");
  } finally {
    pc.close();
  }
}

/**
 * How the browser reaches TURN for a relay candidate (not in every DOM typing yet).
 * @param {RTCIceCandidate} c
 * @returns {string}
 */
function relayProtocol(c) {
  return /** @type {any} */ (c).relayProtocol ?? "";
}

/**
 * @param {Line} line
 * @param {RTCIceCandidate[]} cands
 * @param {RTCPeerConnectionIceErrorEvent[]} errors
 * @param {boolean} timedOut
 * @returns {Result}
 */
function verdict(line, cands, errors, timedOut) {
  // The interesting candidates first; a machine with many interfaces has
  // a long tail of host ones that say nothing about the server.
  const order = { relay: 0, srflx: 1, prflx: 2, host: 3 };
  const sorted = [...cands].sort((a, b) => (order[a.type ?? "host"] ?? 4) - (order[b.type ?? "host"] ?? 4));
  const shown = sorted.slice(0, 4).map((c) => `${c.type} ${c.protocol} ${c.address}:${c.port}${relayProtocol(c) ? ` (to TURN over ${relayProtocol(c)})` : ""}`);
  if (sorted.length > 4) shown.push(`… and ${sorted.length - 4} more local addresses`);
  const where = `${line.proto} to port ${line.port}`;
  const auth = errors.find((e) => e.errorCode === 401 || e.errorCode === 403 || e.errorCode === 437 || e.errorCode === 438);
  if (line.kind === "stun") {
    const srflx = cands.find((c) => c.type === "srflx");
    if (srflx) {
      return { ok: true, verdict: `${line.label}: works. The server sees you as ${srflx.address}.`, candidates: shown, publicAddress: srflx.address ?? "" };
    }
    const unreachable = errors.find((e) => e.errorCode === 701);
    if (unreachable || timedOut) {
      return { ok: false, verdict: `${line.label}: blocked. No answer: your network drops ${where}.`, candidates: shown };
    }
    // The server answered with our own address: the browser drops such a
    // candidate as a duplicate of the host one. No NAT between us. Without a
    // UDP socket to send from, though, nothing was tested.
    const host = cands.find((c) => c.type === "host" && c.protocol === "udp");
    if (!host) return { ok: false, verdict: `${line.label}: could not test: the browser opened no UDP socket.`, candidates: shown };
    return {
      ok: true,
      verdict: `${line.label}: works. No address translation between you and the server.`,
      candidates: shown,
      publicAddress: host?.address ?? "",
    };
  }
  const relay = cands.find((c) => c.type === "relay");
  if (relay) {
    return { ok: true, verdict: `${line.label}: works. Relay address ${relay.address}:${relay.port}.`, candidates: shown };
  }
  if (auth) {
    return {
      ok: false,
      verdict: `${line.label}: the server refused the credentials (${auth.errorCode} ${auth.errorText}). Check that this machine's clock is right and that SWITCHBOARD_TURN_SECRET is the same on every server.`,
      candidates: shown,
    };
  }
  const err = errors[0];
  if (err && err.errorCode !== 701) {
    return { ok: false, verdict: `${line.label}: failed (${err.errorCode} ${err.errorText}).`, candidates: shown };
  }
  return { ok: false, verdict: `${line.label}: blocked. No answer: your network drops ${where}.`, candidates: shown };
}

/**
 * Makes a call between two connections in this page that may only use relay
 * candidates, and measures the round trip through the relay.
 * @param {Line[]} turnLines the TURN URLs that worked
 * @returns {Promise<{ok: boolean, text: string, rtt?: number, transport?: string}>}
 */
async function relayCall(turnLines) {
  const iceServers = turnLines.map((l) => ({ urls: [l.url], username: l.username, credential: l.credential }));
  /** @type {RTCConfiguration} */
  const cfg = { iceServers, iceTransportPolicy: "relay" };
  const a = new RTCPeerConnection(cfg);
  const b = new RTCPeerConnection(cfg);
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate).catch(() => {});
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate).catch(() => {});
  const ch = a.createDataChannel("rtt");
  b.ondatachannel = (e) => {
    e.channel.onmessage = (m) => e.channel.send(m.data); // echo
  };
  try {
    const opened = new Promise((resolve, reject) => {
      ch.onopen = resolve;
      setTimeout(() => reject(new Error("timeout")), CALL_TIMEOUT);
    });
    await a.setLocalDescription();
    await b.setRemoteDescription(/** @type {RTCSessionDescriptionInit} */ (a.localDescription));
    await b.setLocalDescription();
    await a.setRemoteDescription(/** @type {RTCSessionDescriptionInit} */ (b.localDescription));
    await opened;
    // Five echoes through the relay; report the median so one hiccup does not count.
    const samples = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const back = new Promise((resolve) => (ch.onmessage = resolve));
      ch.send(String(i));
      await back;
      samples.push(performance.now() - t0);
    }
    samples.sort((x, y) => x - y);
    const rtt = Math.round(samples[2] * 10) / 10;
    const s = summarizeStats(await a.getStats());
    return { ok: s.path === "relay", rtt, transport: s.transport, text: `Works: data went through the relay${s.transport ? ` (TURN over ${s.transport.toUpperCase()})` : ""} and back in ${rtt} ms.` };
  } catch {
    return { ok: false, text: "Failed: the relay allocated addresses, but no data got through it." };
  } finally {
    a.close();
    b.close();
  }
}

/**
 * The closing sentence: will calls work, and if not, what to open.
 * @param {Array<{line: Line, result: Result}>} rows
 * @param {{ok: boolean} | null} call
 * @param {boolean} [signaling] whether the WebSocket worked (default true)
 */
export function conclusion(rows, call, signaling = true) {
  if (!signaling) {
    return {
      ok: false,
      text: "Calls will not work from this network: the WebSocket to the server is blocked, so the app cannot reach anyone. Try another network, or ask whoever runs this network (or the server's reverse proxy) to allow WebSocket connections.",
    };
  }
  const ok = (/** @type {string} */ kind) => rows.some((r) => r.line.kind === kind && r.result.ok);
  const has = (/** @type {string} */ kind) => rows.some((r) => r.line.kind === kind);
  const turnOK = ok("turn-udp") || ok("turn-tcp") || ok("turn-tls");
  const ports = [...new Set(rows.map((r) => `${r.line.proto} ${r.line.port}`))].join(", ");
  if (turnOK && call?.ok) {
    if (has("turn-udp") && !ok("turn-udp")) {
      return { ok: true, text: `Calls will work from this network. UDP to the server is blocked, so calls that cannot go direct are relayed over TCP, with a little more delay; opening UDP ${rows.find((r) => r.line.kind === "turn-udp")?.line.port} would help.` };
    }
    return { ok: true, text: "Calls will work from this network: direct when possible, through the relay otherwise." };
  }
  if (turnOK) {
    return {
      ok: false,
      text: "Calls may fail from this network: the relay hands out addresses but data does not flow through them. On the server, open the relay port range (UDP 49152–65535 unless SWITCHBOARD_RELAY_PORTS says otherwise) and check that SWITCHBOARD_PUBLIC_IP is the address clients reach.",
    };
  }
  if (ok("stun")) {
    return { ok: false, text: `Calls will only work when a direct path exists: the relay is unreachable. Forward or open ${ports} to the Switchboard server, and check the TURN secret and clock.` };
  }
  return { ok: false, text: `Calls will not work from this network: nothing reached the server. Forward or open ${ports || "the STUN/TURN ports"} to the Switchboard server (router port forwarding and firewall), or try another network.` };
}

/**
 * Ends the check early with a verdict; nothing stays "waiting".
 * @param {string} status
 * @param {string} summary
 * @param {string} relay
 */
function finish(status, summary, relay) {
  $("status").textContent = status;
  const callEl = $("relay-call");
  callEl.dataset.ok = "false";
  callEl.textContent = relay;
  const sum = $("summary");
  sum.dataset.ok = "false";
  sum.textContent = summary;
  document.body.dataset.done = "true";
}

/** The check stops here: this server needs a sign-in this browser does not have. */
function notSignedIn() {
  const sig = $("signaling");
  sig.dataset.ok = "false";
  sig.textContent = "Signaling: not signed in. This server is private.";
  finish("Not signed in.", "Not signed in: this server is private, so it does not let this page test anything. Open the app, sign in (invite link or passcode), then come back to this page.", "Skipped: not signed in.");
  const a = document.createElement("a");
  a.href = "/";
  a.textContent = "Open the app to sign in";
  $("summary").append(" ", a);
}

async function main() {
  const status = $("status");
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || storedToken(localStorage, Date.now() / 1000);
  status.textContent = "Opening the signaling connection…";
  const sig = await signalingCheck(token);
  const sigEl = $("signaling");
  sigEl.dataset.ok = String(sig.kind === "ok");
  sigEl.textContent = sig.verdict;
  if (sig.kind === "unauthorized") return notSignedIn();
  /** @type {Record<string, string>} */
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let data;
  if (sig.iceServers) {
    data = { iceServers: sig.iceServers };
  } else {
    // No session: ask over plain HTTPS, so the relay is still tested.
    try {
      const res = await fetch("/api/ice-servers", { headers, cache: "no-store" });
      if (res.status === 401) return notSignedIn();
      if (res.status === 429) throw new Error(`too many checks from your address, try again in ${res.headers.get("Retry-After") ?? "a few"} seconds`);
      if (!res.ok) throw new Error(`the server answered ${res.status}`);
      data = await res.json();
    } catch (err) {
      finish(
        `Could not get the server's addresses: ${/** @type {Error} */ (err).message}.`,
        sig.kind === "blocked" ? conclusion([], null, false).text : "Calls will not work: the page could not talk to the Switchboard server.",
        "Skipped: the server's addresses are not known.",
      );
      return;
    }
  }
  const lines = linesFrom(data.iceServers ?? []);
  status.textContent = `Testing ${lines.length} address${lines.length === 1 ? "" : "es"}…`;
  const tbody = $("lines");
  const rows = lines.map((line) => {
    const tr = document.createElement("tr");
    tr.dataset.kind = line.kind;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = line.label;
    const addr = document.createElement("td");
    const code = document.createElement("code");
    code.textContent = line.url;
    addr.append(code);
    const res = document.createElement("td");
    const v = document.createElement("div");
    v.className = "verdict";
    v.dataset.ok = "pending";
    v.textContent = "Testing…";
    const ul = document.createElement("ul");
    ul.className = "cands";
    res.append(v, ul);
    tr.append(th, addr, res);
    tbody.append(tr);
    return { line, v, ul };
  });
  // All at once: each has its own connection, and a blocked one must not
  // make the others wait out its timeout.
  const results = await Promise.all(
    rows.map(async (r) => {
      /** @type {Result} */
      const result = await gather(r.line).catch((err) => ({ ok: false, verdict: `${r.line.label}: could not test (${err.message}).`, candidates: [] }));
      r.v.dataset.ok = String(result.ok);
      r.v.textContent = result.verdict;
      r.ul.replaceChildren(
        ...result.candidates.map((c) => {
          const li = document.createElement("li");
          li.textContent = c;
          return li;
        }),
      );
      if (result.publicAddress) $("public-ip").textContent = result.publicAddress;
      return { line: r.line, result };
    }),
  );
  const turnOK = results.filter((r) => r.line.kind !== "stun" && r.result.ok).map((r) => r.line);
  const callEl = $("relay-call");
  let call = null;
  if (turnOK.length > 0) {
    callEl.textContent = "Calling through the relay…";
    call = await relayCall(turnOK);
    callEl.dataset.ok = String(call.ok);
    callEl.textContent = call.text;
    if (call.rtt !== undefined) callEl.dataset.rtt = String(call.rtt);
  } else {
    callEl.dataset.ok = "false";
    callEl.textContent = lines.length ? "Skipped: no TURN address worked." : "Skipped: the server hands out no TURN address.";
  }
  const c = conclusion(results, call, sig.kind === "ok");
  const sum = $("summary");
  sum.dataset.ok = String(c.ok);
  sum.textContent = c.text;
  status.textContent = "Done.";
  document.body.dataset.done = "true";
}

// Importing the module for its helpers (tests) must not start a check.
if (typeof document !== "undefined" && document.getElementById("lines")) {
  main().catch((err) => finish(`The check stopped: ${err?.message ?? err}.`, "The check could not finish; reload the page to try again.", "Skipped: the check stopped."));
}
