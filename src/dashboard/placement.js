// A worker card's placement part, for a worker that loads models on command: its memory bar, its models with their
// state (Unload, or Unplace when a placement pins one), the models of its library it could load (Load), and its
// pulls (pulls.js) when it downloads models. Actions
// are admin requests with the stored key (card-actions.js); a failure shows on the card until that worker's next
// action succeeds.
import { act, failureOf, underwayOf } from "./card-actions.js";
import { h, KeptElements, reconcile } from "./dom.js";
import { formatBytes } from "./format.js";
import { drawPulls, pullsPart } from "./pulls.js";

/** The part of a worker card that placement draws; kept with its card so that its buttons survive redraws. */
export function placementPart() {
  const part = {
    memory: h("div", { class: "memory" }),
    models: h("div", { class: "placed-models" }),
    libraryHead: h("div", { class: "library-head" }),
    library: h("div", { class: "library" }),
    pulls: pullsPart(),
    failure: h("div", { class: "placement-failure", role: "alert", hidden: true }),
    kept: new KeptElements(),
  };
  part.element = h("div", { class: "placement" }, part.memory, part.models, part.libraryHead, part.library, part.pulls.element, part.failure);
  return part;
}

export function drawPlacement(part, worker, placements) {
  const { placement } = worker;
  part.element.hidden = !placement;
  if (!placement) return;
  drawMemory(part.memory, placement);
  reconcile(
    part.models,
    placement.models.length
      ? placement.models.map((model) => modelChip(part.kept, worker, model, placements))
      : [h("span", { class: "hint" }, "No model loaded.")],
  );
  const offered = placement.library.length + placement.moreLibrary;
  part.libraryHead.textContent = offered
    ? `Library · ${offered} not loaded${placement.moreLibrary ? ` (${placement.library.length} shown)` : ""}`
    : placement.models.length ? "Library · every model loaded" : "Library · empty";
  reconcile(part.library, placement.library.map((entry) => libraryRow(part.kept, worker, entry, placement.memory.freeBytes)));
  part.kept.sweep();
  drawPulls(part.pulls, worker, placement);
  const failure = failureOf(worker);
  part.failure.hidden = !failure;
  part.failure.textContent = failure ?? "";
}

/** Used of total, each model a segment coloured by its state. */
function drawMemory(element, placement) {
  const { totalBytes, usedBytes } = placement.memory;
  const segments = placement.models.map((model) => {
    const segment = h("div", { class: `memory-segment ${model.state}`, title: `${model.id}: ${formatBytes(model.memoryBytes)}, ${model.state}` });
    segment.style.width = `${totalBytes > 0 ? Math.min(100, (model.memoryBytes / totalBytes) * 100) : 0}%`;
    return segment;
  });
  element.dataset.usedBytes = String(usedBytes);
  element.dataset.totalBytes = String(totalBytes);
  element.replaceChildren(
    h("div", { class: "memory-head" }, h("span", { class: "stat-label" }, "Model memory"), h("span", { class: "memory-text" }, `${size(usedBytes)} of ${size(totalBytes)} used`)),
    h("div", { class: "memory-bar", role: "img", "aria-label": `${size(usedBytes)} of ${size(totalBytes)} of model memory used` }, segments),
  );
}

function size(bytes) {
  return bytes ? formatBytes(bytes) : "0 GB";
}

function modelChip(kept, worker, model, placements) {
  const action = modelAction(worker, model, placements);
  const busy = action && underwayOf(worker, model.id, action.name);
  const key = JSON.stringify([model.state, model.pinned, model.memoryBytes, action?.title ?? null, busy?.label ?? null]);
  const chip = kept.get(`model ${model.id}`, key, () =>
    h(
      "div",
      { class: "chip placed", data: { model: model.id, state: model.state, ...(model.pinned && { pinned: model.pinned }) } },
      h("span", { class: "placed-name", title: model.id }, model.id),
      h("span", { class: "placed-size" }, formatBytes(model.memoryBytes)),
      h(
        "span",
        { class: "placed-state" },
        model.state === "loading"
          ? h("span", { class: "badge loading" }, "loading ", h("span", { class: "progress" }))
          : h("span", { class: `badge ${model.state}` }, model.state),
        model.pinned ? h("span", { class: "pin", title: pinTitle(model.pinned) }, "pinned") : null,
      ),
      action ? actionButton(worker, model.id, action, busy) : null,
    ),
  );
  // Progress changes with every view: written into the kept chip, so that its button stays the same element.
  const progress = chip.querySelector(".progress");
  if (progress) progress.textContent = `${Math.floor(model.progress * 100)}%`;
  return chip;
}

function pinTitle(pinned) {
  return pinned === "startup" ? "loaded at the worker's start (--model): kept for as long as it runs" : `pinned by placement ${pinned}`;
}

/** Unplace a model a placement pins, unload one loaded on demand; nothing for the rest. */
function modelAction(worker, model, placements) {
  if (model.state === "unloading" || model.pinned === "startup") return undefined;
  if (model.pinned) {
    const replicas = placements.find((p) => p.id === model.pinned)?.replicas ?? 1;
    return {
      name: "unplace",
      label: "Unplace",
      busyLabel: "Unplacing…",
      title: `End placement ${model.pinned}${replicas > 1 ? ` (all ${replicas} instances)` : ""}`,
      request: { method: "DELETE", path: `/v1/placements/${encodeURIComponent(model.pinned)}` },
    };
  }
  if (model.state !== "loaded") return undefined;
  return {
    name: "unload",
    label: "Unload",
    busyLabel: "Unloading…",
    title: `Unload ${model.id} from ${worker.name} (refused while it has work)`,
    request: { method: "POST", path: "/v1/models/unload", body: { model: model.id, worker: worker.name } },
  };
}

function libraryRow(kept, worker, entry, freeBytes) {
  const busy = underwayOf(worker, entry.id, "load");
  const fits = entry.memoryBytes <= freeBytes;
  const key = JSON.stringify([entry.memoryBytes, fits, busy?.label ?? null]);
  return kept.get(`library ${entry.id}`, key, () => {
    const action = {
      name: "load",
      label: "Load",
      busyLabel: "Loading…",
      title: `Load ${entry.id} on ${worker.name} and pin it (a placement)`,
      request: { method: "POST", path: "/v1/placements", body: { model: entry.id, worker: worker.name } },
    };
    const needs = `needs ${formatBytes(entry.memoryBytes)}`;
    return h(
      "div",
      { class: "library-item", data: { model: entry.id } },
      h("span", { class: "library-name", title: entry.id }, entry.id),
      h(
        "span",
        { class: fits ? "library-size" : "library-size tight", title: fits ? `${needs}; ${size(freeBytes)} free` : `${needs}, more than the ${size(freeBytes)} free: idle models would be unloaded to make room` },
        formatBytes(entry.memoryBytes),
      ),
      actionButton(worker, entry.id, action, busy),
    );
  });
}

function actionButton(worker, model, action, busy) {
  const button = h(
    "button",
    { type: "button", class: "small", title: action.title, disabled: Boolean(busy), data: { action: action.name } },
    busy ? action.busyLabel : action.label,
  );
  button.addEventListener("click", () => act(worker, model, action));
  return button;
}
