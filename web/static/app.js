// @ts-check
// The call app: lobby with presence and 1:1 calls at "/", mesh group calls at
// "/r/<room>", sign-in when the server needs it. Everything it knows about the
// network comes from switchboard.js.

import { connect } from "./switchboard.js";
import { $, toast, banner, closeDialog, initial } from "./ui.js";
import { release } from "./media.js";
import { sendChat, sendFiles } from "./chat.js";
import { inviteFromHash, tokenClaims, storedToken, signInInfo, signIn, TOKEN_KEY } from "./signin.js";
import { app, room, forceRelay, NAME_KEY, show, setConn, hooks, mediaState, ensureMedia, releaseMediaIfIdle, togglePreview, refreshPreviews } from "./state.js";
import { enterCall, leaveCallView, updateWaiting, attach, toggleMute, toggleCamera, toggleShare } from "./callview.js";

/** @typedef {import("./switchboard.js").Call} Call */

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

// ---- sign-in ----

/**
 * Shows the sign-in screen: a passcode field when the server has one, else
 * how to get in.
 * @param {string} [error]
 */
function showSignIn(error = "") {
  show("signin");
  const form = $("signin-form");
  form.hidden = !app.signin.passcode;
  $("signin-text").textContent = app.signin.passcode
    ? "This server is private. Enter the passcode you got from its host, or open the invite link they sent you."
    : "This server is private: ask the host for an invite link, then open it in this browser.";
  const err = $("signin-error");
  err.textContent = error;
  err.hidden = !error;
  if (app.signin.passcode) /** @type {HTMLInputElement} */ ($("passcode")).focus();
}

/**
 * A sign-in succeeded: keep the token and prefill the suggested name. A
 * token for one room puts the session in that room (the hello names none):
 * its lobby, where people see who is online and call each other.
 * @param {import("./signin.js").SignInGrant} g
 */
function granted(g) {
  localStorage.setItem(TOKEN_KEY, g.token);
  if (g.name) localStorage.setItem(NAME_KEY, g.name);
  app.token = g.token;
  if (room && g.room && g.room !== room) {
    location.replace(`/${location.search}`); // this page's room is not the token's
    return;
  }
  showJoin(g.name);
}

/** @param {string} [suggested] a name to prefill */
function showJoin(suggested = "") {
  const nameInput = /** @type {HTMLInputElement} */ ($("name"));
  nameInput.value = suggested || localStorage.getItem(NAME_KEY) || "";
  show("join");
}

async function submitPasscode() {
  const input = /** @type {HTMLInputElement} */ ($("passcode"));
  const button = /** @type {HTMLButtonElement} */ ($("signin-button"));
  if (!input.value) return;
  button.disabled = true;
  let r;
  try {
    r = await signIn(fetch, { passcode: input.value });
  } catch (err) {
    r = { ok: /** @type {const} */ (false), code: "network", message: `Could not reach the server (${/** @type {Error} */ (err).message}).` };
  }
  input.value = "";
  if (r.ok) {
    granted(r.grant);
    button.disabled = false;
    return;
  }
  showSignIn(r.message);
  // Rate limited: the button comes back when the server will listen again.
  setTimeout(() => (button.disabled = false), (r.retryAfter ?? 0) * 1000);
}

/** Decides between the sign-in screen and the join form. */
async function start() {
  try {
    app.signin = await signInInfo(fetch);
  } catch {
    app.signin = { required: false, passcode: false }; // the hello will tell
  }
  const invite = inviteFromHash(location.hash);
  if (invite) {
    // The fragment never reaches the server or a Referer; drop it from the
    // address bar and history too, it is a credential.
    history.replaceState(null, "", location.pathname + location.search);
    let r;
    try {
      r = await signIn(fetch, { invite });
    } catch (err) {
      r = { ok: /** @type {const} */ (false), code: "network", message: `Could not reach the server (${/** @type {Error} */ (err).message}).` };
    }
    if (r.ok) return granted(r.grant);
    app.signin.required = true;
    return showSignIn(r.message);
  }
  app.token = storedToken(localStorage, Date.now() / 1000);
  if (app.signin.required && !app.token) return showSignIn();
  const claimed = tokenClaims(app.token)?.room;
  if (room && claimed && claimed !== room) {
    // The token only lets us into its own room: its lobby rather than a refusal here.
    location.replace(`/${location.search}`);
    return;
  }
  showJoin();
}
// ---- joining ----

