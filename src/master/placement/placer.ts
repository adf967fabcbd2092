// The master's model placement: turns what happens (workers joining with a library, their reports, requests for a
// model nobody serves, idleness, admin placements) into placement events, which the master applies through its one
// reducer (cluster/apply.ts), and plans what follows a failed load or a model gone.
import { nanoid } from "nanoid";
import type { Logger } from "../../log.js";
import { type Hello, type Library, type LibraryModel, type ModelInfo, type ModelStatus, NOT_OBEYED, type PullStatus } from "../../worker-protocol/index.js";
import { type CoordinatorError, ModelLoadFailedError, PlannerUnavailableError, PlacementError } from "../errors.js";
import type { ClusterEffect } from "../cluster/events.js";
import type { PlacementEffect, PlacementEvent, UnloadCause } from "./apply.js";
import { chooseLoad, idleModels, type LoadOption, loadOptions, type PlanContext } from "./planner.js";
import { plannedPulls, type PullRequest } from "./pulls.js";
import { type ModelSlot, type Placement, type PlacementState, type Pull, type SlotState, STARTUP_PIN } from "./state.js";

/** A load or unload, as metrics count them. */
export type PlacementNotice =
  | { kind: "load_started"; model: string; worker: string }
  | { kind: "loaded" | "load_failed"; model: string; worker: string; loadMs: number }
  | { kind: "unload"; model: string; worker: string; cause: UnloadCause };

export type { PullRequest } from "./pulls.js";

/** What the placer asks of the master. */
export interface PlacerHost extends PlanContext {
  /** Applies a placement event through the master's one reducer (cluster/apply.ts) and carries out its effects. */
  dispatch(event: PlacementEvent): readonly ClusterEffect[];
  /** Whether some connected worker serves the model now. */
  isServed(model: string): boolean;
  /** Models with tasks waiting in their queue. */
  waitingModels(): Iterable<string>;
  /** Fails every task waiting for the model. */
  failWaiting(model: string, error: CoordinatorError): void;
  /** Hears each load and unload (metrics). */
  notify(notice: PlacementNotice): void;
  /** Whether this head runs the planner now (always, for a head on its own; else the lease holder only). */
  leading(): boolean;
  /** Not leading: tasks here wait for `model`, which nobody serves; the head that plans is told. */
  wantLoad(model: string): void;
  /** Not leading: the head that plans is asked to unload `model` wherever it is idle. */
  wantUnloadIdle(model: string): void;
  /** Writes a new placement where every head reads it; each head (this one too) then applies it. */
  sharePlacement(placement: Placement): Promise<void>;
  /** Deletes a placement where every head reads it; each head then applies that. */
  endPlacement(id: string): Promise<void>;
  log: Logger;
}

export interface PlacerOptions {
  /** Load a model some worker offers when a request asks for it (Ollama's way); off: only placements load. */
  autoLoad: boolean;
  /** How long a model loaded on demand may stay idle before it is unloaded. */
  idleMs: number;
  /**
   * Most instances of a model loaded on demand (1: never more than one); another is loaded on another worker when the
   * model's queue has not emptied for `replicaAfterMs`, and goes when idle, as any model loaded on demand.
   */
  maxReplicas?: number;
  replicaAfterMs?: number;
  /** A load not done after this long is given up, and the requests waiting for it fail (default 10 minutes). */
  loadTimeoutMs?: number;
}

/** POST /v1/placements, validated. */
export interface PlacementRequest {
  model: string;
  worker?: string;
  replicas: number;
  contextLength?: number;
  concurrency?: number;
}

/** A placement as GET /v1/placements shows it: each instance's worker and state. */
export interface PlacementView extends Placement {
  instances: Array<{ workerId: string; workerName: string; state: SlotState; progress: number }>;
}

/** How long another head's demand for a model counts after it last said so (it repeats it at every sweep, ~1 s). */
const REMOTE_DEMAND_MS = 5_000;

