// The master: decides what happens (admits tasks, picks workers, watches deadlines; worker-messages.ts checks what
// workers say) and applies each change to its state as an event through one reducer (cluster/apply.ts), carrying out
// the effects.
import { nanoid } from "nanoid";
import type { Logger } from "../log.js";
import type { Hello, MasterMessage, ModelInfo, WorkerMessage } from "../worker-protocol/index.js";
import { CloseCode, FEATURES, modelCapabilities, PROTOCOL_VERSION } from "../worker-protocol/index.js";
import {
  type CoordinatorError,
  EngineError,
  ModelNotFoundError,
  OverloadedError,
  QueueFullError,
  QueueTimeoutError,
  UnavailableError,
  WorkerLostError,
  WorkerStalledError,
} from "./errors.js";
import { apply, IGNORED, workerOf } from "./cluster/apply.js";
import type { ClusterEffect, ClusterEvent, Ending, SharedEjection } from "./cluster/events.js";
import { ClusterState } from "./cluster/state.js";
import { type ClusterView, clusterView } from "./cluster-view.js";
import { Observers } from "./observer.js";
import { ModelPlacer, type PlacerOptions } from "./placement/placer.js";
import { placerHost } from "./placement/placer-host.js";
import { type Planning, type PlacementStore, placementOf, soloPlanning } from "./placement/planning.js";
import { LocalMap } from "../heads/shared-map.js";
import { WorkerEntry, type WorkerLink, type WorkerRegistry } from "./registry.js";
import { createPolicy } from "./routing/index.js";
import type { PolicyName, RoutingPolicy } from "./routing/policy.js";
import { Router } from "./routing/router.js";
import { Task, type TaskHints, type TaskRequest } from "./task.js";
import type { HealthPolicy } from "./worker-health.js";
import { WorkerMessages } from "./worker-messages.js";

/** Every head's worker address (this one's included), and word when they change. */
export interface HeadsSource {
  list(): string[];
  /** Calls `listener` whenever the list changes; returns how to stop. */
  onChange(listener: () => void): () => void;
}

/**
 * Ejections every head applies (docs/scaling.md §7), by worker name: kept in this process without other heads, in a
 * NATS bucket with them.
 */
export interface EjectionsSource {
  /** The ejection recorded for a worker name, if it has not ended by `now`. */
  current(name: string, now: number): SharedEjection | undefined;
  /** This head ejected the worker: every head is told, in the background (never throws, never waits). */
  ejected(ejection: SharedEjection): void;
  /** This head's probe of the worker succeeded: its record goes, unless a newer ejection replaced it meanwhile. */
  recovered(name: string): void;
  /** Calls `listener` with each ejection recorded, by any head (this one too); returns how to stop. */
  onEjection(listener: (ejection: SharedEjection) => void): () => void;
}

export interface MasterOptions {
  queueMaxLength: number;
  queueTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** How long a cancelled task keeps its worker slot while waiting for the worker's TaskCancelAck. */
  cancelAckTimeoutMs: number;
  /** How many workers may be tried for one task whose worker is lost before it produced anything. */
  maxAttempts: number;
  /** Most tasks alive at once, queued ones included. */
  maxLiveTasks: number;
  /** How long a model stays known after its last worker left: requests for it queue (then 503) instead of 404. */
  modelMemoryMs: number;
  /** Flow control: bytes of output a task's worker may have outstanding (sent, not yet consumed by its client). */
  taskWindowBytes: number;
  /** A running task that shows no progress for this long is failed over (before output) or failed (after). */
  taskStallMs: number;
  /** When a worker whose tasks keep failing or stalling is taken out of rotation, and for how long. */
  healthPolicy?: HealthPolicy;
  /** Where ejections are shared with the other heads (default: nowhere, each worker's health is this head's alone). */
  ejections?: EjectionsSource;
  /** Loading models on demand and unloading idle ones (default: on demand, after 5 minutes of idleness). */
  placement?: PlacerOptions;
  /** The other heads of the cluster, when there are any (docs/scaling.md): workers that ask are told of each. */
  heads?: HeadsSource;
  /** Which routing policy each model uses (default: least-loaded for all), and how policies are made. */
  routing?: { policyOf(model: string): PolicyName; create(name: PolicyName): RoutingPolicy };
  /** Whether this head plans placement (default: always, a head on its own). */
  planning?: Planning;
  /** Where placements are kept (default: in this process); each change is applied from it, on every head alike. */
  placements?: PlacementStore;
  log: Logger;
}

