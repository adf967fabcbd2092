// The master's one reducer as pure logic: each event changes the state and names what must follow; an event that no
// longer applies changes nothing; and over any sequence of events, slots, queues and live tasks stay consistent.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { apply, IGNORED } from "../src/master/cluster/apply.js";
import type { ClusterEffect, ClusterEvent } from "../src/master/cluster/events.js";
import { ClusterState } from "../src/master/cluster/state.js";
import { EngineError } from "../src/master/errors.js";
import { idleModels } from "../src/master/placement/planner.js";
import { WorkerEntry, type WorkerLink } from "../src/master/registry.js";
import { createPolicy } from "../src/master/routing/index.js";
import { Router } from "../src/master/routing/router.js";
import { Task } from "../src/master/task.js";

const link: WorkerLink = { send: () => {}, close: () => {}, isAlive: async () => true };

function cluster(): ClusterState {
  return new ClusterState(16, new Router({ policyOf: () => "least-loaded", create: (name) => createPolicy(name) }), 1024);
}

function worker(id: string, slots = 2, models = ["m"]): WorkerEntry {
  return new WorkerEntry(id, `name-${id}`, "test", { kind: "cpu", name: "cpu", memoryBytes: 0 }, models.map((m) => ({ id: m, contextLength: 1 })), slots, link);
}

function task(id: string, model = "m"): Task {
  return new Task(id, { model, messages: [], params: {} });
}

function chunk(text: string): { type: "chunk"; text: string; tokens: number; bytes: number } {
  return { type: "chunk", text, tokens: 1, bytes: text.length };
}

function types(effects: readonly ClusterEffect[]): string[] {
  return effects.map((e) => (e.type === "send" ? `send:${e.message.type}` : e.type));
}

/** Registers `w` and admits `t` assigned to it; returns the state. */
function running(t: Task, w: WorkerEntry): ClusterState {
  const state = cluster();
  apply(state, { type: "WorkerRegistered", worker: w, features: ["refuse"] });
  apply(state, { type: "TaskAdmitted", task: t });
  apply(state, { type: "TaskAssigned", task: t, worker: w, at: 1 });
  return state;
}

