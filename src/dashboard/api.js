// How the page talks to the coordinator: the API key (kept in localStorage; asked for on a 401, asked for again as an
// admin key when an admin route refuses it, changed or forgotten from the header's key button) and server-sent events
// read with fetch, so that the key can go in the Authorization header (EventSource cannot send one).
import { $ } from "./dom.js";

const KEY_STORAGE = "coordinator.apiKey";

export function authHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/**
 * Why the key dialog is open, most pressing first: a 401 (nothing works without a key: it cannot be dismissed), an
 * admin action refused for a client key, the header's key button.
 */
const reasons = ["required", "admin", "change"];
const titles = { required: "API key required", admin: "Admin key required", change: "API key" };

let openFor;
/** Everyone waiting on the open dialog: each is told whether a key was saved (true) or the dialog dismissed (false). */
let keyWaiters = [];
let keyChanged = () => {};

/** Who is told when the stored key changes or is forgotten (the live feed reopens with it). */
export function onKeyChange(callback) {
  keyChanged = callback;
}

/** Asks for the API key once (every caller waiting on a 401 shares the one dialog), then stores it. */
export async function askForKey() {
  await openKeyDialog("required", "This coordinator asks for an API key. It is kept in this browser only.");
}

/**
 * Asks for an admin key after an admin route refused the stored key (`refusal`: the coordinator's message); true
 * once one is stored, false when the dialog was dismissed.
 */
export function askForAdminKey(refusal) {
  return openKeyDialog("admin", `This action needs an admin key. The coordinator said: ${refusal}`);
}

/** Opens the dialog for `reason`, or makes the open one say it when it is more pressing than why it is open. */
function openKeyDialog(reason, text) {
  const dialog = $("key-dialog");
  if (!dialog.open || reasons.indexOf(reason) < reasons.indexOf(openFor)) {
    openFor = reason;
    $("key-title").textContent = titles[reason];
    $("key-text").textContent = text;
    $("key-cancel").hidden = reason === "required";
    $("key-forget").hidden = reason !== "change";
    if (!dialog.open) {
      $("key-input").value = "";
      dialog.showModal();
    }
  }
  return new Promise((resolve) => keyWaiters.push(resolve));
}

/** Closes the dialog and tells its waiters whether a key was saved. */
function closeKeyDialog(saved) {
  $("key-dialog").close();
  openFor = undefined;
  const waiters = keyWaiters;
  keyWaiters = [];
  for (const resolve of waiters) resolve(saved);
}

function storeKey(key) {
  const before = localStorage.getItem(KEY_STORAGE);
  if (key === null) localStorage.removeItem(KEY_STORAGE);
  else localStorage.setItem(KEY_STORAGE, key);
  if (key !== before) keyChanged();
}

export function setUpKeyDialog() {
  const dialog = $("key-dialog");
  const dismiss = () => openFor !== "required" && closeKeyDialog(false);
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    dismiss();
  });
  // Closed by the browser, not by us (Escape pressed again after a refused cancel): as dismissed, or shown again.
  dialog.addEventListener("close", () => {
    if (openFor === "required") dialog.showModal();
    else if (openFor) closeKeyDialog(false);
  });
  $("key-cancel").addEventListener("click", dismiss);
  $("key-forget").addEventListener("click", () => {
    storeKey(null);
    closeKeyDialog(false);
  });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    storeKey(key);
    closeKeyDialog(true);
  });
  $("key-button").addEventListener("click", () => {
    const stored = localStorage.getItem(KEY_STORAGE) !== null;
    openKeyDialog(
      "change",
      stored
        ? "The key this page sends, kept in this browser only. Save another to use it from now on, or forget it."
        : "No key is stored in this browser. One saved here is kept in it and sent with every request.",
    );
    $("key-forget").disabled = !stored;
  });
}

/** Reads an SSE response, calling `onData` with each event's data; `onBytes` on every arrival (keepalives too). */
export async function readEvents(response, onData, onBytes) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      onBytes?.();
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data) onData(data);
      }
    }
  } finally {
    reader.releaseLock();
  }
}
