// @ts-check
// The call app: lobby with presence and 1:1 calls at "/", mesh group calls at
// "/r/<room>". Everything it knows about the network comes from switchboard.js.

import { connect, describePath } from "./switchboard.js";

/** @typedef {import("./switchboard.js").Session} Session */
/** @typedef {import("./switchboard.js").Call} Call */

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return /** @type {T} */ (el);
}

const params = new URLSearchParams(location.search);
const roomMatch = location.pathname.match(/^\/r\/([A-Za-z0-9._-]{1,64})$/);
const room = roomMatch ? roomMatch[1] : "";
const forceRelay = params.get("relay") === "1";

/** Reasons a call ended, in words. @type {Record<string, (n: string) => string>} */
const endWords = {
  declined: (n) => `${n} declined the call.`,
  busy: (n) => `${n} is in another call.`,
  timeout: (n) => `No answer from ${n}.`,
  hangup: (n) => `${n} hung up.`,
  left: (n) => `${n} left.`,
  cancelled: (n) => `${n} cancelled the call.`,
  unavailable: (n) => `${n} is not online any more.`,
  gone: () => "That call no longer exists.",
  failed: (n) => `The connection to ${n} failed.`,
  "connection-lost": () => "The call ended: the connection to the server was lost for too long.",
  "resume-expired": () => "The call ended: the connection to the server was lost for too long.",
  closed: () => "The call ended.",
  local: () => "",
};

const app = {
  /** @type {Session | null} */
  session: null,
  /** @type {MediaStream | null} camera and microphone, null when continuing without */
  stream: null,
  /** @type {MediaStreamTrack | null} */
  screenTrack: null,
  /** @type {Call | null} the 1:1 call being set up or in progress */
  current: null,
  /** @type {Call | null} an incoming call waiting for an answer */
  ringing: null,
  /** @type {Map<string, Call>} calls shown in the call view */
  calls: new Map(),
  /** @type {Map<string, any>} latest stats summary per call id, for the badge (and tests) */
  stats: new Map(),
  name: "",
  micMuted: false,
  cameraOff: false,
  /** @type {ReturnType<typeof setInterval> | undefined} */
  statsTimer: undefined,
};
// Exposed for debugging in the console and for the end-to-end tests.
Object.assign(window, { switchboardApp: app });

// ---- UI helpers ----

/** @param {string} text @param {number} [ms] */
function toast(text, ms = 5000) {
  if (!text) return;
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(/** @type {any} */ (t).timer);
  /** @type {any} */ (t).timer = setTimeout(() => (t.hidden = true), ms);
}

/**
 * Shows a banner with an explanation and optional actions; empty text hides it.
 * @param {string} text
 * @param {Array<{label: string, run: () => void, primary?: boolean}>} [actions]
 */
function banner(text, actions = []) {
  const b = $("banner");
  b.hidden = !text;
  $("banner-text").textContent = text;
  const box = $("banner-actions");
  box.replaceChildren(
    ...actions.map((a) => {
      const btn = document.createElement("button");
      btn.type = "button";
      btn.textContent = a.label;
      if (a.primary) btn.className = "primary";
      btn.addEventListener("click", () => a.run());
      return btn;
    }),
  );
}

/** @param {"join" | "lobby" | "call"} view */
function show(view) {
  $("join").hidden = view !== "join";
  $("lobby").hidden = view !== "lobby";
  $("call").hidden = view !== "call";
  document.body.dataset.view = view;
}

/** @param {string} state @param {string} text */
function setConn(state, text) {
  const c = $("conn");
  c.dataset.state = state;
  c.textContent = text;
}

// ---- media ----

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

