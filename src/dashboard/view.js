// Draws one cluster view: the overview numbers, the throughput sparkline, worker cards, requests and queues.
import { forgetWorker, settle } from "./card-actions.js";
import { $, h, reconcile } from "./dom.js";
import { formatBytes, formatCount, formatDuration, formatRate } from "./format.js";
import { drawPlacement, placementPart } from "./placement.js";

export function render(view) {
  settle(view.at);
  const queued = view.models.reduce((sum, m) => sum + m.queueDepth, 0);
  const live = view.requests.length + view.moreRequests;
  const slots = view.workers.reduce((sum, w) => sum + w.maxConcurrency, 0);
  const draining = view.workers.filter((w) => w.state === "draining").length;
  const history = view.throughput.history;
  $("kpi-workers").textContent = String(view.workers.length);
  $("kpi-workers-note").textContent = `${view.workers.length - draining} ready${draining ? ` · ${draining} draining` : ""}`;
  $("kpi-inflight").textContent = String(Math.max(0, live - queued));
  $("kpi-inflight-note").textContent = `of ${slots} slot${slots === 1 ? "" : "s"}`;
  $("kpi-queued").textContent = String(queued);
  $("kpi-queued-note").textContent = `across ${view.models.length} model${view.models.length === 1 ? "" : "s"}`;
  $("kpi-tps").textContent = formatRate(view.throughput.tokensPerSecond);
  $("kpi-tps-note").textContent = `${formatCount(view.workers.reduce((sum, w) => sum + w.completionTokens, 0))} tokens served`;
  renderSparkline(history);
  renderWorkers(view.workers, view.at, view.placements ?? []);
  renderRequests(view.requests, view.moreRequests, view.recent);
  renderQueues(view.models);
  renderHeads(view.heads ?? []);
}

/**
 * The cluster's heads (docs/scaling.md), shown once there is more than this one or it is configured for NATS: each
 * with its address, requests in flight (and queued) and workers, this one and the one that plans placement marked,
 * and this head's link to NATS.
 */
function renderHeads(heads) {
  const self = heads.find((head) => head.self);
  const shown = heads.length > 1 || (self !== undefined && self.nats !== "off");
  $("heads-panel").hidden = !shown;
  if (!shown) return;
  $("heads-hint").textContent = self?.nats === "connected" ? "NATS connected" : "NATS away: serving with what this head knows";
  $("heads").replaceChildren(
    ...heads.map((head) =>
      h(
        "li",
        { class: head.self ? "head self" : "head", "data-head-name": head.name },
        h("span", { class: "head-name" }, head.name, head.self ? " (this one)" : ""),
        head.planner ? h("span", { class: "badge planner", title: "holds the planner lease: decides which models load where" }, "plans") : null,
        h("a", { class: "head-url", href: head.url }, head.url),
        h("span", { class: "head-counts" }, `${head.inflight} in flight · ${head.queued ?? 0} queued · ${head.workers} worker${head.workers === 1 ? "" : "s"}`),
      ),
    ),
  );
}

function renderSparkline(history) {
  const svg = $("sparkline");
  const n = history.length;
  const peak = Math.max(1, ...history);
  const width = 300;
  const height = 60;
  const points = history.map((v, i) => [n > 1 ? (i / (n - 1)) * width : 0, height - 2 - (v / peak) * (height - 8)]);
  const line = points.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join("");
  svg.querySelector(".spark-line").setAttribute("d", line);
  svg.querySelector(".spark-area").setAttribute("d", n ? `${line}L${width},${height}L0,${height}Z` : "");
  $("throughput-hint").textContent = "tokens per second, whole cluster";
  $("spark-peak").textContent = `peak ${formatRate(Math.max(0, ...history))}`;
  $("spark-from").textContent = n >= 120 ? `${Math.round(n / 60)} min ago` : `${n} s ago`;
}

/**
 * Worker cards by worker id, kept while the worker is connected: each view redraws what a card shows, inside the
 * same elements, so that a button being pressed or holding the keyboard's focus survives the redraw.
 */
const cards = new Map();

function renderWorkers(workers, now, placements) {
  const container = $("workers");
  $("workers-hint").textContent = workers.length ? `${workers.length} connected` : "";
  for (const id of cards.keys()) {
    if (workers.some((worker) => worker.id === id)) continue;
    cards.delete(id);
    forgetWorker(id);
  }
  if (workers.length === 0) {
    const join = `npx coordinator worker --join ws://${location.host} --token TOKEN`;
    container.replaceChildren(h("div", { class: "empty" }, "No workers yet. Join one with ", h("code", {}, join)));
    return;
  }
  reconcile(container, workers.map((worker) => drawCard(worker, now, placements)));
}

function drawCard(worker, now, placements) {
  let card = cards.get(worker.id);
  if (!card) {
    card = { summary: h("div", { class: "card-part" }), placement: placementPart(), footer: h("div", { class: "card-part" }) };
    card.element = h(
      "article",
      { class: "worker-card", data: { workerName: worker.name, workerId: worker.id } },
      card.summary,
      card.placement.element,
      card.footer,
    );
    cards.set(worker.id, card);
  }
  card.summary.replaceChildren(...workerSummary(worker));
  drawPlacement(card.placement, worker, placements);
  card.footer.replaceChildren(
    h("div", { class: "hint" }, `up ${formatDuration(now - worker.connectedAt)} · ${formatCount(worker.completionTokens)} tokens served${cacheNote(worker)}`),
  );
  return card.element;
}

