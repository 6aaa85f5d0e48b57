// @ts-check
// switchboard.js: the browser client of a Switchboard server. It speaks the
// signaling protocol (signaling/PROTOCOL.md), keeps the session alive across
// network cuts (heartbeat, reconnect with backoff, resume without loss or
// repetition), and runs calls with perfect negotiation, trickle ICE and ICE
// restarts. No dependencies, no build step: import it as an ES module.
// Types: /types/switchboard.d.ts (generated from these JSDoc comments).
//
//   import { connect } from "/switchboard.js";
//   const session = connect(null, { name: "Ada" });
//   session.addEventListener("call", (e) => e.detail.call.accept({ stream }));
//   const call = session.call(peerId, { stream });

import { TypedTarget } from "./events.js";
import { Outbox, Inbox, backoffDelay, closeAction } from "./reliability.js";
import { summarizeStats, describePath } from "./stats.js";
import { parseServerMessage, validPeers } from "./protocol.js";
import { Call, randomID } from "./call.js";

export { backoffDelay, closeAction, summarizeStats, describePath, parseServerMessage, Call };

/**
 * @typedef {import("./protocol.js").Peer} Peer
 * @typedef {import("./protocol.js").IceServer} IceServer
 * @typedef {import("./protocol.js").ServerMessage} ServerMessage
 * @typedef {import("./protocol.js").ClientRequest} ClientRequest
 * @typedef {import("./protocol.js").ErrorCode} ErrorCode
 * @typedef {import("./call.js").CallState} CallState
 * @typedef {import("./call.js").EndReason} EndReason
 * @typedef {import("./call.js").MediaState} MediaState
 * @typedef {import("./call.js").CallControl} CallControl
 * @typedef {import("./stats.js").StatsSummary} StatsSummary
 * @typedef {"connecting" | "open" | "reconnecting" | "offline" | "closed"} SessionState
 */

/**
 * @typedef {object} ConnectOptions
 * @property {string} name display name shown to other peers
 * @property {string} [room] room to join; omitted: the lobby (or the sign-in token's room)
 * @property {string} [token] sign-in JWT when the server runs with an auth secret; a "token"
 *   push from the server replaces it
 * @property {RTCIceTransportPolicy} [iceTransportPolicy] "relay" forces every call through TURN
 * @property {number} [offlineAfter] ms of failed reconnects before state "offline"; default 20000
 *   (a person gets a clear message instead of an endless spinner, while retries go on)
 * @property {typeof WebSocket} [WebSocket] for tests
 */

/**
 * Events of a Session (CustomEvent, payload in detail).
 * @typedef {object} SessionEventMap
 * @property {CustomEvent<{state: SessionState, delay?: number, code?: number}>} state
 * @property {CustomEvent<{resumed: boolean, lost: boolean, id: string, room: string, peers: Peer[]}>} welcome lost: the
 *   session was adopted after its server node died; its calls restart ICE through the new node's relay
 * @property {CustomEvent<{peers: Peer[]}>} peers the presence list changed
 * @property {CustomEvent<{peer: Peer}>} peer-joined
 * @property {CustomEvent<{id: string, reason: string}>} peer-left
 * @property {CustomEvent<{room: string, peers: Peer[]}>} joined
 * @property {CustomEvent<{call: Call}>} call an incoming call (answer with call.accept() or call.decline()), or a mesh peer
 * @property {CustomEvent<{from: string, data: unknown}>} signal an application signal not belonging to a call
 * @property {CustomEvent<{code: ErrorCode, message: string, ref?: unknown}>} error
 * @property {CustomEvent<{iceServers: IceServer[]}>} ice-servers
 * @property {CustomEvent<{token: string, ttl: number}>} token the server renewed the sign-in token; store it
 * @property {CustomEvent<{code: number, reason: string, fatal: boolean}>} closed
 */

/**
 * Builds the WebSocket URL of the server that served this page.
 * @returns {string}
 */
export function defaultURL() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/**
 * Connects to a Switchboard server and returns the session at once; listen for
 * its "welcome" and "state" events.
 * @param {string | null | undefined} url ws(s)://host/ws; empty: this page's server
 * @param {ConnectOptions} opts
 * @returns {Session}
 */
export function connect(url, opts) {
  const s = new Session(url || defaultURL(), opts);
  s.open();
  return s;
}

/**
 * The id both sides of a mesh pair compute for their call.
 * @param {string} a
 * @param {string} b
 */
function meshID(a, b) {
  return a < b ? `mesh:${a}:${b}` : `mesh:${b}:${a}`;
}