export class ModelPlacer {
  /** Models whose waiting tasks need memory that models in use hold: planned again whenever a task ends. */
  private readonly blocked = new Set<string>();
  /** Models other heads have requests waiting for, with until when each head's word counts. */
  private readonly remote = new Map<string, Map<string, number>>();
  /** Since when each served model's queue has not emptied (for replicas). */
  private readonly deepSince = new Map<string, number>();

  constructor(
    private readonly host: PlacerHost,
    private readonly options: PlacerOptions,
    /** The master's placement state, read here; changed only through `host.dispatch`. */
    readonly state: PlacementState,
  ) {}

  /** A worker that took up the "models" feature joined (`pulls`: and the "pull" feature). */
  workerJoined(workerId: string, hello: Hello, pulls: boolean): void {
    const memory = hello.memory ?? { totalBytes: 0, freeBytes: 0 };
    this.apply({ type: "WorkerJoined", workerId, name: hello.worker.name, library: hello.library ?? [], memory, loaded: hello.models, pulls, at: Date.now() });
  }

  /**
   * Downloads a model file onto workers (their ids or names; every worker that pulls when none is named). Throws
   * PlacementError for a worker that is unknown or cannot pull.
   */
  pull(request: PullRequest): Pull[] {
    const pulls = plannedPulls(this.state, request);
    for (const pull of pulls) this.apply({ type: "PullStarted", pull, ...(request.sha256 && { sha256: request.sha256 }), ...(request.headers && { headers: request.headers }) });
    return pulls;
  }

  pulls(): Pull[] {
    return [...this.state.pulls.values()];
  }

  /** A Library, ModelStatus or PullStatus from the worker. */
  report(workerId: string, message: Library | ModelStatus | PullStatus): void {
    if (message.type === "Library") this.apply({ type: "LibraryReported", workerId, library: message.library, memory: message.memory });
    else if (message.type === "PullStatus") this.apply({ type: "PullReported", workerId, status: message, at: Date.now() });
    else {
      if (message.error?.code === NOT_OBEYED.staleEpoch) {
        this.host.log.warn({ worker: workerId, model: message.model, state: message.state }, "the worker has seen a newer planner epoch: another head plans; taking its word on the model");
      }
      this.apply({ type: "StatusReported", workerId, status: message, at: Date.now() });
    }
  }

  /** Whether a request for `model`, which nobody serves, may wait for it to be loaded. */
  canLoad(model: string): boolean {
    return (this.options.autoLoad || this.state.isLoading(model)) && this.state.isOffered(model);
  }

  /** The model as the first library offering it describes it (for requests before it is loaded). */
  offeredInfo(model: string): ModelInfo | undefined {
    for (const worker of this.state.workers.values()) {
      const entry = worker.library.get(model);
      if (entry) return libraryInfo(entry);
    }
    return undefined;
  }

  /** Models some worker offers that none serves now, with where they could be loaded. */
  loadable(): Array<{ info: ModelInfo; offers: Array<{ workerId: string; workerName: string; sizeBytes: number; memoryBytes: number }> }> {
    const out = new Map<string, { info: ModelInfo; offers: Array<{ workerId: string; workerName: string; sizeBytes: number; memoryBytes: number }> }>();
    for (const worker of this.state.workers.values()) {
      for (const entry of worker.library.values()) {
        if (this.host.isServed(entry.id)) continue;
        let model = out.get(entry.id);
        if (!model) {
          // The first library offering the model describes it, as offeredInfo says.
          model = { info: libraryInfo(entry), offers: [] };
          out.set(entry.id, model);
        }
        model.offers.push({ workerId: worker.workerId, workerName: worker.name, sizeBytes: entry.sizeBytes, memoryBytes: entry.memoryBytes });
      }
    }
    return [...out.values()];
  }

  /** Whether a task waiting for `model` waits for a load (its cancel stage is "loading"). */
  isLoading(model: string): boolean {
    return this.state.isLoading(model);
  }

