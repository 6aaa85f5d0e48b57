// @ts-check
// The call view (1:1 and mesh): a tile per call with the peer's video, or
// their initial and name while their camera is off; path badges; the
// microphone, camera and screen share controls.

import { describePath } from "./switchboard.js";
import { $, toast, initial } from "./ui.js";
import { addMessage, fileProgress, fileDone } from "./chat.js";
import { app, room, show, hooks, mediaState, announceMedia, releaseMediaIfIdle, refreshPreviews } from "./state.js";

/** @typedef {import("./switchboard.js").Call} Call */


export function enterCall() {
  show("call");
  refreshPreviews();
  clearInterval(app.statsTimer);
  app.statsTimer = setInterval(pollStats, 1000);
  updateWaiting();
}

export function leaveCallView() {
  clearInterval(app.statsTimer);
  if (app.screenTrack) void stopShare();
  show(room ? "join" : "lobby");
  hooks.renderPeers();
  releaseMediaIfIdle();
}

export function updateWaiting() {
  const w = $("waiting");
  w.hidden = !room || app.calls.size > 0;
  const a = /** @type {HTMLAnchorElement} */ ($("share-link"));
  a.href = location.origin + location.pathname;
  a.textContent = location.origin + location.pathname;
}

/** Adds a tile for a call and wires its events. @param {Call} call */
export function attach(call) {
  if (app.calls.has(call.id) || call.state === "ended") return;
  app.calls.set(call.id, call);
  const peerName = call.peerName || "Guest";
  const fig = document.createElement("figure");
  fig.className = "tile remote";
  fig.dataset.call = call.id;
  fig.dataset.peer = call.peerId;
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.srcObject = call.remoteStream;
  // Camera off: their initial and name instead of a black picture.
  const ph = document.createElement("div");
  ph.className = "placeholder";
  const phAvatar = document.createElement("span");
  phAvatar.className = "avatar";
  phAvatar.textContent = initial(peerName);
  const phName = document.createElement("span");
  phName.className = "status";
  phName.textContent = `${peerName} turned the camera off`;
  ph.append(phAvatar, phName);
  const cap = document.createElement("figcaption");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = peerName;
  const muted = document.createElement("span");
  muted.className = "badge muted";
  muted.textContent = "Muted";
  muted.title = `${peerName} turned the microphone off`;
  muted.hidden = true;
  const path = document.createElement("span");
  path.className = "badge path";
  path.textContent = "Connecting…";
  const muteRemote = document.createElement("button");
  muteRemote.type = "button";
  muteRemote.className = "small mute-remote";
  muteRemote.textContent = "Mute remote";
  muteRemote.setAttribute("aria-pressed", "false");
  muteRemote.setAttribute("aria-label", `Mute ${call.peerName || "remote"}`);
  muteRemote.addEventListener("click", () => {
    video.muted = !video.muted;
    muteRemote.setAttribute("aria-pressed", String(video.muted));
    muteRemote.textContent = video.muted ? "Unmute remote" : "Mute remote";
    muteRemote.setAttribute("aria-label", `${video.muted ? "Unmute" : "Mute"} ${call.peerName || "remote"}`);
  });
  cap.append(who, muted, path, muteRemote);
  fig.append(video, ph, cap);
  $("tiles").append(fig);
  layoutTiles();
  const showMedia = () => {
    const m = call.remoteMedia;
    fig.classList.toggle("camera-off", !!m && !m.video);
    muted.hidden = !m || m.audio;
  };
  call.addEventListener("media", showMedia);
  call.addEventListener("track", () => {
    if (video.srcObject !== call.remoteStream) video.srcObject = call.remoteStream;
    video.play().catch(() => {});
  });
  call.addEventListener("state", () => {
    fig.dataset.state = call.state;
    if (call.state === "reconnecting") path.textContent = "Reconnecting…";
  });
  call.addEventListener("message", (e) => {
    const d = /** @type {{text?: unknown} | null} */ (e.detail.data);
    addMessage(call.peerName, String(d?.text ?? ""), "in");
  });
  call.addEventListener("file-progress", (e) => fileProgress(call, e.detail));
  call.addEventListener("file", (e) => fileDone(call, e.detail));
  call.addEventListener("ended", () => {
    fig.remove();
    app.calls.delete(call.id);
    app.stats.delete(call.id);
    layoutTiles();
    if (room) {
      updateWaiting();
    } else if (app.calls.size === 0 && $("call").hidden === false) {
      leaveCallView();
    }
  });
  call.setMedia(mediaState());
  showMedia();
  updateWaiting();
}

function layoutTiles() {
  $("tiles").dataset.count = String(app.calls.size + 1);
}

async function pollStats() {
  for (const call of app.calls.values()) {
    const s = await call.getStats().catch(() => null);
    if (!s) continue;
    app.stats.set(call.id, s);
    const fig = document.querySelector(`figure[data-call="${CSS.escape(call.id)}"]`);
    const badge = fig?.querySelector(".badge.path");
    if (badge && call.state !== "reconnecting") {
      badge.textContent = describePath(s);
      badge.classList.toggle("relay", s.path === "relay");
      /** @type {HTMLElement} */ (badge).title =
        s.inKbps !== null ? `Receiving ${s.inKbps} kbit/s, sending ${s.outKbps} kbit/s` : "";
    }
  }
}

// ---- controls ----

export function toggleMute() {
  app.micMuted = !app.micMuted;
  for (const t of app.stream?.getAudioTracks() ?? []) t.enabled = !app.micMuted;
  const b = $("mute");
  b.setAttribute("aria-pressed", String(app.micMuted));
  b.textContent = app.micMuted ? "Unmute" : "Mute";
  if (!app.stream?.getAudioTracks().length) toast("No microphone: others cannot hear you anyway.");
  announceMedia();
}

export function toggleCamera() {
  app.cameraOff = !app.cameraOff;
  for (const t of app.stream?.getVideoTracks() ?? []) t.enabled = !app.cameraOff;
  const b = $("camera");
  b.setAttribute("aria-pressed", String(app.cameraOff));
  b.textContent = app.cameraOff ? "Camera on" : "Camera off";
  if (!app.stream?.getVideoTracks().length) toast("No camera: others cannot see you anyway.");
  refreshPreviews();
  announceMedia();
}

export async function toggleShare() {
  if (app.screenTrack) return stopShare();
  let display;
  try {
    display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (err) {
    const name = /** @type {Error} */ (err)?.name;
    toast(
      name === "NotAllowedError"
        ? "Screen sharing was refused or cancelled. To share, allow screen recording for the browser and try again."
        : `Screen sharing is not available here (${name || err}).`,
      7000,
    );
    return;
  }
  const track = display.getVideoTracks()[0];
  app.screenTrack = track;
  track.addEventListener("ended", () => stopShare()); // the browser's own "Stop sharing"
  for (const c of app.calls.values()) await c.replaceVideo(track);
  const b = $("share");
  b.textContent = "Stop sharing";
  b.setAttribute("aria-pressed", "true");
  refreshPreviews();
  announceMedia();
}

export async function stopShare() {
  const track = app.screenTrack;
  if (!track) return;
  app.screenTrack = null;
  track.stop();
  const cam = app.stream?.getVideoTracks()[0] ?? null;
  for (const c of app.calls.values()) await c.replaceVideo(cam);
  const b = $("share");
  b.textContent = "Share screen";
  b.setAttribute("aria-pressed", "false");
  refreshPreviews();
  announceMedia();
}
