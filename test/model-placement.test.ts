// The master places models: simulator workers offer a library within a memory limit; requests load models on
// demand, idle ones are unloaded or evicted, explicit placements pin them, and failures reach the waiting clients.
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import type { SimulatedModel } from "../src/worker/engines/simulated-library.js";
import type { ModelState } from "../src/worker-protocol/index.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { startWireTap, type WireTap } from "./support/wire-tap.js";

const GiB = 2 ** 30;

let coordinator: RunningCoordinator | undefined;
const workers: TestWorker[] = [];

/** Each worker's wire tap, between it and the coordinator. */
const taps = new Map<TestWorker, WireTap>();

afterEach(async () => {
  for (const worker of workers.splice(0)) await worker.stop();
  for (const tap of taps.values()) await tap.close();
  taps.clear();
  await coordinator?.close();
  coordinator = undefined;
});

/** A simulator worker with a library, joined through a wire tap (see statusesOf). */
async function libraryWorker(library: SimulatedModel[], memoryBytes: number, extra: Parameters<typeof startSimWorker>[1] = {}): Promise<TestWorker> {
  if (!coordinator) throw new Error("no coordinator");
  const tap = await startWireTap(coordinator.workerUrl);
  const worker = await startSimWorker({ workerUrl: tap.url }, { library, memoryBytes, tokensPerSecond: 0, ...extra });
  workers.push(worker);
  taps.set(worker, tap);
  return worker;
}

/** Every ModelStatus the worker has sent so far, in order, as its wire tap saw them. */
function statusesOf(worker: TestWorker): Array<{ model: string; state: ModelState }> {
  return (taps.get(worker)?.messages ?? []).flatMap(({ from, message }) =>
    from === "worker" && message.type === "ModelStatus" ? [{ model: message.model, state: message.state }] : [],
  );
}

function slotState(workerId: string, model: string): string | undefined {
  return coordinator?.master.placer.state.workers.get(workerId)?.slots.get(model)?.state;
}

/** The error a request for `model` fails with (undefined if it is answered). */
async function refusal(model: string): Promise<unknown> {
  return ask(model).then(
    () => undefined,
    (error: unknown) => error,
  );
}

async function ask(model: string, content = "hello"): Promise<string> {
  if (!coordinator) throw new Error("no coordinator");
  const reply = await openaiClient(coordinator).chat.completions.create({ model, messages: [{ role: "user", content }] });
  return reply.choices[0]?.message.content ?? "";
}

