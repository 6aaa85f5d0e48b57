// @ts-check
// Pure logic of the client library, kept free of WebSocket and DOM access so
// that it can be unit-tested with fakes: reconnect policy, message numbering
// and acknowledgement, MDN's perfect negotiation, and the stats summary.

/**
 * Reconnect delay with exponential backoff and full jitter
 * (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/):
 * uniform in [0, min(cap, base * 2^attempt)]. Full jitter spreads a crowd of
 * clients that lost the server at the same instant, so a restart is not met
 * by a synchronized reconnect storm.
 * @param {number} attempt 0 for the first retry
 * @param {{base?: number, cap?: number, random?: () => number}} [opts]
 *   base 500 ms (a blip heals before the user notices), cap 15 s (a person
 *   waiting on a "reconnecting" banner should not wait longer than that).
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, opts = {}) {
  const base = opts.base ?? 500;
  const cap = opts.cap ?? 15000;
  const random = opts.random ?? Math.random;
  const ceiling = Math.min(cap, base * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * ceiling);
}

/**
 * What to do after the WebSocket closed, decided from the close code.
 *  - "resume": reconnect with backoff and resume the session (network loss,
 *    1006; server restart 1012; try-again-later 1013; heartbeat timeout).
 *  - "fresh":  reconnect at once without resuming (4002: the server no longer
 *    knows the session, e.g. resume grace expired).
 *  - "stop":   do not reconnect (1000 we closed; 4001 another tab took the
 *    session over).
 *  - "fatal":  do not reconnect, report an error (1008 policy/auth, 1009 too
 *    big: retrying would fail the same way).
 * @typedef {"resume" | "fresh" | "stop" | "fatal"} CloseAction
 * @param {number} code
 * @returns {CloseAction}
 */
export function closeAction(code) {
  switch (code) {
    case 1000:
    case 4001:
      return "stop";
    case 4002:
      return "fresh";
    case 1008:
    case 1009:
    case 1003:
    case 1007:
      return "fatal";
    default:
      return "resume";
  }
}

/**
 * Outbox numbers the client's messages with seq and keeps each one until the
 * server acknowledges it, so that after a resume everything the server did not
 * process is sent again, and nothing it did process is (the server also drops
 * seq <= its last processed one, so a resend race is harmless).
 */
export class Outbox {
  constructor() {
    /** @type {number} last seq handed out */
    this.seq = 0;
    /** @type {Array<Record<string, any>>} sent or queued, not yet acked, in seq order */
    this.pending = [];
  }

  /**
   * Numbers msg and keeps it until acked.
   * @param {Record<string, any>} msg
   * @returns {Record<string, any>} the numbered message
   */
  add(msg) {
    const m = { ...msg, seq: ++this.seq };
    this.pending.push(m);
    return m;
  }

  /**
   * Drops every message with seq <= ack.
   * @param {number | undefined} ack
   */
  ack(ack) {
    if (typeof ack !== "number") return;
    let i = 0;
    while (i < this.pending.length && this.pending[i].seq <= ack) i++;
    if (i > 0) this.pending.splice(0, i);
  }

  /**
   * Messages to send again after a resume acknowledged up to ack.
   * @param {number | undefined} ack
   */
  unacked(ack) {
    this.ack(ack);
    return this.pending.slice();
  }

  /** Forget everything: the server started a fresh session. */
  reset() {
    this.seq = 0;
    this.pending = [];
  }
}

/**
 * Inbox tracks the last server seq processed, to acknowledge it and to drop a
 * message replayed twice (the server replays seq > ack on resume; a message
 * that arrived just before the cut may come again).
 */
export class Inbox {
  constructor() {
    this.last = 0;
  }

  /**
   * Reports whether a message should be processed, and records it.
   * Messages without seq (welcome, pong) are always processed.
   * @param {{seq?: number}} msg
   */
  accept(msg) {
    if (typeof msg.seq !== "number") return true;
    if (msg.seq <= this.last) return false;
    this.last = msg.seq;
    return true;
  }

  reset() {
    this.last = 0;
  }
}

/**
 * The subset of RTCPeerConnection the negotiator uses; tests pass fakes.
 * @typedef {object} NegotiablePC
 * @property {RTCSignalingState} signalingState
 * @property {RTCSessionDescription | null} remoteDescription
 * @property {RTCSessionDescription | null} localDescription
 * @property {(d?: RTCSessionDescriptionInit) => Promise<void>} setLocalDescription
 * @property {(d: RTCSessionDescriptionInit) => Promise<void>} setRemoteDescription
 * @property {(c?: RTCIceCandidateInit) => Promise<void>} addIceCandidate
 * @property {() => Array<{mid: string | null, stopped?: boolean, currentDirection?: string | null}>} [getTransceivers]
 * @property {unknown} [sctp]
 */

/**
 * Signal payloads exchanged by a call.
 * @typedef {{description?: RTCSessionDescriptionInit, candidate?: RTCIceCandidateInit | null}} NegotiationSignal
 */

