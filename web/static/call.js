// @ts-check
// One call with one peer: the RTCPeerConnection, perfect negotiation over the
// session's signal messages, the data channel (chat, files, media state) and
// ICE restarts. Sessions create calls (session.call, meshCall, the "call"
// event); nothing else should.

import { TypedTarget } from "./events.js";
import { Negotiator } from "./negotiation.js";
import { summarizeStats } from "./stats.js";
import { sendFile, FileReceiver, HIGH_WATER } from "./transfer.js";

/**
 * @typedef {"calling" | "ringing" | "incoming" | "connecting" | "connected" | "reconnecting" | "ended"} CallState
 * @typedef {"declined" | "cancelled" | "busy" | "timeout" | "hangup" | "left" | "unavailable" | "gone" |
 *   "failed" | "local" | "connection-lost" | "resume-expired" | "closed"} EndReason
 * @typedef {{audio: boolean, video: boolean}} MediaState whether the microphone and camera are on
 * @typedef {import("./transfer.js").FileProgress} FileProgress
 * @typedef {import("./transfer.js").ReceivedFile} ReceivedFile
 * @typedef {import("./stats.js").StatsSummary} StatsSummary
 */

/**
 * Events of a Call (CustomEvent, payload in detail).
 * @typedef {object} CallEventMap
 * @property {CustomEvent<{state: CallState}>} state
 * @property {CustomEvent<{track: MediaStreamTrack, stream: MediaStream}>} track remote media arrived; call.remoteStream has it all
 * @property {CustomEvent<{}>} open the data channel is open
 * @property {CustomEvent<{data: unknown}>} message a chat message (any JSON value) from the peer
 * @property {CustomEvent<MediaState>} media the peer turned its microphone or camera on or off
 * @property {CustomEvent<FileProgress>} file-progress
 * @property {CustomEvent<ReceivedFile>} file a file arrived complete
 * @property {CustomEvent<{reason: EndReason}>} ended
 */

/**
 * What a call needs from its session.
 * @typedef {object} CallLink
 * @property {(msg: import("./protocol.js").ClientRequest & {ref?: string}) => void} send a numbered, resent-until-acked request
 * @property {(data: object) => void} signal a signal to the call's peer
 * @property {() => RTCConfiguration} rtc the current ICE servers and policy
 * @property {(id: string) => void} forget the call ended: drop it from the session
 */

/**
 * What the session may do to a call; handed over by the constructor, so
 * these are not part of the public API.
 * @typedef {object} CallControl
 * @property {(reason: EndReason) => void} end
 * @property {(data: Record<string, unknown>) => void} signal a signal of this call from its peer
 * @property {() => void} ringing
 * @property {(polite: boolean) => void} accepted
 * @property {(polite: boolean) => void} start creates the peer connection
 * @property {() => void} configure applies the session's latest ICE servers
 * @property {() => void} resync after an adoption (welcome.lost): restarts ICE on the latest ICE servers
 */

/**
 * @typedef {object} CallInit
 * @property {string} id
 * @property {string} peerId
 * @property {string} peerName
 * @property {"outgoing" | "incoming" | "mesh"} direction
 * @property {MediaStream | null} stream
 */

/** @returns {string} a random id, also in non-secure contexts (no randomUUID there) */
export function randomID() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** @extends {TypedTarget<CallEventMap>} */
export class Call extends TypedTarget {
  /** @type {CallState} */
  #state;
  /** @type {EndReason | ""} */
  #endReason = "";
  #polite = false;
  /** @type {RTCPeerConnection | null} */
  #pc = null;
  /** @type {Negotiator | null} */
  #negotiator = null;
  /** @type {RTCDataChannel | null} */
  #channel = null;
  /** @type {MediaStream | null} */
  #localStream;
  /** @type {StatsSummary | null} */
  #lastStats = null;
  /** @type {import("./negotiation.js").NegotiationSignal[]} signals that came before the pc existed */
  #early = [];
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #disconnectTimer = undefined;
  /** @type {RTCRtpSender | null} the sender screen share swaps tracks on */
  #videoSender = null;
  /** @type {Promise<void>} serializes outgoing files */
  #fileQueue = Promise.resolve();
  /** @type {MediaState | null} what we last told the peer */
  #localMedia = null;
  /** @type {MediaState | null} what the peer last told us; null: not said */
  #remoteMedia = null;
  #files;
  #link;

