// @ts-check
// switchboard.js: the browser client of a Switchboard server. It speaks the
// signaling protocol (signaling/PROTOCOL.md), keeps the session alive across
// network cuts (heartbeat, reconnect with backoff, resume without loss or
// repetition), and runs calls with perfect negotiation, trickle ICE and ICE
// restarts. No dependencies, no build step: import it as an ES module.
//
//   import { connect } from "/switchboard.js";
//   const session = connect(null, { name: "Ada" });
//   session.addEventListener("call", (e) => e.detail.call.accept({ stream }));
//   const call = session.call(peerId, { stream });

import { Negotiator, Outbox, Inbox, backoffDelay, closeAction, summarizeStats, describePath } from "./negotiation.js";

export { backoffDelay, closeAction, summarizeStats, describePath };

/**
 * @typedef {{id: string, name: string, nearby?: boolean}} Peer
 * @typedef {{urls: string | string[], username?: string, credential?: string}} IceServer
 * @typedef {"connecting" | "open" | "reconnecting" | "offline" | "closed"} SessionState
 * @typedef {"calling" | "ringing" | "incoming" | "connecting" | "connected" | "reconnecting" | "ended"} CallState
 */

/**
 * @typedef {object} ConnectOptions
 * @property {string} name display name shown to other peers
 * @property {string} [room] room to join; omitted: the lobby
 * @property {string} [token] JWT when the server runs with an auth secret
 * @property {RTCIceTransportPolicy} [iceTransportPolicy] "relay" forces every call through TURN
 * @property {number} [offlineAfter] ms of failed reconnects before state "offline"; default 20000
 *   (a person gets a clear message instead of an endless spinner, while retries go on)
 * @property {typeof WebSocket} [WebSocket] for tests
 */

/** Size of one file chunk on the data channel: 16 KiB is the largest message
 * every browser's SCTP stack delivers without fragmentation trouble. */
const CHUNK = 16 * 1024;
/** Pause sending file chunks above this much buffered data (backpressure), 1 MiB. */
const HIGH_WATER = 1024 * 1024;

/**
 * Builds the WebSocket URL of the server that served this page.
 * @returns {string}
 */
export function defaultURL() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/** @returns {string} a random id, also in non-secure contexts (no randomUUID there) */
function randomID() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
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
 * A signaling session. Events (CustomEvent, payload in detail):
 *  - state {state, delay?}: connecting, open, reconnecting, offline, closed
 *  - welcome {resumed, peers, room, id}
 *  - peers {peers}: the presence list changed
 *  - peer-joined {peer}, peer-left {id, reason}
 *  - call {call}: an incoming call, answer with call.accept() or call.decline()
 *  - signal {from, data}: an application signal not belonging to a call
 *  - error {code, message, ref}
 *  - ice-servers {iceServers}
 *  - closed {code, reason, fatal}
 */
export class Session extends EventTarget {
  /**
   * @param {string} url
   * @param {ConnectOptions} opts
   */
  constructor(url, opts) {
    super();
    this.url = url;
    this.name = opts.name;
    this.room = opts.room ?? "";
    this.token = opts.token;
    this.iceTransportPolicy = opts.iceTransportPolicy ?? "all";
    this.offlineAfter = opts.offlineAfter ?? 20000;
    this.WS = opts.WebSocket ?? WebSocket;
    /** @type {string} our peer id, set by welcome */
    this.id = "";
    /** @type {SessionState} */
    this.state = "connecting";
    /** @type {Map<string, Peer>} */
    this.peers = new Map();
    /** @type {IceServer[]} latest servers from welcome or an ice-servers push */
    this.iceServers = [];
    /** @type {Map<string, Call>} */
    this.calls = new Map();
    /** @type {WebSocket | null} */
    this.ws = null;
    this.outbox = new Outbox();
    this.inbox = new Inbox();
    /** resume token from welcome; empty before the first welcome */
    this.resumeToken = "";
    this.attempt = 0;
    /** @type {number} time of the first failed attempt in the current outage, 0 when up */
    this.downSince = 0;
    this.heartbeat = { interval: 20000, timeout: 45000 };
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.reconnectTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.pingTimer = undefined;
    this.lastHeard = 0;
    this.welcomed = false;
    this.onOnline = () => {
      this.reconnectNow();
      // A new network (Wi-Fi to mobile) means new addresses: find a new path.
      for (const c of this.calls.values()) c.restartIce();
    };
    if (typeof window !== "undefined") window.addEventListener("online", this.onOnline);
  }