  /**
   * Tasks wait for `model`, which no worker serves: make sure a load is under way, or fail them with why not. A head
   * that does not plan tells the one that does.
   */
  demand(model: string): void {
    if (this.host.isServed(model) || this.state.isLoading(model)) return;
    if (!this.options.autoLoad || !this.state.isOffered(model)) return;
    if (!this.host.leading()) return this.host.wantLoad(model);
    const choice = this.startLoad(model);
    this.blocked.delete(model);
    if (!choice.ok && choice.reason === "busy") {
      this.blocked.add(model);
      return;
    }
    if (!choice.ok) {
      this.host.log.warn({ model, reason: choice.reason }, choice.message);
      this.host.failWaiting(model, new ModelLoadFailedError(model, choice.message, choice.reason));
    }
  }

  /** Loads `model` where the planner says (unpinned, the worker's sizes), or says why it cannot. */
  private startLoad(model: string): ReturnType<typeof chooseLoad> {
    const choice = chooseLoad(this.state, model, this.host);
    if (choice.ok) this.load(choice.option, model, undefined, {});
    return choice;
  }

  /** Another head (`head`) has requests waiting for `model`: planned as if they waited here. */
  wanted(model: string, head: string, now = Date.now()): void {
    // Served already: the word crossed the load on its way (if that head's requests still wait, it says so again).
    if (this.host.isServed(model)) return;
    let heads = this.remote.get(model);
    if (!heads) this.remote.set(model, (heads = new Map()));
    heads.set(head, now + REMOTE_DEMAND_MS);
    this.demand(model);
  }

  /** A load of `model` completed: the other heads' requests waiting for it are served now. */
  served(model: string): void {
    this.remote.delete(model);
  }

  /** Plans what waits here and (as they last said) on other heads: when this head starts leading, or after a change. */
  planWaiting(): void {
    for (const model of this.waiting()) this.demand(model);
  }

  /** Models with requests waiting, here or (as they last said) on other heads. */
  private waiting(now = Date.now()): Set<string> {
    const models = new Set(this.host.waitingModels());
    for (const [model, heads] of this.remote) {
      for (const [head, until] of heads) if (until <= now) heads.delete(head);
      if (heads.size === 0) this.remote.delete(model);
      else models.add(model);
    }
    return models;
  }

  /** Nobody waits for `model` any more: a load started for them (not for a placement) is given up. */
  abandon(model: string): void {
    this.blocked.delete(model);
    if (!this.host.leading() || this.remote.has(model)) return;
    for (const { worker, slot } of this.state.slotsOf(model)) {
      if (slot.state === "loading" && slot.pin === undefined) {
        this.apply({ type: "UnloadStarted", workerId: worker.workerId, model, why: "abandoned", reason: "no request waits for it any more", at: Date.now() });
      }
    }
  }

  /** A task let go of its slot: models that wait for memory held by models in use are planned again. */
  freed(): void {
    if (this.blocked.size > 0) for (const waiting of [...this.blocked]) this.demand(waiting);
  }

  /**
   * Periodic: unloads models idle for longer than they may be. A head that does not plan repeats instead which models
   * its requests wait for, so that a head newly leading hears of them.
   */
  sweep(now: number): void {
    if (!this.host.leading()) {
      for (const model of new Set(this.host.waitingModels())) this.demand(model);
      return;
    }
    this.waiting(now);
    for (const { workerId, model } of idleModels(this.state, now, this.options.idleMs, this.host)) {
      this.apply({ type: "UnloadStarted", workerId, model, why: "idle", reason: "idle", at: now });
    }
    this.giveUpSlowLoads(now);
    this.addReplicas(now);
  }