/** Asks for media and resolves with a stream, or null if the user continues without. */
function acquireMedia() {
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

function refreshPreviews() {
  const s = app.screenTrack ? new MediaStream([app.screenTrack]) : app.stream;
  /** @type {HTMLVideoElement} */ ($("preview-video")).srcObject = app.stream;
  /** @type {HTMLVideoElement} */ ($("local-video")).srcObject = s;
  $("preview-caption").textContent = app.stream ? "Your camera" : "No camera: others will not see you";
  $("local-tile").classList.toggle("no-video", !s || s.getVideoTracks().length === 0);
}

// ---- joining ----

async function join(/** @type {string} */ name) {
  app.name = name;
  localStorage.setItem("switchboard.name", name);
  $("join-button").setAttribute("disabled", "");
  app.stream = await acquireMedia();
  refreshPreviews();
  $("my-name").textContent = name;
  setConn("connecting", "Connecting…");
  const session = connect(null, { name, room, iceTransportPolicy: forceRelay ? "relay" : "all" });
  app.session = session;
  session.addEventListener("state", (e) => onSessionState(/** @type {CustomEvent} */ (e).detail));
  session.addEventListener("welcome", (e) => onWelcome(/** @type {CustomEvent} */ (e).detail));
  session.addEventListener("peers", () => renderPeers());
  session.addEventListener("peer-joined", (e) => {
    const peer = /** @type {CustomEvent} */ (e).detail.peer;
    if (room) attach(session.meshCall(peer.id, { stream: app.stream }));
  });
  session.addEventListener("call", (e) => onIncoming(/** @type {CustomEvent} */ (e).detail.call));
  session.addEventListener("error", (e) => onServerError(/** @type {CustomEvent} */ (e).detail));
  session.addEventListener("closed", (e) => onClosed(/** @type {CustomEvent} */ (e).detail));
}

/** @param {{state: string, delay?: number}} d */
function onSessionState(d) {
  switch (d.state) {
    case "open":
      setConn("open", "Online");
      banner("");
      break;
    case "reconnecting":
      setConn("reconnecting", "Reconnecting…");
      break;
    case "offline":
      setConn("offline", "Offline");
      banner("Can't reach the Switchboard server. Check your network connection; if it works, the server may be down. Still trying…", [
        { label: "Retry now", run: () => app.session?.reconnectNow(), primary: true },
      ]);
      break;
    case "closed":
      setConn("closed", "Disconnected");
      break;
  }
}

/** @param {{resumed: boolean}} d */
function onWelcome(d) {
  if (d.resumed) return; // same session, same view
  if (room) {
    enterCall();
    const s = app.session;
    for (const p of s?.peers.values() ?? []) if (s) attach(s.meshCall(p.id, { stream: app.stream }));
    updateWaiting();
  } else {
    show("lobby");
  }
  renderPeers();
}

/** @param {{code: string, message: string}} d */
function onServerError(d) {
  switch (d.code) {
    case "room-full":
      banner(`This room is full. ${d.message ?? ""} Try another room.`);
      break;
    case "forbidden-room":
      banner("You are not allowed in this room.");
      break;
    case "unauthorized":
      banner("The server refused the connection: this server needs a sign-in token.");
      break;
    case "peer-unavailable":
    case "busy":
    case "no-such-call":
      break; // shown through the call's end reason
    case "rate-limited":
      toast("Slow down: the server is limiting messages.");
      break;
    default:
      console.warn("switchboard error", d);
  }
}

/** @param {{reason: string, fatal: boolean}} d */
function onClosed(d) {
  if (d.fatal && $("banner").hidden) banner(`Disconnected from the server: ${d.reason || "refused"}.`);
  if (d.reason === "session taken over by another tab") banner("This session continues in another tab or window.");
}

// ---- presence ----

function renderPeers() {
  const s = app.session;
  if (!s) return;
  const list = $("peers");
  const peers = [...s.peers.values()].sort((a, b) => a.name.localeCompare(b.name));
  list.replaceChildren(
    ...peers.map((p) => {
      const li = document.createElement("li");
      li.dataset.peer = p.id;
      const who = document.createElement("span");
      who.className = "who";
      const avatar = document.createElement("span");
      avatar.className = "avatar";
      avatar.setAttribute("aria-hidden", "true");
      avatar.textContent = (p.name.trim()[0] || "?").toUpperCase();
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = p.name;
      who.append(avatar, name);
      if (p.nearby) {
        const b = document.createElement("span");
        b.className = "badge nearby";
        b.textContent = "same network";
        b.title = "Reaches the server from the same address as you: probably on your network";
        who.append(b);
      }
      li.append(who);
      if (!room) {
        const btn = document.createElement("button");
        btn.type = "button";
        btn.className = "primary call-button";
        btn.textContent = "Call";
        btn.setAttribute("aria-describedby", `peer-name-${p.id}`);
        name.id = `peer-name-${p.id}`;
        btn.disabled = !!app.current;
        btn.addEventListener("click", () => placeCall(p.id, p.name));
        li.append(btn);
      }
      return li;
    }),
  );
  $("empty").hidden = peers.length > 0;
  updateWaiting();
}

// ---- 1:1 calls ----

/** @param {string} peerId @param {string} name */
function placeCall(peerId, name) {
  const s = app.session;
  if (!s || app.current) return;
  const call = s.call(peerId, { stream: app.stream });
  app.current = call;
  $("callee-name").textContent = name;
  $("outgoing-state").textContent = "Calling…";
  /** @type {HTMLDialogElement} */ ($("outgoing")).showModal();
  call.addEventListener("state", () => {
    if (call.state === "ringing") $("outgoing-state").textContent = "Ringing…";
    if (call.state === "connecting" || call.state === "connected") {
      closeDialog("outgoing");
      enterCall();
      attach(call);
    }
  });
  call.addEventListener("ended", (e) => {
    closeDialog("outgoing");
    toast(endWords[/** @type {CustomEvent} */ (e).detail.reason]?.(name) ?? "The call ended.");
    if (app.current === call) app.current = null;
    renderPeers();
  });
  renderPeers();
}

/** @param {Call} call */
function onIncoming(call) {
  if (call.direction === "mesh") {
    attach(call);
    return;
  }
  if (app.current || app.ringing) {
    // Already busy with someone: the caller hears "declined" right away
    // rather than ringing into the void.
    call.decline();
    return;
  }
  app.ringing = call;
  const name = call.peerName || "Someone";
  $("caller-name").textContent = name;
  /** @type {HTMLDialogElement} */ ($("incoming")).showModal();
  call.addEventListener("ended", (e) => {
    if (app.ringing === call) {
      app.ringing = null;
      closeDialog("incoming");
    }
    if (app.current === call) app.current = null;
    const reason = /** @type {CustomEvent} */ (e).detail.reason;
    // The callee did not answer in time: for them it is a missed call.
    toast(reason === "timeout" ? `Missed call from ${name}.` : endWords[reason]?.(name) ?? "The call ended.");
    renderPeers();
  });
}

function acceptRinging() {
  const call = app.ringing;
  if (!call) return;
  app.ringing = null;
  closeDialog("incoming");
  app.current = call;
  call.accept({ stream: app.stream });
  enterCall();
  attach(call);
}

function declineRinging() {
  const call = app.ringing;
  if (!call) return;
  app.ringing = null;
  closeDialog("incoming");
  call.decline();
}

/** @param {string} id */
function closeDialog(id) {
  const d = /** @type {HTMLDialogElement} */ ($(id));
  if (d.open) d.close();
}

// ---- the call view (1:1 and mesh) ----

function enterCall() {
  show("call");
  refreshPreviews();
  clearInterval(app.statsTimer);
  app.statsTimer = setInterval(pollStats, 1000);
  updateWaiting();
}

function leaveCallView() {
  clearInterval(app.statsTimer);
  if (app.screenTrack) stopShare();
  show(room ? "join" : "lobby");
  renderPeers();
}

function updateWaiting() {
  const w = $("waiting");
  w.hidden = !room || app.calls.size > 0;
  const a = /** @type {HTMLAnchorElement} */ ($("share-link"));
  a.href = location.origin + location.pathname;
  a.textContent = location.origin + location.pathname;
}

/** Adds a tile for a call and wires its events. @param {Call} call */
function attach(call) {
  if (app.calls.has(call.id) || call.state === "ended") return;
  app.calls.set(call.id, call);
  const fig = document.createElement("figure");
  fig.className = "tile remote";
  fig.dataset.call = call.id;
  fig.dataset.peer = call.peerId;
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.srcObject = call.remoteStream;
  const cap = document.createElement("figcaption");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = call.peerName || "Guest";
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
  cap.append(who, path, muteRemote);
  fig.append(video, cap);
  $("tiles").append(fig);
  layoutTiles();
  call.addEventListener("track", () => {
    if (video.srcObject !== call.remoteStream) video.srcObject = call.remoteStream;
    video.play().catch(() => {});
  });
  call.addEventListener("state", () => {
    fig.dataset.state = call.state;
    if (call.state === "reconnecting") path.textContent = "Reconnecting…";
  });
  call.addEventListener("message", (e) => addMessage(call.peerName, String(/** @type {CustomEvent} */ (e).detail.data?.text ?? ""), "in"));
  call.addEventListener("file-progress", (e) => fileProgress(call, /** @type {CustomEvent} */ (e).detail));
  call.addEventListener("file", (e) => fileDone(call, /** @type {CustomEvent} */ (e).detail));
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

function toggleMute() {
  app.micMuted = !app.micMuted;
  for (const t of app.stream?.getAudioTracks() ?? []) t.enabled = !app.micMuted;
  const b = $("mute");
  b.setAttribute("aria-pressed", String(app.micMuted));
  b.textContent = app.micMuted ? "Unmute" : "Mute";
  if (!app.stream?.getAudioTracks().length) toast("No microphone: others cannot hear you anyway.");
}

function toggleCamera() {
  app.cameraOff = !app.cameraOff;
  for (const t of app.stream?.getVideoTracks() ?? []) t.enabled = !app.cameraOff;
  const b = $("camera");
  b.setAttribute("aria-pressed", String(app.cameraOff));
  b.textContent = app.cameraOff ? "Camera on" : "Camera off";
  if (!app.stream?.getVideoTracks().length) toast("No camera: others cannot see you anyway.");
}

async function toggleShare() {
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
}

async function stopShare() {
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
}

function hangup() {
  if (room) {
    app.session?.close(); // ends every call, which removes its tile
    app.session = null;
    leaveCallView();
    $("join-title").textContent = `You left room ${room}`;
    $("join-button").removeAttribute("disabled");
    $("join-button").textContent = "Rejoin";
    setConn("idle", "Not connected");
    return;
  }
  app.current?.hangup();
  app.current = null;
  for (const c of [...app.calls.values()]) c.hangup();
}

// ---- chat and files ----

/** @param {string} who @param {string} text @param {"in" | "out"} dir */
function addMessage(who, text, dir) {
  const li = document.createElement("li");
  li.className = `msg ${dir}`;
  const w = document.createElement("span");
  w.className = "from";
  w.textContent = dir === "out" ? "You" : who || "Guest";
  const t = document.createElement("span");
  t.className = "text";
  t.textContent = text;
  li.append(w, t);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

function sendChat() {
  const input = /** @type {HTMLInputElement} */ ($("chat-input"));
  const text = input.value.trim();
  if (!text) return;
  let sent = 0;
  for (const c of app.calls.values()) {
    try {
      c.sendMessage({ text });
      sent++;
    } catch {
      /* channel not open yet with this peer */
    }
  }
  if (sent === 0) {
    toast("Not connected to anyone yet: the message was not sent.");
    return;
  }
  addMessage(app.name, text, "out");
  input.value = "";
}

/** @type {Map<string, HTMLLIElement>} */
const transfers = new Map();

/**
 * @param {Call} call
 * @param {{id: string, name: string, size: number, done: number, direction: "in" | "out"}} d
 */
function fileProgress(call, d) {
  const key = `${call.id}/${d.id}`;
  let li = transfers.get(key);
  if (!li) {
    li = document.createElement("li");
    li.className = `msg file ${d.direction}`;
    li.dataset.transfer = d.id;
    const from = document.createElement("span");
    from.className = "from";
    from.textContent = d.direction === "out" ? `You → ${call.peerName || "Guest"}` : call.peerName || "Guest";
    const label = document.createElement("span");
    label.className = "text";
    label.textContent = `${d.name} (${formatSize(d.size)})`;
    const bar = document.createElement("progress");
    bar.max = Math.max(d.size, 1);
    bar.setAttribute("aria-label", `${d.direction === "out" ? "Sending" : "Receiving"} ${d.name}`);
    li.append(from, label, bar);
    $("messages").append(li);
    li.scrollIntoView({ block: "end" });
    transfers.set(key, li);
  }
  const bar = li.querySelector("progress");
  if (bar) bar.value = d.size === 0 ? 1 : d.done;
  if (d.direction === "out" && d.done >= d.size && !li.classList.contains("done")) {
    li.classList.add("done");
    const sent = document.createElement("span");
    sent.className = "from";
    sent.textContent = "Sent";
    li.querySelector("progress")?.replaceWith(sent);
    transfers.delete(key);
  }
}

/**
 * @param {Call} call
 * @param {{id: string, name: string, size: number, blob: Blob}} d
 */
function fileDone(call, d) {
  const key = `${call.id}/${d.id}`;
  const li = transfers.get(key);
  if (!li) return;
  transfers.delete(key);
  li.classList.add("done");
  const a = document.createElement("a");
  a.href = URL.createObjectURL(d.blob);
  a.download = d.name;
  a.textContent = `Save ${d.name}`;
  a.className = "download";
  li.querySelector("progress")?.remove();
  li.append(a);
}

/** @param {number} n */
function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

async function sendFiles(/** @type {FileList} */ files) {
  const targets = [...app.calls.values()].filter((c) => c.channel?.readyState === "open");
  if (targets.length === 0) {
    toast("Not connected to anyone yet: the file was not sent.");
    return;
  }
  for (const f of files) {
    for (const c of targets) {
      c.sendFile(f).catch((err) => toast(`Sending ${f.name} failed: ${err.message}`));
    }
  }
}

// ---- wiring ----

function init() {
  if (room) {
    $("room-label").textContent = `Room ${room}`;
    $("room-label").hidden = false;
    $("join-title").textContent = `Join room ${room}`;
    $("join-hint").textContent = "Everyone who opens this link joins the same group call.";
    document.title = `${room} · Switchboard`;
  }
  $("relay-note").hidden = !forceRelay;
  const nr = /** @type {HTMLAnchorElement} */ ($("new-room"));
  nr.href = `/r/${Math.random().toString(36).slice(2, 8)}`;
  const nameInput = /** @type {HTMLInputElement} */ ($("name"));
  nameInput.value = localStorage.getItem("switchboard.name") ?? "";
  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = nameInput.value.trim();
    if (!name) return;
    if (app.session) return;
    join(name).catch((err) => banner(`Could not join: ${err.message}`));
  });
  $("accept").addEventListener("click", acceptRinging);
  $("decline").addEventListener("click", declineRinging);
  $("incoming").addEventListener("cancel", (e) => {
    e.preventDefault(); // Escape does not silently drop a call: it declines it
    declineRinging();
  });
  $("cancel").addEventListener("click", () => app.current?.cancel());
  $("outgoing").addEventListener("cancel", (e) => {
    e.preventDefault();
    app.current?.cancel();
  });
  $("mute").addEventListener("click", toggleMute);
  $("camera").addEventListener("click", toggleCamera);
  $("share").addEventListener("click", () => void toggleShare());
  $("hangup").addEventListener("click", hangup);
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sendChat();
  });
  const fileInput = /** @type {HTMLInputElement} */ ($("file-input"));
  fileInput.addEventListener("change", () => {
    if (fileInput.files?.length) void sendFiles(fileInput.files);
    fileInput.value = "";
  });
  if (!navigator.mediaDevices?.getDisplayMedia) $("share").hidden = true;
  show("join");
}

init();
