// The one place where what is loaded where changes: typed events in, the state changed, and the effects that follow
// from the event out (messages to workers, models served or no longer served, loads that failed). The master runs
// the effects; nothing else writes the placement state.
import { type LibraryModel, type LoadModel, type ModelInfo, type ModelStatus, NOT_OBEYED, type PullModel, type PullStatus, type UnloadModel, type WorkerMemory } from "../../worker-protocol/index.js";
import { ENDED_PULLS_KEPT, type ModelSlot, type Placement, type PlacementState, type Pull, STARTUP_PIN, type WorkerModels } from "./state.js";

export type PlacementEvent =
  | { type: "WorkerJoined"; workerId: string; name: string; library: LibraryModel[]; memory: WorkerMemory; loaded: readonly ModelInfo[]; pulls: boolean; at: number }
  | { type: "PullStarted"; pull: Pull; sha256?: string; headers?: Record<string, string> }
  | { type: "PullReported"; workerId: string; status: PullStatus; at: number }
  | { type: "WorkerLeft"; workerId: string }
  | { type: "LibraryReported"; workerId: string; library: LibraryModel[]; memory: WorkerMemory }
  /** The master decided to load `model` on the worker (for a placement, or for requests waiting for it). */
  | { type: "LoadStarted"; workerId: string; model: string; pin: string | undefined; contextLength?: number; concurrency?: number; at: number }
  /** The master decided to unload it (idle, evicted, unplaced) or give up its load (nobody waits any more). */
  | { type: "UnloadStarted"; workerId: string; model: string; why: UnloadCause; reason: string; at: number }
  | { type: "StatusReported"; workerId: string; status: ModelStatus; at: number }
  /** A task of the model was assigned or ended on the worker; `keepAliveMs`: how long it may then stay idle. */
  | { type: "ModelUsed"; workerId: string; model: string; at: number; keepAliveMs?: number }
  | { type: "Pinned"; workerId: string; model: string; pin: string | undefined }
  | { type: "PlacementCreated"; placement: Placement }
  | { type: "PlacementDeleted"; id: string };

/** Why a model is unloaded, as metrics count it. */
export type UnloadCause = "idle" | "evicted" | "unplaced" | "abandoned" | "admin";

export type PlacementEffect =
  | { type: "send"; workerId: string; message: LoadModel | UnloadModel | PullModel }
  /**
   * The worker serves the model from now on: index it, and give it waiting tasks. `loadMs` undefined: it was not a
   * load (the worker did not obey an unload).
   */
  | { type: "serve"; workerId: string; info: ModelInfo; loadMs: number | undefined }
  /** The worker no longer takes tasks of the model. */
  | { type: "unserve"; workerId: string; model: string }
  /** A load failed on the worker; tasks waiting for the model may need another plan, or an error. */
  | { type: "loadFailed"; workerId: string; model: string; message: string; code: string | undefined; loadMs: number }
  /** A load or a model went away without failing (its worker left, it was unloaded): waiting tasks need a new plan. */
  | { type: "replan"; model: string };

function slot(model: string, state: ModelSlot["state"], memoryBytes: number, at: number, pin: string | undefined): ModelSlot {
  return { model, state, progress: state === "loaded" ? 1 : 0, memoryBytes, since: at, lastUsedAt: at, keepAliveMs: undefined, pin, contextLength: undefined, concurrency: undefined };
}

function memoryOf(worker: WorkerModels, model: string): number {
  return worker.library.get(model)?.memoryBytes ?? 0;
}

