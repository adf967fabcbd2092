// What a worker card's buttons start through the admin routes (load, unplace, unload, pull): which are under way,
// and the last failure on each worker, shown on its card until that worker's next action succeeds. Kept here, not
// in the DOM: the card is redrawn with every view.
import { askForAdminKey, askForKey, authHeaders } from "./api.js";

/** Per worker id: the message of its last failed action. */
const failures = new Map();
/**
 * Actions under way, by worker id, subject and action: until answered, then until a view made after the answer
 * (which shows its effect), so that a button does not come back for a moment in between.
 */
const underway = new Map();
let latestViewAt = 0;
let redraw = () => {};

/** Who draws the page again when an action starts or ends (with the last view). */
export function onActionChange(callback) {
  redraw = callback;
}

/** Called with each view drawn: actions answered before it was made are done. */
export function settle(viewAt) {
  latestViewAt = viewAt;
  for (const [key, action] of underway) if (action.answeredAt !== undefined && viewAt > action.answeredAt) underway.delete(key);
}

/** A worker left: what failed or was under way on it is forgotten with its card. */
export function forgetWorker(workerId) {
  failures.delete(workerId);
  for (const key of underway.keys()) if (key.startsWith(`${workerId}\n`)) underway.delete(key);
}

/** The message of the worker's last failed action, while it has not had one succeed since. */
export function failureOf(worker) {
  return failures.get(worker.id);
}

/** The action under way, if any: `{ label }`, its busy label. */
export function underwayOf(worker, subject, name) {
  return underway.get(actionKey(worker, subject, name));
}

function actionKey(worker, subject, name) {
  return `${worker.id}\n${subject}\n${name}`;
}

/**
 * Sends an action's request (`subject`: the model it acts on, or "" for the worker itself) unless the same one is
 * under way; true when the coordinator took it.
 */
export async function act(worker, subject, action) {
  const key = actionKey(worker, subject, action.name);
  if (underway.has(key)) return false;
  const under = { label: action.busyLabel, answeredAt: undefined };
  underway.set(key, under);
  redraw();
  let failure;
  try {
    failure = await send(action.request);
  } catch (error) {
    failure = `The coordinator could not be reached: ${error instanceof Error ? error.message : String(error)}`;
  }
  if (failure) {
    failures.set(worker.id, failure);
    underway.delete(key);
  } else {
    failures.delete(worker.id);
    under.answeredAt = latestViewAt;
  }
  redraw();
  return !failure;
}

/**
 * An admin request with the stored key; its error message, if any. A 401 asks for a key, as every call does; a 403
 * for a key that is not an admin key asks for one, and the request is sent again once with the key given.
 */
async function send({ method, path, body }) {
  let askedForAdminKey = false;
  for (;;) {
    const response = await fetch(path, {
      method,
      headers: { ...(body && { "Content-Type": "application/json" }), ...authHeaders() },
      ...(body && { body: JSON.stringify(body) }),
    });
    if (response.status === 401) {
      await askForKey();
      continue;
    }
    if (response.ok) return undefined;
    const answer = await response.json().catch(() => null);
    const message = answer?.error?.message ?? `The coordinator answered ${response.status}.`;
    if (response.status === 403 && answer?.error?.code === "admin_key_required" && !askedForAdminKey) {
      askedForAdminKey = true;
      if (await askForAdminKey(message)) continue;
    }
    return message;
  }
}