  /** Loads still not done after `loadTimeoutMs`: given up, and the requests waiting for them fail with why. */
  private giveUpSlowLoads(now: number): void {
    const limit = this.options.loadTimeoutMs ?? 10 * 60_000;
    for (const worker of [...this.state.workers.values()]) {
      for (const slot of [...worker.slots.values()]) {
        if (slot.state !== "loading" || now - slot.since < limit) continue;
        const message = `Loading '${slot.model}' on ${worker.name} did not finish within ${Math.round(limit / 1000)} s; it was given up.`;
        this.host.log.warn({ worker: worker.workerId, model: slot.model, loadingForMs: now - slot.since }, "model load timed out");
        this.apply({ type: "UnloadStarted", workerId: worker.workerId, model: slot.model, why: "abandoned", reason: "load timed out", at: now });
        if (!this.host.isServed(slot.model) && !this.state.isLoading(slot.model)) this.host.failWaiting(slot.model, new ModelLoadFailedError(slot.model, message, "load_timeout"));
      }
    }
  }

  /**
   * Loads another instance of each served model whose queue stayed non-empty for `replicaAfterMs`, on a worker that
   * holds none, while it has fewer than `maxReplicas` and none is loading (one more at a time).
   */
  private addReplicas(now: number): void {
    const max = this.options.maxReplicas ?? 1;
    if (max <= 1) return;
    const waiting = this.waiting(now);
    for (const model of this.deepSince.keys()) if (!waiting.has(model)) this.deepSince.delete(model);
    for (const model of waiting) {
      if (!this.host.isServed(model)) continue;
      const since = this.deepSince.get(model) ?? now;
      this.deepSince.set(model, since);
      const instances = [...this.state.slotsOf(model)].filter(({ slot }) => slot.state !== "unloading");
      if (now - since < (this.options.replicaAfterMs ?? 2_000) || instances.length >= max || this.state.isLoading(model)) continue;
      if (!this.startLoad(model).ok) continue;
      this.host.log.info({ model, instances: instances.length, queuedForMs: now - since }, "the queue stays deep: loading a replica");
      this.deepSince.set(model, now);
    }
  }

  /** Where `model` could be loaded, best first (GET /v1/placements/previews). */
  previews(model: string): LoadOption[] {
    return loadOptions(this.state, model, this.host);
  }

  /**
   * An explicit placement: `replicas` instances of the model, on the worker named if any, pinned. Instances loaded
   * already count (and are pinned); the rest are loaded where the planner says. Throws PlacementError.
   */
  async place(request: PlacementRequest): Promise<PlacementView> {
    this.mustLead();
    if (!this.state.isOffered(request.model)) throw new PlacementError(`No connected worker offers '${request.model}' in its library.`, 404);
    const chosen = this.choosePlaces(request);
    const placement: Placement = {
      id: `placement-${nanoid(10)}`,
      model: request.model,
      replicas: request.replicas,
      worker: request.worker,
      contextLength: request.contextLength,
      concurrency: request.concurrency,
      createdAt: Date.now(),
      workers: chosen.map((place) => this.state.workers.get(place.workerId)?.name ?? place.workerId),
    };
    // Every head applies it from the shared store (PlacementCreated), this one before the write resolves.
    await this.host.sharePlacement(placement);
    for (const place of chosen) {
      if (place.existing) this.apply({ type: "Pinned", workerId: place.workerId, model: request.model, pin: placement.id });
      else this.load(place.option, request.model, placement.id, request);
    }
    return this.view(placement);
  }

  /** Ends a placement: its instances are unpinned, and unloaded at once when idle (else once idle). */
  async unplace(id: string): Promise<PlacementView> {
    this.mustLead();
    const placement = this.state.placements.get(id);
    if (!placement) throw new PlacementError(`No placement '${id}'.`, 404);
    const view = this.view(placement);
    await this.host.endPlacement(id);
    for (const instance of view.instances) {
      if (!this.host.inUse(instance.workerId, placement.model)) {
        this.apply({ type: "UnloadStarted", workerId: instance.workerId, model: placement.model, why: "unplaced", reason: "placement deleted", at: Date.now() });
      }
    }
    return view;
  }