/** A signaling session: presence, calls, signals; see SessionEventMap for its events. */
/** @extends {TypedTarget<SessionEventMap>} */
export class Session extends TypedTarget {
  #name;
  #room;
  /** @type {string | undefined} */
  #token;
  #policy;
  #offlineAfter;
  #WS;
  #id = "";
  /** @type {SessionState} */
  #state = "connecting";
  /** @type {Map<string, Peer>} */
  #peers = new Map();
  /** @type {IceServer[]} */
  #iceServers = [];
  /** @type {Map<string, {call: Call, ctl: CallControl}>} */
  #calls = new Map();
  /** @type {WebSocket | null} */
  #ws = null;
  /** @type {Outbox<ClientRequest & {ref?: string}>} */
  #outbox = new Outbox();
  #inbox = new Inbox();
  /** resume token from welcome; empty before the first welcome */
  #resumeToken = "";
  /** failed attempts in the current outage, for the backoff */
  #backoff = 0;
  /** sockets opened for this session (hello.attempt); 0 before the first */
  #sockets = 0;
  /** time of the first failed attempt in the current outage, 0 when up */
  #downSince = 0;
  #heartbeat = { interval: 20000, timeout: 45000 };
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #reconnectTimer = undefined;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #pingTimer = undefined;
  #lastHeard = 0;
  #welcomed = false;
  #onOnline = () => {
    this.reconnectNow();
    // A new network (Wi-Fi to mobile) means new addresses: find a new path.
    for (const { call } of this.#calls.values()) call.restartIce();
  };
  /** @type {import("./call.js").CallLink} */
  #link;

  /**
   * @param {string} url
   * @param {ConnectOptions} opts
   */
  constructor(url, opts) {
    super();
    /** @readonly */
    this.url = url;
    this.#name = opts.name;
    this.#room = opts.room ?? "";
    this.#token = opts.token;
    this.#policy = opts.iceTransportPolicy ?? "all";
    this.#offlineAfter = opts.offlineAfter ?? 20000;
    this.#WS = opts.WebSocket ?? WebSocket;
    this.#link = {
      send: (m) => this.#send(m),
      signal: () => {
        throw new Error("per-call link");
      },
      rtc: () => this.#rtcConfiguration(),
      forget: (id) => this.#calls.delete(id),
    };
    if (typeof window !== "undefined") window.addEventListener("online", this.#onOnline);
  }

