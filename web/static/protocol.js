// @ts-check
// The wire messages of signaling/PROTOCOL.md as types (the one place the
// client declares them) and the check every server message passes before the
// client acts on it. Pure: node --test runs its tests.

/**
 * @typedef {{id: string, name: string, nearby?: boolean}} Peer
 * @typedef {{urls: string | string[], username?: string, credential?: string}} IceServer
 * @typedef {string | number} Ref any JSON string or number, echoed in the answer
 * @typedef {{interval: number, timeout: number}} Heartbeat milliseconds
 */

/**
 * Server → client messages, one type per `type` (a discriminated union:
 * `switch (msg.type)` narrows to the fields of that message).
 * @typedef {{type: "welcome", id: string, resume: string, resumed: boolean, iceServers: IceServer[], ttl: number, heartbeat: Heartbeat, room: string, peers: Peer[], ack: number, lost?: boolean, ref?: Ref}} WelcomeMessage
 *   lost: a resume after the node that held the session died (PROTOCOL.md "Cluster: resume on any node")
 * @typedef {{type: "peer-joined", seq?: number, peer: Peer}} PeerJoinedMessage
 * @typedef {{type: "peer-left", seq?: number, id: string, reason: "left" | "moved" | "timeout"}} PeerLeftMessage
 * @typedef {{type: "signal", seq?: number, from: string, data: unknown}} SignalMessage
 * @typedef {{type: "joined", seq?: number, room: string, peers: Peer[], ref?: Ref}} JoinedMessage
 * @typedef {{type: "ringing", seq?: number, call: string, to: string, ref?: Ref}} RingingMessage
 * @typedef {{type: "call", seq?: number, call: string, from: string, name: string}} IncomingCallMessage
 * @typedef {{type: "accepted", seq?: number, call: string, peer: string, polite: boolean, ref?: Ref}} AcceptedMessage
 * @typedef {{type: "declined" | "cancelled" | "busy", seq?: number, call: string, from: string, ref?: Ref}} CallRefusedMessage
 * @typedef {{type: "hangup", seq?: number, call: string, from: string, reason: "hangup" | "left"}} HangupMessage
 * @typedef {{type: "timeout", seq?: number, call: string}} TimeoutMessage
 * @typedef {{type: "ice-servers", seq?: number, iceServers: IceServer[], ttl: number}} IceServersMessage
 * @typedef {{type: "token", seq?: number, token: string, ttl: number}} TokenMessage
 * @typedef {{type: "error", seq?: number, code: ErrorCode, message: string, ref?: Ref, to?: string}} ErrorMessage
 * @typedef {{type: "pong", ack: number, ref?: Ref}} PongMessage
 * @typedef {WelcomeMessage | PeerJoinedMessage | PeerLeftMessage | SignalMessage | JoinedMessage | RingingMessage |
 *   IncomingCallMessage | AcceptedMessage | CallRefusedMessage | HangupMessage | TimeoutMessage | IceServersMessage |
 *   TokenMessage | ErrorMessage | PongMessage} ServerMessage
 * @typedef {ServerMessage["type"]} ServerMessageType
 */

/**
 * The error codes of PROTOCOL.md; a newer server may send others.
 * @typedef {"bad-message" | "unknown-type" | "hello-required" | "peer-unavailable" | "rate-limited" | "unauthorized" |
 *   "forbidden-room" | "too-large" | "room-full" | "no-such-call" | "busy" | "undeliverable" | "server-full" |
 *   "internal-error" | (string & {})} ErrorCode
 */

/**
 * Client → server requests. `seq`, `ack` and `ref` may be added to any.
 * @typedef {{type: "hello", name: string, room?: string, token?: string, resume?: string, ack?: number, attempt?: number}} HelloRequest
 * @typedef {{type: "signal", to: string, data: unknown}} SignalRequest
 * @typedef {{type: "join", room: string}} JoinRequest
 * @typedef {{type: "call", to: string, call: string}} CallRequest
 * @typedef {{type: "accept" | "decline" | "cancel" | "hangup", call: string}} CallActionRequest
 * @typedef {{type: "ping"}} PingRequest
 * @typedef {HelloRequest | SignalRequest | JoinRequest | CallRequest | CallActionRequest | PingRequest} ClientRequest
 * @typedef {ClientRequest & {seq?: number, ack?: number, ref?: Ref}} ClientMessage
 */

/** @typedef {"string" | "number" | "boolean" | "object" | "array" | "any"} Kind */

/**
 * The fields each server message must have, with their JSON kind: a message
 * that lacks one is not acted on (a half-understood message would do harm,
 * e.g. end the wrong call). Optional fields are checked in the code using them.
 * @type {Record<ServerMessageType, Record<string, Kind>>}
 */
const required = {
  welcome: { id: "string", resume: "string", resumed: "boolean", room: "string", peers: "array" },
  "peer-joined": { peer: "object" },
  "peer-left": { id: "string" },
  signal: { from: "string", data: "any" },
  joined: { room: "string", peers: "array" },
  ringing: { call: "string" },
  call: { call: "string", from: "string" },
  accepted: { call: "string", polite: "boolean" },
  declined: { call: "string" },
  cancelled: { call: "string" },
  busy: { call: "string" },
  hangup: { call: "string" },
  timeout: { call: "string" },
  "ice-servers": { iceServers: "array" },
  token: { token: "string" },
  error: { code: "string" },
  pong: {},
};

/**
 * @param {unknown} v
 * @param {Kind} kind
 */
function isKind(v, kind) {
  switch (kind) {
    case "any":
      return v !== undefined;
    case "array":
      return Array.isArray(v);
    case "object":
      return typeof v === "object" && v !== null && !Array.isArray(v);
    default:
      return typeof v === kind;
  }
}

/**
 * Parses one text frame from the server. Returns null for anything that is
 * not a message this client understands: not JSON, not an object, an unknown
 * type (a newer server's; ignored), or a known type missing a field. `seq`
 * and `ack`, when present, must be non-negative integers.
 * @param {unknown} text
 * @returns {ServerMessage | null}
 */
export function parseServerMessage(text) {
  if (typeof text !== "string") return null;
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isKind(m, "object") || typeof m.type !== "string" || !Object.hasOwn(required, m.type)) return null;
  for (const key of ["seq", "ack"]) {
    if (key in m && !(Number.isSafeInteger(m[key]) && m[key] >= 0)) return null;
  }
  const fields = required[/** @type {ServerMessageType} */ (m.type)];
  for (const [name, kind] of Object.entries(fields)) if (!isKind(m[name], kind)) return null;
  if (m.type === "peer-joined" && (typeof m.peer.id !== "string" || typeof m.peer.name !== "string")) return null;
  return /** @type {ServerMessage} */ (m);
}

/**
 * Keeps the well-formed entries of a peer list.
 * @param {unknown[]} list
 * @returns {Peer[]}
 */
export function validPeers(list) {
  return /** @type {Peer[]} */ (list.filter((p) => isKind(p, "object") && typeof (/** @type {any} */ (p).id) === "string" && typeof (/** @type {any} */ (p).name) === "string"));
}