export type { TaskHints } from "./task.js";

export class Master {
  /** Workers, tasks, queues, routing indexes and placement: changed only by `apply` (cluster/apply.ts). */
  private readonly state: ClusterState;
  /** Which worker takes a task: each model's routing policy. */
  readonly router: Router;
  /** Subscribers to what happens (metrics, logs, dashboard). */
  readonly observers = new Observers();
  /** What is loaded where, on workers that load models on command. */
  readonly placer: ModelPlacer;
  /** Queued tasks' wait deadlines. */
  private readonly queueTimers = new Map<string, NodeJS.Timeout>();
  /** Stopped tasks' acknowledgement deadlines, by worker id and task id. */
  private readonly stopTimers = new Map<string, NodeJS.Timeout>();
  /** Per live task: what to undo when it ends (the abort listener). */
  private readonly disposers = new Map<string, Array<() => void>>();
  private accepting = true;
  private idleWaiters: Array<() => void> = [];
  /** Looks for stalled tasks and for ejected workers whose time is up. */
  private readonly sweepTimer: NodeJS.Timeout;
  /** Checks what workers say and turns it into events. */
  private readonly messages: WorkerMessages;
  /** Stops hearing of the cluster's heads, of shared ejections, of the planner lease and of the placements store. */
  private readonly unsubscribe: Array<() => void> = [];
  readonly planning: Planning;
  readonly placements: PlacementStore;
  /** The planner epoch this head leads at (docs/scaling.md, Fencing); undefined: commands go unfenced (one head). */
  private leaderEpoch: number | undefined;

