// Type declarations for /switchboard.js, the Switchboard browser client.
// The wire protocol it speaks is documented in signaling/PROTOCOL.md.

export interface Peer {
  id: string;
  name: string;
  /** true when the peer reaches the server from the same public address (same network, probably) */
  nearby?: boolean;
}

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export type SessionState = "connecting" | "open" | "reconnecting" | "offline" | "closed";
export type CallState = "calling" | "ringing" | "incoming" | "connecting" | "connected" | "reconnecting" | "ended";
export type EndReason =
  | "declined" | "cancelled" | "busy" | "timeout" | "hangup" | "left" | "unavailable" | "gone"
  | "failed" | "local" | "connection-lost" | "resume-expired" | "closed";

export interface ConnectOptions {
  /** display name shown to other peers (1-64 characters) */
  name: string;
  /** room to join; omitted: the lobby */
  room?: string;
  /** HS256 JWT, required when the server runs with an auth secret */
  token?: string;
  /** "relay" forces every call through the TURN server */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** ms of failed reconnects before the state turns "offline"; default 20000 */
  offlineAfter?: number;
  /** WebSocket constructor, for tests */
  WebSocket?: typeof WebSocket;
}

export interface StatsSummary {
  /** "relay": through the TURN server; "unknown": no path selected yet */
  path: "direct" | "relay" | "unknown";
  /** "udp" / "tcp"; for a relayed path how the browser reaches TURN: "udp", "tcp" or "tls" */
  transport: string;
  localType: string;
  remoteType: string;
  /** round-trip time of the selected candidate pair, ms */
  rtt: number | null;
  /** media bitrate since the previous getStats(), kbit/s */
  inKbps: number | null;
  outKbps: number | null;
  bytesIn: number;
  bytesOut: number;
  framesDecoded: number;
  timestamp: number;
}

interface SessionEventMap {
  state: CustomEvent<{ state: SessionState; delay?: number; code?: number }>;
  welcome: CustomEvent<{ resumed: boolean; id: string; room: string; peers: Peer[] }>;
  peers: CustomEvent<{ peers: Peer[] }>;
  "peer-joined": CustomEvent<{ peer: Peer }>;
  "peer-left": CustomEvent<{ id: string; reason: string }>;
  joined: CustomEvent<{ room: string; peers: Peer[] }>;
  call: CustomEvent<{ call: Call }>;
  signal: CustomEvent<{ from: string; data: unknown }>;
  error: CustomEvent<{ code: string; message: string; ref?: unknown }>;
  "ice-servers": CustomEvent<{ iceServers: IceServer[] }>;
  closed: CustomEvent<{ code: number; reason: string; fatal: boolean }>;
}

export declare class Session extends EventTarget {
  readonly url: string;
  /** our peer id, set by the welcome */
  readonly id: string;
  readonly name: string;
  readonly room: string;
  readonly state: SessionState;
  readonly peers: Map<string, Peer>;
  /** the latest ICE servers (welcome or ice-servers push) */
  readonly iceServers: IceServer[];
  readonly calls: Map<string, Call>;
  /** Rings a peer in the same room. */
  call(peerId: string, opts?: { stream?: MediaStream | null }): Call;
  /** Connects to a room peer without ringing (mesh group call); both sides call it. */
  meshCall(peerId: string, opts?: { stream?: MediaStream | null }): Call;
  /** Sends application data to one peer, or "*" for the whole room; kept and resent across reconnects. */
  signal(to: string, data: unknown): void;
  /** While reconnecting, tries at once instead of waiting out the backoff. */
  reconnectNow(): void;
  /** Moves to another room ("" = lobby). */
  join(room: string): void;
  /** Hangs up every call and closes the connection for good. */
  close(): void;
  addEventListener<K extends keyof SessionEventMap>(type: K, listener: (ev: SessionEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
}

interface CallEventMap {
  state: CustomEvent<{ state: CallState }>;
  track: CustomEvent<{ track: MediaStreamTrack; stream: MediaStream }>;
  open: CustomEvent<{}>;
  message: CustomEvent<{ data: unknown }>;
  "file-progress": CustomEvent<{ id: string; name: string; size: number; done: number; direction: "in" | "out" }>;
  file: CustomEvent<{ id: string; name: string; size: number; mime: string; blob: Blob }>;
  ended: CustomEvent<{ reason: EndReason }>;
}

export declare class Call extends EventTarget {
  readonly id: string;
  readonly peerId: string;
  readonly peerName: string;
  readonly direction: "outgoing" | "incoming" | "mesh";
  readonly state: CallState;
  /** assigned by the server: the callee is polite */
  readonly polite: boolean;
  readonly pc: RTCPeerConnection | null;
  readonly channel: RTCDataChannel | null;
  readonly localStream: MediaStream | null;
  readonly remoteStream: MediaStream;
  readonly endReason: EndReason | "";
  accept(opts?: { stream?: MediaStream | null }): void;
  decline(): void;
  cancel(): void;
  hangup(): void;
  /** Swaps the outgoing video track (screen share) without renegotiation. */
  replaceVideo(track: MediaStreamTrack | null): Promise<void>;
  /** Sends a chat message (any JSON value) over the data channel. */
  sendMessage(data: unknown): void;
  /** Sends a file in 16 KiB chunks with backpressure. */
  sendFile(file: Blob & { name?: string }): Promise<void>;
  /** Restarts ICE (done automatically on failure and on the window's "online" event). */
  restartIce(): void;
  getStats(): Promise<StatsSummary | null>;
  addEventListener<K extends keyof CallEventMap>(type: K, listener: (ev: CallEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
}

/** Connects to a Switchboard server; url empty: the server that served this page. */
export declare function connect(url: string | null | undefined, opts: ConnectOptions): Session;
/** ws(s)://<this page's host>/ws */
export declare function defaultURL(): string;
/** Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)] ms. */
export declare function backoffDelay(attempt: number, opts?: { base?: number; cap?: number; random?: () => number }): number;
/** What the client does after a close code. */
export declare function closeAction(code: number): "resume" | "fresh" | "stop" | "fatal";
export declare function summarizeStats(report: RTCStatsReport, prev?: StatsSummary | null): StatsSummary;
export declare function describePath(s: StatsSummary): string;