/**
 * Negotiator runs MDN's perfect negotiation pattern
 * (https://developer.mozilla.org/en-US/docs/Web/API/WebRTC_API/Perfect_negotiation)
 * for one RTCPeerConnection. The server assigns the roles: the callee is polite
 * (it rolls back its own offer on a collision), the caller impolite (it ignores
 * the colliding offer). Remote candidates that arrive before the remote
 * description are buffered and added once it is set; incoming signals are
 * handled one at a time, in order, so a candidate never overtakes its offer.
 */
export class Negotiator {
  /**
   * @param {object} opts
   * @param {NegotiablePC} opts.pc
   * @param {boolean} opts.polite
   * @param {(s: NegotiationSignal) => void} opts.send
   * @param {(err: unknown) => void} [opts.onError]
   * @param {boolean} [opts.waitForOffer] default: polite. The polite side lets
   *   the impolite one make the first offer instead of racing it. A glare on
   *   the very first offer goes wrong in Chrome (156): after the polite side
   *   rolls its initial offer back, its ICE agent sometimes never starts (the
   *   connection stays "new", ICE restarts do not help), and rolled-back
   *   transceivers get no new negotiationneeded event.
   */
  constructor({ pc, polite, send, onError, waitForOffer }) {
    this.pc = pc;
    this.polite = polite;
    this.waitingForOffer = waitForOffer ?? polite;
    /** negotiationneeded fired while waiting for the first offer */
    this.deferred = false;
    this.send = send;
    this.onError = onError ?? (() => {});
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingRemoteAnswerPending = false;
    /** @type {RTCIceCandidateInit[]} remote candidates waiting for a remote description */
    this.pendingCandidates = [];
    /** @type {Promise<void>} serializes handle() */
    this.queue = Promise.resolve();
    this.closed = false;
    /** counters, for tests and diagnostics */
    this.stats = { offersSent: 0, answersSent: 0, offersIgnored: 0, rollbacks: 0, candidatesBuffered: 0 };
  }

  /** Call from the pc's negotiationneeded event. */
  async negotiationNeeded() {
    if (this.closed) return;
    if (this.waitingForOffer) {
      this.deferred = true;
      return;
    }
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      if (this.closed || !this.pc.localDescription) return;
      this.stats.offersSent++;
      this.send({ description: toInit(this.pc.localDescription) });
    } catch (err) {
      this.onError(err);
    } finally {
      this.makingOffer = false;
    }
  }

  /**
   * Call from the pc's icecandidate event (null candidate = end of candidates).
   * @param {RTCIceCandidate | RTCIceCandidateInit | null} candidate
   */
  localCandidate(candidate) {
    if (this.closed) return;
    const c = candidate && "toJSON" in candidate && typeof candidate.toJSON === "function" ? candidate.toJSON() : candidate;
    this.send({ candidate: c ?? null });
  }

  /**
   * Handles a signal from the peer; resolves when it has been applied.
   * @param {NegotiationSignal} signal
   */
  handle(signal) {
    const run = () => this.#handle(signal).catch((err) => this.onError(err));
    this.queue = this.queue.then(run, run);
    return this.queue;
  }

  /** @param {NegotiationSignal} signal */
  async #handle({ description, candidate }) {
    if (this.closed) return;
    const pc = this.pc;
    if (description) {
      const readyForOffer =
        !this.makingOffer && (pc.signalingState === "stable" || this.settingRemoteAnswerPending);
      const offerCollision = description.type === "offer" && !readyForOffer;
      this.ignoreOffer = !this.polite && offerCollision;
      if (this.ignoreOffer) {
        this.stats.offersIgnored++;
        return;
      }
      if (offerCollision) this.stats.rollbacks++; // setRemoteDescription rolls back implicitly
      const rolledBack = offerCollision;
      this.settingRemoteAnswerPending = description.type === "answer";
      try {
        await pc.setRemoteDescription(description);
      } finally {
        this.settingRemoteAnswerPending = false;
      }
      await this.#flushCandidates();
      if (description.type === "offer") {
        await pc.setLocalDescription();
        if (this.closed || !pc.localDescription) return;
        this.stats.answersSent++;
        this.send({ description: toInit(pc.localDescription) });
        const deferred = this.deferred;
        this.waitingForOffer = false;
        this.deferred = false;
        // Our own changes that the answer did not cover (made while waiting,
        // or rolled back by the collision) need an offer of ours. Chrome
        // does not always fire negotiationneeded again after a rollback.
        if ((deferred || rolledBack) && this.needsOffer()) queueMicrotask(() => this.negotiationNeeded());
      }
      return;
    }
    if (candidate !== undefined) {
      if (!pc.remoteDescription) {
        // The offer is still on its way (or was ignored): keep the candidate
        // until a remote description exists, adding it now would throw.
        if (candidate) {
          this.stats.candidatesBuffered++;
          this.pendingCandidates.push(candidate);
        }
        return;
      }
      await this.#addCandidate(candidate);
    }
  }

  /** Whether the pc has something an offer of ours must still negotiate. */
  needsOffer() {
    const pc = this.pc;
    if (pc.signalingState !== "stable") return false;
    const trs = pc.getTransceivers ? pc.getTransceivers() : [];
    if (trs.some((t) => t.mid === null && !t.stopped)) return true;
    return this.deferred || pc.sctp === null;
  }

  async #flushCandidates() {
    const list = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const c of list) await this.#addCandidate(c);
  }

  /** @param {RTCIceCandidateInit | null} candidate */
  async #addCandidate(candidate) {
    try {
      // null: end-of-candidates; addIceCandidate() without argument marks it.
      await (candidate ? this.pc.addIceCandidate(candidate) : this.pc.addIceCandidate());
    } catch (err) {
      // Candidates for an offer we ignored fail; that is expected.
      if (!this.ignoreOffer) throw err;
    }
  }

  close() {
    this.closed = true;
    this.pendingCandidates = [];
  }
}