  /**
   * @param {string} type
   * @param {any} [detail]
   */
  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {SessionState} state @param {object} [extra] */
  setState(state, extra = {}) {
    if (this.state === state && state !== "reconnecting") return;
    this.state = state;
    this.emit("state", { state, ...extra });
  }

  /** While reconnecting, tries at once instead of waiting out the backoff. */
  reconnectNow() {
    if (this.state !== "reconnecting" && this.state !== "offline") return;
    clearTimeout(this.reconnectTimer);
    this.attempt = 0;
    this.open();
  }

  /** Opens the WebSocket (first connect and reconnects). */
  open() {
    if (this.state === "closed") return;
    this.detach();
    let ws;
    try {
      ws = new this.WS(this.url);
    } catch (err) {
      this.emit("error", { code: "bad-url", message: String(err) });
      this.setState("closed");
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    ws.onopen = () => {
      /** @type {Record<string, any>} */
      const hello = { type: "hello", name: this.name };
      if (this.room) hello.room = this.room;
      if (this.token) hello.token = this.token;
      if (this.resumeToken) {
        hello.resume = this.resumeToken;
        hello.ack = this.inbox.last;
      }
      this.rawSend(hello);
      this.lastHeard = Date.now();
    };
    ws.onmessage = (ev) => {
      this.lastHeard = Date.now();
      let msg;
      try {
        msg = JSON.parse(typeof ev.data === "string" ? ev.data : "");
      } catch {
        return; // not ours; the server only sends JSON text frames
      }
      if (msg && typeof msg.type === "string") this.receive(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.lost(ev.code, ev.reason);
    };
    ws.onerror = () => {}; // a close event follows; that is where we decide
  }

  /** Drops the current socket without triggering the reconnect logic. */
  detach() {
    clearInterval(this.pingTimer);
    const ws = this.ws;
    this.ws = null;
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
  lost(code, reason) {
    this.detach();
    if (this.state === "closed") return;
    const action = closeAction(code);
    if (action === "stop" || action === "fatal") {
      this.shutdown(code, reason || (code === 4001 ? "session taken over by another tab" : ""), action === "fatal");
      return;
    }
    if (action === "fresh") {
      this.forgetSession("resume-expired");
      this.attempt = 0;
    }
    if (!this.downSince) this.downSince = Date.now();
    // 1012 (server restart) and a fresh start reconnect after a short jittered
    // pause; the backoff grows with each failed attempt.
    const delay = backoffDelay(this.attempt++, code === 1012 ? { base: 250 } : {});
    const offline = Date.now() - this.downSince >= this.offlineAfter;
    this.setState(offline ? "offline" : "reconnecting", { delay, code });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.open(), delay);
  }

  /**
   * The server no longer knows our session: calls and queued messages belong
   * to the old one and are void.
   * @param {string} reason
   */
  forgetSession(reason) {
    this.resumeToken = "";
    this.outbox.reset();
    this.inbox.reset();
    for (const c of [...this.calls.values()]) c.end(reason, false);
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @param {boolean} fatal
   */
  shutdown(code, reason, fatal) {
    clearTimeout(this.reconnectTimer);
    this.detach();
    for (const c of [...this.calls.values()]) c.end("closed", false);
    if (typeof window !== "undefined") window.removeEventListener("online", this.onOnline);
    this.setState("closed");
    this.emit("closed", { code, reason, fatal });
  }

  /** Leaves: hangs up every call and closes the connection for good. */
  close() {
    for (const c of [...this.calls.values()]) c.hangup();
    // Let the hangups leave before the close frame.
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      try {
        ws.close(1000, "bye");
      } catch {
        /* already closed */
      }
    }
    this.shutdown(1000, "closed by user", false);
  }

  /** @param {Record<string, any>} msg */
  rawSend(msg) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(msg));
  }

