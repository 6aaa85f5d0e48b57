// @ts-check
// Session reliability, free of WebSocket and DOM access so that it can be
// unit-tested with fakes (node --test): the reconnect policy (backoff, close
// codes) and the numbering and acknowledgement of messages (seq/ack).

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
 * @template {object} T the message type
 */
export class Outbox {
  constructor() {
    /** @type {number} last seq handed out */
    this.seq = 0;
    /** @type {Array<T & {seq: number}>} sent or queued, not yet acked, in seq order */
    this.pending = [];
  }

  /**
   * Numbers msg and keeps it until acked.
   * @param {T} msg
   * @returns {T & {seq: number}} the numbered message
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

  /**
   * Forgets the unacked messages but keeps the numbering: after an adoption
   * (welcome.lost) the server may have processed them or not, so they are
   * not sent again, and new ones number above them.
   */
  drop() {
    this.pending = [];
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