/**
 * @param {RTCSessionDescription | RTCSessionDescriptionInit} d
 * @returns {RTCSessionDescriptionInit}
 */
function toInit(d) {
  return { type: d.type, sdp: d.sdp };
}

/**
 * Summary of a connection's state, from RTCPeerConnection.getStats().
 * @typedef {object} StatsSummary
 * @property {"direct" | "relay" | "unknown"} path relay: through our TURN server
 * @property {string} transport "udp" or "tcp" between browser and peer (or TURN server);
 *   for a relayed path, how the browser reaches TURN: "udp", "tcp" or "tls"
 * @property {string} localType host, srflx, prflx or relay
 * @property {string} remoteType
 * @property {number | null} rtt milliseconds, of the selected candidate pair
 * @property {number | null} inKbps received media bitrate since the previous summary
 * @property {number | null} outKbps sent media bitrate since the previous summary
 * @property {number} bytesIn
 * @property {number} bytesOut
 * @property {number} framesDecoded video frames decoded so far
 * @property {number} timestamp ms
 */

/**
 * Summarizes an RTCStatsReport (or any Map-like of stats objects).
 * @param {{forEach: (cb: (v: any, k: string) => void) => void, get?: (k: string) => any}} report
 * @param {StatsSummary | null} [prev] previous summary, for bitrates
 * @returns {StatsSummary}
 */
export function summarizeStats(report, prev = null) {
  /** @type {Map<string, any>} */
  const byId = new Map();
  report.forEach((v, k) => byId.set(v?.id ?? k, v));
  let pair = null;
  // The transport names the selected pair; older stats only mark it nominated.
  for (const s of byId.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      pair = byId.get(s.selectedCandidatePairId) ?? null;
      if (pair) break;
    }
  }
  if (!pair) {
    for (const s of byId.values()) {
      if (s.type === "candidate-pair" && s.state === "succeeded" && (s.nominated || s.selected)) {
        pair = s;
        break;
      }
    }
  }
  let bytesIn = 0;
  let bytesOut = 0;
  let framesDecoded = 0;
  let timestamp = 0;
  for (const s of byId.values()) {
    if (s.type === "inbound-rtp") {
      bytesIn += s.bytesReceived ?? 0;
      if (s.kind === "video" || s.mediaType === "video") framesDecoded += s.framesDecoded ?? 0;
      timestamp = Math.max(timestamp, s.timestamp ?? 0);
    } else if (s.type === "outbound-rtp") {
      bytesOut += s.bytesSent ?? 0;
      timestamp = Math.max(timestamp, s.timestamp ?? 0);
    }
  }
  const local = pair ? byId.get(pair.localCandidateId) : null;
  const remote = pair ? byId.get(pair.remoteCandidateId) : null;
  if (pair) timestamp = Math.max(timestamp, pair.timestamp ?? 0);
  const localType = local?.candidateType ?? "";
  const remoteType = remote?.candidateType ?? "";
  /** @type {StatsSummary["path"]} */
  let path = "unknown";
  if (pair) path = localType === "relay" || remoteType === "relay" ? "relay" : "direct";
  let transport = local?.protocol ?? "";
  if (localType === "relay" && local?.relayProtocol) transport = local.relayProtocol;
  const rtt = pair && typeof pair.currentRoundTripTime === "number" ? Math.round(pair.currentRoundTripTime * 1000) : null;
  let inKbps = null;
  let outKbps = null;
  if (prev && timestamp > prev.timestamp) {
    const secs = (timestamp - prev.timestamp) / 1000;
    inKbps = Math.max(0, Math.round(((bytesIn - prev.bytesIn) * 8) / 1000 / secs));
    outKbps = Math.max(0, Math.round(((bytesOut - prev.bytesOut) * 8) / 1000 / secs));
  }
  return { path, transport, localType, remoteType, rtt, inKbps, outKbps, bytesIn, bytesOut, framesDecoded, timestamp };
}

/**
 * Human words for a stats summary, e.g. "Direct · UDP · 12 ms".
 * @param {StatsSummary} s
 */
export function describePath(s) {
  if (s.path === "unknown") return "Connecting…";
  const parts = [s.path === "relay" ? "Relayed" : "Direct"];
  if (s.transport) parts.push(s.transport.toUpperCase());
  if (s.rtt !== null) parts.push(`${s.rtt} ms`);
  return parts.join(" · ");
}