  /**
   * Sends a request that must not be lost: numbered with seq, kept until the
   * server acknowledges it, sent again after a resume.
   * @param {Record<string, any>} msg
   */
  send(msg) {
    const m = this.outbox.add(msg);
    if (this.welcomed) this.rawSend(m);
  }

  /**
   * Sends application data to one peer (or "*" for the whole room).
   * @param {string} to
   * @param {any} data
   */
  signal(to, data) {
    this.send({ type: "signal", to, data });
  }

  /** @param {string} room */
  join(room) {
    this.room = room;
    this.send({ type: "join", room });
  }

  /**
   * Calls a peer: it rings there until accepted, declined or timed out.
   * @param {string} peerId
   * @param {{stream?: MediaStream | null}} [opts]
   * @returns {Call}
   */
  call(peerId, opts = {}) {
    const id = randomID();
    const peer = this.peers.get(peerId);
    const call = new Call(this, { id, peerId, peerName: peer?.name ?? "", direction: "outgoing", stream: opts.stream ?? null });
    this.calls.set(id, call);
    this.send({ type: "call", to: peerId, call: id, ref: id });
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
    const id = meshID(this.id, peerId);
    let call = this.calls.get(id);
    if (call) return call;
    const peer = this.peers.get(peerId);
    call = new Call(this, { id, peerId, peerName: peer?.name ?? "", direction: "mesh", stream: opts.stream ?? null });
    this.calls.set(id, call);
    call.startMedia(this.id < peerId);
    return call;
  }

  /** @param {Record<string, any>} msg */
  receive(msg) {
    if (msg.type === "welcome") return this.onWelcome(msg);
    if (msg.type === "pong") {
      this.outbox.ack(msg.ack);
      return;
    }
    if (!this.inbox.accept(msg)) return; // replayed twice: already handled
    switch (msg.type) {
      case "peer-joined": {
        const p = msg.peer;
        if (p?.id && p.id !== this.id) {
          this.peers.set(p.id, p);
          this.emit("peer-joined", { peer: p });
          this.emit("peers", { peers: [...this.peers.values()] });
        }
        break;
      }
      case "peer-left": {
        this.peers.delete(msg.id);
        for (const c of [...this.calls.values()]) if (c.peerId === msg.id) c.end("left", false);
        this.emit("peer-left", { id: msg.id, reason: msg.reason });
        this.emit("peers", { peers: [...this.peers.values()] });
        break;
      }
      case "joined":
        this.room = msg.room ?? this.room;
        this.setPeers(msg.peers ?? []);
        this.emit("joined", { room: this.room, peers: [...this.peers.values()] });
        break;
      case "signal":
        this.onSignal(msg);
        break;
      case "ringing":
        this.calls.get(msg.call)?.onRinging();
        break;
      case "call": {
        const call = new Call(this, {
          id: msg.call,
          peerId: msg.from,
          peerName: msg.name ?? this.peers.get(msg.from)?.name ?? "",
          direction: "incoming",
          stream: null,
        });
        this.calls.set(call.id, call);
        this.emit("call", { call });
        break;
      }
      case "accepted":
        this.calls.get(msg.call)?.onAccepted(!!msg.polite);
        break;
      case "declined":
        this.calls.get(msg.call)?.end("declined", false);
        break;
      case "cancelled":
        this.calls.get(msg.call)?.end("cancelled", false);
        break;
      case "busy":
        this.calls.get(msg.call)?.end("busy", false);
        break;
      case "hangup":
        this.calls.get(msg.call)?.end(msg.reason === "left" ? "left" : "hangup", false);
        break;
      case "timeout":
        this.calls.get(msg.call)?.end("timeout", false);
        break;
      case "ice-servers":
        this.setIceServers(msg.iceServers);
        break;
      case "error":
        this.onError(msg);
        break;
      default:
        // A newer server may send types we do not know; ignore them.
        break;
    }
  }

