/**
 * Parses one text frame from the server. Returns null for anything that is
 * not a message this client understands: not JSON, not an object, an unknown
 * type (a newer server's; ignored), or a known type missing a field. `seq`
 * and `ack`, when present, must be non-negative integers.
 * @param {unknown} text
 * @returns {ServerMessage | null}
 */
export function parseServerMessage(text: unknown): ServerMessage | null;
/**
 * Keeps the well-formed entries of a peer list.
 * @param {unknown[]} list
 * @returns {Peer[]}
 */
export function validPeers(list: unknown[]): Peer[];
export type Peer = {
    id: string;
    name: string;
    nearby?: boolean;
};
export type IceServer = {
    urls: string | string[];
    username?: string;
    credential?: string;
};
/**
 * any JSON string or number, echoed in the answer
 */
export type Ref = string | number;
/**
 * milliseconds
 */
export type Heartbeat = {
    interval: number;
    timeout: number;
};
/**
 * lost: a resume after the node that held the session died (PROTOCOL.md "Cluster: resume on any node")
 */
export type WelcomeMessage = {
    type: "welcome";
    id: string;
    resume: string;
    resumed: boolean;
    iceServers: IceServer[];
    ttl: number;
    heartbeat: Heartbeat;
    room: string;
    peers: Peer[];
    ack: number;
    lost?: boolean;
    ref?: Ref;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type PeerJoinedMessage = {
    type: "peer-joined";
    seq?: number;
    peer: Peer;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type PeerLeftMessage = {
    type: "peer-left";
    seq?: number;
    id: string;
    reason: "left" | "moved" | "timeout";
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type SignalMessage = {
    type: "signal";
    seq?: number;
    from: string;
    data: unknown;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type JoinedMessage = {
    type: "joined";
    seq?: number;
    room: string;
    peers: Peer[];
    ref?: Ref;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type RingingMessage = {
    type: "ringing";
    seq?: number;
    call: string;
    to: string;
    ref?: Ref;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type IncomingCallMessage = {
    type: "call";
    seq?: number;
    call: string;
    from: string;
    name: string;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type AcceptedMessage = {
    type: "accepted";
    seq?: number;
    call: string;
    peer: string;
    polite: boolean;
    ref?: Ref;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type CallRefusedMessage = {
    type: "declined" | "cancelled" | "busy";
    seq?: number;
    call: string;
    from: string;
    ref?: Ref;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type HangupMessage = {
    type: "hangup";
    seq?: number;
    call: string;
    from: string;
    reason: "hangup" | "left";
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type TimeoutMessage = {
    type: "timeout";
    seq?: number;
    call: string;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type IceServersMessage = {
    type: "ice-servers";
    seq?: number;
    iceServers: IceServer[];
    ttl: number;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type TokenMessage = {
    type: "token";
    seq?: number;
    token: string;
    ttl: number;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type ErrorMessage = {
    type: "error";
    seq?: number;
    code: ErrorCode;
    message: string;
    ref?: Ref;
    to?: string;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type PongMessage = {
    type: "pong";
    ack: number;
    ref?: Ref;
};
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type ServerMessage = WelcomeMessage | PeerJoinedMessage | PeerLeftMessage | SignalMessage | JoinedMessage | RingingMessage | IncomingCallMessage | AcceptedMessage | CallRefusedMessage | HangupMessage | TimeoutMessage | IceServersMessage | TokenMessage | ErrorMessage | PongMessage;
/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 */
export type ServerMessageType = ServerMessage["type"];
/**
 * The error codes of PROTOCOL.md; a newer server may send others.
 */
export type ErrorCode = "bad-message" | "unknown-type" | "hello-required" | "peer-unavailable" | "rate-limited" | "unauthorized" | "forbidden-room" | "too-large" | "room-full" | "no-such-call" | "busy" | "undeliverable" | "server-full" | "internal-error" | (string & {});
/**
 * Client → server requests. `seq`, `ack` and `ref` may be added to any.
 */
export type HelloRequest = {
    type: "hello";
    name: string;
    room?: string;
    token?: string;
    resume?: string;
    ack?: number;
    attempt?: number;
};
/**
 * Client → server requests. `seq`, `ack` and `ref` may be added to any.
 */
export type SignalRequest = {
    type: "signal";
    to: string;
    data: unknown;
};
/**
 * Client → server requests. `seq`, `ack` and `ref` may be added to any.
 */
export type JoinRequest = {
    type: "join";
    room: string;
};
/**
 * Client → server requests. `seq`, `ack` and `ref` may be added to any.
 */
export type CallRequest = {
    type: "call";
    to: string;
    call: string;
};
/**
 * Client → server requests. `seq`, `ack` and `ref` may be added to any.
 */
export type CallActionRequest = {
    type: "accept" | "decline" | "cancel" | "hangup";
    call: string;
};
/**
 * Client → server requests. `seq`, `ack` and `ref` may be added to any.
 */
export type PingRequest = {
    type: "ping";
};
/**
 * Client → server requests. `seq`, `ack` and `ref` may be added to any.
 */
export type ClientRequest = HelloRequest | SignalRequest | JoinRequest | CallRequest | CallActionRequest | PingRequest;
/**
 * Client → server requests. `seq`, `ack` and `ref` may be added to any.
 */
export type ClientMessage = ClientRequest & {
    seq?: number;
    ack?: number;
    ref?: Ref;
};
export type Kind = "string" | "number" | "boolean" | "object" | "array" | "any";
