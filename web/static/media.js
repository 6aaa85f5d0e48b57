// @ts-check
// Camera and microphone for the call app: asked for when a call starts (or
// for an explicit preview), never just for being online.

import { banner } from "./ui.js";

/**
 * Gets camera and microphone, falling back to whichever exists. Rejects with
 * the first error when neither can be had.
 * @returns {Promise<MediaStream>}
 */
async function getMedia() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw Object.assign(new Error("This page is not in a secure context (https or localhost), so the browser offers no camera."), { name: "InsecureError" });
  }
  const video = { width: { ideal: 1280 }, height: { ideal: 720 } };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video });
  } catch (err) {
    const name = /** @type {Error} */ (err).name;
    if (name !== "NotFoundError" && name !== "OverconstrainedError" && name !== "NotReadableError") throw err;
    // One of the two is missing or busy: take what is there.
    for (const c of [{ audio: true }, { video }]) {
      try {
        return await navigator.mediaDevices.getUserMedia(c);
      } catch {
        /* try the next */
      }
    }
    throw err;
  }
}

/** @param {unknown} err */
function mediaProblem(err) {
  const name = /** @type {Error} */ (err)?.name;
  switch (name) {
    case "NotAllowedError":
      return "Camera and microphone are blocked for this site. Allow them in the address bar and try again, or continue without: you will still see and hear the others.";
    case "NotFoundError":
      return "No camera or microphone was found. Plug one in and try again, or continue without: you will still see and hear the others.";
    case "NotReadableError":
      return "The camera or microphone is in use by another application. Close it and try again, or continue without.";
    default:
      return `The camera could not be started (${/** @type {Error} */ (err)?.message || name}). Try again, or continue without.`;
  }
}

/**
 * Asks for media and resolves with a stream, or null if the user continues
 * without (a banner explains the problem and offers both).
 * @returns {Promise<MediaStream | null>}
 */
export function acquireMedia() {
  return new Promise((resolve) => {
    const attempt = () => {
      banner("");
      getMedia().then(
        (s) => resolve(s),
        (err) =>
          banner(mediaProblem(err), [
            { label: "Try again", run: attempt, primary: true },
            { label: "Continue without camera", run: () => (banner(""), resolve(null)) },
          ]),
      );
    };
    attempt();
  });
}

/** Stops every track of a stream (the camera light goes off). @param {MediaStream | null} s */
export function release(s) {
  for (const t of s?.getTracks() ?? []) t.stop();
}