  /** @param {Record<string, any>} msg */
  onWelcome(msg) {
    const wasSession = this.id !== "";
    if (!msg.resumed) {
      if (wasSession) {
        // We asked to resume but the server started over: everything tied to
        // the old session (calls, queued requests) is void.
        this.forgetSession("connection-lost");
      }
      this.inbox.reset();
    }
    this.id = msg.id ?? this.id;
    this.resumeToken = msg.resume ?? "";
    if (msg.room !== undefined) this.room = msg.room;
    if (msg.heartbeat && msg.heartbeat.interval > 0) {
      this.heartbeat = { interval: msg.heartbeat.interval, timeout: msg.heartbeat.timeout || msg.heartbeat.interval * 2 };
    }
    this.setPeers(msg.peers ?? []);
    if (msg.iceServers) this.setIceServers(msg.iceServers);
    this.welcomed = true;
    this.attempt = 0;
    this.downSince = 0;
    // Send again what the server did not process before the cut (all of it
    // for a fresh session: requests queued before the first welcome).
    for (const m of this.outbox.unacked(msg.resumed ? msg.ack ?? 0 : 0)) this.rawSend(m);
    this.startHeartbeat();
    this.setState("open");
    this.emit("welcome", { resumed: !!msg.resumed, id: this.id, room: this.room, peers: [...this.peers.values()] });
    this.emit("peers", { peers: [...this.peers.values()] });
  }

  startHeartbeat() {
    clearInterval(this.pingTimer);
    const { interval, timeout } = this.heartbeat;
    // Ping at least twice per timeout: with interval == timeout (the server's
    // default) a pong answering a ping sent exactly every interval would land
    // right at the deadline. Check more often than we ping so a dead link is
    // noticed close to `timeout`, not up to one interval later.
    const every = Math.min(interval, timeout / 2);
    const tick = Math.max(50, Math.min(every, timeout / 4));
    let lastPing = Date.now();
    this.pingTimer = setInterval(() => {
      const now = Date.now();
      if (now - this.lastHeard > timeout) {
        // Nothing from the server (not even a pong) for too long: the link
        // is dead even if the socket has not noticed. Resume on a new one.
        this.lost(4000, "heartbeat timeout");
        return;
      }
      if (now - lastPing >= every) {
        lastPing = now;
        this.rawSend({ type: "ping", ack: this.inbox.last });
      }
    }, tick);
  }

  /** @param {Peer[]} peers */
  setPeers(peers) {
    this.peers.clear();
    for (const p of peers) if (p && p.id && p.id !== this.id) this.peers.set(p.id, p);
  }

  /** @param {IceServer[]} servers */
  setIceServers(servers) {
    if (!Array.isArray(servers)) return;
    this.iceServers = servers;
    for (const c of this.calls.values()) c.applyConfiguration();
    this.emit("ice-servers", { iceServers: servers });
  }

  /** @returns {RTCConfiguration} */
  rtcConfiguration() {
    return { iceServers: /** @type {RTCIceServer[]} */ (this.iceServers), iceTransportPolicy: this.iceTransportPolicy };
  }

  /** @param {Record<string, any>} msg */
  onSignal(msg) {
    const data = msg.data;
    if (data && typeof data === "object" && typeof data.call === "string") {
      let call = this.calls.get(data.call);
      if (!call && data.call === meshID(this.id, msg.from) && this.peers.has(msg.from)) {
        // The other side of a mesh pair started first.
        call = new Call(this, { id: data.call, peerId: msg.from, peerName: this.peers.get(msg.from)?.name ?? "", direction: "mesh", stream: null });
        this.calls.set(call.id, call);
        this.emit("call", { call });
        call.startMedia(this.id < msg.from);
      }
      if (call && call.peerId === msg.from) {
        call.onSignal(data);
        return;
      }
      if (call) return; // a signal for a call with someone else: ignore
      // A straggler for a call that has ended: nothing to do.
      return;
    }
    this.emit("signal", { from: msg.from, data });
  }

  /** @param {Record<string, any>} msg */
  onError(msg) {
    const call = msg.ref ? this.calls.get(msg.ref) : undefined;
    if (call && (msg.code === "peer-unavailable" || msg.code === "undeliverable" || msg.code === "busy" || msg.code === "no-such-call")) {
      call.end(msg.code === "busy" ? "busy" : msg.code === "no-such-call" ? "gone" : "unavailable", false);
    }
    if (!this.welcomed && (msg.code === "forbidden-room" || msg.code === "room-full" || msg.code === "bad-message")) {
      // The hello itself was refused and the socket stays open with no
      // session: retrying the same hello would be refused again. (unauthorized
      // and server-full come with a close code; lost() decides on those.)
      this.emit("error", { code: msg.code, message: msg.message, ref: msg.ref });
      this.shutdown(1008, msg.message || msg.code, true);
      return;
    }
    this.emit("error", { code: msg.code, message: msg.message, ref: msg.ref });
  }
}

