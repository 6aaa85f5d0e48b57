// @ts-check
// MDN's perfect negotiation for one RTCPeerConnection, free of DOM access so
// that it can be unit-tested with fake peer connections.

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