describe("apply: tasks", () => {
  it("assigns a task: it takes a slot, its deadline goes, and the worker is sent it; a second assignment is ignored", () => {
    const state = cluster();
    const w = worker("w1");
    const t = task("t1");
    apply(state, { type: "WorkerRegistered", worker: w, features: ["refuse"] });
    apply(state, { type: "TaskAdmitted", task: t });
    expect(types(apply(state, { type: "TaskQueued", task: t, from: undefined }))).toEqual(["queueDeadline"]);
    const effects = apply(state, { type: "TaskAssigned", task: t, worker: w, at: 5 });
    expect(types(effects)).toEqual(["clearQueueDeadline", "send:TaskAssigned"]);
    expect([t.state, t.workerId, t.attempts, t.assignedAt, state.queues.depth("m")]).toEqual(["assigned", "w1", 1, 5, 0]);
    expect([w.busy, w.unstarted]).toEqual([1, 1]);
    expect(apply(state, { type: "TaskAssigned", task: t, worker: w, at: 6 })).toBe(IGNORED);
    expect(w.busy).toBe(1);
  });

  it("streams from the first chunk, which alone frees the start slot and tells hearers; later chunks have no effects", () => {
    const w = worker("w1");
    const t = task("t1");
    const state = running(t, w);
    expect(types(apply(state, { type: "TaskChunk", task: t, worker: w, chunk: chunk("ab"), at: 7 }))).toEqual(["pumpWorker", "firstToken"]);
    expect([t.state, t.firstTokenAt, t.nextSeq, t.outstandingBytes, w.unstarted]).toEqual(["streaming", 7, 1, 2, 0]);
    expect(apply(state, { type: "TaskChunk", task: t, worker: w, chunk: chunk("cde"), at: 8 })).toEqual([]);
    expect([t.nextSeq, t.outstandingBytes, t.completionTokens, w.completionTokens, t.progressAt]).toEqual([2, 5, 2, 2, 8]);
  });

  it("grants consumed bytes back to the worker in batches", () => {
    const w = worker("w1");
    const t = task("t1");
    const state = running(t, w);
    apply(state, { type: "TaskChunk", task: t, worker: w, chunk: { ...chunk("x"), bytes: 2000 }, at: 2 });
    expect(apply(state, { type: "TaskConsumed", task: t, bytes: 1000 })).toEqual([]);
    const effects = apply(state, { type: "TaskConsumed", task: t, bytes: 1000 });
    expect(effects).toEqual([{ type: "send", workerId: "w1", message: { type: "TaskCredit", taskId: "t1", bytes: 2000 } }]);
    expect([t.outstandingBytes, t.ungrantedBytes]).toEqual([0, 0]);
  });

  it("cancels a running task: the worker is told to stop, and the slot stays taken until it acknowledges", () => {
    const w = worker("w1");
    const t = task("t1");
    const state = running(t, w);
    const effects = apply(state, { type: "TaskEnded", task: t, ending: { to: "cancelled", reason: "client gone", stage: "prefill" }, at: 9 });
    expect(types(effects)).toEqual(["clearQueueDeadline", "modelFreed", "send:TaskCancelled", "stopDeadline", "idle"]);
    expect([t.state, t.endedAt, state.tasks.size, w.slots.size, [...w.cancelling], w.busy]).toEqual(["cancelled", 9, 0, 0, [["t1", "m"]], 1]);
    expect(apply(state, { type: "TaskEnded", task: t, ending: { to: "failed", error: new EngineError("late") }, at: 10 })).toBe(IGNORED);
    expect(types(apply(state, { type: "StopSettled", taskId: "t1", worker: w }))).toEqual(["clearStopDeadline", "modelFreed", "pumpWorker"]);
    expect(w.busy).toBe(0);
    expect(apply(state, { type: "StopSettled", taskId: "t1", worker: w })).toBe(IGNORED);
  });

  it("ends a queued task: out of its queue, and a model nobody serves is abandoned", () => {
    const state = cluster();
    const t = task("t1", "unserved");
    apply(state, { type: "TaskAdmitted", task: t });
    apply(state, { type: "TaskQueued", task: t, from: undefined });
    const effects = apply(state, { type: "TaskEnded", task: t, ending: { to: "cancelled", reason: "gone", stage: "queued" }, at: 3 });
    expect(types(effects)).toEqual(["clearQueueDeadline", "abandoned", "idle"]);
    expect(state.queues.depth("unserved")).toBe(0);
  });

  it("takes a refused task back to the front of its queue, the attempt uncounted, the worker full until it is heard", () => {
    const w = worker("w1", 2);
    const t = task("t1");
    const state = running(t, w);
    expect(types(apply(state, { type: "TaskRefused", task: t, worker: w, reason: "no_slot" }))).toEqual(["queueDeadline", "pump"]);
    expect([t.state, t.workerId, t.attempts, w.busy, w.unstarted, w.hasCapacity, state.queues.peek("m")?.id]).toEqual(["queued", undefined, 0, 0, 0, false, "t1"]);
    expect(apply(state, { type: "TaskRefused", task: t, worker: w, reason: "no_slot" })).toBe(IGNORED);
    expect(types(apply(state, { type: "WorkerReported", worker: w, running: 1, cache: undefined, models: undefined, at: 0 }))).toEqual(["pumpWorker"]);
    expect(w.hasCapacity).toBe(true);
    expect(apply(state, { type: "WorkerReported", worker: w, running: 1, cache: undefined, models: undefined, at: 0 })).toEqual([]);
  });

  it("puts a task taken back from a lost worker at the front of its queue", () => {
    const w = worker("w1", 1);
    const t = task("t1");
    const state = running(t, w);
    const other = task("t2");
    apply(state, { type: "TaskAdmitted", task: other });
    apply(state, { type: "TaskQueued", task: other, from: undefined });
    apply(state, { type: "SlotReleased", task: t, worker: w, pump: false, at: 2 });
    apply(state, { type: "TaskQueued", task: t, from: w });
    expect([t.state, t.workerId, state.queues.peek("m")?.id]).toEqual(["queued", undefined, "t1"]);
  });
});