/**
 * The id both sides of a mesh pair compute for their call.
 * @param {string} a
 * @param {string} b
 */
function meshID(a, b) {
  return a < b ? `mesh:${a}:${b}` : `mesh:${b}:${a}`;
}

/**
 * One call with one peer. Events (CustomEvent, payload in detail):
 *  - state {state}: calling, ringing, incoming, connecting, connected, reconnecting, ended
 *  - track {track, stream}: remote media arrived; call.remoteStream has it all
 *  - open: the data channel is open
 *  - message {data}: a chat message (any JSON value) from the peer
 *  - file-progress {id, name, size, done, direction: "in" | "out"}
 *  - file {id, name, size, mime, blob}: a file arrived complete
 *  - ended {reason}: declined, cancelled, busy, timeout, hangup, left,
 *    unavailable, failed, local, connection-lost, closed
 */
export class Call extends EventTarget {
  /**
   * @param {Session} session
   * @param {{id: string, peerId: string, peerName: string, direction: "outgoing" | "incoming" | "mesh", stream: MediaStream | null}} o
   */
  constructor(session, o) {
    super();
    this.session = session;
    this.id = o.id;
    this.peerId = o.peerId;
    this.peerName = o.peerName;
    this.direction = o.direction;
    /** @type {MediaStream | null} */
    this.localStream = o.stream;
    this.remoteStream = new MediaStream();
    /** @type {CallState} */
    this.state = o.direction === "incoming" ? "incoming" : o.direction === "mesh" ? "connecting" : "calling";
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {Negotiator | null} */
    this.negotiator = null;
    /** @type {RTCDataChannel | null} */
    this.channel = null;
    this.polite = false;
    this.endReason = "";
    /** @type {import("./negotiation.js").StatsSummary | null} */
    this.lastStats = null;
    /** @type {Record<string, any>[]} signals that came before the pc existed */
    this.early = [];
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.disconnectTimer = undefined;
    /** @type {{id: string, name: string, size: number, mime: string, parts: ArrayBuffer[], done: number} | null} */
    this.incomingFile = null;
    /** @type {RTCRtpSender | null} the sender screen share swaps tracks on */
    this.videoSender = null;
    /** @type {Promise<void>} serializes outgoing files */
    this.fileQueue = Promise.resolve();
  }

  /** @param {string} type @param {any} [detail] */
  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {CallState} state */
  setState(state) {
    if (this.state === state || this.state === "ended") return;
    this.state = state;
    this.emit("state", { state });
  }

  /** Accepts an incoming call. @param {{stream?: MediaStream | null}} [opts] */
  accept(opts = {}) {
    if (this.state !== "incoming") return;
    this.localStream = opts.stream ?? null;
    this.session.send({ type: "accept", call: this.id, ref: this.id });
    // The callee is the polite peer; accepted confirms it.
    this.startMedia(true);
  }

  /** Declines an incoming call. */
  decline() {
    if (this.state !== "incoming") return;
    this.session.send({ type: "decline", call: this.id, ref: this.id });
    this.end("local", false);
  }

  /** Cancels an outgoing call that was not answered yet. */
  cancel() {
    if (this.state !== "calling" && this.state !== "ringing") return;
    this.session.send({ type: "cancel", call: this.id, ref: this.id });
    this.end("local", false);
  }

  /** Ends the call whatever its state. */
  hangup() {
    if (this.state === "ended") return;
    if (this.state === "incoming") return this.decline();
    if (this.state === "calling" || this.state === "ringing") return this.cancel();
    if (this.direction !== "mesh") this.session.send({ type: "hangup", call: this.id, ref: this.id });
    else this.session.signal(this.peerId, { call: this.id, bye: true });
    this.end("local", false);
  }

  onRinging() {
    this.setState("ringing");
  }

