// Model commands fenced by the planner's epoch (docs/scaling.md, Fencing). Seen from a real worker joined to two
// hand-written heads: a command older than the highest epoch seen is not obeyed and is answered, on its own head only,
// with the model's actual state; an idle unload waits for the model's tasks on every head; and heartbeats tell how
// each model is used. Seen from a real coordinator and hand-written workers: the head that leads at an epoch says so
// to each worker that fences, and stamps its model commands with it.
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { silentLogger } from "../src/log.js";
import { SimulatorEngine, defaultSimulatorOptions } from "../src/worker/engines/simulator.js";
import type { SimulatedModel } from "../src/worker/engines/simulated-library.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { FEATURES, NOT_OBEYED } from "../src/worker-protocol/index.js";
import { eventually, startTestCoordinator, TEST_TOKEN } from "./support/cluster.js";
import { FakeHead } from "./support/fake-head.js";
import { HandWorker, type Message } from "./support/hand-worker.js";

const GiB = 2 ** 30;
const LIBRARY: SimulatedModel[] = [
  { id: "small", sizeBytes: GiB, loadMs: 0 },
  { id: "slow", sizeBytes: GiB, loadMs: 1_500 },
];
const FENCED = [FEATURES.models, FEATURES.epoch, FEATURES.refuse];

let runtime: WorkerRuntime | undefined;
let engine: SimulatorEngine | undefined;
const heads: FakeHead[] = [];
let coordinator: RunningCoordinator | undefined;
const handWorkers: HandWorker[] = [];

afterEach(async () => {
  await runtime?.stop();
  for (const head of heads.splice(0)) await head.close();
  for (const worker of handWorkers.splice(0)) await worker.close();
  await coordinator?.close();
  runtime = engine = coordinator = undefined;
});

/** A simulator worker with a library, joined to each head (a slow generator: a task runs until it is cancelled). */
async function joinHeads(...joined: FakeHead[]): Promise<void> {
  engine = new SimulatorEngine([], { ...defaultSimulatorOptions, prefillMs: 0, tokensPerSecond: 20, replyTokens: 2_000, library: LIBRARY, memoryBytes: 8 * GiB });
  runtime = new WorkerRuntime(engine, await engine.start(), {
    join: joined.map((head) => head.url).join(","),
    token: TEST_TOKEN,
    name: "fenced-worker",
    maxConcurrency: 4,
    reconnect: false,
    log: silentLogger,
  });
  await runtime.start();
}

async function startHeads(count: number, options: { takes?: readonly string[]; heartbeatIntervalMs?: number } = {}): Promise<FakeHead[]> {
  for (let i = 0; i < count; i++) heads.push(await FakeHead.start({ takes: options.takes ?? FENCED, ...(options.heartbeatIntervalMs && { heartbeatIntervalMs: options.heartbeatIntervalMs }) }));
  return heads;
}

function statusesOf(head: FakeHead, model: string) {
  return head.all("ModelStatus").filter((status) => status.model === model);
}

/** Assigns a task of `model` through `head` and waits for its first token: it then runs until cancelled. */
async function runTask(head: FakeHead, taskId: string, model: string): Promise<void> {
  head.send({ type: "TaskAssigned", taskId, model, messages: [{ role: "user", content: "hi" }], params: {} });
  await head.next("TokenChunk", (chunk) => chunk.taskId === taskId);
}

async function cancelTask(head: FakeHead, taskId: string): Promise<void> {
  head.send({ type: "TaskCancelled", taskId, reason: "test" });
  await head.next("TaskCancelAck", (ack) => ack.taskId === taskId);
}