describe("apply: workers and models", () => {
  it("removes a worker once: its models are no longer served and its stop deadlines go", () => {
    const w = worker("w1");
    const t = task("t1");
    const state = running(t, w);
    apply(state, { type: "TaskStopping", taskId: "t1", worker: w, reason: "stalled", at: 2 });
    const effects = apply(state, { type: "WorkerRemoved", worker: w });
    expect(effects).toContainEqual({ type: "clearStopDeadline", workerId: "w1", taskId: "t1" });
    expect([state.workers.isServed("m"), w.cancelling.size]).toEqual([false, 0]);
    expect(apply(state, { type: "WorkerRemoved", worker: w })).toBe(IGNORED);
  });

  it("ejects a worker after repeated failures, says so once, and shares the ejection", () => {
    const state = cluster();
    const w = worker("w1");
    apply(state, { type: "WorkerRegistered", worker: w, features: ["refuse"] });
    const outcomes = [1, 2, 3, 4].map((at) => types(apply(state, { type: "WorkerHealth", worker: w, outcome: "failure", at, pump: true })));
    expect(outcomes).toEqual([[], [], ["healthChanged", "shareEjection"], []]);
    expect([w.health.state, w.hasCapacity]).toEqual(["ejected", false]);
  });

  it("ends the shared ejection when its probe succeeds, not when probation starts", () => {
    const state = cluster();
    const w = worker("w1");
    apply(state, { type: "WorkerRegistered", worker: w, features: ["refuse"] });
    for (const at of [1, 2, 3]) apply(state, { type: "WorkerHealth", worker: w, outcome: "failure", at, pump: true });
    const until = w.health.ejectedUntil;

    expect(types(apply(state, { type: "WorkerHealth", worker: w, outcome: "tick", at: until, pump: true }))).toEqual(["healthChanged", "pumpWorker"]);
    expect(types(apply(state, { type: "WorkerHealth", worker: w, outcome: "success", at: until + 1, pump: true }))).toEqual([
      "healthChanged",
      "clearEjection",
      "pumpWorker",
    ]);
    expect(w.health.state).toBe("healthy");
  });
});