  /** @param {boolean} polite */
  onAccepted(polite) {
    if (this.pc) {
      this.polite = polite;
      if (this.negotiator) this.negotiator.polite = polite;
      return;
    }
    this.startMedia(polite);
  }

  /**
   * Creates the peer connection and starts negotiating.
   * @param {boolean} polite
   */
  startMedia(polite) {
    if (this.pc || this.state === "ended") return;
    this.polite = polite;
    this.setState("connecting");
    const pc = new RTCPeerConnection(this.session.rtcConfiguration());
    this.pc = pc;
    this.negotiator = new Negotiator({
      pc,
      polite,
      send: (s) => this.session.signal(this.peerId, { call: this.id, ...s }),
      onError: (err) => console.warn("switchboard: negotiation", err),
    });
    pc.onnegotiationneeded = () => this.negotiator?.negotiationNeeded();
    pc.onicecandidate = (e) => this.negotiator?.localCandidate(e.candidate);
    pc.ontrack = (e) => {
      if (!this.remoteStream.getTracks().includes(e.track)) this.remoteStream.addTrack(e.track);
      e.track.onended = () => this.remoteStream.removeTrack(e.track);
      this.emit("track", { track: e.track, stream: this.remoteStream });
    };
    pc.onconnectionstatechange = () => this.onConnectionState();
    // A negotiated channel (same id on both sides) needs no extra round trip
    // and cannot collide when both peers create it.
    const ch = pc.createDataChannel("switchboard", { negotiated: true, id: 0, ordered: true });
    ch.binaryType = "arraybuffer";
    ch.bufferedAmountLowThreshold = HIGH_WATER / 4;
    ch.onopen = () => this.emit("open");
    ch.onmessage = (e) => this.onChannelMessage(e.data);
    this.channel = ch;
    this.addLocalMedia();
    for (const s of this.early.splice(0)) this.negotiator.handle(s);
  }