/** Applies one event to the state; returns what must follow from it. */
export function applyPlacement(state: PlacementState, event: PlacementEvent): PlacementEffect[] {
  if (event.type === "PlacementCreated") {
    const { placement } = event;
    state.placements.set(placement.id, placement);
    // Placed by another head: its instances already reported are pinned here too.
    for (const worker of state.workers.values()) {
      const instance = placement.workers.includes(worker.name) ? worker.slots.get(placement.model) : undefined;
      if (instance && instance.pin === undefined) instance.pin = placement.id;
    }
    return [];
  }
  if (event.type === "PlacementDeleted") {
    state.placements.delete(event.id);
    for (const worker of state.workers.values()) for (const s of worker.slots.values()) if (s.pin === event.id) s.pin = undefined;
    return [];
  }
  if (event.type === "PullStarted") {
    state.pulls.set(event.pull.id, event.pull);
    const message: PullModel = { type: "PullModel", pullId: event.pull.id, url: event.pull.url };
    if (event.pull.fileName !== undefined) message.fileName = event.pull.fileName;
    if (event.sha256 !== undefined) message.sha256 = event.sha256;
    if (event.headers !== undefined) message.headers = event.headers;
    return [{ type: "send", workerId: event.pull.workerId, message }];
  }
  if (event.type === "WorkerJoined") {
    const worker: WorkerModels = { workerId: event.workerId, name: event.name, library: new Map(event.library.map((m) => [m.id, m])), memory: event.memory, slots: new Map(), pulls: event.pulls };
    for (const info of event.loaded) {
      const loaded = slot(info.id, "loaded", memoryOf(worker, info.id), event.at, STARTUP_PIN);
      loaded.contextLength = info.contextLength;
      worker.slots.set(info.id, loaded);
    }
    state.workers.set(event.workerId, worker);
    // Its models are served through the registry as any worker's are; its library may unblock waiting tasks.
    return [...worker.library.keys()].map((model) => ({ type: "replan", model }));
  }
  const worker = state.workers.get(event.workerId);
  if (!worker) return [];
  switch (event.type) {
    case "WorkerLeft": {
      state.workers.delete(event.workerId);
      for (const pull of state.pulls.values()) {
        if (pull.workerId === event.workerId && pull.state === "downloading") endPull(state, pull, "failed", { message: "the worker left", code: "worker_lost" });
      }
      return [...worker.slots.values()].filter((s) => s.state === "loading").map((s) => ({ type: "replan", model: s.model }));
    }
    case "LibraryReported": {
      const added = event.library.filter((m) => !worker.library.has(m.id));
      worker.library = new Map(event.library.map((m) => [m.id, m]));
      worker.memory = event.memory;
      return added.map((m) => ({ type: "replan", model: m.id }));
    }
    case "LoadStarted": {
      const fresh = slot(event.model, "loading", memoryOf(worker, event.model), event.at, event.pin);
      fresh.contextLength = event.contextLength;
      fresh.concurrency = event.concurrency;
      worker.slots.set(event.model, fresh);
      const message: LoadModel = { type: "LoadModel", model: event.model };
      if (event.contextLength !== undefined) message.contextLength = event.contextLength;
      if (event.concurrency !== undefined) message.concurrency = event.concurrency;
      return [{ type: "send", workerId: worker.workerId, message }];
    }
    case "UnloadStarted": {
      const current = worker.slots.get(event.model);
      if (!current || current.state === "unloading") return [];
      const wasServed = current.state === "loaded";
      current.state = "unloading";
      current.since = event.at;
      const effects: PlacementEffect[] = [];
      if (wasServed) effects.push({ type: "unserve", workerId: worker.workerId, model: event.model });
      const message: UnloadModel = { type: "UnloadModel", model: event.model, reason: event.reason };
      // The planner's own judgement of idleness sees only this head's tasks: the worker, which sees every head's, has the last word.
      if (event.why === "idle" || event.why === "evicted") message.ifIdle = true;
      effects.push({ type: "send", workerId: worker.workerId, message });
      return effects;
    }
    case "StatusReported":
      return applyStatus(worker, event.status, event.at, state.pinOf(worker.name, event.status.model));
    case "PullReported": {
      // A pull another head started: listed here too, from what the worker says of it.
      if (!state.pulls.has(event.status.pullId) && event.status.url !== undefined) {
        const { pullId: id, url, fileName } = event.status;
        state.pulls.set(id, { id, workerId: worker.workerId, workerName: worker.name, url, fileName, state: "downloading", receivedBytes: 0, totalBytes: undefined, sha256: undefined, error: undefined, startedAt: event.at, endedAt: undefined });
      }
      const pull = state.pulls.get(event.status.pullId);
      if (!pull || pull.workerId !== event.workerId || pull.state !== "downloading") return [];
      const { status } = event;
      pull.receivedBytes = status.receivedBytes;
      if (status.totalBytes !== undefined) pull.totalBytes = status.totalBytes;
      if (status.fileName !== undefined) pull.fileName = status.fileName;
      if (status.sha256 !== undefined) pull.sha256 = status.sha256;
      if (status.state !== "downloading") {
        const error = status.state === "failed" ? { message: status.error?.message ?? "the download failed", code: status.error?.code } : undefined;
        endPull(state, pull, status.state, error, event.at);
      }
      return [];
    }
    case "ModelUsed": {
      const current = worker.slots.get(event.model);
      if (current) {
        current.lastUsedAt = event.at;
        if (event.keepAliveMs !== undefined) current.keepAliveMs = event.keepAliveMs;
      }
      return [];
    }
    case "Pinned": {
      const current = worker.slots.get(event.model);
      if (current && current.pin !== STARTUP_PIN) current.pin = event.pin;
      return [];
    }
  }
}