describe("apply: ejections shared by heads", () => {
  it("takes the connected worker of that name out of rotation until the ejection's end, then its own probation follows", () => {
    const state = cluster();
    const w = worker("w1", 2);
    apply(state, { type: "WorkerRegistered", worker: w, features: ["refuse"] });

    const effects = apply(state, { type: "WorkerEjectionShared", name: "name-w1", until: 1_000, ejections: 2, at: 10 });

    expect(effects).toEqual([{ type: "healthChanged", worker: w }]);
    expect([w.health.state, w.health.ejectedUntil, w.health.ejections, w.hasCapacity]).toEqual(["ejected", 1_000, 2, false]);
    expect(types(apply(state, { type: "WorkerHealth", worker: w, outcome: "tick", at: 999, pump: true }))).toEqual([]);
    apply(state, { type: "WorkerHealth", worker: w, outcome: "tick", at: 1_000, pump: true });
    expect([w.health.state, w.capacity]).toEqual(["probation", 1]);
    // (a probe that fails here ejects it for longer, counting the ejections other heads made)
    expect(types(apply(state, { type: "WorkerHealth", worker: w, outcome: "failure", at: 1_001, pump: true }))).toEqual(["healthChanged", "shareEjection"]);
    expect([w.health.ejections, w.health.ejectedUntil]).toEqual([3, 1_001 + 120_000]);
  });

  it("ignores an ejection already over, one for a worker not connected, and one that ends before the worker's own", () => {
    const state = cluster();
    const w = worker("w1");
    apply(state, { type: "WorkerRegistered", worker: w, features: ["refuse"] });

    expect(apply(state, { type: "WorkerEjectionShared", name: "name-w1", until: 10, ejections: 1, at: 10 })).toBe(IGNORED);
    expect(apply(state, { type: "WorkerEjectionShared", name: "nobody", until: 1_000, ejections: 1, at: 10 })).toBe(IGNORED);
    expect(w.health.state).toBe("healthy");

    apply(state, { type: "WorkerEjectionShared", name: "name-w1", until: 5_000, ejections: 1, at: 10 });
    // (the head that wrote it applies it too: the same end changes nothing)
    expect(apply(state, { type: "WorkerEjectionShared", name: "name-w1", until: 5_000, ejections: 1, at: 11 })).toBe(IGNORED);
    expect(apply(state, { type: "WorkerEjectionShared", name: "name-w1", until: 2_000, ejections: 1, at: 12 })).toBe(IGNORED);
    expect(w.health.ejectedUntil).toBe(5_000);
    expect(types(apply(state, { type: "WorkerEjectionShared", name: "name-w1", until: 8_000, ejections: 2, at: 13 }))).toEqual(["healthChanged"]);
    expect([w.health.ejectedUntil, w.health.ejections]).toEqual([8_000, 2]);
  });

  it("registers a worker whose name has an ejection running already out of rotation: it is handed nothing", () => {
    const state = cluster();
    const t = task("t1");
    apply(state, { type: "TaskAdmitted", task: t });
    apply(state, { type: "TaskQueued", task: t, from: undefined });
    const w = worker("w1");

    const effects = apply(state, { type: "WorkerRegistered", worker: w, features: ["refuse"], ejection: { name: "name-w1", until: 9_000, ejections: 1 } });

    expect(types(effects)).toEqual(["healthChanged", "pumpWorker"]);
    expect([w.health.state, w.health.ejectedUntil, w.hasCapacity, state.workers.candidates("m")?.size]).toEqual(["ejected", 9_000, false, 1]);
    expect(state.router.pick(t, state.workers.candidates("m"))).toBeUndefined();
  });

  it("serves a model once its worker reports it loaded, and hands it waiting tasks", () => {
    const state = cluster();
    const w = worker("w1", 2, []);
    apply(state, { type: "WorkerRegistered", worker: w, features: ["models", "refuse"] });
    const library = [{ id: "big", sizeBytes: 10, memoryBytes: 10, contextLength: 8 }];
    apply(state, { type: "WorkerJoined", workerId: "w1", name: "name-w1", library, memory: { totalBytes: 100, freeBytes: 100 }, loaded: [], pulls: false, at: 0 });
    expect(types(apply(state, { type: "LoadStarted", workerId: "w1", model: "big", pin: undefined, at: 1 }))).toEqual(["send:LoadModel"]);
    expect(state.workers.isServed("big")).toBe(false);
    const status = { type: "ModelStatus" as const, model: "big", state: "loaded" as const, info: { id: "big", contextLength: 8 } };
    const effects = apply(state, { type: "StatusReported", workerId: "w1", status, at: 41 });
    expect(effects).toEqual([
      { type: "loaded", workerId: "w1", model: "big", loadMs: 40 },
      { type: "modelsChanged", worker: w },
      { type: "pump", model: "big" },
    ]);
    expect(state.workers.isServed("big")).toBe(true);
  });
});