  /** @returns {string} our peer id, set by the welcome */
  get id() {
    return this.#id;
  }
  /** @returns {string} */
  get name() {
    return this.#name;
  }
  /** @returns {string} the current room ("" = lobby) */
  get room() {
    return this.#room;
  }
  /** @returns {SessionState} */
  get state() {
    return this.#state;
  }
  /** @returns {ReadonlyMap<string, Peer>} the others in the room */
  get peers() {
    return this.#peers;
  }
  /** @returns {IceServer[]} the latest ICE servers (welcome or ice-servers push) */
  get iceServers() {
    return this.#iceServers;
  }
  /** @returns {ReadonlyMap<string, Call>} calls that have not ended */
  get calls() {
    return new Map([...this.#calls].map(([id, c]) => [id, c.call]));
  }
  /** @returns {string | undefined} the sign-in token the next hello carries */
  get token() {
    return this.#token;
  }

  /**
   * @template {keyof SessionEventMap} K
   * @param {K} type
   * @param {SessionEventMap[K]["detail"]} detail
   */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {SessionState} state @param {{delay?: number, code?: number}} [extra] */
  #setState(state, extra = {}) {
    if (this.#state === state && state !== "reconnecting") return;
    this.#state = state;
    this.#emit("state", { state, ...extra });
  }

  /** While reconnecting, tries at once instead of waiting out the backoff. */
  reconnectNow() {
    if (this.#state !== "reconnecting" && this.#state !== "offline") return;
    clearTimeout(this.#reconnectTimer);
    this.#backoff = 0;
    this.open();
  }

  /** Opens the WebSocket; connect() calls it, reconnects call it again. */
  open() {
    if (this.#state === "closed") return;
    this.#detach();
    let ws;
    try {
      ws = new this.#WS(this.url);
    } catch (err) {
      this.#emit("error", { code: "bad-url", message: String(err) });
      this.#setState("closed");
      return;
    }
    this.#ws = ws;
    this.#welcomed = false;
    const attempt = ++this.#sockets;
    ws.onopen = () => {
      /** @type {import("./protocol.js").HelloRequest} */
      const hello = { type: "hello", name: this.#name };
      if (this.#room) hello.room = this.#room;
      if (this.#token) hello.token = this.#token;
      if (this.#resumeToken) {
        hello.resume = this.#resumeToken;
        hello.ack = this.#inbox.last;
      }
      hello.attempt = attempt;
      this.#rawSend(hello);
      this.#lastHeard = Date.now();
    };
    ws.onmessage = (ev) => {
      this.#lastHeard = Date.now();
      const msg = parseServerMessage(ev.data);
      if (msg) this.#receive(msg);
    };
    ws.onclose = (ev) => {
      if (this.#ws !== ws) return;
      this.#lost(ev.code, ev.reason);
    };
    ws.onerror = () => {}; // a close event follows; that is where we decide
  }

  /** Drops the current socket without triggering the reconnect logic. */
  #detach() {
    clearInterval(this.#pingTimer);
    const ws = this.#ws;
    this.#ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(4000, "reconnecting");
    } catch {
      /* already closed */
    }
  }

  /**
   * The connection ended: decide from the close code what comes next.
   * @param {number} code
   * @param {string} reason
   */
  #lost(code, reason) {
    this.#detach();
    if (this.#state === "closed") return;
    const action = closeAction(code);
    if (action === "stop" || action === "fatal") {
      this.#shutdown(code, reason || (code === 4001 ? "session taken over by another tab" : ""), action === "fatal");
      return;
    }
    if (action === "fresh") {
      this.#forgetSession("resume-expired");
      this.#backoff = 0;
    }
    if (!this.#downSince) this.#downSince = Date.now();
    // 1012 (server restart) and a fresh start reconnect after a short jittered
    // pause; the backoff grows with each failed attempt.
    const delay = backoffDelay(this.#backoff++, code === 1012 ? { base: 250 } : {});
    const offline = Date.now() - this.#downSince >= this.#offlineAfter;
    this.#setState(offline ? "offline" : "reconnecting", { delay, code });
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => this.open(), delay);
  }

  /**
   * The server no longer knows our session: calls and queued messages belong
   * to the old one and are void.
   * @param {EndReason} reason
   */
  #forgetSession(reason) {
    this.#resumeToken = "";
    this.#sockets = 0;
    this.#outbox.reset();
    this.#inbox.reset();
    for (const { ctl } of [...this.#calls.values()]) ctl.end(reason);
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @param {boolean} fatal
   */
  #shutdown(code, reason, fatal) {
    clearTimeout(this.#reconnectTimer);
    this.#detach();
    for (const { ctl } of [...this.#calls.values()]) ctl.end("closed");
    if (typeof window !== "undefined") window.removeEventListener("online", this.#onOnline);
    this.#setState("closed");
    this.#emit("closed", { code, reason, fatal });
  }

  /** Leaves: hangs up every call and closes the connection for good. */
  close() {
    for (const { call } of [...this.#calls.values()]) call.hangup();
    // Let the hangups leave before the close frame.
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onclose = null;
      try {
        ws.close(1000, "bye");
      } catch {
        /* already closed */
      }
    }
    this.#shutdown(1000, "closed by user", false);
  }

  /** @param {object} msg */
  #rawSend(msg) {
    if (this.#ws && this.#ws.readyState === 1) this.#ws.send(JSON.stringify(msg));
  }

  /**
   * Sends a request that must not be lost: numbered with seq, kept until the
   * server acknowledges it, sent again after a resume.
   * @param {ClientRequest & {ref?: string}} msg
   */
  #send(msg) {
    const m = this.#outbox.add(msg);
    if (this.#welcomed) this.#rawSend(m);
  }

  /**
   * Sends application data to one peer (or "*" for the whole room); kept and
   * resent across reconnects.
   * @param {string} to
   * @param {unknown} data
   */
  signal(to, data) {
    this.#send({ type: "signal", to, data });
  }

  /**
   * Moves to another room ("" = lobby).
   * @param {string} room
   */
  join(room) {
    this.#room = room;
    this.#send({ type: "join", room });
  }

  /**
   * @param {{id: string, peerId: string, peerName: string, direction: "outgoing" | "incoming" | "mesh", stream: MediaStream | null}} o
   * @returns {{call: Call, ctl: CallControl}}
   */
  #newCall(o) {
    /** @type {CallControl | undefined} */
    let ctl;
    const link = { ...this.#link, signal: (/** @type {object} */ data) => this.signal(o.peerId, data) };
    const call = new Call(link, o, (c) => (ctl = c));
    const entry = { call, ctl: /** @type {CallControl} */ (ctl) };
    this.#calls.set(o.id, entry);
    return entry;
  }

  /**
   * Calls a peer: it rings there until accepted, declined or timed out.
   * @param {string} peerId
   * @param {{stream?: MediaStream | null}} [opts]
   * @returns {Call}
   */
  call(peerId, opts = {}) {
    const id = randomID();
    const { call } = this.#newCall({ id, peerId, peerName: this.#peers.get(peerId)?.name ?? "", direction: "outgoing", stream: opts.stream ?? null });
    this.#send({ type: "call", to: peerId, call: id, ref: id });
    return call;
  }

  /**
   * Connects to a room peer without ringing (mesh group calls: joining the
   * room link is the consent). Both sides call this; the lower id is polite.
   * @param {string} peerId
   * @param {{stream?: MediaStream | null}} [opts]
   * @returns {Call}
   */
  meshCall(peerId, opts = {}) {
    const id = meshID(this.#id, peerId);
    const known = this.#calls.get(id);
    if (known) return known.call;
    const { call, ctl } = this.#newCall({ id, peerId, peerName: this.#peers.get(peerId)?.name ?? "", direction: "mesh", stream: opts.stream ?? null });
    ctl.start(this.#id < peerId);
    return call;
  }

  /** @param {ServerMessage} msg */
  #receive(msg) {
    if (msg.type === "welcome") return this.#onWelcome(msg);
    if (msg.type === "pong") {
      this.#outbox.ack(msg.ack);
      return;
    }
    if (!this.#inbox.accept(msg)) return; // replayed twice: already handled
    switch (msg.type) {
      case "peer-joined": {
        const p = msg.peer;
        if (p.id !== this.#id) {
          this.#peers.set(p.id, p);
          this.#emit("peer-joined", { peer: p });
          this.#emit("peers", { peers: [...this.#peers.values()] });
        }
        break;
      }
      case "peer-left": {
        this.#peers.delete(msg.id);
        for (const { call, ctl } of [...this.#calls.values()]) if (call.peerId === msg.id) ctl.end("left");
        this.#emit("peer-left", { id: msg.id, reason: msg.reason });
        this.#emit("peers", { peers: [...this.#peers.values()] });
        break;
      }
      case "joined":
        this.#room = msg.room;
        this.#setPeers(msg.peers);
        this.#emit("joined", { room: this.#room, peers: [...this.#peers.values()] });
        break;
      case "signal":
        this.#onSignal(msg);
        break;
      case "ringing":
        this.#calls.get(msg.call)?.ctl.ringing();
        break;
      case "call": {
        const { call } = this.#newCall({
          id: msg.call,
          peerId: msg.from,
          peerName: msg.name ?? this.#peers.get(msg.from)?.name ?? "",
          direction: "incoming",
          stream: null,
        });
        this.#emit("call", { call });
        break;
      }
      case "accepted":
        this.#calls.get(msg.call)?.ctl.accepted(msg.polite);
        break;
      case "declined":
      case "cancelled":
      case "busy":
      case "timeout":
        this.#calls.get(msg.call)?.ctl.end(msg.type);
        break;
      case "hangup":
        this.#calls.get(msg.call)?.ctl.end(msg.reason === "left" ? "left" : "hangup");
        break;
      case "ice-servers":
        this.#setIceServers(msg.iceServers);
        break;
      case "token":
        // Renewed before the old one expires: the next hello (a reconnect)
        // must carry the new one.
        this.#token = msg.token;
        this.#emit("token", { token: msg.token, ttl: msg.ttl });
        break;
      case "error":
        this.#onError(msg);
        break;
    }
  }

  /** @param {import("./protocol.js").WelcomeMessage} msg */
  #onWelcome(msg) {
    const wasSession = this.#id !== "";
    if (!msg.resumed) {
      if (wasSession) {
        // We asked to resume but the server started over: everything tied to
        // the old session (calls, queued requests) is void.
        this.#forgetSession("connection-lost");
        this.#sockets = 1;
      }
      this.#inbox.reset();
    }
    this.#id = msg.id;
    this.#resumeToken = msg.resume;
    this.#room = msg.room;
    if (msg.heartbeat && msg.heartbeat.interval > 0) {
      this.#heartbeat = { interval: msg.heartbeat.interval, timeout: msg.heartbeat.timeout || msg.heartbeat.interval * 2 };
    }
    this.#setPeers(msg.peers);
    if (msg.iceServers) this.#setIceServers(msg.iceServers);
    this.#welcomed = true;
    this.#backoff = 0;
    this.#downSince = 0;
    // lost (PROTOCOL.md "Cluster: resume on any node"): the node that held
    // the session died and another adopted it. It may or may not have
    // processed our messages above ack, so resending could do one twice:
    // drop them, keep numbering above them, and let the calls re-synchronise
    // what they carried (a fresh offer with an ICE restart).
    const lost = msg.resumed && msg.lost === true;
    if (lost) {
      this.#outbox.drop();
    } else {
      // Send again what the server did not process before the cut (all of it
      // for a fresh session: requests queued before the first welcome).
      for (const m of this.#outbox.unacked(msg.resumed ? msg.ack ?? 0 : 0)) this.#rawSend(m);
    }
    this.#startHeartbeat();
    this.#setState("open");
    // After #setIceServers above: the restarts gather on the new node's relay
    // (the old one died with its node).
    if (lost) for (const { ctl } of [...this.#calls.values()]) ctl.resync();
    this.#emit("welcome", { resumed: msg.resumed, lost, id: this.#id, room: this.#room, peers: [...this.#peers.values()] });
    this.#emit("peers", { peers: [...this.#peers.values()] });
  }

  #startHeartbeat() {
    clearInterval(this.#pingTimer);
    const { interval, timeout } = this.#heartbeat;
    // Ping at least twice per timeout: with interval == timeout (the server's
    // default) a pong answering a ping sent exactly every interval would land
    // right at the deadline. Check more often than we ping so a dead link is
    // noticed close to `timeout`, not up to one interval later.
    const every = Math.min(interval, timeout / 2);
    const tick = Math.max(50, Math.min(every, timeout / 4));
    let lastPing = Date.now();
    this.#pingTimer = setInterval(() => {
      const now = Date.now();
      if (now - this.#lastHeard > timeout) {
        // Nothing from the server (not even a pong) for too long: the link
        // is dead even if the socket has not noticed. Resume on a new one.
        this.#lost(4000, "heartbeat timeout");
        return;
      }
      if (now - lastPing >= every) {
        lastPing = now;
        this.#rawSend({ type: "ping", ack: this.#inbox.last });
      }
    }, tick);
  }

  /** @param {unknown[]} peers */
  #setPeers(peers) {
    this.#peers.clear();
    for (const p of validPeers(peers)) if (p.id !== this.#id) this.#peers.set(p.id, p);
  }

  /** @param {IceServer[]} servers */
  #setIceServers(servers) {
    this.#iceServers = servers;
    for (const { ctl } of this.#calls.values()) ctl.configure();
    this.#emit("ice-servers", { iceServers: servers });
  }

  /** @returns {RTCConfiguration} */
  #rtcConfiguration() {
    return { iceServers: /** @type {RTCIceServer[]} */ (this.#iceServers), iceTransportPolicy: this.#policy };
  }

  /** @param {import("./protocol.js").SignalMessage} msg */
  #onSignal(msg) {
    const data = msg.data;
    if (data && typeof data === "object" && "call" in data && typeof data.call === "string") {
      let entry = this.#calls.get(data.call);
      if (!entry && data.call === meshID(this.#id, msg.from) && this.#peers.has(msg.from)) {
        // The other side of a mesh pair started first.
        entry = this.#newCall({ id: data.call, peerId: msg.from, peerName: this.#peers.get(msg.from)?.name ?? "", direction: "mesh", stream: null });
        this.#emit("call", { call: entry.call });
        entry.ctl.start(this.#id < msg.from);
      }
      // A signal for a call with someone else, or a straggler for a call
      // that has ended: nothing to do.
      if (entry && entry.call.peerId === msg.from) entry.ctl.signal(/** @type {Record<string, unknown>} */ (data));
      return;
    }
    this.#emit("signal", { from: msg.from, data });
  }

  /** @param {import("./protocol.js").ErrorMessage} msg */
  #onError(msg) {
    const entry = typeof msg.ref === "string" ? this.#calls.get(msg.ref) : undefined;
    if (entry && (msg.code === "peer-unavailable" || msg.code === "undeliverable" || msg.code === "busy" || msg.code === "no-such-call")) {
      entry.ctl.end(msg.code === "busy" ? "busy" : msg.code === "no-such-call" ? "gone" : "unavailable");
    }
    const detail = { code: msg.code, message: msg.message ?? "", ref: msg.ref };
    if (!this.#welcomed && (msg.code === "forbidden-room" || msg.code === "room-full" || msg.code === "bad-message")) {
      // The hello itself was refused and the socket stays open with no
      // session: retrying the same hello would be refused again. (unauthorized
      // and server-full come with a close code; #lost decides on those.)
      this.#emit("error", detail);
      this.#shutdown(1008, msg.message || msg.code, true);
      return;
    }
    this.#emit("error", detail);
  }
}
