// The dashboard page: follows the cluster feed (/v1/cluster/events) and draws it; streams playground replies.
// Plain browser JavaScript, no dependencies. Streams are read with fetch (not EventSource) so that an API key
// can go in the Authorization header; the key is asked for on a 401 and kept in localStorage.

const KEY_STORAGE = "coordinator.apiKey";
/** A feed silent this long (it sends a view every second) is taken for dead and reopened. */
const FEED_SILENCE_MS = 5_000;

const $ = (id) => document.getElementById(id);

/** Creates an element; text children become text nodes, so nothing from the cluster is parsed as HTML. */
function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "data") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------- formatting ----------

function formatDuration(ms) {
  if (ms < 1_000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes}m ${Math.floor((ms % 60_000) / 1_000)}s`;
  return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

function formatCount(n) {
  if (n < 1_000) return String(Math.round(n));
  if (n < 1_000_000) return `${(n / 1_000).toFixed(n < 10_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

function formatRate(n) {
  return n >= 100 ? String(Math.round(n)) : n.toFixed(1);
}

function formatBytes(bytes) {
  if (!bytes) return "—";
  const gib = bytes / 2 ** 30;
  return gib >= 1 ? `${gib.toFixed(gib >= 10 ? 0 : 1)} GB` : `${Math.round(bytes / 2 ** 20)} MB`;
}

// ---------- API key ----------

function authHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

let keyWaiters = [];

/** Asks for the API key once (every caller waiting on a 401 shares the one dialog), then stores it. */
function askForKey() {
  const dialog = $("key-dialog");
  if (!dialog.open) {
    $("key-input").value = "";
    dialog.showModal();
  }
  return new Promise((resolve) => keyWaiters.push(resolve));
}

function setUpKeyDialog() {
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

// ---------- server-sent events over fetch ----------

/** Reads an SSE response, calling `onData` with each event's data; `onBytes` on every arrival (keepalives too). */
async function readEvents(response, onData, onBytes) {
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

// ---------- the live feed ----------

function setConnection(state, text) {
  $("connection").dataset.state = state;
  $("connection-text").textContent = text;
  document.body.classList.toggle("stale", state !== "live");
}

/** Follows the feed forever: reconnects with backoff when it drops (a coordinator restart), asks for a key on 401. */
async function follow() {
  let delay = 500;
  for (;;) {
    const controller = new AbortController();
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), FEED_SILENCE_MS);
    };
    try {
      arm();
      const response = await fetch("/v1/cluster/events", { headers: authHeaders(), cache: "no-store", signal: controller.signal });
      if (response.status === 401) {
        clearTimeout(watchdog);
        setConnection("key", "API key needed");
        await askForKey();
        continue;
      }
      if (!response.ok || !response.body) throw new Error(`feed answered ${response.status}`);
      await readEvents(
        response,
        (data) => {
          delay = 500;
          setConnection("live", "live");
          render(JSON.parse(data));
        },
        arm,
      );
    } catch {
      // Dropped, refused or silent: reconnect below.
    } finally {
      clearTimeout(watchdog);
      controller.abort();
    }
    setConnection("reconnecting", "reconnecting…");
    await sleep(delay);
    delay = Math.min(delay * 2, 5_000);
  }
}

// ---------- rendering ----------

function render(view) {
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
  renderWorkers(view.workers, view.at);
  renderRequests(view.requests, view.moreRequests, view.recent);
  renderQueues(view.models);
  renderModelChoice(view.models);
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

function renderWorkers(workers, now) {
  const container = $("workers");
  $("workers-hint").textContent = workers.length ? `${workers.length} connected` : "";
  if (workers.length === 0) {
    const join = `npx coordinator worker --join ws://${location.host} --token TOKEN`;
    container.replaceChildren(h("div", { class: "empty" }, "No workers yet. Join one with ", h("code", {}, join)));
    return;
  }
  container.replaceChildren(...workers.map((worker) => workerCard(worker, now)));
}

function workerCard(worker, now) {
  const device = [worker.engine, worker.device.kind !== worker.engine ? worker.device.kind : null, worker.device.name]
    .filter(Boolean)
    .join(" · ");
  const slots =
    worker.maxConcurrency <= 16
      ? h("div", { class: "slots", title: `${worker.inflight} of ${worker.maxConcurrency} slots busy` },
          Array.from({ length: worker.maxConcurrency }, (_, i) => h("span", { class: i < worker.inflight ? "slot busy" : "slot" })))
      : null;
  return h(
    "article",
    { class: "worker-card", data: { workerName: worker.name, workerId: worker.id } },
    h(
      "div",
      { class: "worker-top" },
      h("div", {}, h("div", { class: "worker-name" }, worker.name), h("div", { class: "worker-device" }, device)),
      h("span", { class: `badge ${worker.state}` }, worker.state),
    ),
    slots,
    h(
      "div",
      { class: "worker-stats" },
      stat("In flight", `${worker.inflight} / ${worker.maxConcurrency}`),
      stat("Tokens/s", formatRate(worker.tokensPerSecond)),
      stat("Memory", formatBytes(worker.device.memoryBytes)),
    ),
    h("div", { class: "chips" }, worker.models.map((model) => h("span", { class: "chip" }, model))),
    h("div", { class: "hint" }, `up ${formatDuration(now - worker.connectedAt)} · ${formatCount(worker.completionTokens)} tokens served`),
  );
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

function requestRow(request, badge, ended) {
  return h(
    "tr",
    { class: ended ? "ended" : "live", title: request.requestId ? `request ${request.requestId}` : undefined },
    h("td", { class: "model" }, request.model),
    h("td", {}, h("span", { class: `badge ${badge}` }, badge)),
    h("td", { class: "num" }, String(request.tokens)),
    h("td", { class: "num" }, formatDuration(request.durationMs)),
    h("td", {}, request.worker ?? "—"),
  );
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

function renderModelChoice(models) {
  const select = $("model");
  const ids = models.map((m) => m.id);
  const current = [...select.options].map((o) => o.value);
  if (ids.join("\n") === current.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(...ids.map((id) => h("option", { value: id }, id)));
  if (ids.includes(chosen)) select.value = chosen;
  select.disabled = ids.length === 0;
  updateSendState();
}

// ---------- playground ----------

let chat; // { controller } while a reply streams

function updateSendState() {
  $("send").disabled = Boolean(chat) || $("model").disabled || $("model").value === "";
}

async function sendChat(event) {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  const model = $("model").value;
  if (!prompt || !model || chat) return;
  const controller = new AbortController();
  chat = { controller };
  const reasoningBox = $("reasoning-box");
  const reasoning = $("reasoning");
  const answer = $("answer");
  reasoningBox.hidden = true;
  reasoning.textContent = "";
  answer.hidden = false;
  answer.textContent = "";
  answer.className = "answer streaming";
  $("stop").hidden = false;
  updateSendState();
  const started = performance.now();
  let firstAt;
  let pieces = 0;
  let usage;
  const showStats = () => {
    const tokens = usage?.completion_tokens ?? pieces;
    const parts = [`${tokens} tokens`];
    if (firstAt !== undefined) {
      parts.push(`first token ${formatDuration(firstAt - started)}`);
      const seconds = (performance.now() - firstAt) / 1_000;
      if (seconds > 0.2) parts.push(`${formatRate(tokens / seconds)} tok/s`);
    }
    $("chat-stats").textContent = parts.join(" · ");
  };
  try {
    for (;;) {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...authHeaders() },
        body: JSON.stringify({
          model,
          messages: [{ role: "user", content: prompt }],
          stream: true,
          stream_options: { include_usage: true },
          reasoning_format: "separate",
        }),
        signal: controller.signal,
      });
      if (response.status === 401) {
        await askForKey();
        continue;
      }
      if (!response.ok || !response.body) {
        const body = await response.json().catch(() => null);
        throw new Error(body?.error?.message ?? `The coordinator answered ${response.status}.`);
      }
      await readEvents(response, (data) => {
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices?.[0]?.delta ?? {};
        if (delta.reasoning_content) {
          firstAt ??= performance.now();
          pieces += 1;
          reasoningBox.hidden = false;
          reasoning.append(delta.reasoning_content);
        }
        if (delta.content) {
          firstAt ??= performance.now();
          pieces += 1;
          answer.append(delta.content);
        }
        showStats();
      });
      break;
    }
    showStats();
  } catch (error) {
    if (!controller.signal.aborted) {
      answer.classList.add("error");
      answer.textContent = error instanceof Error ? error.message : String(error);
    }
  } finally {
    answer.classList.remove("streaming");
    if (controller.signal.aborted && !answer.textContent) answer.textContent = "(stopped)";
    chat = undefined;
    $("stop").hidden = true;
    updateSendState();
  }
}

function setUpPlayground() {
  $("chat").addEventListener("submit", sendChat);
  $("stop").addEventListener("click", () => chat?.controller.abort());
  $("model").addEventListener("change", updateSendState);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat").requestSubmit();
    }
  });
  updateSendState();
}

setUpKeyDialog();
setUpPlayground();
follow();
