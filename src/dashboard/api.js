// How the page talks to the coordinator: the API key (asked for on a 401, kept in localStorage) and server-sent
// events read with fetch, so that the key can go in the Authorization header (EventSource cannot send one).
import { $ } from "./dom.js";

const KEY_STORAGE = "coordinator.apiKey";

export function authHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

let keyWaiters = [];

/** Asks for the API key once (every caller waiting on a 401 shares the one dialog), then stores it. */
export function askForKey() {
  const dialog = $("key-dialog");
  if (!dialog.open) {
    $("key-input").value = "";
    dialog.showModal();
  }
  return new Promise((resolve) => keyWaiters.push(resolve));
}

export function setUpKeyDialog() {
  const dialog = $("key-dialog");
  dialog.addEventListener("cancel", (event) => event.preventDefault());
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    localStorage.setItem(KEY_STORAGE, key);
    dialog.close();
    const waiters = keyWaiters;
    keyWaiters = [];
    for (const resolve of waiters) resolve();
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
