// @ts-check
// The call view's chat panel: messages and files to everyone in the call,
// over each call's data channel.

import { $, toast } from "./ui.js";

/** @typedef {import("./switchboard.js").Call} Call */

/** @type {Map<string, HTMLLIElement>} transfers in progress, by call/transfer id */
const transfers = new Map();

/** The empty panel says what it is for; the first message replaces that. */
function updateEmpty() {
  $("chat-empty").hidden = $("messages").childElementCount > 0;
}

/** @param {string} who @param {string} text @param {"in" | "out"} dir */
export function addMessage(who, text, dir) {
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
  updateEmpty();
  li.scrollIntoView({ block: "end" });
  return li;
}

/**
 * Sends the typed message to every call whose channel is open.
 * @param {Iterable<Call>} calls
 * @param {string} myName
 */
export function sendChat(calls, myName) {
  const input = /** @type {HTMLInputElement} */ ($("chat-input"));
  const text = input.value.trim();
  if (!text) return;
  let sent = 0;
  for (const c of calls) {
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
  addMessage(myName, text, "out");
  input.value = "";
}

/** @param {number} n */
export function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * @param {Call} call
 * @param {import("./transfer.js").FileProgress} d
 */
export function fileProgress(call, d) {
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
    updateEmpty();
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
 * @param {import("./transfer.js").ReceivedFile} d
 */
export function fileDone(call, d) {
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

/**
 * Sends each file to every call whose channel is open.
 * @param {Iterable<Call>} calls
 * @param {FileList} files
 */
export function sendFiles(calls, files) {
  const targets = [...calls].filter((c) => c.channel?.readyState === "open");
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
