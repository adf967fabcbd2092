// The live registry of connected workers, indexed by the models they serve.
import { type DeviceInfo, type MasterMessage, type ModelCache, modelCapabilities, type ModelInfo, type ModelUsage } from "../worker-protocol/index.js";
import type { Task } from "./task.js";
import { type HealthPolicy, WorkerHealth } from "./worker-health.js";
import { ModelWorkers } from "./worker-heap.js";

export type WorkerState = "ready" | "draining";

/**
 * Most tasks a worker may hold that it has shown no sign of working on (no TaskProgress, no output yet), however
 * many slots it announced: a worker that takes tasks and never starts them cannot soak up a model's traffic.
 */
export const UNSTARTED_TASKS_LIMIT = 4;

/** How the master reaches one worker; owned by that worker's connection. */
export interface WorkerLink {
  send(message: MasterMessage): void;
  /** Closes the connection with a protocol close code and reason. */
  close(code: number, reason: string): void;
  /** Whether the peer answers a ping within `timeoutMs` (its connection is alive and its event loop turns). */
  isAlive(timeoutMs: number): Promise<boolean>;
}

export class WorkerEntry {
  state: WorkerState = "ready";
  readonly connectedAt = Date.now();
  /** Live tasks assigned to this worker. */
  readonly slots = new Map<string, Task>();
  /** Tasks this worker was told to stop: each holds a slot until it acknowledges or its deadline passes. */
  readonly cancelling = new Map<string, string>();
  /** Tasks in `slots` that have shown no sign of progress yet. */
  unstarted = 0;
  readonly health: WorkerHealth;
  /** Ids of tasks that ended here recently: a late message about one of them is ignored, not a violation. */
  readonly recentlyEnded = new Set<string>();
  completionTokens = 0;
  /** Generations the worker said (in its last heartbeat) its engine was running. */
  reportedRunning = 0;
  /** What its engine holds in its prompt caches, per model, as its last heartbeat said. */
  cache: readonly ModelCache[] = [];
  /** How each model it serves is used over all its heads, as its last heartbeat said (the "epoch" feature). */
  modelUsage: readonly ModelUsage[] = [];
  /** Whether it took up the "models" feature: it loads and unloads models on the master's command. */
  loadsModels = false;
  /** Whether it took up the "pull" feature: it downloads model files on the master's command. */
  pullsModels = false;
  /** Whether it took up the "refuse" feature: it refuses a task it has no slot for (TaskRefused). */
  refusesTasks = false;
  /** Whether it took up the "epoch" feature: its model commands carry the planner's epoch, and it hears Leader. */
  fencesCommands = false;
  /** Whether it took up the "heads" feature: it is told every head of the cluster, and joins each. */
  learnsHeads = false;
  /** It refused a task: full, whatever the count here says, until its next heartbeat or a task of its own ends here. */
  refusing = false;
  /** Prompt tokens of the tasks it finished, and of those how many its engine reused from its cache. */
  promptTokens = 0;
  cachedTokens = 0;

  constructor(
    readonly id: string,
    readonly name: string,
    readonly engine: string,
    readonly device: DeviceInfo,
    /** The models it serves now: fixed for a worker without the "models" feature, else changed by its placement. */
    public models: readonly ModelInfo[],
    readonly maxConcurrency: number,
    readonly link: WorkerLink,
    healthPolicy?: HealthPolicy,
  ) {
    this.health = new WorkerHealth(healthPolicy);
  }

  /** Slots taken: live tasks and tasks being cancelled. */
  get busy(): number {
    return this.slots.size + this.cancelling.size;
  }

  /** Tasks it may hold at once now: what it announced, or less while ejected or on probation. */
  get capacity(): number {
    return this.health.capacity(this.maxConcurrency);
  }

  get load(): number {
    return this.busy / this.maxConcurrency;
  }

  get hasCapacity(): boolean {
    return this.state === "ready" && !this.refusing && this.busy < this.capacity && this.unstarted < UNSTARTED_TASKS_LIMIT;
  }

  serves(model: string): boolean {
    return this.models.some((m) => m.id === model);
  }

  rememberEnded(taskId: string): void {
    this.recentlyEnded.add(taskId);
    if (this.recentlyEnded.size > 4096) {
      const oldest = this.recentlyEnded.values().next().value;
      if (oldest !== undefined) this.recentlyEnded.delete(oldest);
    }
  }
}