describe("apply: model commands the worker did not obey", () => {
  const info = { id: "big", contextLength: 8 };
  const memory = { totalBytes: 100, freeBytes: 90 };

  /** A worker with a library, "big" loaded on it at 10 and served. */
  function loadedOn(): { state: ClusterState; w: WorkerEntry } {
    const state = cluster();
    const w = worker("w1", 2, []);
    apply(state, { type: "WorkerRegistered", worker: w, features: ["models", "epoch", "refuse"] });
    const library = [{ id: "big", sizeBytes: 10, memoryBytes: 10, contextLength: 8 }];
    apply(state, { type: "WorkerJoined", workerId: "w1", name: "name-w1", library, memory: { totalBytes: 100, freeBytes: 100 }, loaded: [], pulls: false, at: 0 });
    apply(state, { type: "LoadStarted", workerId: "w1", model: "big", pin: undefined, at: 1 });
    apply(state, { type: "StatusReported", workerId: "w1", status: { type: "ModelStatus", model: "big", state: "loaded", info, memory }, at: 10 });
    return { state, w };
  }

  function slotOf(state: ClusterState) {
    return state.placement.workers.get("w1")?.slots.get("big");
  }

  function sentBy(effects: readonly ClusterEffect[]) {
    return effects.flatMap((e) => (e.type === "send" ? [e.message] : []));
  }

  it("asks the worker to unload only if idle when the planner finds the model idle or evicts it, and not otherwise", () => {
    for (const [why, ifIdle] of [["idle", true], ["evicted", true], ["admin", undefined], ["unplaced", undefined]] as const) {
      const { state } = loadedOn();
      const effects = apply(state, { type: "UnloadStarted", workerId: "w1", model: "big", why, reason: why, at: 20 });
      expect(sentBy(effects)).toEqual([{ type: "UnloadModel", model: "big", reason: why, ...(ifIdle && { ifIdle }) }]);
    }
  });

  it("serves a model again when its worker keeps it because a task of it runs (in_use), without counting a load", () => {
    const { state, w } = loadedOn();
    apply(state, { type: "UnloadStarted", workerId: "w1", model: "big", why: "idle", reason: "idle", at: 20 });
    expect([slotOf(state)?.state, state.workers.isServed("big")]).toEqual(["unloading", false]);

    const status = { type: "ModelStatus" as const, model: "big", state: "loaded" as const, info, memory, error: { code: "in_use", message: "1 task(s) running" } };
    const effects = apply(state, { type: "StatusReported", workerId: "w1", status, at: 30 });

    expect(effects).toEqual([{ type: "modelsChanged", worker: w }, { type: "pump", model: "big" }]);
    expect(state.workers.isServed("big")).toBe(true);
    expect(slotOf(state)).toMatchObject({ state: "loaded", since: 30, lastUsedAt: 30 });
  });

  it("counts a model as used while its worker reports it busy for other heads, so it is not found idle", () => {
    const { state, w } = loadedOn();
    const planContext = { busy: () => 0, inUse: () => false };
    expect(idleModels(state.placement, 1_000, 500, planContext)).toEqual([{ workerId: "w1", model: "big" }]);

    // Another head's task runs on it: used now
    apply(state, { type: "WorkerReported", worker: w, running: 1, cache: undefined, models: [{ id: "big", running: 1, idleMs: 0 }], at: 1_000 });
    expect(slotOf(state)?.lastUsedAt).toBe(1_000);
    expect(idleModels(state.placement, 1_400, 500, planContext)).toEqual([]);
    // Its last task there ended 100 ms before the report: idle from then on, never earlier than this head knew
    apply(state, { type: "WorkerReported", worker: w, running: 0, cache: undefined, models: [{ id: "big", running: 0, idleMs: 100 }], at: 2_000 });
    expect(slotOf(state)?.lastUsedAt).toBe(1_900);
    apply(state, { type: "WorkerReported", worker: w, running: 0, cache: undefined, models: [{ id: "big", running: 0, idleMs: 5_000 }], at: 2_100 });
    expect(slotOf(state)?.lastUsedAt).toBe(1_900);
    expect(idleModels(state.placement, 2_400, 500, planContext)).toEqual([{ workerId: "w1", model: "big" }]);
  });

  it("still ignores a plain \"loaded\" for a model it unloads (the load's report crossed the unload on the wire)", () => {
    const { state } = loadedOn();
    apply(state, { type: "UnloadStarted", workerId: "w1", model: "big", why: "admin", reason: "admin", at: 20 });
    expect(apply(state, { type: "StatusReported", workerId: "w1", status: { type: "ModelStatus", model: "big", state: "loaded", info }, at: 30 })).toEqual([]);
    expect(slotOf(state)?.state).toBe("unloading");
  });

  it("takes a stale command's answer as the model's actual state: a load not obeyed leaves no slot, and no new plan", () => {
    const { state } = loadedOn();
    apply(state, { type: "LoadStarted", workerId: "w1", model: "other", pin: undefined, at: 20 });
    const stale = { type: "ModelStatus" as const, model: "other", state: "unloaded" as const, memory: { totalBytes: 100, freeBytes: 50 }, error: { code: "stale_epoch", message: "epoch 1 < 2" } };

    const effects = apply(state, { type: "StatusReported", workerId: "w1", status: stale, at: 30 });

    expect(effects).toEqual([]);
    expect(state.placement.workers.get("w1")?.slots.has("other")).toBe(false);
    expect(state.placement.workers.get("w1")?.memory).toEqual({ totalBytes: 100, freeBytes: 50 });
  });

  it("takes a stale unload's answer as the actual state: served again when loaded, no longer served when unloaded", () => {
    const { state } = loadedOn();
    apply(state, { type: "UnloadStarted", workerId: "w1", model: "big", why: "admin", reason: "admin", at: 20 });
    const error = { code: "stale_epoch", message: "epoch 1 < 2" };
    apply(state, { type: "StatusReported", workerId: "w1", status: { type: "ModelStatus", model: "big", state: "loaded", info, error }, at: 30 });
    expect([slotOf(state)?.state, state.workers.isServed("big")]).toEqual(["loaded", true]);

    const effects = apply(state, { type: "StatusReported", workerId: "w1", status: { type: "ModelStatus", model: "big", state: "unloaded", error }, at: 40 });
    expect(types(effects)).toEqual(["modelsChanged"]);
    expect([slotOf(state), state.workers.isServed("big")]).toEqual([undefined, false]);
  });

  it("takes a stale answer that the model is loading as so: a slot given up goes back to loading, and is served once loaded", () => {
    const { state } = loadedOn();
    apply(state, { type: "LoadStarted", workerId: "w1", model: "other", pin: undefined, at: 20 });
    apply(state, { type: "UnloadStarted", workerId: "w1", model: "other", why: "abandoned", reason: "nobody waits", at: 21 });
    const error = { code: "stale_epoch", message: "epoch 1 < 2" };

    expect(apply(state, { type: "StatusReported", workerId: "w1", status: { type: "ModelStatus", model: "other", state: "loading", progress: 0.5, error }, at: 30 })).toEqual([]);
    expect(state.placement.workers.get("w1")?.slots.get("other")).toMatchObject({ state: "loading", progress: 0.5, since: 30 });

    const loaded = { type: "ModelStatus" as const, model: "other", state: "loaded" as const, info: { id: "other", contextLength: 8 }, error };
    expect(types(apply(state, { type: "StatusReported", workerId: "w1", status: loaded, at: 50 }))).toEqual(["loaded", "modelsChanged", "pump"]);
    expect(state.workers.isServed("other")).toBe(true);
  });
});

