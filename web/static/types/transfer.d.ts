/**
 * The part of RTCDataChannel a transfer uses.
 * @typedef {{
 *   readonly readyState: RTCDataChannelState,
 *   readonly bufferedAmount: number,
 *   send(data: string): void,
 *   send(data: ArrayBuffer): void,
 *   addEventListener(type: "bufferedamountlow", fn: () => void, opts: {once: boolean}): void,
 * }} Channel
 */
/**
 * @typedef {{id: string, name: string, size: number, done: number, direction: "in" | "out"}} FileProgress
 * @typedef {{id: string, name: string, size: number, mime: string, blob: Blob}} ReceivedFile
 */
/**
 * Sends one file: header, chunks (waiting while more than HIGH_WATER is
 * buffered), trailer. Rejects when the channel closes midway.
 * @param {Channel} ch
 * @param {Blob & {name?: string}} file
 * @param {string} id unique per transfer
 * @param {(p: FileProgress) => void} progress
 * @returns {Promise<void>}
 */
export function sendFile(ch: Channel, file: Blob & {
    name?: string;
}, id: string, progress: (p: FileProgress) => void): Promise<void>;
/** Size of one file chunk on the data channel: 16 KiB is the largest message
 * every browser's SCTP stack delivers without fragmentation trouble. */
export const CHUNK: number;
/** Pause sending file chunks above this much buffered data (backpressure), 1 MiB. */
export const HIGH_WATER: number;
/**
 * Reassembles incoming files, one at a time (the sender serializes them).
 * Chunks without a header, a trailer for another file and chunks beyond the
 * announced size are ignored.
 */
export class FileReceiver {
    /**
     * @param {(p: FileProgress) => void} progress
     * @param {(f: ReceivedFile) => void} done
     */
    constructor(progress: (p: FileProgress) => void, done: (f: ReceivedFile) => void);
    /**
     * A parsed JSON control message: {t: "file", id, name, size, mime} or {t: "file-end", id}.
     * @param {{t?: unknown, id?: unknown, name?: unknown, size?: unknown, mime?: unknown}} m
     */
    control(m: {
        t?: unknown;
        id?: unknown;
        name?: unknown;
        size?: unknown;
        mime?: unknown;
    }): void;
    /** @param {ArrayBuffer} buf one binary chunk */
    chunk(buf: ArrayBuffer): void;
    #private;
}
/**
 * The part of RTCDataChannel a transfer uses.
 */
export type Channel = {
    readonly readyState: RTCDataChannelState;
    readonly bufferedAmount: number;
    send(data: string): void;
    send(data: ArrayBuffer): void;
    addEventListener(type: "bufferedamountlow", fn: () => void, opts: {
        once: boolean;
    }): void;
};
export type FileProgress = {
    id: string;
    name: string;
    size: number;
    done: number;
    direction: "in" | "out";
};
export type ReceivedFile = {
    id: string;
    name: string;
    size: number;
    mime: string;
    blob: Blob;
};