export class WorkerRegistry {
  private readonly byId = new Map<string, WorkerEntry>();
  private readonly byModel = new Map<string, ModelWorkers<WorkerEntry>>();
  /** When each model lost its last worker: requests for it may wait for one to come back instead of a 404. */
  private readonly lastServed = new Map<string, number>();

  add(worker: WorkerEntry): void {
    this.byId.set(worker.id, worker);
    for (const model of worker.models) this.index(worker, model.id);
  }

  /** The worker serves `info` from now on (a model it loaded on command). */
  addModel(worker: WorkerEntry, info: ModelInfo): void {
    if (this.byId.get(worker.id) !== worker || worker.serves(info.id)) return;
    worker.models = [...worker.models, info];
    this.index(worker, info.id);
  }

  /** The worker no longer serves `model` (it is unloading it); its tasks of the model go on until they end. */
  removeModel(worker: WorkerEntry, model: string): void {
    if (this.byId.get(worker.id) !== worker || !worker.serves(model)) return;
    worker.models = worker.models.filter((m) => m.id !== model);
    this.unindex(worker, model);
  }

  remove(worker: WorkerEntry): void {
    if (this.byId.get(worker.id) !== worker) return;
    this.byId.delete(worker.id);
    for (const model of worker.models) this.unindex(worker, model.id);
  }

  private index(worker: WorkerEntry, model: string): void {
    let workers = this.byModel.get(model);
    if (!workers) {
      workers = new ModelWorkers();
      this.byModel.set(model, workers);
    }
    workers.add(worker);
    this.lastServed.delete(model);
  }

  private unindex(worker: WorkerEntry, model: string): void {
    const workers = this.byModel.get(model);
    workers?.remove(worker);
    if (workers && workers.size === 0) {
      this.byModel.delete(model);
      this.lastServed.set(model, Date.now());
    }
  }

  get(id: string): WorkerEntry | undefined {
    return this.byId.get(id);
  }

  findByName(name: string): WorkerEntry | undefined {
    for (const worker of this.byId.values()) if (worker.name === name) return worker;
    return undefined;
  }

  all(): IterableIterator<WorkerEntry> {
    return this.byId.values();
  }

  get size(): number {
    return this.byId.size;
  }

  /** Workers that serve `model`, in any state. */
  serving(model: string): Iterable<WorkerEntry> | undefined {
    return this.byModel.get(model)?.all();
  }

  /** The workers serving `model`, as a routing policy chooses among them; undefined when none does. */
  candidates(model: string): ModelWorkers<WorkerEntry> | undefined {
    return this.byModel.get(model);
  }

  /** Call after a worker's slots or state changed, to keep the per-model order (O(models × log workers)). */
  changed(worker: WorkerEntry): void {
    for (const model of worker.models) this.byModel.get(model.id)?.update(worker);
  }

  /** The model's metadata as its first worker announced it. */
  modelInfo(model: string): ModelInfo | undefined {
    const first: WorkerEntry | undefined = this.byModel.get(model)?.all().next().value;
    return first?.models.find((m) => m.id === model);
  }

  /**
   * What every worker serving `model` can do (the intersection of their capabilities, as modelCapabilities reads
   * them), or undefined when no worker serves it.
   */
  capabilitiesOf(model: string): string[] | undefined {
    const workers = this.byModel.get(model);
    if (workers === undefined) return undefined;
    let common: string[] | undefined;
    for (const worker of workers.all()) {
      const info = worker.models.find((m) => m.id === model);
      const own = info ? modelCapabilities(info) : [];
      common = common === undefined ? [...own] : common.filter((capability) => own.includes(capability));
    }
    return common;
  }

  /** Whether `model` lost its last worker no more than `ms` ago (a restart or a network blip, most likely). */
  servedWithin(model: string, ms: number): boolean {
    const since = this.lastServed.get(model);
    if (since === undefined) return false;
    if (Date.now() - since <= ms) return true;
    this.lastServed.delete(model);
    return false;
  }

  isServed(model: string): boolean {
    return this.byModel.has(model);
  }

  /** Every served model with the workers serving it; a model's info comes from its first worker. */
  models(): Array<{ info: ModelInfo; workers: WorkerEntry[] }> {
    const out: Array<{ info: ModelInfo; workers: WorkerEntry[] }> = [];
    for (const [id, serving] of this.byModel) {
      const workers = [...serving.all()];
      const info = workers[0]?.models.find((m) => m.id === id);
      if (info) out.push({ info, workers });
    }
    return out;
  }
}