  /** An admin's unload of a model on a worker (its id or name). Throws PlacementError when it may not go now. */
  unload(model: string, worker: string): void {
    this.mustLead();
    const target = [...this.state.workers.values()].find((w) => w.workerId === worker || w.name === worker);
    const slot = target?.slots.get(model);
    if (!target || !slot || slot.state === "unloading") throw new PlacementError(`'${model}' is not loaded on a worker '${worker}'.`, 404);
    if (slot.pin !== undefined) {
      const why = slot.pin === STARTUP_PIN ? "it was loaded at the worker's start (--model)" : `placement ${slot.pin} pins it: delete the placement instead`;
      throw new PlacementError(`'${model}' on '${target.name}' is pinned: ${why}.`, 409);
    }
    if (this.host.inUse(target.workerId, model)) throw new PlacementError(`'${model}' has work running or waiting; unload it once it is idle.`, 409);
    this.apply({ type: "UnloadStarted", workerId: target.workerId, model, why: "admin", reason: "unloaded by an admin", at: Date.now() });
  }

  /** Unloads every idle, unpinned instance of `model` (Ollama's keep_alive 0 with nothing to generate). */
  unloadIdle(model: string): void {
    if (!this.host.leading()) return this.host.wantUnloadIdle(model);
    for (const { worker, slot } of [...this.state.slotsOf(model)]) {
      if (slot.state !== "loaded" || slot.pin !== undefined || this.host.inUse(worker.workerId, model)) continue;
      this.apply({ type: "UnloadStarted", workerId: worker.workerId, model, why: "admin", reason: "keep_alive 0", at: Date.now() });
    }
  }

  /** Starts loading `model` when no worker serves it (Ollama's empty request, which preloads). Whether one serves it now. */
  preload(model: string): boolean {
    if (this.host.isServed(model)) return true;
    if (this.state.isLoading(model) || !this.state.isOffered(model)) return false;
    if (!this.host.leading()) {
      this.host.wantLoad(model);
      return false;
    }
    const choice = this.startLoad(model);
    if (!choice.ok && choice.reason !== "busy") throw new ModelLoadFailedError(model, choice.message, choice.reason);
    return false;
  }

  /** Placement changes are decided by the head that plans; the API forwards them there (docs/scaling.md §6). */
  private mustLead(): void {
    if (!this.host.leading()) throw new PlannerUnavailableError("This head does not run the placement planner now.");
  }

  placements(): PlacementView[] {
    return [...this.state.placements.values()].map((p) => this.view(p));
  }

  private view(placement: Placement): PlacementView {
    const instances: PlacementView["instances"] = [];
    for (const { worker, slot } of this.state.slotsOf(placement.model)) {
      if (slot.pin === placement.id) instances.push({ workerId: worker.workerId, workerName: worker.name, state: slot.state, progress: slot.progress });
    }
    return { ...placement, instances };
  }

  /** The workers a placement's instances go to: those already holding the model first, then the planner's choices. */
  private choosePlaces(request: PlacementRequest): Array<{ workerId: string; existing: true } | { workerId: string; existing: false; option: LoadOption }> {
    const wanted = request.worker;
    const matches = (id: string, name: string) => wanted === undefined || wanted === id || wanted === name;
    if (wanted !== undefined && ![...this.state.workers.values()].some((w) => matches(w.workerId, w.name))) {
      throw new PlacementError(`No connected worker '${wanted}' loads models on command.`, 404);
    }
    const places: Array<{ workerId: string; existing: true } | { workerId: string; existing: false; option: LoadOption }> = [];
    const taken = new Set<string>();
    for (const { worker, slot } of this.state.slotsOf(request.model)) {
      if (places.length >= request.replicas || slot.state === "unloading" || !matches(worker.workerId, worker.name)) continue;
      refuseOtherSizes(request, worker.name, slot);
      places.push({ workerId: worker.workerId, existing: true });
      taken.add(worker.workerId);
    }
    while (places.length < request.replicas) {
      const options = loadOptions(this.state, request.model, this.host).filter((o) => !taken.has(o.workerId) && matches(o.workerId, o.workerName));
      const best = options[0];
      if (!best?.fits) {
        const why = best === undefined ? "no other worker offers it" : `it needs ${best.memoryBytes} bytes and ${best.workerName} has ${best.freeBytes} free after unloading its idle models`;
        throw new PlacementError(`Cannot place ${request.replicas} instance(s) of '${request.model}': ${why}.`, 409);
      }
      places.push({ workerId: best.workerId, existing: false, option: best });
      taken.add(best.workerId);
    }
    return places;
  }

