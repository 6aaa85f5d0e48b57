// @ts-check
// File transfer over a call's data channel: a JSON header, 16 KiB binary
// chunks sent with backpressure, a JSON trailer. Works on anything shaped like
// an RTCDataChannel, so node --test drives it with a fake channel.

/** Size of one file chunk on the data channel: 16 KiB is the largest message
 * every browser's SCTP stack delivers without fragmentation trouble. */
export const CHUNK = 16 * 1024;
/** Pause sending file chunks above this much buffered data (backpressure), 1 MiB. */
export const HIGH_WATER = 1024 * 1024;

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
export async function sendFile(ch, file, id, progress) {
  if (ch.readyState !== "open") throw new Error("the file channel is not open yet");
  const name = file.name ?? "file";
  ch.send(JSON.stringify({ t: "file", id, name, size: file.size, mime: file.type }));
  let off = 0;
  while (off < file.size) {
    if (ch.bufferedAmount > HIGH_WATER) {
      await new Promise((resolve) => ch.addEventListener("bufferedamountlow", () => resolve(undefined), { once: true }));
    }
    if (ch.readyState !== "open") throw new Error("the channel closed during the transfer");
    const part = await file.slice(off, off + CHUNK).arrayBuffer();
    ch.send(part);
    off += part.byteLength;
    progress({ id, name, size: file.size, done: off, direction: "out" });
  }
  ch.send(JSON.stringify({ t: "file-end", id }));
  if (file.size === 0) progress({ id, name, size: 0, done: 0, direction: "out" });
}

/**
 * Reassembles incoming files, one at a time (the sender serializes them).
 * Chunks without a header, a trailer for another file and chunks beyond the
 * announced size are ignored.
 */
export class FileReceiver {
  /** @type {{id: string, name: string, size: number, mime: string, parts: ArrayBuffer[], done: number} | null} */
  #current = null;
  #progress;
  #done;

  /**
   * @param {(p: FileProgress) => void} progress
   * @param {(f: ReceivedFile) => void} done
   */
  constructor(progress, done) {
    this.#progress = progress;
    this.#done = done;
  }

  /**
   * A parsed JSON control message: {t: "file", id, name, size, mime} or {t: "file-end", id}.
   * @param {{t?: unknown, id?: unknown, name?: unknown, size?: unknown, mime?: unknown}} m
   */
  control(m) {
    if (m.t === "file") {
      const size = Number(m.size);
      this.#current = { id: String(m.id), name: String(m.name ?? "file"), size: Number.isFinite(size) && size >= 0 ? size : 0, mime: String(m.mime || ""), parts: [], done: 0 };
      const f = this.#current;
      this.#progress({ id: f.id, name: f.name, size: f.size, done: 0, direction: "in" });
    } else if (m.t === "file-end" && this.#current && this.#current.id === String(m.id)) {
      const f = this.#current;
      this.#current = null;
      const blob = new Blob(f.parts, { type: f.mime || "application/octet-stream" });
      this.#done({ id: f.id, name: f.name, size: blob.size, mime: f.mime, blob });
    }
  }

  /** @param {ArrayBuffer} buf one binary chunk */
  chunk(buf) {
    const f = this.#current;
    if (!f || f.done + buf.byteLength > f.size) return;
    f.parts.push(buf);
    f.done += buf.byteLength;
    this.#progress({ id: f.id, name: f.name, size: f.size, done: f.done, direction: "in" });
  }
}