describe("load on demand", () => {
  it("loads a model nobody has loaded when a request asks for it, and answers the request", async () => {
    coordinator = await startTestCoordinator();
    const worker = await libraryWorker([{ id: "small", sizeBytes: 1 * GiB, loadMs: 100 }], 8 * GiB);
    const models = await openaiClient(coordinator).models.list();
    expect(models.data.map((m) => m.id)).not.toContain("small");
    // Listed as loadable when asked, and by Ollama's /api/tags (which lists what could run, loaded or not).
    const loadable = (await (await fetch(`${coordinator.url}/v1/models?loadable=true`)).json()) as { data: unknown[] };
    expect(loadable.data).toContainEqual(
      expect.objectContaining({ id: "small", loaded: false, loadable_on: [{ worker: { id: worker.id, name: expect.any(String) }, memory_bytes: 1 * GiB, size_bytes: 1 * GiB }] }),
    );
    const tags = (await (await fetch(`${coordinator.url}/api/tags`)).json()) as { models: unknown[] };
    expect(tags.models).toContainEqual(expect.objectContaining({ name: "small", size: 1 * GiB }));

    const text = await ask("small");
    expect(text).toContain("simulated model");
    expect(statusesOf(worker).map((s) => s.state)).toEqual(expect.arrayContaining(["loading", "loaded"]));
    expect(slotState(worker.id, "small")).toBe("loaded");
    const after = await openaiClient(coordinator).models.list();
    expect(after.data.map((m) => m.id)).toContain("small");
  });

  it("unloads the idle model to make room when memory holds only one", async () => {
    coordinator = await startTestCoordinator();
    const worker = await libraryWorker(
      [
        { id: "first", sizeBytes: 6 * GiB, loadMs: 20 },
        { id: "second", sizeBytes: 6 * GiB, loadMs: 20 },
      ],
      8 * GiB,
    );
    await ask("first");
    expect(slotState(worker.id, "first")).toBe("loaded");

    await ask("second");
    expect(slotState(worker.id, "second")).toBe("loaded");
    await eventually(() => slotState(worker.id, "first") === undefined, "first unloaded");
    const first = statusesOf(worker).filter((s) => s.model === "first").map((s) => s.state);
    expect(first).toEqual(["loading", "loaded", "unloading", "unloaded"]);
    expect(worker.engine.library?.memory().freeBytes).toBe(2 * GiB);

    // What operators see: the worker's memory and models in /v1/cluster, the loads and the eviction in /metrics.
    const cluster = (await (await fetch(`${coordinator.url}/v1/cluster`)).json()) as { workers: Array<{ id: string; placement: unknown }> };
    expect(cluster.workers.find((w) => w.id === worker.id)?.placement).toMatchObject({
      memory: { totalBytes: 8 * GiB, usedBytes: 6 * GiB, freeBytes: 2 * GiB },
      library: [{ id: "first" }, { id: "second" }],
      models: [{ id: "second", state: "loaded", progress: 1, memoryBytes: 6 * GiB, pinned: null }],
    });
    const metrics = await (await fetch(`${coordinator.url}/metrics`)).text();
    const name = coordinator.master.registry.get(worker.id)?.name ?? "";
    expect(metrics).toContain(`coordinator_model_loads_total{model="second",worker="${name}",outcome="loaded"} 1`);
    expect(metrics).toContain(`coordinator_model_unloads_total{model="first",worker="${name}",cause="evicted"} 1`);
    expect(metrics).toContain(`coordinator_worker_memory_bytes{worker="${name}",kind="used"} ${6 * GiB}`);
    expect(metrics).toMatch(/coordinator_model_load_seconds_count\{model="first",outcome="loaded"\} 1/);
  });

  it("never evicts a model with work in flight: the other request waits until it is idle", async () => {
    coordinator = await startTestCoordinator();
    const worker = await libraryWorker(
      [
        { id: "busy", sizeBytes: 6 * GiB, loadMs: 0 },
        { id: "other", sizeBytes: 6 * GiB, loadMs: 0 },
      ],
      8 * GiB,
      { tokensPerSecond: 40, replyTokens: 40 },
    );
    const client = openaiClient(coordinator);
    const long = client.chat.completions.create({ model: "busy", messages: [{ role: "user", content: "long one" }] });
    await eventually(() => worker.log.started.length === 1, "the long task started");
    const waiting = client.chat.completions.create({ model: "other", messages: [{ role: "user", content: "after" }] });
    await eventually(() => coordinator?.master.liveTasks === 2, "the second request waits");
    // While the first runs, its model stays loaded and the second's is not loaded.
    expect(slotState(worker.id, "busy")).toBe("loaded");
    expect(slotState(worker.id, "other")).toBeUndefined();

    const first = await long;
    expect(first.choices[0]?.finish_reason).toBe("stop");
    const second = await waiting;
    expect(second.choices[0]?.message.content).toContain("after");
    expect(slotState(worker.id, "busy")).toBeUndefined();
  });

  it("fails the waiting requests with a clear 503 when the load fails on the worker", async () => {
    coordinator = await startTestCoordinator();
    await libraryWorker([{ id: "broken", sizeBytes: 1 * GiB, loadMs: 20, failWith: "the GGUF file is truncated" }], 8 * GiB);
    const error = await refusal("broken");
    expect(error).toMatchObject({ status: 503, code: "model_load_failed" });
    expect(String((error as Error).message)).toContain("the GGUF file is truncated");
    expect(coordinator.master.liveTasks).toBe(0);
  });

  it("waits for a load longer than --queue-timeout-ms, and gives a load up after --model-load-timeout-ms", async () => {
    coordinator = await startTestCoordinator({ queueTimeoutMs: 150, modelLoadTimeoutMs: 1_500 });
    await libraryWorker(
      [
        { id: "patient", sizeBytes: 1 * GiB, loadMs: 600 },
        { id: "stuck", sizeBytes: 1 * GiB, loadMs: 60_000 },
      ],
      8 * GiB,
    );
    expect(await ask("patient")).toContain("simulated");
    const error = await refusal("stuck");
    expect(error).toMatchObject({ status: 503, code: "model_load_failed" });
    expect(String((error as Error).message)).toContain("did not finish within 2 s");
  });

  it("refuses at once with a 503 when no worker has the memory for the model", async () => {
    coordinator = await startTestCoordinator();
    await libraryWorker([{ id: "huge", sizeBytes: 64 * GiB, loadMs: 0 }], 8 * GiB);
    const error = await refusal("huge");
    expect(error).toMatchObject({ status: 503, code: "model_load_failed" });
    expect(String((error as Error).message)).toContain("memory");
  });

  it("gives the load up when its only waiting client leaves", async () => {
    coordinator = await startTestCoordinator();
    const worker = await libraryWorker([{ id: "slow", sizeBytes: 1 * GiB, loadMs: 3_000 }], 8 * GiB);
    const controller = new AbortController();
    const request = openaiClient(coordinator).chat.completions.create(
      { model: "slow", messages: [{ role: "user", content: "hi" }], stream: true },
      { signal: controller.signal },
    );
    const settled = request.then(
      async (stream) => {
        for await (const _ of stream) void _;
      },
      () => undefined,
    );
    await eventually(() => slotState(worker.id, "slow") === "loading", "the load started");
    controller.abort();
    await settled.catch(() => undefined);
    await eventually(() => statusesOf(worker).some((s) => s.model === "slow" && s.state === "unloaded"), "the worker gave the load up");
    expect(statusesOf(worker).some((s) => s.state === "loaded")).toBe(false);
    await eventually(() => slotState(worker.id, "slow") === undefined, "the master forgot the load");
    expect(worker.engine.library?.memory().freeBytes).toBe(8 * GiB);
    await eventually(() => coordinator?.master.liveTasks === 0, "no task left");
  });

  it("unloads a model idle past --model-idle-ms, and a request loads it again", async () => {
    coordinator = await startTestCoordinator({ modelIdleMs: 200 });
    const worker = await libraryWorker([{ id: "nap", sizeBytes: 1 * GiB, loadMs: 0 }], 8 * GiB);
    await ask("nap");
    await eventually(() => slotState(worker.id, "nap") === undefined, "unloaded when idle", 5_000);
    expect(await ask("nap", "again")).toContain("again");
  });

  it("does not load on demand with --no-auto-load: the model is unknown until placed", async () => {
    coordinator = await startTestCoordinator({ noAutoLoad: true });
    await libraryWorker([{ id: "manual", sizeBytes: 1 * GiB, loadMs: 0 }], 8 * GiB);
    const error = await refusal("manual");
    expect(error).toMatchObject({ status: 404 });
  });
});