/** @param {string} name */
async function join(name) {
  app.name = name;
  localStorage.setItem(NAME_KEY, name);
  $("join-button").setAttribute("disabled", "");
  // Opening a room link starts its group call: the camera is needed now. In
  // the lobby it waits for a call.
  if (room) await ensureMedia();
  refreshPreviews();
  $("my-name").textContent = name;
  setConn("connecting", "Connecting…");
  const session = connect(null, { name, room, token: app.token || undefined, iceTransportPolicy: forceRelay ? "relay" : "all" });
  app.session = session;
  session.addEventListener("state", (e) => onSessionState(e.detail));
  session.addEventListener("welcome", (e) => onWelcome(e.detail));
  session.addEventListener("peers", () => renderPeers());
  session.addEventListener("peer-joined", (e) => {
    if (room) attach(session.meshCall(e.detail.peer.id, { stream: app.stream }));
  });
  session.addEventListener("call", (e) => onIncoming(e.detail.call));
  session.addEventListener("error", (e) => onServerError(e.detail));
  session.addEventListener("closed", (e) => onClosed(e.detail));
  session.addEventListener("token", (e) => {
    // Renewed over the WebSocket before it expires: a reload keeps working.
    app.token = e.detail.token;
    localStorage.setItem(TOKEN_KEY, e.detail.token);
  });
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
    // A sign-in for one room puts this lobby in that room: say which.
    const r = app.session?.room ?? "";
    $("room-label").textContent = r ? `Room ${r}` : "";
    $("room-label").title = r ? `Room ${r}` : "";
    $("room-label").hidden = !r;
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
      // The stored sign-in is no good (expired, revoked, another server's).
      localStorage.removeItem(TOKEN_KEY);
      app.token = "";
      app.signin.required = true;
      app.session = null;
      release(app.stream);
      app.stream = null;
      setConn("closed", "Signed out");
      $("join-button").removeAttribute("disabled");
      showSignIn("Your sign-in has expired or is no longer valid. Sign in again.");
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
  if (document.body.dataset.view === "signin") return; // said there
  if (d.fatal && $("banner").hidden) banner(`Disconnected from the server: ${d.reason || "refused"}.`);
  if (d.reason === "session taken over by another tab") banner("This session continues in another tab or window.");
}
// ---- presence ----

function renderPeers() {
  const s = app.session;
  if (!s) return;
  const list = $("peers");
  const peers = [...s.peers.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  // Names need not be unique: when two people (or you and someone) share
  // one, a short tag from the peer id tells them apart.
  const count = new Map([[app.name.trim().toLowerCase(), 1]]);
  for (const p of peers) count.set(p.name.trim().toLowerCase(), (count.get(p.name.trim().toLowerCase()) ?? 0) + 1);
  list.replaceChildren(
    ...peers.map((p) => {
      const li = document.createElement("li");
      li.dataset.peer = p.id;
      const who = document.createElement("span");
      who.className = "who";
      const avatar = document.createElement("span");
      avatar.className = "avatar";
      avatar.setAttribute("aria-hidden", "true");
      avatar.textContent = initial(p.name);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = p.name;
      name.id = `peer-name-${p.id}`;
      who.append(avatar, name);
      if ((count.get(p.name.trim().toLowerCase()) ?? 0) > 1) {
        const tag = document.createElement("span");
        tag.className = "tag";
        tag.textContent = `#${p.id.slice(0, 4)}`;
        tag.title = "Someone else here uses the same name: this tag tells them apart.";
        who.append(tag);
      }
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
        btn.setAttribute("aria-describedby", name.id);
        btn.disabled = !!app.current || app.gettingMedia;
        btn.addEventListener("click", () => void placeCall(p.id, p.name));
        li.append(btn);
      }
      return li;
    }),
  );
  $("empty").hidden = peers.length > 0;
  updateWaiting();
}
// ---- missed calls ----

/**
 * Keeps a missed call in the lobby until dismissed.
 * @param {string} peerId
 * @param {string} name
 * @param {string} [note]
 */
function addMissed(peerId, name, note = "") {
  const li = document.createElement("li");
  li.dataset.peer = peerId;
  const when = new Date();
  const text = document.createElement("span");
  text.className = "text";
  const time = document.createElement("time");
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  text.append(`${name}${note ? ` (${note})` : ""} at `, time);
  const back = document.createElement("button");
  back.type = "button";
  back.className = "small primary";
  back.textContent = "Call back";
  back.addEventListener("click", () => {
    if (!app.session?.peers.has(peerId)) {
      toast(`${name} is not online any more.`);
      return;
    }
    li.remove();
    updateMissed();
    void placeCall(peerId, name);
  });
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.className = "small dismiss";
  dismiss.textContent = "Dismiss";
  dismiss.setAttribute("aria-label", `Dismiss the missed call from ${name}`);
  dismiss.addEventListener("click", () => {
    li.remove();
    updateMissed();
  });
  li.append(text, back, dismiss);
  $("missed").prepend(li);
  updateMissed();
}

function updateMissed() {
  $("missed-box").hidden = $("missed").childElementCount === 0;
}
// ---- 1:1 calls ----