  constructor(readonly options: MasterOptions) {
    this.router = new Router({
      ...(options.routing ?? { policyOf: () => "least-loaded", create: (name) => createPolicy(name) }),
      onDecision: (model, policy, reason) => this.observers.routed(model, policy, reason),
    });
    // Grants go out once this many bytes were consumed (as HTTP/2 batches WINDOW_UPDATE): few messages per task.
    this.state = new ClusterState(options.queueMaxLength, this.router, Math.max(1, Math.floor(options.taskWindowBytes / 4)));
    this.placer = new ModelPlacer(placerHost(this, this.state), options.placement ?? { autoLoad: true, idleMs: 5 * 60_000 }, this.state.placement);
    this.messages = new WorkerMessages({
      options,
      observers: this.observers,
      placer: this.placer,
      dispatch: (event) => this.dispatch(event),
      end: (task, ending) => this.end(task, ending),
    });
    const sweepMs = Math.min(1_000, Math.max(20, Math.floor(options.taskStallMs / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), sweepMs);
    this.sweepTimer.unref();
    if (options.heads) this.unsubscribe.push(options.heads.onChange(() => this.headsChanged()));
    if (options.ejections) this.unsubscribe.push(options.ejections.onEjection((ejection) => this.dispatch({ type: "WorkerEjectionShared", ...ejection, at: Date.now() })));
    this.planning = options.planning ?? soloPlanning;
    this.placements = options.placements ?? new LocalMap();
    // Every head applies placements from the store, the one that wrote them too.
    for (const entry of this.placements.entries()) this.dispatch({ type: "PlacementCreated", placement: placementOf(entry.value) });
    this.unsubscribe.push(
      this.placements.onChange((id, entry) => this.dispatch(entry ? { type: "PlacementCreated", placement: placementOf(entry.value) } : { type: "PlacementDeleted", id })),
      this.planning.onChange(() => this.planningChanged()),
    );
  }

  /**
   * Another head's request asked that `model` on the worker named `workerName` stay loaded `keepAliveMs` once idle
   * (Ollama's keep_alive): as if asked here.
   */
  keptAlive(workerName: string, model: string, keepAliveMs: number): void {
    const worker = this.state.workers.findByName(workerName);
    if (worker) this.dispatch({ type: "ModelUsed", workerId: worker.id, model, at: Date.now(), keepAliveMs });
  }

  /**
   * This head started or stopped running the planner. A new leader first tells workers its epoch (so a stale one's
   * commands are refused from then on), then plans what waits.
   */
  private planningChanged(): void {
    this.setLeaderEpoch(this.planning.leading ? this.planning.epoch : undefined);
    if (this.planning.leading) this.placer.planWaiting();
  }

  /** The connected workers, indexed by model (read only: it changes through events). */
  get registry(): WorkerRegistry {
    return this.state.workers;
  }

  // ---------- the API side ----------

  /**
   * Admits a request: runs it on a free worker at once, or queues it. Throws ModelNotFoundError, QueueFullError
   * or UnavailableError synchronously, so the API can answer with a status before it starts a stream.
   * Aborting `signal` cancels the task at whatever stage it is.
   */
  submit(request: TaskRequest, signal: AbortSignal, hints: TaskHints = {}): Task {
    if (!this.accepting) throw new UnavailableError("The coordinator is shutting down.");
    const { workers, queues } = this.state;
    const served = workers.isServed(request.model);
    if (!served && !workers.servedWithin(request.model, this.options.modelMemoryMs) && !this.placer.canLoad(request.model)) {
      throw new ModelNotFoundError(request.model);
    }
    if (this.state.tasks.size >= this.options.maxLiveTasks) throw new OverloadedError(this.options.maxLiveTasks);
    const task = new Task(`task-${nanoid(12)}`, request, hints);
    const worker = queues.depth(request.model) === 0 ? this.router.pick(task, workers.candidates(request.model)) : undefined;
    if (!worker && queues.isFull(request.model)) {
      throw new QueueFullError(request.model, Math.max(1, Math.ceil(this.options.queueTimeoutMs / 1000 / 4)));
    }
    task.events.onConsumed = (bytes) => this.dispatch({ type: "TaskConsumed", task, bytes });
    this.dispatch({ type: "TaskAdmitted", task });
    this.watchAbort(task, signal);
    if (worker) this.dispatch({ type: "TaskAssigned", task, worker, at: Date.now() });
    else this.dispatch({ type: "TaskQueued", task, from: undefined });
    if (!served && task.state === "queued") this.placer.demand(request.model);
    return task;
  }

  /** The API's parser says whether the task's output is inside its reasoning now (a cancel then counts as "thinking"). */
  reasoning(task: Task, inReasoning: boolean): void {
    if (task.thinking !== inReasoning) this.dispatch({ type: "TaskReasoning", task, inReasoning });
  }

  /** Cancels a task (client gone); a no-op when it already ended. */
  cancel(task: Task, reason: string): void {
    const stage = task.state === "queued" && this.waitsForLoad(task.model) ? "loading" : task.stage;
    this.end(task, { to: "cancelled", reason, stage });
  }

  /** Ends a task with `error` (e.g. its reply outgrew a limit) and tells its worker to stop; a no-op once ended. */
  fail(task: Task, error: CoordinatorError): void {
    this.end(task, { to: "failed", error });
  }

  isAccepting(): boolean {
    return this.accepting;
  }

  /** Stops admitting new tasks (they get UnavailableError); running and queued ones go on. */
  drain(): void {
    this.accepting = false;
  }

  /** Resolves when no task is alive, or after `timeoutMs`; true when idle. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.state.tasks.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (idle: boolean) => {
        clearTimeout(timer);
        this.idleWaiters = this.idleWaiters.filter((w) => w !== onIdle);
        resolve(idle);
      };
      const onIdle = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.idleWaiters.push(onIdle);
    });
  }

  // ---------- the worker side ----------

  /**
   * Registers a worker that completed the handshake. The caller has made sure its name is free, or held by a
   * connection that no longer answers (see worker-connection.ts): that one is dropped here, its tasks failed over.
   */
  registerWorker(hello: Hello, link: WorkerLink): WorkerEntry {
    const previous = this.state.workers.findByName(hello.worker.name);
    if (previous) {
      this.options.log.info({ worker: previous.id, workerName: previous.name }, "worker's old connection no longer answers; replaced by its new one");
      this.workerLeft(previous, new WorkerLostError("The worker's connection was lost."));
      previous.link.close(CloseCode.replaced, "replaced by a new connection with the same name");
    }
    const { worker: about } = hello;
    const worker = new WorkerEntry(`w-${nanoid(8)}`, about.name, about.engine, about.device, hello.models, about.maxConcurrency, link, this.options.healthPolicy);
    const features = this.takenUp(hello);
    const heads = features.includes(FEATURES.heads) ? this.options.heads?.list() : undefined;
    link.send({
      type: "Welcome",
      protocolVersion: PROTOCOL_VERSION,
      workerId: worker.id,
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
      taskWindowBytes: this.options.taskWindowBytes,
      ...(features.length > 0 && { features }),
      ...(heads && { heads }),
    });
    // Before any command its placement may send it: a command never reaches a worker ahead of its epoch's Leader.
    if (this.leaderEpoch !== undefined && features.includes(FEATURES.epoch)) link.send({ type: "Leader", epoch: this.leaderEpoch });
    // A worker ejected by some head is out of rotation here too, however it (re)connects.
    const ejection = this.options.ejections?.current(worker.name, Date.now());
    this.dispatch({ type: "WorkerRegistered", worker, features, ejection });
    if (worker.loadsModels) this.placer.workerJoined(worker.id, hello, worker.pullsModels);
    return worker;
  }

  /**
   * This head plans at `epoch` from now on (the planner lease's revision), or no longer fences its commands
   * (undefined): every worker that took up the "epoch" feature is told, now and when it joins.
   */
  setLeaderEpoch(epoch: number | undefined): void {
    if (epoch !== undefined && !(Number.isSafeInteger(epoch) && epoch > 0)) throw new RangeError(`a planner epoch is a positive integer, not ${epoch}`);
    this.leaderEpoch = epoch;
    if (epoch === undefined) return;
    for (const worker of this.state.workers.all()) if (worker.fencesCommands) worker.link.send({ type: "Leader", epoch });
  }

  /** The heads of the cluster changed: every worker that asked is told. */
  private headsChanged(): void {
    const heads = this.options.heads?.list();
    if (!heads) return;
    for (const worker of this.state.workers.all()) if (worker.learnsHeads) worker.link.send({ type: "Heads", heads });
  }

  /** The features a worker's Hello offers that this master takes up (docs/worker-protocol.md, Features). */
  private takenUp(hello: Hello): string[] {
    const offered = new Set(hello.features ?? []);
    const models = offered.has(FEATURES.models) && hello.library !== undefined;
    return [
      ...(models ? [FEATURES.models] : []),
      ...(models && offered.has(FEATURES.pull) ? [FEATURES.pull] : []),
      ...(offered.has(FEATURES.refuse) ? [FEATURES.refuse] : []),
      ...(offered.has(FEATURES.heads) && this.options.heads ? [FEATURES.heads] : []),
      ...(models && offered.has(FEATURES.epoch) ? [FEATURES.epoch] : []),
    ];
  }

  /** Applies a validated message from a registered worker. Throws ProtocolViolation for messages it may not send. */
  workerMessage(worker: WorkerEntry, message: WorkerMessage): void {
    this.messages.handle(worker, message);
  }

  /**
   * The worker's connection closed. A task it had not yet produced anything for goes back to the front of the
   * queue for another worker (while attempts remain); a task whose output had begun fails with `error`.
   */
  workerLeft(worker: WorkerEntry, error: CoordinatorError = new WorkerLostError()): void {
    if (this.dispatch({ type: "WorkerRemoved", worker }) === IGNORED) return;
    const retried = new Set<string>();
    for (const task of [...worker.slots.values()]) {
      this.dispatch({ type: "SlotReleased", task, worker, pump: true, at: Date.now() });
      if (this.retry(task, worker)) retried.add(task.model);
      else this.end(task, { to: "failed", error });
    }
    for (const model of retried) this.pump(model);
  }

  // ---------- state ----------

  /** The live state of workers, models and queues (for /v1/cluster, metrics and the dashboard). */
  snapshot(): ClusterView {
    return clusterView(this.state.workers, this.state.queues.depths(), this.state.tasks.size, this.router.stats(), this.placer);
  }

  /** A model as it is served, or as a worker's library offers it when none has it loaded. */
  modelInfo(model: string): ModelInfo | undefined {
    return this.state.workers.modelInfo(model) ?? this.placer.offeredInfo(model);
  }

  /** What every worker serving `model` can do, or what its library entry says when none has it loaded. */
  capabilitiesOf(model: string): string[] | undefined {
    const served = this.state.workers.capabilitiesOf(model);
    if (served !== undefined) return served;
    const offered = this.placer.offeredInfo(model);
    return offered ? [...modelCapabilities(offered)] : undefined;
  }

  /** Whether a request for `model` can be served: some worker serves it, or can load it. */
  knowsModel(model: string): boolean {
    return this.state.workers.isServed(model) || this.placer.canLoad(model);
  }

  /** Every model served now, with the workers serving it (read only). */
  servedModels(): Array<{ info: ModelInfo; workers: readonly Readonly<WorkerEntry>[] }> {
    return this.state.workers.models();
  }

  /** Whether some connected worker serves `model` now. */
  isServed(model: string): boolean {
    return this.state.workers.isServed(model);
  }

  /** How many workers are connected. */
  get workerCount(): number {
    return this.state.workers.size;
  }

  /** A connected worker's name, by id. */
  workerName(id: string): string | undefined {
    return this.state.workers.get(id)?.name;
  }

  /** A task not yet ended, by id (for tests and diagnostics; read only). */
  liveTask(id: string): Readonly<Task> | undefined {
    return this.state.tasks.get(id);
  }

  /** Tasks not yet ended (for shutdown and leak checks). */
  get liveTasks(): number {
    return this.state.tasks.size;
  }

  /** Tasks waiting in a queue (part of liveTasks). */
  get queuedTasks(): number {
    return this.state.queues.size;
  }

  /** Stops admitting, cancels every live task and lets go of all timers. */
  close(reason = "coordinator shutting down"): void {
    this.accepting = false;
    clearInterval(this.sweepTimer);
    for (const stop of this.unsubscribe.splice(0)) stop();
    for (const task of [...this.state.tasks.values()]) this.fail(task, new UnavailableError(reason));
    for (const timer of this.stopTimers.values()) clearTimeout(timer);
    this.stopTimers.clear();
  }

  // ---------- events: every change goes through apply ----------

  /** Applies an event to the state and carries out what follows; returns the effects (IGNORED: it changed nothing). */
  dispatch(event: ClusterEvent): readonly ClusterEffect[] {
    const effects = apply(this.state, event);
    if (effects === IGNORED) return effects;
    this.hear(event);
    for (let i = 0; i < effects.length; i += 1) this.run(effects[i] as ClusterEffect);
    return effects;
  }

  /** Tells hearers (the task's reader, metrics, logs) of an applied event. */
  private hear(event: ClusterEvent): void {
    switch (event.type) {
      case "TaskChunk":
        this.observers.taskTokens(event.task, event.worker, event.chunk.tokens);
        event.task.events.push(event.chunk);
        return;
      case "TaskEmbedded":
        event.task.events.push(event.embedding);
        return;
      case "TaskQueued":
        if (event.from) {
          this.options.log.info({ task: event.task.id, worker: event.from.id, attempt: event.task.attempts }, "worker lost; task re-queued");
          this.observers.taskRetried(event.task, event.from);
        }
        this.observers.taskQueued(event.task);
        return;
      case "TaskAssigned":
        this.observers.taskAssigned(event.task, event.worker);
        // Idle unloads are the planner's: a keep_alive asked here must reach it when another head plans.
        if (event.task.keepAliveMs !== undefined && !this.planning.leading) this.planning.keepAlive(event.worker.name, event.task.model, event.task.keepAliveMs);
        return;
      case "TaskRefused": {
        const { task, worker, reason } = event;
        this.options.log.info({ worker: worker.id, workerName: worker.name, task: task.id, reason }, "worker refused a task; it goes to another or waits");
        this.observers.taskRefused(task, worker, reason);
        return;
      }
      case "TaskEnded":
        return this.ended(event.task, event.ending);
      case "WorkerRegistered": {
        const { worker } = event;
        this.observers.workerJoined(worker);
        this.options.log.info({ worker: worker.id, workerName: worker.name, models: worker.models.map((m) => m.id), device: worker.device }, "worker joined");
        return;
      }
      case "WorkerRemoved":
        this.observers.workerLeft(event.worker);
        this.options.log.info({ worker: event.worker.id, workerName: event.worker.name }, "worker left");
        return;
      default:
        return;
    }
  }

  private run(effect: ClusterEffect): void {
    switch (effect.type) {
      case "send":
        return this.send(effect.workerId, effect.message);
      case "queueDeadline":
        this.clearQueueTimer(effect.task.id);
        this.queueTimers.set(effect.task.id, setTimeout(() => this.expireQueued(effect.task), this.options.queueTimeoutMs));
        return;
      case "clearQueueDeadline":
        return this.clearQueueTimer(effect.taskId);
      case "stopDeadline": {
        const { workerId, taskId } = effect;
        const timer = setTimeout(() => {
          this.stopTimers.delete(stopKey(workerId, taskId));
          const worker = this.state.workers.get(workerId);
          if (!worker) return;
          this.options.log.warn({ worker: worker.id, workerName: worker.name, task: taskId }, "no TaskCancelAck in time; freeing the slot");
          this.dispatch({ type: "StopSettled", taskId, worker });
        }, this.options.cancelAckTimeoutMs);
        this.stopTimers.set(stopKey(workerId, taskId), timer);
        return;
      }
      case "clearStopDeadline": {
        const key = stopKey(effect.workerId, effect.taskId);
        clearTimeout(this.stopTimers.get(key));
        this.stopTimers.delete(key);
        return;
      }
      case "pump":
        return this.pump(effect.model);
      case "pumpWorker":
        for (const model of effect.worker.models) this.pump(model.id);
        return;
      case "firstToken":
        return this.observers.taskFirstToken(effect.task, effect.worker);
      case "healthChanged":
        return this.healthChanged(effect.worker);
      case "shareEjection": {
        const { name, health } = effect.worker;
        return this.options.ejections?.ejected({ name, until: health.ejectedUntil, ejections: health.ejections });
      }
      case "clearEjection":
        return this.options.ejections?.recovered(effect.worker.name);
      case "modelsChanged":
        return this.observers.workerModelsChanged(effect.worker);
      case "loaded": {
        const worker = this.state.placement.workers.get(effect.workerId)?.name ?? effect.workerId;
        this.placer.served(effect.model);
        return this.observers.modelPlacement({ kind: "loaded", model: effect.model, worker, loadMs: effect.loadMs });
      }
      case "modelFreed":
        return this.placer.freed();
      case "abandoned":
        return this.placer.abandon(effect.model);
      case "loadFailed":
      case "replan":
        return this.placer.follow(effect);
      case "idle":
        for (const waiter of [...this.idleWaiters]) waiter();
        return;
    }
  }

  /** Sends to a worker; a task that cannot even be put on the wire (a bug of ours, an unserialisable request) fails. */
  private send(workerId: string, message: MasterMessage): void {
    const worker = this.state.workers.get(workerId);
    if (!worker) return;
    try {
      worker.link.send(this.fenced(worker, message));
    } catch (error) {
      if (message.type !== "TaskAssigned") throw error;
      this.options.log.error({ task: message.taskId, err: error }, "could not send a task to its worker");
      const task = worker.slots.get(message.taskId);
      if (!task) return;
      this.dispatch({ type: "SlotReleased", task, worker, pump: true, at: Date.now() });
      this.end(task, { to: "failed", error: new EngineError("The coordinator could not send this request to a worker.") });
    }
  }

  /** A model command as sent to `worker`: with this head's epoch when it leads at one and the worker fences them. */
  private fenced(worker: WorkerEntry, message: MasterMessage): MasterMessage {
    if (message.type !== "LoadModel" && message.type !== "UnloadModel") return message;
    return this.leaderEpoch !== undefined && worker.fencesCommands ? { ...message, epoch: this.leaderEpoch } : message;
  }

  /** A task ended: its reader gets the last event, its resources go, and hearers are told. */
  private ended(task: Task, ending: Ending): void {
    for (const dispose of this.disposers.get(task.id) ?? []) dispose();
    this.disposers.delete(task.id);
    switch (ending.to) {
      case "finished":
        task.events.push({
          type: "finished",
          finishReason: ending.finishReason,
          usage: ending.usage,
          ...(ending.stopSequence !== undefined && { stopSequence: ending.stopSequence }),
        });
        this.observers.taskEnded(task, { state: "finished" });
        break;
      case "failed":
        task.events.push({ type: "failed", error: ending.error });
        this.observers.taskEnded(task, { state: "failed", error: ending.error });
        break;
      case "cancelled":
        task.events.push({ type: "cancelled", stage: ending.stage, reason: ending.reason });
        this.observers.taskEnded(task, { state: "cancelled", stage: ending.stage, reason: ending.reason });
        break;
    }
    task.events.end();
  }

  private end(task: Task, ending: Ending): void {
    this.dispatch({ type: "TaskEnded", task, ending, at: Date.now() });
  }

  // ---------- deciding: which events happen ----------

  /** Periodic: fails over or fails tasks that stopped making progress, and lets ejected workers back on probation. */
  private sweep(): void {
    const now = Date.now();
    this.placer.sweep(now);
    for (const worker of [...this.state.workers.all()]) this.dispatch({ type: "WorkerHealth", worker, outcome: "tick", at: now, pump: true });
    const stalled: Task[] = [];
    for (const task of this.state.tasks.values()) {
      if (task.state !== "assigned" && task.state !== "streaming") continue;
      // A task whose window is used up waits for its client, not for its worker: that is the slow-client rule's to judge.
      if (task.outstandingBytes >= this.options.taskWindowBytes) continue;
      if (now - task.progressAt > this.options.taskStallMs) stalled.push(task);
    }
    // Every stall counts against its worker before any task moves on, so a worker whose tasks stalled together is
    // ejected before it could be handed their replacements.
    const retried = new Set<string>();
    for (const task of stalled) if (this.stalled(task, now)) retried.add(task.model);
    for (const model of retried) this.pump(model);
  }

  /** Gives up on a stalled task: fails it, or puts it back in the queue (true; the caller pumps). */
  private stalled(task: Task, now: number): boolean {
    const worker = workerOf(this.state, task);
    const silentMs = now - task.progressAt;
    this.options.log.warn(
      { task: task.id, worker: worker?.id, workerName: worker?.name, silentMs, state: task.state },
      "task stalled: no progress from its worker",
    );
    if (worker) {
      this.observers.taskStalled(task, worker);
      this.dispatch({ type: "WorkerHealth", worker, outcome: "failure", at: now, pump: false });
      this.dispatch({ type: "TaskStopping", taskId: task.id, worker, reason: "no progress: the coordinator gave up on this task", at: now });
      if (this.retry(task, worker)) return true;
    }
    this.end(task, { to: "failed", error: new WorkerStalledError(silentMs) });
    return false;
  }

  private healthChanged(worker: WorkerEntry): void {
    const { health } = worker;
    const level = health.state === "ejected" ? "warn" : "info";
    this.options.log[level](
      {
        worker: worker.id,
        workerName: worker.name,
        health: health.state,
        ...(health.state === "ejected" && { ejectedForMs: health.ejectedUntil - Date.now(), ejections: health.ejections }),
      },
      health.state === "ejected"
        ? "worker taken out of rotation: its tasks keep failing or stalling"
        : health.state === "probation"
          ? "worker on probation: it may run one task to prove itself"
          : "worker back in rotation",
    );
    this.observers.workerHealthChanged(worker);
  }

  /** Assigns queued tasks of `model` while some worker serving it has a free slot. */
  private pump(model: string): void {
    const { queues, workers } = this.state;
    for (;;) {
      const task = queues.peek(model);
      if (!task) return;
      const worker = this.router.pick(task, workers.candidates(model));
      if (!worker) return;
      // A task given up on by this worker (a stall) goes back to it only once it acknowledged stopping the old run:
      // the two runs share the task id, and a late chunk of the old one must not pass for the new one's.
      if (worker.cancelling.has(task.id)) return;
      this.dispatch({ type: "TaskAssigned", task, worker, at: Date.now() });
    }
  }

  /** Whether tasks of `model` wait for it to be loaded: no worker serves it, and one is loading it. */
  private waitsForLoad(model: string): boolean {
    return !this.state.workers.isServed(model) && this.placer.isLoading(model);
  }

  private expireQueued(task: Task): void {
    this.queueTimers.delete(task.id);
    if (task.state !== "queued") return;
    // Waiting for its model to load: the load's own deadline (--model-load-timeout-ms) bounds the wait, not the queue's.
    if (this.waitsForLoad(task.model)) {
      this.run({ type: "queueDeadline", task });
      return;
    }
    const error = new QueueTimeoutError(task.model, Date.now() - task.createdAt, this.state.workers.isServed(task.model));
    this.end(task, { to: "failed", error });
  }

  /** Whether a task whose worker was lost or stalled before it produced anything may go back to the queue (it does). */
  private retry(task: Task, from: WorkerEntry): boolean {
    if (task.state !== "assigned" || task.attempts >= this.options.maxAttempts || !this.accepting) return false;
    return this.dispatch({ type: "TaskQueued", task, from }) !== IGNORED;
  }

  private clearQueueTimer(taskId: string): void {
    const timer = this.queueTimers.get(taskId);
    if (timer) {
      clearTimeout(timer);
      this.queueTimers.delete(taskId);
    }
  }

  private watchAbort(task: Task, signal: AbortSignal): void {
    const onAbort = () => this.cancel(task, "client disconnected");
    if (signal.aborted) {
      queueMicrotask(onAbort);
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    this.disposers.set(task.id, [() => signal.removeEventListener("abort", onAbort)]);
  }
}

function stopKey(workerId: string, taskId: string): string {
  return `${workerId}\n${taskId}`;
}