/** Name, device, state, slots, numbers, and the models it serves (a worker with placement shows them there). */
function workerSummary(worker) {
  const device = [worker.engine, worker.device.kind !== worker.engine ? worker.device.kind : null, worker.device.name]
    .filter(Boolean)
    .join(" · ");
  const slots =
    worker.maxConcurrency <= 16
      ? h("div", { class: "slots", title: `${worker.inflight} of ${worker.maxConcurrency} slots busy` },
          Array.from({ length: worker.maxConcurrency }, (_, i) => h("span", { class: i < worker.inflight ? "slot busy" : "slot" })))
      : null;
  return [
    h(
      "div",
      { class: "worker-top" },
      h("div", {}, h("div", { class: "worker-name" }, worker.name), h("div", { class: "worker-device" }, device)),
      worker.health && worker.health !== "healthy"
        ? h("span", { class: `badge ${worker.health}`, title: "taken out of rotation: its tasks kept failing or stalling" }, worker.health)
        : h("span", { class: `badge ${worker.state}` }, worker.state),
    ),
    slots,
    h(
      "div",
      { class: "worker-stats" },
      stat("In flight", `${worker.inflight} / ${worker.maxConcurrency}`),
      stat("Tokens/s", formatRate(worker.tokensPerSecond)),
      stat("Memory", formatBytes(worker.device.memoryBytes)),
    ),
    worker.placement ? null : h("div", { class: "chips" }, worker.models.map((model) => h("span", { class: "chip" }, model))),
  ].filter(Boolean);
}

/** The worker's prompt cache, when it has one: tokens held and the share of prompt tokens it reused. */
function cacheNote(worker) {
  if (!worker.cachedTokensHeld && !worker.cacheHitRatio) return "";
  return ` · cache ${formatCount(worker.cachedTokensHeld ?? 0)} tokens, ${Math.round((worker.cacheHitRatio ?? 0) * 100)}% of prompt tokens reused`;
}

function stat(label, value) {
  return h("div", { class: "stat" }, h("span", { class: "stat-label" }, label), h("span", { class: "stat-value" }, value));
}

function renderRequests(requests, more, recent) {
  const rows = [
    ...requests.map((r) => requestRow(r, r.stage, false)),
    ...recent.map((r) => requestRow(r, r.outcome, true)),
  ];
  $("requests-hint").textContent = `${requests.length + more} in flight${more ? ` (${requests.length} shown)` : ""}`;
  if (rows.length === 0) rows.push(h("tr", {}, h("td", { class: "empty-row", colspan: 5 }, "No requests yet: send one from the playground.")));
  $("requests").replaceChildren(...rows);
}

/** Which API a request came in on, in a word. */
const ROUTE_NAMES = {
  "/v1/chat/completions": "chat",
  "/v1/messages": "messages",
  "/v1/responses": "responses",
  "/api/chat": "ollama",
  "/api/generate": "ollama",
};

function requestRow(request, badge, ended) {
  return h(
    "tr",
    { class: ended ? "ended" : "live", title: request.requestId ? `request ${request.requestId}${request.route ? ` via ${request.route}` : ""}` : undefined },
    h("td", { class: "model" }, request.model, request.route ? h("span", { class: "route" }, ROUTE_NAMES[request.route] ?? request.route) : null),
    h("td", {}, h("span", { class: `badge ${badge}` }, badge)),
    h("td", { class: "num" }, request.prompt ? promptProgress(request.prompt) : String(request.tokens)),
    h("td", { class: "num" }, formatDuration(request.durationMs)),
    h("td", {}, request.worker ?? "—"),
  );
}

/** "prompt 40%" (or "prompt 2,048" when the total is unknown) while the worker evaluates the prompt. */
function promptProgress(prompt) {
  if (prompt.total) return `prompt ${Math.floor((prompt.done / prompt.total) * 100)}%`;
  return `prompt ${formatCount(prompt.done)}`;
}

function renderQueues(models) {
  const container = $("queues");
  if (models.length === 0) {
    container.replaceChildren(h("div", { class: "empty" }, "No models are served yet."));
    return;
  }
  const deepest = Math.max(4, ...models.map((m) => m.queueDepth));
  container.replaceChildren(
    ...models.map((model) => {
      const fill = h("div", { class: "queue-fill" });
      fill.style.width = `${(model.queueDepth / deepest) * 100}%`;
      return h(
        "div",
        { class: "queue-row", data: { model: model.id } },
        h("span", { class: "queue-model", title: model.id }, model.id),
        h("span", { class: model.queueDepth ? "queue-depth" : "queue-depth zero" }, `${model.queueDepth} queued`),
        h("div", { class: "queue-bar" }, fill),
        h("span", { class: "queue-meta" }, `${model.workers} worker${model.workers === 1 ? "" : "s"}`),
      );
    }),
  );
}
