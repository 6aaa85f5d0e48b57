// @ts-check
// Small DOM helpers shared by the call app's modules.

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return /** @type {T} */ (el);
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let toastTimer;

/** Shows a short status line at the bottom. @param {string} text @param {number} [ms] */
export function toast(text, ms = 5000) {
  if (!text) return;
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), ms);
}

/**
 * @typedef {{label: string, run: () => void, primary?: boolean}} Action
 */

/**
 * Shows a banner with an explanation and optional actions; empty text hides it.
 * @param {string} text
 * @param {Action[]} [actions]
 */
export function banner(text, actions = []) {
  const b = $("banner");
  b.hidden = !text;
  $("banner-text").textContent = text;
  $("banner-actions").replaceChildren(
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

/** @param {string} id */
export function closeDialog(id) {
  const d = /** @type {HTMLDialogElement} */ ($(id));
  if (d.open) d.close();
}

/**
 * The first letter of a name, for an avatar.
 * @param {string} name
 */
export function initial(name) {
  return ([...name.trim()][0] || "?").toUpperCase();
}