/** Random event sequences over two workers and four tasks, each event built from the current state. */
const step = fc.record({ kind: fc.integer({ min: 0, max: 12 }), task: fc.integer({ min: 0, max: 3 }), worker: fc.integer({ min: 0, max: 1 }) });

describe("apply: loads and pulls another head started (it runs the planner)", () => {
  const library = [{ id: "big", sizeBytes: 10, memoryBytes: 10, contextLength: 8 }];
  const placement = { id: "placement-p1", model: "big", replicas: 1, worker: undefined, contextLength: undefined, concurrency: undefined, createdAt: 0, workers: ["name-w1"] };

  function joined(): ClusterState {
    const state = cluster();
    apply(state, { type: "WorkerRegistered", worker: worker("w1", 2, []), features: ["models", "epoch", "refuse"] });
    apply(state, { type: "WorkerJoined", workerId: "w1", name: "name-w1", library, memory: { totalBytes: 100, freeBytes: 100 }, loaded: [], pulls: false, at: 0 });
    return state;
  }

  it("makes a slot of a load it did not start, pinned when a placement names the worker, and serves it once loaded", () => {
    const state = joined();
    apply(state, { type: "PlacementCreated", placement });
    apply(state, { type: "StatusReported", workerId: "w1", status: { type: "ModelStatus", model: "big", state: "loading", progress: 0.5 }, at: 5 });
    expect(state.placement.workers.get("w1")?.slots.get("big")).toMatchObject({ state: "loading", progress: 0.5, pin: "placement-p1", memoryBytes: 10 });

    const effects = apply(state, { type: "StatusReported", workerId: "w1", status: { type: "ModelStatus", model: "big", state: "loaded", info: { id: "big", contextLength: 8 } }, at: 9 });
    expect(effects.map((e) => e.type)).toContain("pump");
    expect(state.workers.isServed("big")).toBe(true);
    expect(state.placement.workers.get("w1")?.slots.get("big")?.pin).toBe("placement-p1");
  });

  it("pins an instance already reported when the placement naming its worker arrives, and unpins it when deleted", () => {
    const state = joined();
    apply(state, { type: "StatusReported", workerId: "w1", status: { type: "ModelStatus", model: "big", state: "loaded", info: { id: "big", contextLength: 8 } }, at: 9 });
    expect(state.placement.workers.get("w1")?.slots.get("big")?.pin).toBeUndefined();
    apply(state, { type: "PlacementCreated", placement });
    expect(state.placement.workers.get("w1")?.slots.get("big")?.pin).toBe("placement-p1");
    apply(state, { type: "PlacementDeleted", id: "placement-p1" });
    expect(state.placement.workers.get("w1")?.slots.get("big")?.pin).toBeUndefined();
  });

  it("lists a pull another head started from the worker's report of it, and ends it with the report that it is done", () => {
    const state = joined();
    apply(state, { type: "PullReported", workerId: "w1", status: { type: "PullStatus", pullId: "pull-x", state: "downloading", receivedBytes: 10, url: "https://host/m.gguf", fileName: "m.gguf" }, at: 5 });
    expect(state.placement.pulls.get("pull-x")).toMatchObject({ workerId: "w1", workerName: "name-w1", url: "https://host/m.gguf", fileName: "m.gguf", state: "downloading", receivedBytes: 10, startedAt: 5 });
    apply(state, { type: "PullReported", workerId: "w1", status: { type: "PullStatus", pullId: "pull-x", state: "done", receivedBytes: 20, totalBytes: 20, url: "https://host/m.gguf" }, at: 9 });
    expect(state.placement.pulls.get("pull-x")).toMatchObject({ state: "done", receivedBytes: 20, endedAt: 9 });
    // Without its URL (an older worker) a report of an unknown pull is not enough to list it
    apply(state, { type: "PullReported", workerId: "w1", status: { type: "PullStatus", pullId: "pull-y", state: "downloading", receivedBytes: 1 }, at: 10 });
    expect(state.placement.pulls.has("pull-y")).toBe(false);
  });

  it("pins nothing on a worker the placement does not name", () => {
    const state = joined();
    apply(state, { type: "PlacementCreated", placement: { ...placement, workers: ["someone-else"] } });
    apply(state, { type: "StatusReported", workerId: "w1", status: { type: "ModelStatus", model: "big", state: "loading" }, at: 5 });
    expect(state.placement.workers.get("w1")?.slots.get("big")?.pin).toBeUndefined();
  });
});

