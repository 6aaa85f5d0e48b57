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
    constructor({ pc, polite, send, onError, waitForOffer }: {
        pc: NegotiablePC;
        polite: boolean;
        send: (s: NegotiationSignal) => void;
        onError?: ((err: unknown) => void) | undefined;
        waitForOffer?: boolean | undefined;
    });
    pc: NegotiablePC;
    polite: boolean;
    waitingForOffer: boolean;
    /** negotiationneeded fired while waiting for the first offer */
    deferred: boolean;
    send: (s: NegotiationSignal) => void;
    onError: (err: unknown) => void;
    makingOffer: boolean;
    ignoreOffer: boolean;
    settingRemoteAnswerPending: boolean;
    /** @type {RTCIceCandidateInit[]} remote candidates waiting for a remote description */
    pendingCandidates: RTCIceCandidateInit[];
    /** @type {Promise<void>} serializes handle() */
    queue: Promise<void>;
    closed: boolean;
    /** counters, for tests and diagnostics */
    stats: {
        offersSent: number;
        answersSent: number;
        offersIgnored: number;
        rollbacks: number;
        candidatesBuffered: number;
    };
    /** Call from the pc's negotiationneeded event. */
    negotiationNeeded(): Promise<void>;
    /**
     * Call from the pc's icecandidate event (null candidate = end of candidates).
     * @param {RTCIceCandidate | RTCIceCandidateInit | null} candidate
     */
    localCandidate(candidate: RTCIceCandidate | RTCIceCandidateInit | null): void;
    /**
     * Handles a signal from the peer; resolves when it has been applied.
     * @param {NegotiationSignal} signal
     */
    handle(signal: NegotiationSignal): Promise<void>;
    /** Whether the pc has something an offer of ours must still negotiate. */
    needsOffer(): boolean;
    close(): void;
    #private;
}
/**
 * The subset of RTCPeerConnection the negotiator uses; tests pass fakes.
 */
export type NegotiablePC = {
    signalingState: RTCSignalingState;
    remoteDescription: RTCSessionDescription | null;
    localDescription: RTCSessionDescription | null;
    setLocalDescription: (d?: RTCSessionDescriptionInit) => Promise<void>;
    setRemoteDescription: (d: RTCSessionDescriptionInit) => Promise<void>;
    addIceCandidate: (c?: RTCIceCandidateInit) => Promise<void>;
    getTransceivers?: (() => Array<{
        mid: string | null;
        stopped?: boolean;
        currentDirection?: string | null;
    }>) | undefined;
    sctp?: unknown;
};
/**
 * Signal payloads exchanged by a call.
 */
export type NegotiationSignal = {
    description?: RTCSessionDescriptionInit;
    candidate?: RTCIceCandidateInit | null;
};