/** @param {string} peerId @param {string} name */
async function placeCall(peerId, name) {
  const s = app.session;
  if (!s || app.current || app.gettingMedia) return;
  app.gettingMedia = true;
  renderPeers();
  const stream = await ensureMedia();
  app.gettingMedia = false;
  if (app.session !== s || app.current || !s.peers.has(peerId)) {
    if (!s.peers.has(peerId)) toast(`${name} is not online any more.`);
    renderPeers();
    releaseMediaIfIdle();
    return;
  }
  const call = s.call(peerId, { stream });
  app.current = call;
  call.setMedia(mediaState());
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
    toast(endWords[e.detail.reason]?.(name) ?? "The call ended.");
    if (app.current === call) app.current = null;
    renderPeers();
    releaseMediaIfIdle();
  });
  renderPeers();
}

/** @param {Call} call */
function onIncoming(call) {
  if (call.direction === "mesh") {
    attach(call);
    return;
  }
  const name = call.peerName || "Someone";
  if (app.current || app.ringing || app.gettingMedia) {
    // Already busy with someone: the caller hears "declined" right away
    // rather than ringing into the void; we keep a note of it.
    call.decline();
    addMissed(call.peerId, name, "while you were in a call");
    return;
  }
  app.ringing = call;
  // Two people of that name here: say which one (the tag of the lobby list).
  const same = [...(app.session?.peers.values() ?? [])].filter((p) => p.name.trim().toLowerCase() === name.trim().toLowerCase()).length;
  $("caller-name").textContent = same > 1 || name.trim().toLowerCase() === app.name.trim().toLowerCase() ? `${name} #${call.peerId.slice(0, 4)}` : name;
  /** @type {HTMLDialogElement} */ ($("incoming")).showModal();
  call.addEventListener("ended", (e) => {
    if (app.ringing === call) {
      app.ringing = null;
      closeDialog("incoming");
    }
    if (app.current === call) app.current = null;
    const reason = e.detail.reason;
    // Not answered in time, or given up by the caller before we answered:
    // for us it is a missed call, kept in the lobby until dismissed.
    if (reason === "timeout" || reason === "cancelled") addMissed(call.peerId, name);
    toast(reason === "timeout" ? `Missed call from ${name}.` : endWords[reason]?.(name) ?? "The call ended.");
    renderPeers();
    releaseMediaIfIdle();
  });
}

async function acceptRinging() {
  const call = app.ringing;
  if (!call) return;
  app.ringing = null;
  closeDialog("incoming");
  app.current = call;
  app.gettingMedia = true;
  const stream = await ensureMedia();
  app.gettingMedia = false;
  if (call.state !== "incoming") {
    // The caller gave up while the camera was being asked for.
    if (app.current === call) app.current = null;
    releaseMediaIfIdle();
    return;
  }
  call.accept({ stream });
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
// ---- leaving ----

function hangup() {
  if (room) {
    app.session?.close(); // ends every call, which removes its tile
    app.session = null;
    leaveCallView();
    release(app.stream);
    app.stream = null;
    refreshPreviews();
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
// ---- wiring ----

function init() {
  hooks.renderPeers = renderPeers;
  if (room) {
    $("room-label").textContent = `Room ${room}`;
    $("room-label").title = `Room ${room}`;
    $("room-label").hidden = false;
    $("join-title").textContent = `Join room ${room}`;
    $("join-hint").textContent = "Everyone who opens this link joins the same group call. Your camera turns on when you join.";
    document.title = `${room} · Switchboard`;
  }
  $("relay-note").hidden = !forceRelay;
  const nr = /** @type {HTMLAnchorElement} */ ($("new-room"));
  nr.href = `/r/${Math.random().toString(36).slice(2, 8)}`;
  const nameInput = /** @type {HTMLInputElement} */ ($("name"));
  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = nameInput.value.trim();
    if (!name || app.session) return;
    join(name).catch((err) => banner(`Could not join: ${err.message}`));
  });
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    void submitPasscode();
  });
  $("preview-button").addEventListener("click", () => void togglePreview());
  $("accept").addEventListener("click", () => void acceptRinging());
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
    sendChat(app.calls.values(), app.name);
  });
  const fileInput = /** @type {HTMLInputElement} */ ($("file-input"));
  fileInput.addEventListener("change", () => {
    if (fileInput.files?.length) sendFiles(app.calls.values(), fileInput.files);
    fileInput.value = "";
  });
  if (!navigator.mediaDevices?.getDisplayMedia) $("share").hidden = true;
  // An invite link opened in a tab that shows the app already changes only
  // the fragment: start over with it.
  window.addEventListener("hashchange", () => {
    if (inviteFromHash(location.hash)) location.reload();
  });
  void start();
}

init();