describe("apply: invariants", () => {
  it("keeps slots, stops, queues and live tasks consistent over any sequence of events", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const state = cluster();
        const workers = [worker("a", 2), worker("b", 1)];
        const tasks = [0, 1, 2, 3].map((i) => task(`t${i}`));
        for (const w of workers) apply(state, { type: "WorkerRegistered", worker: w, features: ["refuse"] });
        for (const t of tasks) {
          apply(state, { type: "TaskAdmitted", task: t });
          apply(state, { type: "TaskQueued", task: t, from: undefined });
        }
        let at = 0;
        for (const { kind, task: ti, worker: wi } of steps) {
          at += 1;
          const t = tasks[ti] as Task;
          const w = workers[wi] as WorkerEntry;
          const holder = workers.find((x) => x.slots.get(t.id) === t);
          let event: ClusterEvent | undefined;
          switch (kind) {
            case 0:
              // The master assigns only a queued task, to a worker with room, once it has left the queue.
              if (t.state === "queued" && w.hasCapacity && !w.cancelling.has(t.id)) {
                event = { type: "TaskAssigned", task: t, worker: w, at };
              }
              break;
            case 1:
              if (holder) event = { type: "TaskChunk", task: t, worker: holder, chunk: chunk("x"), at };
              break;
            case 2:
              if (holder) event = { type: "TaskProgressed", task: t, worker: holder, promptTokensDone: 1, promptTokens: 2, at };
              break;
            case 3:
              event = { type: "TaskEnded", task: t, ending: { to: "cancelled", reason: "gone", stage: t.stage }, at };
              break;
            case 4:
              if (holder) {
                apply(state, { type: "SlotReleased", task: t, worker: holder, pump: true, at });
                event = { type: "TaskEnded", task: t, ending: { to: "finished", finishReason: "stop", usage: { promptTokens: 1, completionTokens: 1 }, stopSequence: undefined }, at };
              }
              break;
            case 5:
              if (holder) event = { type: "TaskStopping", taskId: t.id, worker: holder, reason: "stalled", at };
              break;
            case 6:
              event = { type: "StopSettled", taskId: t.id, worker: w };
              break;
            case 7:
              if (holder && t.state === "assigned") {
                apply(state, { type: "SlotReleased", task: t, worker: holder, pump: false, at });
                event = { type: "TaskQueued", task: t, from: holder };
              }
              break;
            case 8:
              event = { type: "TaskConsumed", task: t, bytes: 700 };
              break;
            case 9:
              event = { type: "WorkerHealth", worker: w, outcome: "failure", at, pump: true };
              break;
            case 10:
              if (holder && !t.started) event = { type: "TaskRefused", task: t, worker: holder, reason: "no_slot" };
              break;
            case 11:
              event = { type: "WorkerReported", worker: w, running: 0, cache: undefined, models: undefined, at };
              break;
            case 12:
              event = { type: "WorkerEjectionShared", name: w.name, until: at + 3, ejections: 1, at };
              break;
          }
          if (event) apply(state, event);
          for (const x of workers) {
            expect(x.busy).toBe(x.slots.size + x.cancelling.size);
            expect(x.unstarted).toBe([...x.slots.values()].filter((s) => !s.started).length);
            expect(x.busy).toBeLessThanOrEqual(x.maxConcurrency);
            for (const id of x.slots.keys()) expect(x.cancelling.has(id)).toBe(false);
          }
          for (const candidate of tasks) {
            const holders = workers.filter((x) => x.slots.get(candidate.id) === candidate);
            const running = candidate.state === "assigned" || candidate.state === "streaming";
            const queued = state.queues.peek("m") !== undefined && [...state.queues.all()].includes(candidate);
            expect(holders.length).toBeLessThanOrEqual(1);
            expect(candidate.attempts).toBeLessThanOrEqual(steps.length);
            expect(candidate.attempts).toBeGreaterThanOrEqual(holders.length);
            expect(state.tasks.has(candidate.id)).toBe(candidate.state !== "finished" && candidate.state !== "failed" && candidate.state !== "cancelled");
            if (holders.length === 1) expect(running).toBe(true);
            if (candidate.state === "queued") expect(queued).toBe(true);
            else expect(queued).toBe(false);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
