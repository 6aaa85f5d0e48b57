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
export function backoffDelay(attempt: number, opts?: {
    base?: number;
    cap?: number;
    random?: () => number;
}): number;
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
export function closeAction(code: number): CloseAction;
/**
 * Outbox numbers the client's messages with seq and keeps each one until the
 * server acknowledges it, so that after a resume everything the server did not
 * process is sent again, and nothing it did process is (the server also drops
 * seq <= its last processed one, so a resend race is harmless).
 * @template {object} T the message type
 */
export class Outbox<T extends object> {
    /** @type {number} last seq handed out */
    seq: number;
    /** @type {Array<T & {seq: number}>} sent or queued, not yet acked, in seq order */
    pending: Array<T & {
        seq: number;
    }>;
    /**
     * Numbers msg and keeps it until acked.
     * @param {T} msg
     * @returns {T & {seq: number}} the numbered message
     */
    add(msg: T): T & {
        seq: number;
    };
    /**
     * Drops every message with seq <= ack.
     * @param {number | undefined} ack
     */
    ack(ack: number | undefined): void;
    /**
     * Messages to send again after a resume acknowledged up to ack.
     * @param {number | undefined} ack
     */
    unacked(ack: number | undefined): (T & {
        seq: number;
    })[];
    /**
     * Forgets the unacked messages but keeps the numbering: after an adoption
     * (welcome.lost) the server may have processed them or not, so they are
     * not sent again, and new ones number above them.
     */
    drop(): void;
    /** Forget everything: the server started a fresh session. */
    reset(): void;
}
/**
 * Inbox tracks the last server seq processed, to acknowledge it and to drop a
 * message replayed twice (the server replays seq > ack on resume; a message
 * that arrived just before the cut may come again).
 */
export class Inbox {
    last: number;
    /**
     * Reports whether a message should be processed, and records it.
     * Messages without seq (welcome, pong) are always processed.
     * @param {{seq?: number}} msg
     */
    accept(msg: {
        seq?: number;
    }): boolean;
    reset(): void;
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
 */
export type CloseAction = "resume" | "fresh" | "stop" | "fatal";