describe("keep_alive (Ollama)", () => {
  async function ollamaChat(body: Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown> }> {
    if (!coordinator) throw new Error("no coordinator");
    const response = await fetch(`${coordinator.url}/api/chat`, { method: "POST", body: JSON.stringify({ stream: false, messages: [{ role: "user", content: "hi" }], ...body }) });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  it("unloads at once after keep_alive 0, keeps for ever with -1, and refuses a malformed one", async () => {
    coordinator = await startTestCoordinator({ modelIdleMs: 150 });
    const worker = await libraryWorker(
      [
        { id: "brief", sizeBytes: 1 * GiB, loadMs: 0 },
        { id: "forever", sizeBytes: 1 * GiB, loadMs: 0 },
      ],
      8 * GiB,
    );
    expect((await ollamaChat({ model: "forever", keep_alive: -1 })).status).toBe(200);
    expect((await ollamaChat({ model: "brief", keep_alive: "0s" })).status).toBe(200);
    await eventually(() => slotState(worker.id, "brief") === undefined, "brief unloaded at once");
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(slotState(worker.id, "forever")).toBe("loaded");
    const bad = await ollamaChat({ model: "forever", keep_alive: "five minutes" });
    expect(bad.status).toBe(400);
    expect(String(bad.body.error)).toContain("keep_alive");
  });
});

describe("Ollama's requests with nothing to generate", () => {
  it("preloads on an empty prompt and unloads on keep_alive 0, as ollama run and ollama stop do", async () => {
    coordinator = await startTestCoordinator();
    const worker = await libraryWorker([{ id: "warm", sizeBytes: 1 * GiB, loadMs: 200 }], 8 * GiB);
    const post = async (path: string, body: Record<string, unknown>) => {
      const response = await fetch(`${coordinator?.url}${path}`, { method: "POST", body: JSON.stringify(body) });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    const loaded = await post("/api/generate", { model: "warm", prompt: "" });
    expect(loaded).toMatchObject({ status: 200, body: { model: "warm", response: "", done: true, done_reason: "load" } });
    expect(slotState(worker.id, "warm")).toBe("loaded");
    const unloaded = await post("/api/chat", { model: "warm", messages: [], keep_alive: 0 });
    expect(unloaded).toMatchObject({ status: 200, body: { done: true, done_reason: "unload" } });
    await eventually(() => slotState(worker.id, "warm") === undefined, "unloaded");
    expect((await post("/api/generate", { model: "nothing-like-it", prompt: "" })).status).toBe(404);
  });
});

describe("replicas (--max-replicas)", () => {
  it("loads another instance when the queue stays deep, and both go when idle", async () => {
    coordinator = await startTestCoordinator({ maxReplicas: 2, replicaAfterMs: 100, modelIdleMs: 400 });
    const slow = { tokensPerSecond: 40, replyTokens: 40, maxConcurrency: 1 };
    const first = await libraryWorker([{ id: "popular", sizeBytes: 1 * GiB, loadMs: 0 }], 8 * GiB, { ...slow, name: "first" });
    const second = await libraryWorker([{ id: "popular", sizeBytes: 1 * GiB, loadMs: 0 }], 4 * GiB, { ...slow, name: "second" });
    const replies = await Promise.all(Array.from({ length: 5 }, (_, i) => ask("popular", `request ${i}`)));
    expect(replies.every((text) => text.includes("simulated"))).toBe(true);
    // The first instance went to the roomier worker; the queue stayed deep, so the other loaded one too and served.
    expect(first.log.started.length).toBeGreaterThan(0);
    expect(second.log.started.length).toBeGreaterThan(0);
    await eventually(() => slotState(first.id, "popular") === undefined && slotState(second.id, "popular") === undefined, "both unloaded when idle", 5_000);
  });

  it("never adds one with the default --max-replicas 1", async () => {
    coordinator = await startTestCoordinator({ replicaAfterMs: 50 });
    const slow = { tokensPerSecond: 40, replyTokens: 20, maxConcurrency: 1 };
    const first = await libraryWorker([{ id: "single", sizeBytes: 1 * GiB, loadMs: 0 }], 8 * GiB, slow);
    const second = await libraryWorker([{ id: "single", sizeBytes: 1 * GiB, loadMs: 0 }], 4 * GiB, slow);
    await Promise.all(Array.from({ length: 3 }, (_, i) => ask("single", `request ${i}`)));
    expect(first.log.started.length).toBe(3);
    expect(second.log.started.length).toBe(0);
  });
});

describe("workers coming and going", () => {
  it("makes a model loadable as soon as a worker offering it joins, or adds it to its library", async () => {
    coordinator = await startTestCoordinator();
    await expect(ask("late")).rejects.toMatchObject({ status: 404 });
    const worker = await libraryWorker([{ id: "late", sizeBytes: 1 * GiB, loadMs: 0 }], 8 * GiB, { libraryScanMs: 50 });
    expect(await ask("late")).toContain("simulated");

    worker.engine.library?.add({ id: "dropped-in", sizeBytes: 1 * GiB, loadMs: 0 });
    await eventually(() => coordinator?.master.knowsModel("dropped-in") === true, "the new file is offered");
    expect(await ask("dropped-in")).toContain("simulated");
  });

  it("loads on another worker when the loading one leaves mid-load", async () => {
    coordinator = await startTestCoordinator();
    // The roomier worker is chosen first; it leaves while loading.
    const first = await libraryWorker([{ id: "shared", sizeBytes: 1 * GiB, loadMs: 5_000 }], 16 * GiB, { name: "roomy" });
    const second = await libraryWorker([{ id: "shared", sizeBytes: 1 * GiB, loadMs: 50 }], 8 * GiB, { name: "small" });
    const reply = ask("shared");
    await eventually(() => slotState(first.id, "shared") === "loading", "the first worker loads");
    await first.stop();
    expect(await reply).toContain("simulated");
    expect(slotState(second.id, "shared")).toBe("loaded");
  });
});

describe("explicit placements", () => {
  async function api(path: string, init: RequestInit & { key?: string } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
    if (!coordinator) throw new Error("no coordinator");
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (init.key) headers.authorization = `Bearer ${init.key}`;
    const response = await fetch(`${coordinator.url}${path}`, { ...init, headers });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  it("previews, places (pinned), lists and deletes a placement", async () => {
    coordinator = await startTestCoordinator({ modelIdleMs: 100 });
    const worker = await libraryWorker(
      [
        { id: "pinned", sizeBytes: 6 * GiB, loadMs: 20 },
        { id: "wanted", sizeBytes: 6 * GiB, loadMs: 0 },
      ],
      8 * GiB,
      { name: "box" },
    );
    const preview = await api("/v1/placements/previews?model=pinned");
    expect(preview.status).toBe(200);
    expect(preview.body.data).toEqual([
      { worker: { id: worker.id, name: "box" }, fits: true, memory_needed_bytes: 6 * GiB, memory_free_bytes: 8 * GiB, would_unload: [], running_tasks: 0 },
    ]);

    const placed = await api("/v1/placements", { method: "POST", body: JSON.stringify({ model: "pinned" }) });
    expect(placed.status).toBe(201);
    const id = placed.body.id as string;
    await eventually(() => slotState(worker.id, "pinned") === "loaded", "the placement loaded");
    const listed = await api("/v1/placements");
    expect(listed.body.data).toMatchObject([{ id, model: "pinned", instances: [{ worker: { name: "box" }, state: "loaded", progress: 1 }] }]);
    // Loaded once per worker: another context length needs it unloaded first, and says so.
    const resized = await api("/v1/placements", { method: "POST", body: JSON.stringify({ model: "pinned", context_length: 1234 }) });
    expect(resized).toMatchObject({
      status: 409,
      body: { error: { code: "placement_conflict", message: expect.stringMatching(/already loaded on 'box' with context_length \d+, not 1234/) } },
    });

    // Pinned: neither idleness nor another model's demand unloads it.
    await ask("pinned");
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(slotState(worker.id, "pinned")).toBe("loaded");
    await expect(ask("wanted")).rejects.toMatchObject({ status: 503, code: "model_load_failed" });
    expect(slotState(worker.id, "pinned")).toBe("loaded");

    const deleted = await api(`/v1/placements/${id}`, { method: "DELETE" });
    expect(deleted).toMatchObject({ status: 200, body: { id, deleted: true } });
    await eventually(() => slotState(worker.id, "pinned") === undefined, "unloaded once unplaced");
    expect(await ask("wanted")).toContain("simulated");
    expect((await api(`/v1/placements/${id}`, { method: "DELETE" })).status).toBe(404);
  });

  it("unloads an idle model on an admin's word, and refuses pinned or unknown ones", async () => {
    coordinator = await startTestCoordinator();
    const worker = await libraryWorker([{ id: "idle", sizeBytes: 1 * GiB, loadMs: 0 }, { id: "kept", sizeBytes: 1 * GiB, loadMs: 0 }], 8 * GiB, { name: "unit", models: ["started"] });
    await ask("idle");
    expect((await api("/v1/models/unload", { method: "POST", body: JSON.stringify({ model: "idle", worker: "unit" }) })).status).toBe(200);
    await eventually(() => slotState(worker.id, "idle") === undefined, "unloaded");
    const pinned = await api("/v1/models/unload", { method: "POST", body: JSON.stringify({ model: "started", worker: "unit" }) });
    expect(pinned).toMatchObject({ status: 409, body: { error: { code: "placement_conflict" } } });
    const missing = await api("/v1/models/unload", { method: "POST", body: JSON.stringify({ model: "kept", worker: "unit" }) });
    expect(missing.status).toBe(404);
  });

  it("refuses placements it cannot make with a clear error", async () => {
    coordinator = await startTestCoordinator();
    await libraryWorker([{ id: "big", sizeBytes: 12 * GiB, loadMs: 0 }], 8 * GiB);
    const tooBig = await api("/v1/placements", { method: "POST", body: JSON.stringify({ model: "big" }) });
    expect(tooBig.status).toBe(409);
    const unknown = await api("/v1/placements", { method: "POST", body: JSON.stringify({ model: "nope" }) });
    expect(unknown.status).toBe(404);
    const typo = await api("/v1/placements", { method: "POST", body: JSON.stringify({ model: "big", replica: 2 }) });
    expect(typo).toMatchObject({ status: 400, body: { error: { code: "unsupported_parameter", param: "replica" } } });
  });

  it("takes admin keys on placements and refuses client keys there", async () => {
    coordinator = await startTestCoordinator({ apiKey: ["client-key-123"], adminKey: ["admin-key-456"] });
    await libraryWorker([{ id: "m", sizeBytes: 1 * GiB, loadMs: 0 }], 8 * GiB);
    const body = JSON.stringify({ model: "m" });
    expect((await api("/v1/placements", { method: "POST", body })).status).toBe(401);
    const client = await api("/v1/placements", { method: "POST", body, key: "client-key-123" });
    expect(client).toMatchObject({ status: 403, body: { error: { code: "admin_key_required" } } });
    expect((await api("/v1/placements", { method: "POST", body, key: "admin-key-456" })).status).toBe(201);
    // An admin key is also good on the inference routes.
    const chat = await api("/v1/chat/completions", { method: "POST", body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }), key: "admin-key-456" });
    expect(chat.status).toBe(200);
  });

  it("turns admin actions off when there are client keys but no admin key", async () => {
    coordinator = await startTestCoordinator({ apiKey: ["client-key-123"] });
    const listed = await api("/v1/placements", { key: "client-key-123" });
    expect(listed).toMatchObject({ status: 403, body: { error: { code: "admin_disabled" } } });
  });
});