  /**
   * @param {CallLink} link
   * @param {CallInit} o
   * @param {(control: CallControl) => void} register receives the session's handle on the call
   */
  constructor(link, o, register) {
    super();
    this.#link = link;
    /** @readonly */
    this.id = o.id;
    /** @readonly */
    this.peerId = o.peerId;
    /** @readonly */
    this.peerName = o.peerName;
    /** @readonly */
    this.direction = o.direction;
    /** @readonly remote tracks, added as they arrive */
    this.remoteStream = new MediaStream();
    this.#localStream = o.stream;
    this.#state = o.direction === "incoming" ? "incoming" : o.direction === "mesh" ? "connecting" : "calling";
    this.#files = new FileReceiver(
      (p) => this.#emit("file-progress", p),
      (f) => this.#emit("file", f),
    );
    register({
      end: (reason) => this.#end(reason),
      signal: (data) => this.#onSignal(data),
      ringing: () => this.#setState("ringing"),
      accepted: (polite) => this.#onAccepted(polite),
      start: (polite) => this.#startMedia(polite),
      configure: () => this.#applyConfiguration(),
      resync: () => this.#resync(),
    });
  }

  /** @returns {CallState} */
  get state() {
    return this.#state;
  }
  /** @returns {EndReason | ""} why the call ended; "" while it goes on */
  get endReason() {
    return this.#endReason;
  }
  /** @returns {boolean} assigned by the server: the callee is polite */
  get polite() {
    return this.#polite;
  }
  /** @returns {RTCPeerConnection | null} */
  get pc() {
    return this.#pc;
  }
  /** @returns {RTCDataChannel | null} */
  get channel() {
    return this.#channel;
  }
  /** @returns {MediaStream | null} */
  get localStream() {
    return this.#localStream;
  }
  /** @returns {Negotiator | null} for diagnostics: its stats count offers, answers, rollbacks */
  get negotiator() {
    return this.#negotiator;
  }
  /** @returns {RTCRtpSender | null} the sender replaceVideo swaps tracks on */
  get videoSender() {
    return this.#videoSender;
  }
  /** @returns {MediaState | null} the peer's microphone and camera as it last said; null before it said */
  get remoteMedia() {
    return this.#remoteMedia;
  }

  /**
   * @template {keyof CallEventMap} K
   * @param {K} type
   * @param {CallEventMap[K]["detail"]} detail
   */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {CallState} state */
  #setState(state) {
    if (this.#state === state || this.#state === "ended") return;
    this.#state = state;
    this.#emit("state", { state });
  }

  /** Accepts an incoming call. @param {{stream?: MediaStream | null}} [opts] */
  accept(opts = {}) {
    if (this.#state !== "incoming") return;
    this.#localStream = opts.stream ?? null;
    this.#link.send({ type: "accept", call: this.id, ref: this.id });
    // The callee is the polite peer; accepted confirms it.
    this.#startMedia(true);
  }

  /** Declines an incoming call. */
  decline() {
    if (this.#state !== "incoming") return;
    this.#link.send({ type: "decline", call: this.id, ref: this.id });
    this.#end("local");
  }

  /** Cancels an outgoing call that was not answered yet. */
  cancel() {
    if (this.#state !== "calling" && this.#state !== "ringing") return;
    this.#link.send({ type: "cancel", call: this.id, ref: this.id });
    this.#end("local");
  }

  /** Ends the call whatever its state. */
  hangup() {
    if (this.#state === "ended") return;
    if (this.#state === "incoming") return this.decline();
    if (this.#state === "calling" || this.#state === "ringing") return this.cancel();
    if (this.direction !== "mesh") this.#link.send({ type: "hangup", call: this.id, ref: this.id });
    else this.#link.signal({ call: this.id, bye: true });
    this.#end("local");
  }

  /**
   * Tells the peer whether our microphone and camera are on (a disabled
   * track just sends silence and black frames; the peer cannot tell that
   * from a broken camera). Sent as a signal, so it survives reconnects; sent
   * again when the call starts.
   * @param {MediaState} media
   */
  setMedia(media) {
    const m = { audio: !!media.audio, video: !!media.video };
    const same = this.#localMedia && this.#localMedia.audio === m.audio && this.#localMedia.video === m.video;
    this.#localMedia = m;
    if (!same && this.#pc && this.#state !== "ended") this.#link.signal({ call: this.id, media: m });
  }

  /** @param {boolean} polite */
  #onAccepted(polite) {
    if (this.#pc) {
      this.#polite = polite;
      if (this.#negotiator) this.#negotiator.polite = polite;
      return;
    }
    this.#startMedia(polite);
  }

  /** @param {boolean} polite */
  #startMedia(polite) {
    if (this.#pc || this.#state === "ended") return;
    this.#polite = polite;
    this.#setState("connecting");
    const pc = new RTCPeerConnection(this.#link.rtc());
    this.#pc = pc;
    const negotiator = new Negotiator({
      pc,
      polite,
      send: (s) => this.#link.signal({ call: this.id, ...s }),
      onError: (err) => console.warn("switchboard: negotiation", err),
    });
    this.#negotiator = negotiator;
    pc.onnegotiationneeded = () => negotiator.negotiationNeeded();
    pc.onicecandidate = (e) => negotiator.localCandidate(e.candidate);
    pc.ontrack = (e) => {
      if (!this.remoteStream.getTracks().includes(e.track)) this.remoteStream.addTrack(e.track);
      e.track.onended = () => this.remoteStream.removeTrack(e.track);
      this.#emit("track", { track: e.track, stream: this.remoteStream });
    };
    pc.onconnectionstatechange = () => this.#onConnectionState();
    // A negotiated channel (same id on both sides) needs no extra round trip
    // and cannot collide when both peers create it.
    const ch = pc.createDataChannel("switchboard", { negotiated: true, id: 0, ordered: true });
    ch.binaryType = "arraybuffer";
    ch.bufferedAmountLowThreshold = HIGH_WATER / 4;
    ch.onopen = () => this.#emit("open", {});
    ch.onmessage = (e) => this.#onChannelMessage(e.data);
    this.#channel = ch;
    this.#addLocalMedia();
    if (this.#localMedia) this.#link.signal({ call: this.id, media: this.#localMedia });
    for (const s of this.#early.splice(0)) negotiator.handle(s);
  }

  #addLocalMedia() {
    const pc = this.#pc;
    if (!pc) return;
    const stream = this.#localStream;
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

  #onConnectionState() {
    const pc = this.#pc;
    if (!pc) return;
    switch (pc.connectionState) {
      case "connected":
        clearTimeout(this.#disconnectTimer);
        this.#setState("connected");
        break;
      case "disconnected":
        this.#setState("reconnecting");
        // Often heals by itself within seconds (Wi-Fi hiccup); if not, restart.
        clearTimeout(this.#disconnectTimer);
        this.#disconnectTimer = setTimeout(() => this.restartIce(), 4000);
        break;
      case "failed":
        this.#setState("reconnecting");
        this.restartIce();
        break;
    }
  }

  /** Restarts ICE (new candidates, new path); done on failure and on the window's "online" event. */
  restartIce() {
    if (!this.#pc || this.#state === "ended") return;
    this.#pc.restartIce();
  }

  /**
   * The session was adopted by another node (welcome.lost): the relay our
   * path ran through may have died with the old node, and signals of this
   * call above the server's ack were dropped. A local offer still waiting
   * for its answer may be one of them: roll it back (the peer answers a
   * stale offer into nothing), then restart ICE, which makes a fresh offer
   * on the ICE servers the session applied from the welcome.
   */
  async #resync() {
    const pc = this.#pc;
    if (!pc || this.#state === "ended") return;
    if (pc.signalingState === "have-local-offer" && !this.#negotiator?.makingOffer) {
      try {
        await pc.setLocalDescription({ type: "rollback" });
      } catch (err) {
        console.warn("switchboard: rollback before ICE restart", err);
      }
    }
    this.restartIce();
  }

  #applyConfiguration() {
    if (!this.#pc || this.#state === "ended") return;
    try {
      this.#pc.setConfiguration({ ...this.#pc.getConfiguration(), ...this.#link.rtc() });
    } catch (err) {
      console.warn("switchboard: setConfiguration", err);
    }
  }

  /** @param {Record<string, unknown>} data */
  #onSignal(data) {
    if (data.bye) {
      this.#end("hangup");
      return;
    }
    if (data.media && typeof data.media === "object") {
      const m = /** @type {Record<string, unknown>} */ (data.media);
      this.#remoteMedia = { audio: m.audio !== false, video: m.video !== false };
      this.#emit("media", this.#remoteMedia);
      return;
    }
    /** @type {import("./negotiation.js").NegotiationSignal} */
    const s = {};
    if (data.description) s.description = /** @type {RTCSessionDescriptionInit} */ (data.description);
    if ("candidate" in data) s.candidate = /** @type {RTCIceCandidateInit | null} */ (data.candidate);
    if (!this.#negotiator) {
      this.#early.push(s);
      return;
    }
    this.#negotiator.handle(s);
  }

  /**
   * Replaces the outgoing video (screen share and back) on the existing
   * sender: no renegotiation, no glitch for the peer.
   * @param {MediaStreamTrack | null} track
   */
  async replaceVideo(track) {
    const pc = this.#pc;
    if (!pc) return;
    if (!this.#videoSender) this.#videoSender = pc.getSenders().find((s) => s.track?.kind === "video") ?? null;
    if (this.#videoSender) {
      await this.#videoSender.replaceTrack(track);
    } else if (track) {
      // No video sender yet (we joined without a camera): adding one needs a
      // negotiation, which perfect negotiation runs on its own.
      this.#videoSender = pc.addTrack(track, this.#localStream ?? new MediaStream([track]));
    }
  }

  /**
   * Sends a chat message (any JSON value) over the data channel.
   * @param {unknown} data
   */
  sendMessage(data) {
    if (!this.#channel || this.#channel.readyState !== "open") throw new Error("the chat channel is not open yet");
    this.#channel.send(JSON.stringify({ t: "msg", data }));
  }

  /**
   * Sends a file over the data channel in 16 KiB chunks with backpressure;
   * "file-progress" events report how far it is. Files go one after another.
   * @param {Blob & {name?: string}} file
   * @returns {Promise<void>}
   */
  sendFile(file) {
    const run = () => {
      const ch = this.#channel;
      if (!ch) return Promise.reject(new Error("the file channel is not open yet"));
      return sendFile(ch, file, randomID(), (p) => this.#emit("file-progress", p));
    };
    const p = this.#fileQueue.then(run, run);
    this.#fileQueue = p.catch(() => {});
    return p;
  }

  /** @param {string | ArrayBuffer} raw */
  #onChannelMessage(raw) {
    if (typeof raw !== "string") {
      this.#files.chunk(raw);
      return;
    }
    let m;
    try {
      m = JSON.parse(raw);
    } catch {
      return;
    }
    if (!m || typeof m !== "object") return;
    if (m.t === "msg") this.#emit("message", { data: m.data });
    else this.#files.control(m);
  }

  /**
   * Stats summary: path (direct or relayed, and transport), RTT, bitrates
   * since the previous call of getStats.
   * @returns {Promise<StatsSummary | null>}
   */
  async getStats() {
    if (!this.#pc) return null;
    const report = await this.#pc.getStats();
    this.#lastStats = summarizeStats(report, this.#lastStats);
    return this.#lastStats;
  }

  /** @param {EndReason} reason */
  #end(reason) {
    if (this.#state === "ended") return;
    this.#endReason = reason;
    clearTimeout(this.#disconnectTimer);
    this.#negotiator?.close();
    try {
      this.#channel?.close();
      this.#pc?.close();
    } catch {
      /* already closed */
    }
    this.#link.forget(this.id);
    this.#state = "ended";
    this.#emit("state", { state: "ended" });
    this.#emit("ended", { reason });
  }
}