  private load(option: LoadOption, model: string, pin: string | undefined, sizes: { contextLength?: number; concurrency?: number }): void {
    const at = Date.now();
    for (const evicted of option.evict) {
      this.host.log.info({ worker: option.workerId, model: evicted, for: model }, "unloading an idle model to make room");
      this.apply({ type: "UnloadStarted", workerId: option.workerId, model: evicted, why: "evicted", reason: `evicted to make room for ${model}`, at });
    }
    this.host.log.info({ worker: option.workerId, workerName: option.workerName, model, memoryBytes: option.memoryBytes, free: option.freeBytes }, "loading a model");
    this.apply({
      type: "LoadStarted",
      workerId: option.workerId,
      model,
      pin,
      at,
      ...(sizes.contextLength !== undefined && { contextLength: sizes.contextLength }),
      ...(sizes.concurrency !== undefined && { concurrency: sizes.concurrency }),
    });
  }

  private apply(event: PlacementEvent): void {
    const name = "workerId" in event ? this.state.workers.get(event.workerId)?.name : undefined;
    const effects = this.host.dispatch(event);
    if (name !== undefined && event.type === "LoadStarted") this.host.notify({ kind: "load_started", model: event.model, worker: name });
    if (name !== undefined && event.type === "UnloadStarted" && effects.length > 0) this.host.notify({ kind: "unload", model: event.model, worker: name, cause: event.why });
  }

  /** What follows a placement event that needs the planner: a failed load, or waiting tasks that need a new plan. */
  follow(effect: Extract<PlacementEffect, { type: "loadFailed" | "replan" }>): void {
    if (effect.type === "replan") return this.planWaiting();
    const worker = this.state.workers.get(effect.workerId)?.name ?? effect.workerId;
    this.host.log.warn({ worker: effect.workerId, model: effect.model, code: effect.code, err: effect.message }, "model load failed");
    this.host.notify({ kind: "load_failed", model: effect.model, worker, loadMs: effect.loadMs });
    if (this.host.isServed(effect.model) || this.state.isLoading(effect.model)) return;
    const message = `Loading '${effect.model}' failed on its worker: ${effect.message}`;
    this.host.failWaiting(effect.model, new ModelLoadFailedError(effect.model, message, effect.code));
  }
}

/**
 * An instance already loaded counts for a placement only with the sizes the placement asks for: a worker loads a model
 * once, so other sizes need it unloaded first (as Ollama reloads for another num_ctx, but explicit here).
 */
function refuseOtherSizes(request: PlacementRequest, workerName: string, slot: ModelSlot): void {
  const differs = (asked: number | undefined, has: number | undefined) => asked !== undefined && has !== undefined && asked !== has;
  const name = differs(request.contextLength, slot.contextLength) ? "contextLength" : differs(request.concurrency, slot.concurrency) ? "concurrency" : undefined;
  if (name === undefined) return;
  const field = name === "contextLength" ? "context_length" : name;
  throw new PlacementError(
    `'${request.model}' is already ${slot.state} on '${workerName}' with ${field} ${slot[name]}, not ${request[name]}: unload it there first, or place it without ${field}.`,
    409,
  );
}

/** A library entry as the model would be served (for requests and listings before it is loaded). */
function libraryInfo(entry: LibraryModel): ModelInfo {
  const info: ModelInfo = { id: entry.id, contextLength: entry.contextLength };
  if (entry.format !== undefined) info.format = entry.format;
  if (entry.capabilities !== undefined) info.capabilities = entry.capabilities;
  return info;
}