describe("epoch fencing on a worker joined to two heads", () => {
  it("answers a command older than the highest epoch on its own head with the actual state, and obeys newer ones and those without epoch", async () => {
    // Given a worker joined to heads A and B, both taking up the epoch feature
    const [a, b] = (await startHeads(2)) as [FakeHead, FakeHead];
    await joinHeads(a, b);
    expect(a.all("Hello")[0]?.features).toContain(FEATURES.epoch);

    // When A leads at epoch 2 (a stale command right after it on A shows the Leader was read), and B sends a load at epoch 1
    a.send({ type: "Leader", epoch: 2 });
    a.send({ type: "UnloadModel", model: "small", epoch: 1 });
    const onA = await a.next("ModelStatus", (s) => s.model === "small");
    expect(onA).toMatchObject({ state: "unloaded", error: { code: NOT_OBEYED.staleEpoch } });
    b.send({ type: "LoadModel", model: "small", epoch: 1 });

    // Then B alone hears it was not obeyed, with the model's actual state, and nothing is loaded
    const stale = await b.next("ModelStatus", (s) => s.model === "small");
    expect(stale).toMatchObject({ state: "unloaded", error: { code: NOT_OBEYED.staleEpoch } });
    expect(stale.memory).toEqual({ totalBytes: 8 * GiB, freeBytes: 8 * GiB });
    expect(statusesOf(a, "small")).toHaveLength(1);
    expect(engine?.library?.isLoaded("small")).toBe(false);

    // When B sends it again at the leader's epoch: it is obeyed, and every head hears of the load
    b.send({ type: "LoadModel", model: "small", epoch: 2 });
    await b.next("ModelStatus", (s) => s.model === "small" && s.state === "loaded");
    await a.next("ModelStatus", (s) => s.model === "small" && s.state === "loaded");
    expect(engine?.library?.isLoaded("small")).toBe(true);

    // A stale unload of a loaded model is answered "loaded", with the model as served, and it stays loaded
    const before = b.received.length;
    a.send({ type: "LoadModel", model: "slow", epoch: 3 });
    await b.next("ModelStatus", (s) => s.model === "slow" && s.state === "loading");
    b.send({ type: "UnloadModel", model: "small", epoch: 2, reason: "idle" });
    const loaded = await b.next("ModelStatus", (s) => s.model === "small", before);
    expect(loaded).toMatchObject({ state: "loaded", info: { id: "small" }, error: { code: NOT_OBEYED.staleEpoch } });
    expect(engine?.library?.isLoaded("small")).toBe(true);

    // A stale command about a model being loaded says so, with its progress
    b.send({ type: "UnloadModel", model: "slow", epoch: 2 });
    const loading = await b.next("ModelStatus", (s) => s.model === "slow" && s.error !== undefined);
    expect(loading).toMatchObject({ state: "loading", error: { code: NOT_OBEYED.staleEpoch } });
    expect(loading.progress).toBeGreaterThanOrEqual(0);
    await a.next("ModelStatus", (s) => s.model === "slow" && s.state === "loaded");

    // A Leader older than the highest epoch is ignored: epoch 2 stays stale
    const mark = b.received.length;
    b.send({ type: "Leader", epoch: 1 });
    b.send({ type: "UnloadModel", model: "slow", epoch: 2 });
    expect(await b.next("ModelStatus", (s) => s.model === "slow" && s.error !== undefined, mark)).toMatchObject({ state: "loaded", error: { code: NOT_OBEYED.staleEpoch } });

    // A command without epoch is obeyed only by a worker joined to one head: with two, heads that share no planner
    // lease could each plan on it, so it is answered "unfenced" with the actual state, and not obeyed
    const unfencedMark = b.received.length;
    b.send({ type: "UnloadModel", model: "slow" });
    expect(await b.next("ModelStatus", (s) => s.model === "slow" && s.error !== undefined, unfencedMark)).toMatchObject({ state: "loaded", error: { code: NOT_OBEYED.unfenced } });
    expect(engine?.library?.isLoaded("slow")).toBe(true);
    b.send({ type: "UnloadModel", model: "slow", epoch: 3 });
    await a.next("ModelStatus", (s) => s.model === "slow" && s.state === "unloaded" && s.error === undefined);
    expect(engine?.library?.isLoaded("slow")).toBe(false);
    // The answers not obeyed went to the head that sent the command only
    expect(statusesOf(a, "small").filter((s) => s.error !== undefined)).toHaveLength(1);
    expect(statusesOf(a, "slow").filter((s) => s.error !== undefined)).toHaveLength(0);
  });

  it("keeps a model whose task runs on another head when told to unload it if idle, and unloads it once idle", async () => {
    // Given "small" loaded, and a task of it running through head B
    const [a, b] = (await startHeads(2)) as [FakeHead, FakeHead];
    await joinHeads(a, b);
    a.send({ type: "LoadModel", model: "small", epoch: 1 });
    await a.next("ModelStatus", (s) => s.model === "small" && s.state === "loaded");
    await runTask(b, "t1", "small");

    // When head A unloads it if idle
    a.send({ type: "UnloadModel", model: "small", reason: "idle", ifIdle: true, epoch: 1 });

    // Then A hears it stays loaded, in use; B hears nothing of it; and the task goes on
    const answer = await a.next("ModelStatus", (s) => s.model === "small" && s.error !== undefined);
    expect(answer).toMatchObject({ state: "loaded", info: { id: "small" }, error: { code: NOT_OBEYED.inUse } });
    expect(answer.memory?.freeBytes).toBe(7 * GiB);
    expect(statusesOf(b, "small").some((s) => s.error !== undefined)).toBe(false);
    const chunks = b.all("TokenChunk").length;
    await b.next("TokenChunk", () => true, b.received.length);
    expect(b.all("TokenChunk").length).toBeGreaterThan(chunks);
    expect(b.all("TaskCancelAck")).toHaveLength(0);

    // When the task ends and A asks again, the model is unloaded
    await cancelTask(b, "t1");
    a.send({ type: "UnloadModel", model: "small", reason: "idle", ifIdle: true, epoch: 1 });
    await a.next("ModelStatus", (s) => s.model === "small" && s.state === "unloaded");
    expect(engine?.library?.isLoaded("small")).toBe(false);
  });

  it("tells heads that took up the epoch feature, in each heartbeat, how each model is used over all heads", async () => {
    // Given head A with the epoch feature and head B without, both asking for frequent heartbeats
    const [a] = (await startHeads(1, { heartbeatIntervalMs: 40 })) as [FakeHead];
    const [, b] = (await startHeads(1, { takes: [FEATURES.models, FEATURES.refuse], heartbeatIntervalMs: 40 })) as [FakeHead, FakeHead];
    await joinHeads(a, b);
    a.send({ type: "LoadModel", model: "small", epoch: 1 });
    await a.next("ModelStatus", (s) => s.model === "small" && s.state === "loaded");

    // Then A hears it idle
    const idle = await a.next("Heartbeat", (h) => h.models?.some((m) => m.id === "small") ?? false);
    expect(idle.models).toEqual([{ id: "small", running: 0, idleMs: expect.any(Number) }]);

    // When B runs two tasks of it, A hears them running (and no idle time)
    await runTask(b, "t1", "small");
    await runTask(b, "t2", "small");
    const busy = await a.next("Heartbeat", (h) => h.models?.[0]?.running === 2);
    expect(busy.models).toEqual([{ id: "small", running: 2, idleMs: 0 }]);

    // When they end, the model is idle again since then, and its idle time grows
    await cancelTask(b, "t1");
    await cancelTask(b, "t2");
    const endedAt = Date.now();
    const mark = a.received.length;
    const after = await a.next("Heartbeat", (h) => h.models?.[0]?.running === 0, mark);
    expect(after.models?.[0]?.idleMs).toBeLessThan(1_000);
    await eventually(() => (a.all("Heartbeat").at(-1)?.models?.[0]?.idleMs ?? 0) >= 200, "idle time growing");
    expect(a.all("Heartbeat").at(-1)?.models?.[0]?.idleMs).toBeLessThanOrEqual(Date.now() - endedAt + 50);

    // And B, which did not take up the feature, hears no usage
    expect(b.all("Heartbeat").length).toBeGreaterThan(0);
    expect(b.all("Heartbeat").every((h) => h.models === undefined)).toBe(true);
  });
});

