// @ts-check
// The call app's state and what several of its parts use: the views, the
// connection pill, and the camera (asked for when a call starts or for an
// explicit preview, never just for being online).

import { $ } from "./ui.js";
import { acquireMedia, release } from "./media.js";

/** @typedef {import("./switchboard.js").Session} Session */
/** @typedef {import("./switchboard.js").Call} Call */
/** @typedef {import("./switchboard.js").StatsSummary} StatsSummary */

export const params = new URLSearchParams(location.search);
export const roomMatch = location.pathname.match(/^\/r\/([A-Za-z0-9._-]{1,64})$/);
export const room = roomMatch ? roomMatch[1] : "";
export const forceRelay = params.get("relay") === "1";
export const NAME_KEY = "switchboard.name";

export const app = {
  /** @type {Session | null} */
  session: null,
  /** @type {MediaStream | null} camera and microphone while a call (or the preview) needs them */
  stream: null,
  /** the user turned the lobby preview on */
  previewing: false,
  /** @type {MediaStreamTrack | null} */
  screenTrack: null,
  /** @type {Call | null} the 1:1 call being set up or in progress */
  current: null,
  /** @type {Call | null} an incoming call waiting for an answer */
  ringing: null,
  /** waiting for camera permission before placing or accepting a call */
  gettingMedia: false,
  /** @type {Map<string, Call>} calls shown in the call view */
  calls: new Map(),
  /** @type {Map<string, StatsSummary>} latest stats summary per call id, for the badge (and tests) */
  stats: new Map(),
  name: "",
  /** sign-in token for hello; "" when the server needs none or we have none */
  token: "",
  /** @type {{required: boolean, passcode: boolean}} */
  signin: { required: false, passcode: false },
  micMuted: false,
  cameraOff: false,
  /** @type {ReturnType<typeof setInterval> | undefined} */
  statsTimer: undefined,
};
// Exposed for debugging in the console and for the end-to-end tests.
Object.assign(window, { switchboardApp: app });

/** @param {"signin" | "join" | "lobby" | "call"} view */
export function show(view) {
  for (const v of ["signin", "join", "lobby", "call"]) $(v).hidden = v !== view;
  document.body.dataset.view = view;
}

/** @param {string} state @param {string} text */
export function setConn(state, text) {
  const c = $("conn");
  c.hidden = false;
  c.dataset.state = state;
  c.textContent = text;
}

/** Set by app.js: redraws the presence list (the call view calls it when it closes). */
export const hooks = { renderPeers: () => {} };

// ---- media ----

/** What we tell the others about our microphone and camera. */
export function mediaState() {
  const live = (/** @type {MediaStreamTrack[]} */ ts) => ts.some((t) => t.readyState === "live");
  return {
    audio: live(app.stream?.getAudioTracks() ?? []) && !app.micMuted,
    video: !!app.screenTrack || (live(app.stream?.getVideoTracks() ?? []) && !app.cameraOff),
  };
}

/** Tells every call what our microphone and camera do now. */
export function announceMedia() {
  const m = mediaState();
  for (const c of app.calls.values()) c.setMedia(m);
}

/**
 * The camera and microphone for a call: the preview's if it runs, else asked
 * for now. null: the user continues without.
 * @returns {Promise<MediaStream | null>}
 */
export async function ensureMedia() {
  if (app.stream) return app.stream;
  const s = await acquireMedia();
  app.stream = s;
  for (const t of s?.getAudioTracks() ?? []) t.enabled = !app.micMuted;
  for (const t of s?.getVideoTracks() ?? []) t.enabled = !app.cameraOff;
  refreshPreviews();
  return s;
}

/** Camera off once no call and no preview needs it (the camera light too). */
export function releaseMediaIfIdle() {
  if (app.previewing || app.calls.size > 0 || app.current || app.gettingMedia || room) return;
  release(app.stream);
  app.stream = null;
  refreshPreviews();
}

export async function togglePreview() {
  const b = $("preview-button");
  if (app.previewing) {
    app.previewing = false;
    releaseMediaIfIdle();
  } else {
    app.previewing = true;
    await ensureMedia();
    if (!app.stream) app.previewing = false;
  }
  b.setAttribute("aria-pressed", String(app.previewing));
  b.textContent = app.previewing ? "Stop preview" : "Preview camera";
}

export function refreshPreviews() {
  const s = app.screenTrack ? new MediaStream([app.screenTrack]) : app.stream;
  /** @type {HTMLVideoElement} */ ($("preview-video")).srcObject = app.stream;
  /** @type {HTMLVideoElement} */ ($("local-video")).srcObject = s;
  $("preview-caption").textContent = app.stream
    ? "Your camera"
    : app.previewing
      ? "No camera: others will not see you"
      : "Your camera turns on when a call starts.";
  $("local-tile").classList.toggle("no-video", !mediaState().video);
}
