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
export function randomID(): string;
/** @extends {TypedTarget<CallEventMap>} */
export class Call extends TypedTarget<CallEventMap> {
    /**
     * @param {CallLink} link
     * @param {CallInit} o
     * @param {(control: CallControl) => void} register receives the session's handle on the call
     */
    constructor(link: CallLink, o: CallInit, register: (control: CallControl) => void);
    /** @readonly */
    readonly id: string;
    /** @readonly */
    readonly peerId: string;
    /** @readonly */
    readonly peerName: string;
    /** @readonly */
    readonly direction: "incoming" | "outgoing" | "mesh";
    /** @readonly remote tracks, added as they arrive */
    readonly remoteStream: MediaStream;
    /** @returns {CallState} */
    get state(): CallState;
    /** @returns {EndReason | ""} why the call ended; "" while it goes on */
    get endReason(): EndReason | "";
    /** @returns {boolean} assigned by the server: the callee is polite */
    get polite(): boolean;
    /** @returns {RTCPeerConnection | null} */
    get pc(): RTCPeerConnection | null;
    /** @returns {RTCDataChannel | null} */
    get channel(): RTCDataChannel | null;
    /** @returns {MediaStream | null} */
    get localStream(): MediaStream | null;
    /** @returns {Negotiator | null} for diagnostics: its stats count offers, answers, rollbacks */
    get negotiator(): Negotiator | null;
    /** @returns {RTCRtpSender | null} the sender replaceVideo swaps tracks on */
    get videoSender(): RTCRtpSender | null;
    /** @returns {MediaState | null} the peer's microphone and camera as it last said; null before it said */
    get remoteMedia(): MediaState | null;
    /** Accepts an incoming call. @param {{stream?: MediaStream | null}} [opts] */
    accept(opts?: {
        stream?: MediaStream | null;
    }): void;
    /** Declines an incoming call. */
    decline(): void;
    /** Cancels an outgoing call that was not answered yet. */
    cancel(): void;
    /** Ends the call whatever its state. */
    hangup(): void;
    /**
     * Tells the peer whether our microphone and camera are on (a disabled
     * track just sends silence and black frames; the peer cannot tell that
     * from a broken camera). Sent as a signal, so it survives reconnects; sent
     * again when the call starts.
     * @param {MediaState} media
     */
    setMedia(media: MediaState): void;
    /** Restarts ICE (new candidates, new path); done on failure and on the window's "online" event. */
    restartIce(): void;
    /**
     * Replaces the outgoing video (screen share and back) on the existing
     * sender: no renegotiation, no glitch for the peer.
     * @param {MediaStreamTrack | null} track
     */
    replaceVideo(track: MediaStreamTrack | null): Promise<void>;
    /**
     * Sends a chat message (any JSON value) over the data channel.
     * @param {unknown} data
     */
    sendMessage(data: unknown): void;
    /**
     * Sends a file over the data channel in 16 KiB chunks with backpressure;
     * "file-progress" events report how far it is. Files go one after another.
     * @param {Blob & {name?: string}} file
     * @returns {Promise<void>}
     */
    sendFile(file: Blob & {
        name?: string;
    }): Promise<void>;
    /**
     * Stats summary: path (direct or relayed, and transport), RTT, bitrates
     * since the previous call of getStats.
     * @returns {Promise<StatsSummary | null>}
     */
    getStats(): Promise<StatsSummary | null>;
    #private;
}
export type CallState = "calling" | "ringing" | "incoming" | "connecting" | "connected" | "reconnecting" | "ended";
export type EndReason = "declined" | "cancelled" | "busy" | "timeout" | "hangup" | "left" | "unavailable" | "gone" | "failed" | "local" | "connection-lost" | "resume-expired" | "closed";
/**
 * whether the microphone and camera are on
 */
export type MediaState = {
    audio: boolean;
    video: boolean;
};
export type FileProgress = import("./transfer.js").FileProgress;
export type ReceivedFile = import("./transfer.js").ReceivedFile;
export type StatsSummary = import("./stats.js").StatsSummary;
/**
 * Events of a Call (CustomEvent, payload in detail).
 */
export type CallEventMap = {
    state: CustomEvent<{
        state: CallState;
    }>;
    /**
     * remote media arrived; call.remoteStream has it all
     */
    track: CustomEvent<{
        track: MediaStreamTrack;
        stream: MediaStream;
    }>;
    /**
     * the data channel is open
     */
    open: CustomEvent<{}>;
    /**
     * a chat message (any JSON value) from the peer
     */
    message: CustomEvent<{
        data: unknown;
    }>;
    /**
     * the peer turned its microphone or camera on or off
     */
    media: CustomEvent<MediaState>;
    "file-progress": CustomEvent<FileProgress>;
    /**
     * a file arrived complete
     */
    file: CustomEvent<ReceivedFile>;
    ended: CustomEvent<{
        reason: EndReason;
    }>;
};
/**
 * What a call needs from its session.
 */
export type CallLink = {
    /**
     * a numbered, resent-until-acked request
     */
    send: (msg: import("./protocol.js").ClientRequest & {
        ref?: string;
    }) => void;
    /**
     * a signal to the call's peer
     */
    signal: (data: object) => void;
    /**
     * the current ICE servers and policy
     */
    rtc: () => RTCConfiguration;
    /**
     * the call ended: drop it from the session
     */
    forget: (id: string) => void;
};
/**
 * What the session may do to a call; handed over by the constructor, so
 * these are not part of the public API.
 */
export type CallControl = {
    end: (reason: EndReason) => void;
    /**
     * a signal of this call from its peer
     */
    signal: (data: Record<string, unknown>) => void;
    ringing: () => void;
    accepted: (polite: boolean) => void;
    /**
     * creates the peer connection
     */
    start: (polite: boolean) => void;
    /**
     * applies the session's latest ICE servers
     */
    configure: () => void;
    /**
     * after an adoption (welcome.lost): restarts ICE on the latest ICE servers
     */
    resync: () => void;
};
export type CallInit = {
    id: string;
    peerId: string;
    peerName: string;
    direction: "outgoing" | "incoming" | "mesh";
    stream: MediaStream | null;
};
import { TypedTarget } from "./events.js";
import { Negotiator } from "./negotiation.js";