/** A worker written by hand with a library of one model, offering `features`; resolves once welcomed. */
async function handLibraryWorker(features: string[]): Promise<{ worker: HandWorker; welcome: Message }> {
  if (!coordinator) throw new Error("no coordinator");
  const worker = await HandWorker.connect(coordinator.workerUrl);
  handWorkers.push(worker);
  const library = [{ id: `lib-${worker.name}`, sizeBytes: GiB, memoryBytes: GiB, contextLength: 4096 }];
  worker.send({ ...worker.hello({ features }), models: [], library, memory: { totalBytes: 8 * GiB, freeBytes: 8 * GiB } });
  const welcome = await worker.take("Welcome");
  worker.startHeartbeats(Number(welcome.heartbeatIntervalMs));
  return { worker, welcome };
}

async function place(model: string): Promise<number> {
  if (!coordinator) throw new Error("no coordinator");
  const response = await fetch(`${coordinator.url}/v1/placements`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model }) });
  return response.status;
}

describe("a head that leads at an epoch", () => {
  it("tells a worker that fences its epoch right after Welcome, stamps its model commands with it, and tells it a new one", async () => {
    // Given a coordinator whose master leads at epoch 5
    coordinator = await startTestCoordinator();
    coordinator.master.setLeaderEpoch(5);

    // When a worker offering the models and epoch features joins
    const { worker, welcome } = await handLibraryWorker([FEATURES.models, FEATURES.epoch, FEATURES.refuse]);

    // Then it takes the feature up, and the next message is the Leader notice
    expect(welcome.features).toEqual([FEATURES.models, FEATURES.refuse, FEATURES.epoch]);
    const welcomeAt = worker.received.indexOf(welcome);
    expect(worker.received[welcomeAt + 1]).toEqual({ type: "Leader", epoch: 5 });

    // And a placement's LoadModel carries the epoch
    const model = `lib-${worker.name}`;
    expect(await place(model)).toBe(201);
    expect(await worker.take("LoadModel")).toEqual({ type: "LoadModel", model, epoch: 5 });

    // And a new epoch reaches it at once, and stamps the next command (an admin's unload)
    worker.send({ type: "ModelStatus", model, state: "loaded", info: { id: model, contextLength: 4096 } });
    await eventually(() => coordinator?.master.isServed(model) ?? false, "the model served");
    coordinator.master.setLeaderEpoch(6);
    expect(await worker.take("Leader")).toEqual({ type: "Leader", epoch: 6 });
    const placements = (await (await fetch(`${coordinator.url}/v1/placements`)).json()) as { data: Array<{ id: string }> };
    await fetch(`${coordinator.url}/v1/placements/${placements.data[0]?.id}`, { method: "DELETE" });
    expect(await worker.take("UnloadModel")).toMatchObject({ type: "UnloadModel", model, epoch: 6 });
  });

  it("sends no Leader and no epoch to a worker that does not offer the feature, and keeps what a heartbeat says of model usage", async () => {
    // Given a coordinator leading at epoch 5, and a library worker that does not fence
    coordinator = await startTestCoordinator();
    coordinator.master.setLeaderEpoch(5);
    const { worker, welcome } = await handLibraryWorker([FEATURES.models, FEATURES.refuse]);
    expect(welcome.features).toEqual([FEATURES.models, FEATURES.refuse]);

    // When a placement loads its model, and the epoch changes
    const model = `lib-${worker.name}`;
    expect(await place(model)).toBe(201);
    const load = await worker.take("LoadModel");
    coordinator.master.setLeaderEpoch(6);

    // Then the command has no epoch, and no Leader ever came
    expect(load).toEqual({ type: "LoadModel", model });
    worker.send({ type: "Heartbeat", at: Date.now(), running: 0, models: [{ id: model, running: 0, idleMs: 10 }] });
    const usage = () => coordinator?.master.registry.get(String(welcome.workerId))?.modelUsage;
    await eventually(() => usage()?.length === 1, "the heartbeat read");
    expect(usage()).toEqual([{ id: model, running: 0, idleMs: 10 }]);
    expect(worker.received.some((m) => m.type === "Leader")).toBe(false);
    expect(worker.protocolError).toBeUndefined();
  });
});