  addLocalMedia() {
    const pc = this.pc;
    if (!pc) return;
    const stream = this.localStream;
    const kinds = new Set();
    if (stream) {
      for (const t of stream.getTracks()) {
        pc.addTrack(t, stream);
        kinds.add(t.kind);
      }
    }
    // Without a camera or microphone we still want to see and hear the peer:
    // the caller offers to receive what it cannot send.
    if (this.direction !== "incoming") {
      for (const kind of ["audio", "video"]) {
        if (!kinds.has(kind)) pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
  }

  onConnectionState() {
    const pc = this.pc;
    if (!pc) return;
    switch (pc.connectionState) {
      case "connected":
        clearTimeout(this.disconnectTimer);
        this.setState("connected");
        break;
      case "disconnected":
        this.setState("reconnecting");
        // Often heals by itself within seconds (Wi-Fi hiccup); if not, restart.
        clearTimeout(this.disconnectTimer);
        this.disconnectTimer = setTimeout(() => this.restartIce(), 4000);
        break;
      case "failed":
        this.setState("reconnecting");
        this.restartIce();
        break;
    }
  }

  /** Restarts ICE (new candidates, new path) after a failure or a network change. */
  restartIce() {
    if (!this.pc || this.state === "ended") return;
    this.pc.restartIce();
  }

  /** Applies the session's latest ICE servers to the live connection. */
  applyConfiguration() {
    if (!this.pc || this.state === "ended") return;
    try {
      this.pc.setConfiguration({ ...this.pc.getConfiguration(), ...this.session.rtcConfiguration() });
    } catch (err) {
      console.warn("switchboard: setConfiguration", err);
    }
  }

  /** @param {Record<string, any>} data */
  onSignal(data) {
    if (data.bye) {
      this.end("hangup", false);
      return;
    }
    /** @type {import("./negotiation.js").NegotiationSignal} */
    const s = {};
    if (data.description) s.description = data.description;
    if ("candidate" in data) s.candidate = data.candidate;
    if (!this.negotiator) {
      this.early.push(s);
      return;
    }
    this.negotiator.handle(s);
  }

  /**
   * Replaces the outgoing video (screen share and back) on the existing
   * sender: no renegotiation, no glitch for the peer.
   * @param {MediaStreamTrack | null} track
   */
  async replaceVideo(track) {
    const pc = this.pc;
    if (!pc) return;
    if (!this.videoSender) this.videoSender = pc.getSenders().find((s) => s.track?.kind === "video") ?? null;
    if (this.videoSender) {
      await this.videoSender.replaceTrack(track);
    } else if (track) {
      // No video sender yet (we joined without a camera): adding one needs a
      // negotiation, which perfect negotiation runs on its own.
      this.videoSender = pc.addTrack(track, this.localStream ?? new MediaStream([track]));
    }
  }

  /**
   * Sends a chat message (any JSON value) over the data channel.
   * @param {any} data
   */
  sendMessage(data) {
    if (!this.channel || this.channel.readyState !== "open") throw new Error("the chat channel is not open yet");
    this.channel.send(JSON.stringify({ t: "msg", data }));
  }

  /**
   * Sends a file over the data channel in 16 KiB chunks with backpressure;
   * "file-progress" events report how far it is.
   * @param {Blob & {name?: string}} file
   * @returns {Promise<void>}
   */
  sendFile(file) {
    const run = async () => {
      const ch = this.channel;
      if (!ch || ch.readyState !== "open") throw new Error("the file channel is not open yet");
      const id = randomID();
      const name = file.name ?? "file";
      ch.send(JSON.stringify({ t: "file", id, name, size: file.size, mime: file.type }));
      let off = 0;
      while (off < file.size) {
        if (ch.bufferedAmount > HIGH_WATER) {
          await new Promise((resolve) => {
            ch.addEventListener("bufferedamountlow", resolve, { once: true });
          });
        }
        if (ch.readyState !== "open") throw new Error("the channel closed during the transfer");
        const part = await file.slice(off, off + CHUNK).arrayBuffer();
        ch.send(part);
        off += part.byteLength;
        this.emit("file-progress", { id, name, size: file.size, done: off, direction: "out" });
      }
      ch.send(JSON.stringify({ t: "file-end", id }));
      if (file.size === 0) this.emit("file-progress", { id, name, size: 0, done: 0, direction: "out" });
    };
    const p = this.fileQueue.then(run, run);
    this.fileQueue = p.catch(() => {});
    return p;
  }

  /** @param {string | ArrayBuffer} raw */
  onChannelMessage(raw) {
    if (typeof raw !== "string") {
      const f = this.incomingFile;
      if (!f) return;
      f.parts.push(raw);
      f.done += raw.byteLength;
      this.emit("file-progress", { id: f.id, name: f.name, size: f.size, done: f.done, direction: "in" });
      return;
    }
    let m;
    try {
      m = JSON.parse(raw);
    } catch {
      return;
    }
    if (m.t === "msg") {
      this.emit("message", { data: m.data });
    } else if (m.t === "file") {
      this.incomingFile = { id: String(m.id), name: String(m.name), size: Number(m.size) || 0, mime: String(m.mime || ""), parts: [], done: 0 };
      this.emit("file-progress", { id: m.id, name: m.name, size: m.size, done: 0, direction: "in" });
    } else if (m.t === "file-end" && this.incomingFile && this.incomingFile.id === m.id) {
      const f = this.incomingFile;
      this.incomingFile = null;
      const blob = new Blob(f.parts, { type: f.mime || "application/octet-stream" });
      this.emit("file", { id: f.id, name: f.name, size: blob.size, mime: f.mime, blob });
    }
  }

  /**
   * Stats summary: path (direct or relayed, and transport), RTT, bitrates
   * since the previous call of getStats.
   * @returns {Promise<import("./negotiation.js").StatsSummary | null>}
   */
  async getStats() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    this.lastStats = summarizeStats(report, this.lastStats);
    return this.lastStats;
  }

  /**
   * @param {string} reason
   * @param {boolean} _notify unused; the server is told by hangup/decline/cancel
   */
  end(reason, _notify) {
    if (this.state === "ended") return;
    this.endReason = reason;
    clearTimeout(this.disconnectTimer);
    this.negotiator?.close();
    try {
      this.channel?.close();
      this.pc?.close();
    } catch {
      /* already closed */
    }
    this.session.calls.delete(this.id);
    this.state = "ended";
    this.emit("state", { state: "ended" });
    this.emit("ended", { reason });
  }
}

