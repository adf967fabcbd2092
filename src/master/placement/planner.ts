// The placement planner: given what is loaded where, which worker should load a model (and what it must unload
// first to make room), and which idle models should go. Pure: it reads the state and returns plans; the master
// applies them as events.
import { freeBytes, type ModelSlot, type PlacementState, type WorkerModels } from "./state.js";

/** What the planner must know of the live cluster beyond the placement state. */
export interface PlanContext {
  /** Tasks running (or being cancelled) on the worker. */
  busy(workerId: string): number;
  /** Whether the model has work on the worker (running tasks) or waiting anywhere (queued tasks): never unloaded then. */
  inUse(workerId: string, model: string): boolean;
}

/** One way to load a model on a worker. */
export interface LoadOption {
  workerId: string;
  workerName: string;
  /** Memory the model needs there. */
  memoryBytes: number;
  /** Memory free there now. */
  freeBytes: number;
  /** Idle models to unload first, least recently used first (empty when it fits as it is). */
  evict: string[];
  /** Whether it can be loaded there now (false: not enough memory even after every idle model went). */
  fits: boolean;
  /** Whether it could be once the models now in use there are idle (unpinned ones may then be unloaded). */
  fitsLater: boolean;
  /** Tasks running on the worker. */
  busy: number;
}

/** Idle models that may be unloaded to make room: loaded, not pinned, no work, least recently used first. */
function evictable(worker: WorkerModels, context: PlanContext): ModelSlot[] {
  return [...worker.slots.values()]
    .filter((s) => s.state === "loaded" && s.pin === undefined && !context.inUse(worker.workerId, s.model))
    .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
}

/** How `model` could be loaded on `worker`, which offers it and does not hold it. */
function optionOn(worker: WorkerModels, model: string, context: PlanContext): LoadOption | undefined {
  const offered = worker.library.get(model);
  if (!offered || worker.slots.has(model)) return undefined;
  const free = freeBytes(worker);
  const evict: string[] = [];
  let room = free;
  for (const idle of evictable(worker, context)) {
    if (room >= offered.memoryBytes) break;
    evict.push(idle.model);
    room += idle.memoryBytes;
  }
  const fits = room >= offered.memoryBytes;
  let later = room;
  for (const s of worker.slots.values()) if (s.state === "loaded" && s.pin === undefined && context.inUse(worker.workerId, s.model)) later += s.memoryBytes;
  return {
    workerId: worker.workerId,
    workerName: worker.name,
    memoryBytes: offered.memoryBytes,
    freeBytes: free,
    evict: fits ? evict : [],
    fits,
    fitsLater: later >= offered.memoryBytes,
    busy: context.busy(worker.workerId),
  };
}

/**
 * Every worker that offers `model` and does not hold it, best first: those it fits without unloading anything, then
 * those with the fewest tasks, then the fewest models to unload, then the most free memory, then by name.
 */
export function loadOptions(state: PlacementState, model: string, context: PlanContext): LoadOption[] {
  const options: LoadOption[] = [];
  for (const worker of state.workers.values()) {
    const option = optionOn(worker, model, context);
    if (option) options.push(option);
  }
  return options.sort(
    (a, b) =>
      Number(b.fits) - Number(a.fits) ||
      Number(a.evict.length > 0) - Number(b.evict.length > 0) ||
      a.busy - b.busy ||
      a.evict.length - b.evict.length ||
      b.freeBytes - a.freeBytes ||
      a.workerName.localeCompare(b.workerName),
  );
}

/** The best place to load `model`, or why there is none. */
export function chooseLoad(
  state: PlacementState,
  model: string,
  context: PlanContext,
  exclude: ReadonlySet<string> = new Set(),
): { ok: true; option: LoadOption } | { ok: false; reason: "not_offered" | "no_memory" | "busy"; message: string } {
  const options = loadOptions(state, model, context).filter((o) => !exclude.has(o.workerId));
  const best = options[0];
  if (best?.fits) return { ok: true, option: best };
  if (best === undefined) return { ok: false, reason: "not_offered", message: `No connected worker can load '${model}'.` };
  if (options.some((o) => o.fitsLater)) {
    return { ok: false, reason: "busy", message: `Every worker that can load '${model}' needs memory that models in use hold; it waits for one to be idle.` };
  }
  const roomiest = Math.max(...options.map((o) => o.freeBytes));
  return {
    ok: false,
    reason: "no_memory",
    message: `No worker has the memory to load '${model}': it needs ${best.memoryBytes} bytes, and the most any worker has free (after unloading its idle models) is less (${roomiest} free now).`,
  };
}

/** Loaded models idle for longer than they may be (their keep-alive, or `idleMs`), unpinned and with no work. */
export function idleModels(state: PlacementState, now: number, idleMs: number, context: PlanContext): Array<{ workerId: string; model: string }> {
  const out: Array<{ workerId: string; model: string }> = [];
  for (const worker of state.workers.values()) {
    for (const s of worker.slots.values()) {
      if (s.state !== "loaded" || s.pin !== undefined || context.inUse(worker.workerId, s.model)) continue;
      if (now - s.lastUsedAt >= (s.keepAliveMs ?? idleMs)) out.push({ workerId: worker.workerId, model: s.model });
    }
  }
  return out;
}
