// A worker card's pulls, for a worker that downloads model files on command: a form that starts one on that worker
// (POST /v1/models/pull, an admin request) and its latest pulls with their progress. The form is built once per
// card and never redrawn, so that what is being typed in it survives the views that arrive meanwhile.
import { act, underwayOf } from "./card-actions.js";
import { h, KeptElements, reconcile } from "./dom.js";
import { formatBytes } from "./format.js";

export function pullsPart() {
  const part = {
    /** The worker as the last view showed it: the form pulls onto it. */
    worker: undefined,
    url: h("input", {
      type: "url",
      class: "pull-url",
      placeholder: "https://…/model.gguf",
      required: true,
      autocomplete: "off",
      spellcheck: "false",
      "aria-label": "URL of a model file to pull",
    }),
    sha256: h("input", { type: "text", class: "pull-sha", placeholder: "sha256 (optional)", autocomplete: "off", spellcheck: "false", "aria-label": "its sha256 (optional)" }),
    button: h("button", { type: "submit", class: "small", data: { action: "pull" } }, "Pull"),
    list: h("div", { class: "pulls" }),
    kept: new KeptElements(),
  };
  const form = h("form", { class: "pull-form" }, h("div", { class: "library-head" }, "Pull a model"), part.url, part.sha256, part.button);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (part.worker) startPull(part, part.worker);
  });
  part.element = h("div", { class: "pull" }, form, part.list);
  return part;
}

/** The form (for a worker that can pull) and its pulls, newest first, each with its progress or its error. */
export function drawPulls(part, worker, placement) {
  part.worker = worker;
  part.element.hidden = !placement.canPull && placement.pulls.length === 0;
  const busy = underwayOf(worker, "", "pull");
  const label = busy ? busy.label : "Pull";
  if (part.button.textContent !== label) part.button.textContent = label;
  part.button.disabled = Boolean(busy);
  part.button.title = `Download the file into ${worker.name}'s models dir; once whole it joins the library`;
  reconcile(part.list, placement.pulls.map((pull) => pullRow(part.kept, pull)));
  part.kept.sweep();
}

async function startPull(part, worker) {
  const url = part.url.value.trim();
  const sha256 = part.sha256.value.trim();
  const started = await act(worker, "", {
    name: "pull",
    busyLabel: "Pulling…",
    request: { method: "POST", path: "/v1/models/pull", body: { url, ...(sha256 && { sha256 }), workers: [worker.name] } },
  });
  // Taken: the pull is listed below from the next view on. Refused: the text stays, to be corrected.
  if (started && part.url.value.trim() === url) {
    part.url.value = "";
    part.sha256.value = "";
  }
}

function pullRow(kept, pull) {
  const row = kept.get(pull.id, JSON.stringify([pull.state, pull.fileName, pull.error]), () =>
    h(
      "div",
      { class: "pull-item", data: { pull: pull.id, state: pull.state } },
      h("span", { class: "pull-name", title: pull.fileName }, pull.fileName),
      h("span", { class: `badge ${pull.state}` }, pull.state),
      pull.state === "failed"
        ? h("div", { class: "pull-error" }, pull.error ?? "the download failed")
        : [
            h("div", { class: "pull-bar", role: "progressbar", "aria-label": `${pull.fileName} received`, "aria-valuemin": 0 }, h("div", { class: "pull-fill" })),
            h("span", { class: "pull-bytes" }),
          ],
    ),
  );
  // Bytes change with every view: written into the kept row.
  const bar = row.querySelector(".pull-bar");
  if (bar) drawProgress(bar, row.querySelector(".pull-bytes"), pull);
  return row;
}

/** Received of total and a percentage; received alone (and a bar with no end) while the size is not known. */
function drawProgress(bar, text, pull) {
  const { receivedBytes, totalBytes } = pull;
  const fraction = totalBytes ? Math.min(1, receivedBytes / totalBytes) : undefined;
  bar.classList.toggle("unknown", fraction === undefined);
  bar.firstChild.style.width = `${(fraction ?? 0) * 100}%`;
  if (fraction === undefined) {
    bar.removeAttribute("aria-valuemax");
    bar.removeAttribute("aria-valuenow");
    text.textContent = `${size(receivedBytes)} so far`;
    return;
  }
  bar.setAttribute("aria-valuemax", String(totalBytes));
  bar.setAttribute("aria-valuenow", String(receivedBytes));
  text.textContent = `${size(receivedBytes)} of ${size(totalBytes)} · ${Math.floor(fraction * 100)}%`;
}

function size(bytes) {
  return bytes ? formatBytes(bytes) : "0 MB";
}