/** Ends a pull, and forgets the oldest ended ones beyond ENDED_PULLS_KEPT. */
function endPull(state: PlacementState, pull: Pull, to: "done" | "failed", error: Pull["error"], at = Date.now()): void {
  pull.state = to;
  pull.error = error;
  pull.endedAt = at;
  const ended = [...state.pulls.values()].filter((p) => p.state !== "downloading");
  for (const old of ended.slice(0, Math.max(0, ended.length - ENDED_PULLS_KEPT))) state.pulls.delete(old.id);
}

/**
 * A worker's report on one of its models. A load this head did not start (another head leads the planner) is a new
 * slot here, pinned by `pin` when a placement names this worker for the model.
 */
function applyStatus(worker: WorkerModels, status: ModelStatus, at: number, pin: string | undefined): PlacementEffect[] {
  if (status.memory) worker.memory = status.memory;
  if (notObeyed(status)) return applyActualState(worker, status, at);
  const current = worker.slots.get(status.model);
  switch (status.state) {
    case "loading":
      if (current?.state === "loading") current.progress = status.progress ?? current.progress;
      else if (!current) {
        const loading = slot(status.model, "loading", memoryOf(worker, status.model), at, pin);
        loading.progress = status.progress ?? 0;
        worker.slots.set(status.model, loading);
      }
      return [];
    case "loaded": {
      if (!status.info || status.info.id !== status.model) return [];
      if (current?.state === "unloading") return []; // it will report "unloaded" next
      const loadMs = current?.state === "loading" ? at - current.since : 0;
      return servedNow(worker, status.info, at, loadMs, pin);
    }
    case "unloading":
      if (current?.state === "loaded") {
        current.state = "unloading";
        current.since = at;
        return [{ type: "unserve", workerId: worker.workerId, model: status.model }];
      }
      return [];
    case "unloaded":
      return current ? [...unloaded(worker, status.model), { type: "replan", model: status.model }] : [];
    case "failed": {
      if (current?.state !== "loading") return [];
      worker.slots.delete(status.model);
      const message = status.error?.message ?? "the load failed";
      return [{ type: "loadFailed", workerId: worker.workerId, model: status.model, message, code: status.error?.code, loadMs: at - current.since }];
    }
  }
}

/** Every code of an answer to a command the worker did not obey. */
const NOT_OBEYED_CODES: ReadonlySet<string> = new Set(Object.values(NOT_OBEYED));

/** Whether the report answers a command the worker did not obey: it then gives the model's actual state there. */
function notObeyed(status: ModelStatus): boolean {
  const code = status.error?.code;
  return code !== undefined && NOT_OBEYED_CODES.has(code);
}

/**
 * The worker did not obey a load or unload (a newer planner leads, or the model is in use): whatever this head
 * thought, the model is now as the worker says. No replan follows a stale command: another head plans, and this one
 * asking again would only be refused again.
 */
function applyActualState(worker: WorkerModels, status: ModelStatus, at: number): PlacementEffect[] {
  const current = worker.slots.get(status.model);
  switch (status.state) {
    case "loaded":
      if (!status.info || status.info.id !== status.model) return [];
      // An unload not obeyed: served again, as it never stopped being on the worker (its idle time starts afresh).
      return servedNow(worker, status.info, at, current?.state === "loading" ? at - current.since : undefined);
    case "loading": {
      if (current?.state === "loaded") return [];
      const loading = current ?? slot(status.model, "loading", memoryOf(worker, status.model), at, undefined);
      if (loading.state !== "loading") loading.since = at;
      loading.state = "loading";
      loading.progress = status.progress ?? loading.progress;
      worker.slots.set(status.model, loading);
      return [];
    }
    default:
      return unloaded(worker, status.model);
  }
}

/** The model is loaded on the worker: its slot says so, and it is served unless it already was. */
function servedNow(worker: WorkerModels, info: ModelInfo, at: number, loadMs: number | undefined, pin?: string): PlacementEffect[] {
  const current = worker.slots.get(info.id);
  const wasServed = current?.state === "loaded";
  const loaded = current ?? slot(info.id, "loaded", memoryOf(worker, info.id), at, pin);
  loaded.state = "loaded";
  loaded.contextLength = info.contextLength;
  loaded.progress = 1;
  loaded.since = at;
  loaded.lastUsedAt = at;
  worker.slots.set(info.id, loaded);
  return wasServed ? [] : [{ type: "serve", workerId: worker.workerId, info, loadMs }];
}

/** The model is not on the worker any more: its slot goes, and it is no longer served if it was. */
function unloaded(worker: WorkerModels, model: string): PlacementEffect[] {
  const current = worker.slots.get(model);
  if (!current) return [];
  worker.slots.delete(model);
  return current.state === "loaded" ? [{ type: "unserve", workerId: worker.workerId, model }] : [];
}
