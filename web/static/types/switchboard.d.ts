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
export function defaultURL(): string;
/**
 * Connects to a Switchboard server and returns the session at once; listen for
 * its "welcome" and "state" events.
 * @param {string | null | undefined} url ws(s)://host/ws; empty: this page's server
 * @param {ConnectOptions} opts
 * @returns {Session}
 */
export function connect(url: string | null | undefined, opts: ConnectOptions): Session;
/** A signaling session: presence, calls, signals; see SessionEventMap for its events. */
/** @extends {TypedTarget<SessionEventMap>} */
export class Session extends TypedTarget<SessionEventMap> {
    /**
     * @param {string} url
     * @param {ConnectOptions} opts
     */
    constructor(url: string, opts: ConnectOptions);
    /** @readonly */
    readonly url: string;
    /** @returns {string} our peer id, set by the welcome */
    get id(): string;
    /** @returns {string} */
    get name(): string;
    /** @returns {string} the current room ("" = lobby) */
    get room(): string;
    /** @returns {SessionState} */
    get state(): SessionState;
    /** @returns {ReadonlyMap<string, Peer>} the others in the room */
    get peers(): ReadonlyMap<string, Peer>;
    /** @returns {IceServer[]} the latest ICE servers (welcome or ice-servers push) */
    get iceServers(): IceServer[];
    /** @returns {ReadonlyMap<string, Call>} calls that have not ended */
    get calls(): ReadonlyMap<string, Call>;
    /** @returns {string | undefined} the sign-in token the next hello carries */
    get token(): string | undefined;
    /** While reconnecting, tries at once instead of waiting out the backoff. */
    reconnectNow(): void;
    /** Opens the WebSocket; connect() calls it, reconnects call it again. */
    open(): void;
    /** Leaves: hangs up every call and closes the connection for good. */
    close(): void;
    /**
     * Sends application data to one peer (or "*" for the whole room); kept and
     * resent across reconnects.
     * @param {string} to
     * @param {unknown} data
     */
    signal(to: string, data: unknown): void;
    /**
     * Moves to another room ("" = lobby).
     * @param {string} room
     */
    join(room: string): void;
    /**
     * Calls a peer: it rings there until accepted, declined or timed out.
     * @param {string} peerId
     * @param {{stream?: MediaStream | null}} [opts]
     * @returns {Call}
     */
    call(peerId: string, opts?: {
        stream?: MediaStream | null;
    }): Call;
    /**
     * Connects to a room peer without ringing (mesh group calls: joining the
     * room link is the consent). Both sides call this; the lower id is polite.
     * @param {string} peerId
     * @param {{stream?: MediaStream | null}} [opts]
     * @returns {Call}
     */
    meshCall(peerId: string, opts?: {
        stream?: MediaStream | null;
    }): Call;
    #private;
}
export type Peer = import("./protocol.js").Peer;
export type IceServer = import("./protocol.js").IceServer;
export type ServerMessage = import("./protocol.js").ServerMessage;
export type ClientRequest = import("./protocol.js").ClientRequest;
export type ErrorCode = import("./protocol.js").ErrorCode;
export type CallState = import("./call.js").CallState;
export type EndReason = import("./call.js").EndReason;
export type MediaState = import("./call.js").MediaState;
export type CallControl = import("./call.js").CallControl;
export type StatsSummary = import("./stats.js").StatsSummary;
export type SessionState = "connecting" | "open" | "reconnecting" | "offline" | "closed";
export type ConnectOptions = {
    /**
     * display name shown to other peers
     */
    name: string;
    /**
     * room to join; omitted: the lobby (or the sign-in token's room)
     */
    room?: string | undefined;
    /**
     * sign-in JWT when the server runs with an auth secret; a "token"
     * push from the server replaces it
     */
    token?: string | undefined;
    /**
     * "relay" forces every call through TURN
     */
    iceTransportPolicy?: RTCIceTransportPolicy | undefined;
    /**
     * ms of failed reconnects before state "offline"; default 20000
     * (a person gets a clear message instead of an endless spinner, while retries go on)
     */
    offlineAfter?: number | undefined;
    /**
     * for tests
     */
    WebSocket?: {
        new (url: string | URL, protocols?: string | string[]): WebSocket;
        prototype: WebSocket;
        readonly CONNECTING: 0;
        readonly OPEN: 1;
        readonly CLOSING: 2;
        readonly CLOSED: 3;
    } | undefined;
};
/**
 * Events of a Session (CustomEvent, payload in detail).
 */
export type SessionEventMap = {
    state: CustomEvent<{
        state: SessionState;
        delay?: number;
        code?: number;
    }>;
    /**
     * lost: the
     * session was adopted after its server node died; its calls restart ICE through the new node's relay
     */
    welcome: CustomEvent<{
        resumed: boolean;
        lost: boolean;
        id: string;
        room: string;
        peers: Peer[];
    }>;
    /**
     * the presence list changed
     */
    peers: CustomEvent<{
        peers: Peer[];
    }>;
    "peer-joined": CustomEvent<{
        peer: Peer;
    }>;
    "peer-left": CustomEvent<{
        id: string;
        reason: string;
    }>;
    joined: CustomEvent<{
        room: string;
        peers: Peer[];
    }>;
    /**
     * an incoming call (answer with call.accept() or call.decline()), or a mesh peer
     */
    call: CustomEvent<{
        call: Call;
    }>;
    /**
     * an application signal not belonging to a call
     */
    signal: CustomEvent<{
        from: string;
        data: unknown;
    }>;
    error: CustomEvent<{
        code: ErrorCode;
        message: string;
        ref?: unknown;
    }>;
    "ice-servers": CustomEvent<{
        iceServers: IceServer[];
    }>;
    /**
     * the server renewed the sign-in token; store it
     */
    token: CustomEvent<{
        token: string;
        ttl: number;
    }>;
    closed: CustomEvent<{
        code: number;
        reason: string;
        fatal: boolean;
    }>;
};
import { backoffDelay } from "./reliability.js";
import { closeAction } from "./reliability.js";
import { summarizeStats } from "./stats.js";
import { describePath } from "./stats.js";
import { parseServerMessage } from "./protocol.js";
import { Call } from "./call.js";
import { TypedTarget } from "./events.js";
export { backoffDelay, closeAction, summarizeStats, describePath, parseServerMessage, Call };
