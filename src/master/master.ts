// The master: admits tasks, assigns them to workers, and applies every task state change in one place.
import { nanoid } from "nanoid";
import type { Logger } from "../log.js";
import type { FinishReason, Hello, LoadModel, ModelInfo, PullModel, TaskFinished, UnloadModel, Usage, WorkerMessage } from "../worker-protocol/index.js";
import { chunkCost, CloseCode, decodeEmbedding, FEATURES, modelCapabilities, PROTOCOL_VERSION, type TaskEmbedding } from "../worker-protocol/index.js";
import {
  type CoordinatorError,
  EngineError,
  ModelNotFoundError,
  OverloadedError,
  ProtocolViolation,
  QueueFullError,
  QueueTimeoutError,
  UnavailableError,
  WorkerLostError,
  WorkerStalledError,
} from "./errors.js";
import { type ClusterView, clusterView } from "./cluster-view.js";
import { Observers } from "./observer.js";
import { ModelPlacer, type PlacerHost, type PlacerOptions } from "./placement/placer.js";
import { WorkerEntry, type WorkerLink, WorkerRegistry } from "./registry.js";
import { createPolicy } from "./routing/index.js";
import type { PolicyName, RoutingPolicy } from "./routing/policy.js";
import { Router } from "./routing/router.js";
import { ModelQueues } from "./scheduler.js";
import { canTransition, isTerminal, Task, type TaskRequest, type TaskState } from "./task.js";
import type { HealthPolicy } from "./worker-health.js";

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
  /** Loading models on demand and unloading idle ones (default: on demand, after 5 minutes of idleness). */
  placement?: PlacerOptions;
  /** Which routing policy each model uses (default: least-loaded for all), and how policies are made. */
  routing?: { policyOf(model: string): PolicyName; create(name: PolicyName): RoutingPolicy };
  log: Logger;
}

/** What the API knows of a request beyond the task itself, for routing and placement. */
export interface TaskHints {
  /** A client-supplied session key (routing by session). */
  sessionKey?: string | undefined;
  /** How long the model may stay loaded once idle after this request (Ollama's keep_alive); Infinity: for ever. */
  keepAliveMs?: number | undefined;
  /** The HTTP request's id and route, for logs and the dashboard. */
  requestId?: string | undefined;
  route?: string | undefined;
}

/** How a task reached a terminal state; carries what the task's client is told. */
type Ending =
  | { to: "finished"; finishReason: FinishReason; usage: Usage; stopSequence: string | undefined }
  | { to: "failed"; error: CoordinatorError }
  | { to: "cancelled"; reason: string };

export class Master {
  readonly registry = new WorkerRegistry();
  /** Which worker takes a task: each model's routing policy. */
  readonly router: Router;
  /** Subscribers to what happens (metrics, logs, dashboard). */
  readonly observers = new Observers();
  /** What is loaded where, on workers that load models on command. */
  readonly placer: ModelPlacer;
  private readonly queues: ModelQueues;
  /** Queued tasks' wait deadlines. */
  private readonly queueTimers = new Map<string, NodeJS.Timeout>();
  /** Tasks not yet in a terminal state. */
  private readonly live = new Map<string, Task>();
  /** Per live task: what to undo when it ends (queue timer, abort listener). */
  private readonly disposers = new Map<string, Array<() => void>>();
  private accepting = true;
  private idleWaiters: Array<() => void> = [];
  /** Looks for stalled tasks and for ejected workers whose time is up. */
  private readonly sweepTimer: NodeJS.Timeout;
  /** Grants go out once this many bytes were consumed (as HTTP/2 batches WINDOW_UPDATE): few messages per task. */
  private readonly grantBatchBytes: number;

  constructor(readonly options: MasterOptions) {
    this.queues = new ModelQueues(options.queueMaxLength);
    this.router = new Router({
      ...(options.routing ?? { policyOf: () => "least-loaded", create: (name) => createPolicy(name) }),
      onDecision: (model, policy, reason) => this.observers.routed(model, policy, reason),
    });
    this.placer = new ModelPlacer(this.placerHost(), options.placement ?? { autoLoad: true, idleMs: 5 * 60_000 });
    this.grantBatchBytes = Math.max(1, Math.floor(options.taskWindowBytes / 4));
    const sweepMs = Math.min(1_000, Math.max(20, Math.floor(options.taskStallMs / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), sweepMs);
    this.sweepTimer.unref();
  }

  // ---------- the API side ----------

  /**
   * Admits a request: runs it on a free worker at once, or queues it. Throws ModelNotFoundError, QueueFullError
   * or UnavailableError synchronously, so the API can answer with a status before it starts a stream.
   * Aborting `signal` cancels the task at whatever stage it is.
   */
  submit(request: TaskRequest, signal: AbortSignal, hints: TaskHints = {}): Task {
    if (!this.accepting) throw new UnavailableError("The coordinator is shutting down.");
    const served = this.registry.isServed(request.model);
    if (!served && !this.registry.servedWithin(request.model, this.options.modelMemoryMs) && !this.placer.canLoad(request.model)) {
      throw new ModelNotFoundError(request.model);
    }
    if (this.live.size >= this.options.maxLiveTasks) throw new OverloadedError(this.options.maxLiveTasks);
    const task = new Task(`task-${nanoid(12)}`, request, hints.sessionKey);
    task.keepAliveMs = hints.keepAliveMs;
    task.requestId = hints.requestId;
    task.route = hints.route;
    const worker = this.queues.depth(request.model) === 0 ? this.router.pick(task, this.registry.candidates(request.model)) : undefined;
    if (!worker && this.queues.isFull(request.model)) {
      throw new QueueFullError(request.model, Math.max(1, Math.ceil(this.options.queueTimeoutMs / 1000 / 4)));
    }
    task.events.onConsumed = (bytes) => this.consumed(task, bytes);
    this.live.set(task.id, task);
    this.watchAbort(task, signal);
    if (worker) this.assign(task, worker);
    else this.enqueue(task, false);
    if (!served && task.state === "queued") this.placer.demand(request.model);
    return task;
  }

  /** The API's parser says whether the task's output is inside its reasoning now (a cancel then counts as "thinking"). */
  reasoning(task: Task, inReasoning: boolean): void {
    task.thinking = inReasoning;
  }

  /** Cancels a task (client gone); a no-op when it already ended. */
  cancel(task: Task, reason: string): void {
    this.end(task, { to: "cancelled", reason });
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
    if (this.live.size === 0) return Promise.resolve(true);
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
    const previous = this.registry.findByName(hello.worker.name);
    if (previous) {
      this.options.log.info({ worker: previous.id, workerName: previous.name }, "worker's old connection no longer answers; replaced by its new one");
      this.workerLeft(previous, new WorkerLostError("The worker's connection was lost."));
      previous.link.close(CloseCode.replaced, "replaced by a new connection with the same name");
    }
    const worker = new WorkerEntry(
      `w-${nanoid(8)}`,
      hello.worker.name,
      hello.worker.engine,
      hello.worker.device,
      hello.models,
      hello.worker.maxConcurrency,
      link,
      this.options.healthPolicy,
    );
    this.registry.add(worker);
    this.observers.workerJoined(worker);
    const models = hello.features?.includes(FEATURES.models) === true && hello.library !== undefined;
    const pulls = models && hello.features?.includes(FEATURES.pull) === true;
    link.send({
      type: "Welcome",
      protocolVersion: PROTOCOL_VERSION,
      workerId: worker.id,
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
      taskWindowBytes: this.options.taskWindowBytes,
      ...(models && { features: pulls ? [FEATURES.models, FEATURES.pull] : [FEATURES.models] }),
    });
    if (models) {
      worker.loadsModels = true;
      worker.pullsModels = pulls;
      this.placer.workerJoined(worker.id, hello, pulls);
    }
    this.options.log.info(
      { worker: worker.id, workerName: worker.name, models: worker.models.map((m) => m.id), device: worker.device },
      "worker joined",
    );
    for (const model of worker.models) this.pump(model.id);
    return worker;
  }

  /** Applies a validated message from a registered worker. Throws ProtocolViolation for messages it may not send. */
  workerMessage(worker: WorkerEntry, message: WorkerMessage): void {
    switch (message.type) {
      case "Heartbeat":
        if (message.running !== undefined) worker.reportedRunning = message.running;
        if (message.cache !== undefined) worker.cache = message.cache;
        return;
      case "Hello":
        throw new ProtocolViolation("duplicate_hello", "Hello was already received on this connection");
      case "Draining":
        worker.state = "draining";
        this.registry.changed(worker);
        return;
      case "Library":
      case "ModelStatus":
        if (!worker.loadsModels) throw new ProtocolViolation("feature_not_negotiated", `${message.type} needs the "models" feature, which this connection did not take up`);
        this.placer.report(worker.id, message);
        return;
      case "PullStatus":
        if (!worker.pullsModels) throw new ProtocolViolation("feature_not_negotiated", `PullStatus needs the "pull" feature, which this connection did not take up`);
        this.placer.report(worker.id, message);
        return;
      case "TokenChunk": {
        const task = this.taskOf(worker, message.taskId);
        if (!task) return this.observers.staleMessage(message.type);
        if (task.request.embed) throw new ProtocolViolation("unexpected_chunk", `task ${message.taskId} is an embedding task: send TaskEmbedding`);
        if (message.seq < task.nextSeq) return this.observers.staleMessage(message.type); // a duplicate: already relayed
        if (message.seq > task.nextSeq) {
          throw new ProtocolViolation("bad_sequence", `chunk ${message.seq} of ${message.taskId} skips ahead of ${task.nextSeq}`);
        }
        if (task.outstandingBytes >= this.options.taskWindowBytes) {
          throw new ProtocolViolation(
            "window_exceeded",
            `task ${message.taskId} already has ${task.outstandingBytes} bytes outstanding (window ${this.options.taskWindowBytes}); wait for TaskCredit`,
          );
        }
        const bytes = chunkCost(message.text, message.logprobs);
        task.outstandingBytes += bytes;
        task.nextSeq += 1;
        const tokens = message.tokens ?? 1;
        task.completionTokens += tokens;
        worker.completionTokens += tokens;
        this.progressed(task, worker);
        if (task.state === "assigned") {
          this.transition(task, "streaming");
          this.observers.taskFirstToken(task, worker);
        }
        this.observers.taskTokens(task, worker, tokens);
        // Logprobs only for a task that asked for them (a worker cannot push them on anyone else).
        if (message.logprobs !== undefined && task.request.logprobs !== undefined) {
          task.events.push({ type: "chunk", text: message.text, tokens, bytes, logprobs: message.logprobs });
        } else task.events.push({ type: "chunk", text: message.text, tokens, bytes });
        return;
      }
      case "TaskEmbedding": {
        const task = this.taskOf(worker, message.taskId);
        if (!task) return this.observers.staleMessage(message.type);
        return this.embedded(task, worker, message);
      }
      case "TaskProgress": {
        const task = this.taskOf(worker, message.taskId);
        if (!task) return this.observers.staleMessage(message.type);
        task.promptTokensDone = message.promptTokensDone;
        if (message.promptTokens !== undefined) task.promptTokens = message.promptTokens;
        this.progressed(task, worker);
        return;
      }
      case "TaskFinished": {
        const task = this.taskOf(worker, message.taskId);
        if (!task) return this.lateEnd(worker, message.taskId, message.type);
        const inputs = task.request.embed?.inputs.length;
        if (inputs !== undefined && task.nextSeq !== inputs) {
          throw new ProtocolViolation("missing_embeddings", `task ${message.taskId} finished with ${task.nextSeq} of its ${inputs} embeddings`);
        }
        this.release(worker, task);
        if (worker.health.success()) this.healthChanged(worker);
        const usage = cappedUsage(message.usage);
        worker.promptTokens += usage.promptTokens;
        worker.cachedTokens += usage.cachedTokens ?? 0;
        const stopSequence = this.requestedStop(worker, task, message);
        this.end(task, { to: "finished", finishReason: message.finishReason, usage, stopSequence });
        return;
      }
      case "TaskFailed": {
        const task = this.taskOf(worker, message.taskId);
        if (!task) return this.lateEnd(worker, message.taskId, message.type);
        this.release(worker, task);
        const error = new EngineError(message.error.message, message.error.code);
        // A request the worker refused as malformed says nothing about the worker's health.
        if (!error.isClientError && worker.health.failure(Date.now())) this.healthChanged(worker);
        this.end(task, { to: "failed", error });
        return;
      }
      case "TaskCancelAck": {
        if (worker.cancelling.has(message.taskId)) {
          this.options.log.debug({ worker: worker.id, task: message.taskId, completionTokens: message.completionTokens }, "task stopped on its worker");
          this.freeCancelled(worker, message.taskId);
          return;
        }
        if (worker.slots.has(message.taskId)) {
          throw new ProtocolViolation("unexpected_ack", `task ${message.taskId} was not cancelled`);
        }
        // An ack after the deadline freed the slot anyway: late, not wrong.
        if (worker.recentlyEnded.has(message.taskId)) return this.observers.staleMessage(message.type);
        throw new ProtocolViolation("unknown_task", `task ${message.taskId} is not assigned to this worker`);
      }
    }
  }

  /**
   * The worker's connection closed. A task it had not yet produced anything for goes back to the front of the
   * queue for another worker (while attempts remain); a task whose output had begun fails with `error`.
   */
  workerLeft(worker: WorkerEntry, error: CoordinatorError = new WorkerLostError()): void {
    if (this.registry.get(worker.id) !== worker) return;
    this.registry.remove(worker);
    this.router.workerRemoved(worker, (model) => this.registry.isServed(model));
    this.placer.workerLeft(worker.id);
    this.observers.workerLeft(worker);
    this.forgetCancelling(worker);
    const retried = new Set<string>();
    for (const task of [...worker.slots.values()]) {
      this.release(worker, task);
      if (this.retry(task, worker)) retried.add(task.model);
      else this.end(task, { to: "failed", error });
    }
    for (const model of retried) this.pump(model);
    this.options.log.info({ worker: worker.id, workerName: worker.name }, "worker left");
  }

  // ---------- state ----------

  /** The live state of workers, models and queues (for /v1/cluster, metrics and the dashboard). */
  snapshot(): ClusterView {
    return clusterView(this.registry, this.queues.depths(), this.live.size, this.router.stats(), this.placer);
  }

  /** A model as it is served, or as a worker's library offers it when none has it loaded. */
  modelInfo(model: string): ModelInfo | undefined {
    return this.registry.modelInfo(model) ?? this.placer.offeredInfo(model);
  }

  /** What every worker serving `model` can do, or what its library entry says when none has it loaded. */
  capabilitiesOf(model: string): string[] | undefined {
    const served = this.registry.capabilitiesOf(model);
    if (served !== undefined) return served;
    const offered = this.placer.offeredInfo(model);
    return offered ? [...modelCapabilities(offered)] : undefined;
  }

  /** Whether a request for `model` can be served: some worker serves it, or can load it. */
  knowsModel(model: string): boolean {
    return this.registry.isServed(model) || this.placer.canLoad(model);
  }

  /** A task not yet ended, by id (for tests and diagnostics; read only). */
  liveTask(id: string): Readonly<Task> | undefined {
    return this.live.get(id);
  }

  /** Tasks not yet ended (for shutdown and leak checks). */
  get liveTasks(): number {
    return this.live.size;
  }

  /** Stops admitting, cancels every live task and lets go of all timers. */
  close(reason = "coordinator shutting down"): void {
    this.accepting = false;
    clearInterval(this.sweepTimer);
    for (const task of [...this.live.values()]) this.fail(task, new UnavailableError(reason));
    for (const worker of this.registry.all()) this.forgetCancelling(worker);
  }

  // ---------- transitions: the only code that changes a task's state ----------

  private transition(task: Task, to: TaskState): boolean {
    if (!canTransition(task.state, to)) return false;
    task.state = to;
    if (to === "streaming") task.firstTokenAt = Date.now();
    return true;
  }

  private assign(task: Task, worker: WorkerEntry): void {
    if (!this.transition(task, "assigned")) return;
    this.clearQueueTimer(task.id);
    task.workerId = worker.id;
    task.nextSeq = 0;
    task.embeddingDimensions = undefined;
    task.assignedAt = Date.now();
    task.progressAt = task.assignedAt;
    task.started = false;
    task.attempts += 1;
    worker.slots.set(task.id, task);
    worker.unstarted += 1;
    this.registry.changed(worker);
    this.router.assigned(task, worker);
    this.placer.used(worker.id, task.model, task.keepAliveMs);
    this.observers.taskAssigned(task, worker);
    try {
      worker.link.send({ type: "TaskAssigned", taskId: task.id, ...task.request });
    } catch (error) {
      // The task could not even be put on the wire (a bug of ours or an unserialisable request): fail it, free the slot.
      this.options.log.error({ task: task.id, err: error }, "could not send a task to its worker");
      this.release(worker, task);
      this.end(task, { to: "failed", error: new EngineError("The coordinator could not send this request to a worker.") });
    }
  }

  /** Puts a task in its model's queue (a retried one at the front) with its wait deadline. */
  private enqueue(task: Task, front: boolean): void {
    if (front) this.queues.offerFront(task);
    else this.queues.offer(task);
    this.queueTimers.set(task.id, setTimeout(() => this.expireQueued(task), this.options.queueTimeoutMs));
    this.observers.taskQueued(task);
  }

  /** A task whose worker was lost before producing anything: back to the queue, transparently to its client. */
  private requeue(task: Task, lostWorker: WorkerEntry): void {
    if (!this.transition(task, "queued")) return;
    task.workerId = undefined;
    this.options.log.info({ task: task.id, worker: lostWorker.id, attempt: task.attempts }, "worker lost; task re-queued");
    this.observers.taskRetried(task, lostWorker);
    this.enqueue(task, true);
  }

  private clearQueueTimer(taskId: string): void {
    const timer = this.queueTimers.get(taskId);
    if (timer) {
      clearTimeout(timer);
      this.queueTimers.delete(taskId);
    }
  }

  /** Whether a task whose worker was lost or stalled before it produced anything may go back to the queue. */
  private retry(task: Task, from: WorkerEntry): boolean {
    if (task.state !== "assigned" || task.attempts >= this.options.maxAttempts || !this.accepting) return false;
    this.requeue(task, from);
    return true;
  }

  private end(task: Task, ending: Ending): void {
    const stage = task.state === "queued" && this.waitsForLoad(task.model) ? "loading" : task.stage;
    // Still on its worker only when the coordinator ends it (a cancel, a limit, shutdown): the worker must stop. A
    // worker that ended the task itself, left or stalled has already been let go of it.
    const worker = this.workerOf(task);
    const wasQueued = task.state === "queued";
    if (!this.transition(task, ending.to)) return;
    task.endedAt = Date.now();
    this.live.delete(task.id);
    this.clearQueueTimer(task.id);
    for (const dispose of this.disposers.get(task.id) ?? []) dispose();
    this.disposers.delete(task.id);
    if (wasQueued) {
      this.queues.remove(task);
      if (this.queues.depth(task.model) === 0 && !this.registry.isServed(task.model)) this.placer.abandon(task.model);
    }
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
        if (worker) this.stopOnWorker(task.id, worker, ending.error.message);
        break;
      case "cancelled":
        task.events.push({ type: "cancelled", stage, reason: ending.reason });
        this.observers.taskEnded(task, { state: "cancelled", stage, reason: ending.reason });
        if (worker) this.stopOnWorker(task.id, worker, ending.reason);
        break;
    }
    task.events.end();
    if (this.live.size === 0) for (const waiter of [...this.idleWaiters]) waiter();
  }

  /**
   * The stop string a TaskFinished names, when it is one the task asked for and the reply ended by a stop. Anything
   * else is ignored (and logged), not a protocol error: it must not reach the client, but it costs no other task.
   */
  private requestedStop(worker: WorkerEntry, task: Task, message: TaskFinished): string | undefined {
    const named = message.stopSequence;
    if (named === undefined) return undefined;
    if (message.finishReason === "stop" && task.request.params.stop?.includes(named)) return named;
    this.options.log.warn(
      { worker: worker.id, workerName: worker.name, task: task.id, finishReason: message.finishReason, stopSequence: named.slice(0, 200) },
      "ignoring a stopSequence that is not one of the task's stops",
    );
    return undefined;
  }

  /** A task the worker was told to stop ended anyway (the cancel crossed its end on the wire): its slot is free. */
  private lateEnd(worker: WorkerEntry, taskId: string, type: string): void {
    this.freeCancelled(worker, taskId);
    this.observers.staleMessage(type);
  }

  /** The worker a live task runs on, if it is still connected. */
  private workerOf(task: Task): WorkerEntry | undefined {
    const worker = task.workerId ? this.registry.get(task.workerId) : undefined;
    return worker?.slots.get(task.id) === task ? worker : undefined;
  }

  /**
   * Takes a task off its worker and tells the worker to stop it. The slot stays taken until the worker
   * acknowledges or the ack deadline passes; messages about the task from then on are late, not wrong.
   */
  private stopOnWorker(taskId: string, worker: WorkerEntry, reason: string): void {
    const task = worker.slots.get(taskId);
    if (task) this.release(worker, task, false);
    worker.link.send({ type: "TaskCancelled", taskId, reason });
    const timer = setTimeout(() => {
      this.options.log.warn({ worker: worker.id, workerName: worker.name, task: taskId }, "no TaskCancelAck in time; freeing the slot");
      this.freeCancelled(worker, taskId);
    }, this.options.cancelAckTimeoutMs);
    worker.cancelling.set(taskId, timer);
    this.registry.changed(worker);
  }

  /** Lets go of the ack deadlines of a worker that left (or of every worker, on close). */
  private forgetCancelling(worker: WorkerEntry): void {
    for (const timer of worker.cancelling.values()) clearTimeout(timer);
    worker.cancelling.clear();
  }

  private freeCancelled(worker: WorkerEntry, taskId: string): void {
    const timer = worker.cancelling.get(taskId);
    if (timer === undefined) return;
    clearTimeout(timer);
    worker.cancelling.delete(taskId);
    this.registry.changed(worker);
    if (this.registry.get(worker.id) === worker) this.pumpWorker(worker);
  }

  /** Frees a task's slot on its worker (`pump`: and give the slot to a waiting task at once). */
  private release(worker: WorkerEntry, task: Task, pump = true): void {
    if (worker.slots.get(task.id) !== task) return;
    worker.slots.delete(task.id);
    if (!task.started) worker.unstarted -= 1;
    worker.rememberEnded(task.id);
    this.registry.changed(worker);
    this.router.released(task, worker);
    this.placer.used(worker.id, task.model, task.keepAliveMs);
    if (pump && this.registry.get(worker.id) === worker) this.pumpWorker(worker);
  }

  private pumpWorker(worker: WorkerEntry): void {
    for (const model of worker.models) this.pump(model.id);
  }

  /** The worker showed it is working on the task: the stall clock restarts, and a first sign frees its start slot. */
  private progressed(task: Task, worker: WorkerEntry): void {
    task.progressAt = Date.now();
    if (task.started) return;
    task.started = true;
    worker.unstarted -= 1;
    this.registry.changed(worker);
    this.pumpWorker(worker);
  }

  /**
   * One vector of an embedding task, checked before it reaches the task's reader: in input order, a well-formed
   * float32 vector of the task's one length. The task stays "assigned" (nothing reaches its client before the
   * last vector), so a worker lost half way through hands the whole batch to another.
   */
  private embedded(task: Task, worker: WorkerEntry, message: TaskEmbedding): void {
    const { embed } = task.request;
    if (!embed) throw new ProtocolViolation("unexpected_embedding", `task ${message.taskId} is not an embedding task`);
    if (message.index < task.nextSeq) return this.observers.staleMessage(message.type);
    if (message.index !== task.nextSeq || message.index >= embed.inputs.length) {
      throw new ProtocolViolation("bad_sequence", `embedding ${message.index} of ${message.taskId} is not the next one (${task.nextSeq} of ${embed.inputs.length})`);
    }
    const values = decodeEmbedding(message.embedding);
    const expected = embed.dimensions ?? task.embeddingDimensions;
    if (!values || (expected !== undefined && values.length !== expected)) {
      throw new ProtocolViolation(
        "bad_embedding",
        `embedding ${message.index} of ${message.taskId} is not ${expected === undefined ? "a" : `a ${expected}-value`} base64 float32 vector of finite values`,
      );
    }
    task.embeddingDimensions = values.length;
    task.nextSeq += 1;
    this.progressed(task, worker);
    task.events.push({ type: "embedding", index: message.index, values, tokens: message.tokens });
  }

  /** The reader consumed `bytes` of a task's output: grant them back to its worker, in batches. */
  private consumed(task: Task, bytes: number): void {
    task.ungrantedBytes += bytes;
    if (task.ungrantedBytes < this.grantBatchBytes || isTerminal(task.state)) return;
    const worker = this.workerOf(task);
    const granted = task.ungrantedBytes;
    task.ungrantedBytes = 0;
    task.outstandingBytes -= granted;
    worker?.link.send({ type: "TaskCredit", taskId: task.id, bytes: granted });
  }

  /** Periodic: fails over or fails tasks that stopped making progress, and lets ejected workers back on probation. */
  private sweep(): void {
    const now = Date.now();
    this.placer.sweep(now);
    for (const worker of this.registry.all()) {
      if (worker.health.tick(now)) this.healthChanged(worker);
    }
    const stalled: Task[] = [];
    for (const task of this.live.values()) {
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
    const worker = this.workerOf(task);
    const silentMs = now - task.progressAt;
    this.options.log.warn(
      { task: task.id, worker: worker?.id, workerName: worker?.name, silentMs, state: task.state },
      "task stalled: no progress from its worker",
    );
    if (worker) {
      this.observers.taskStalled(task, worker);
      if (worker.health.failure(now)) this.healthChanged(worker, false);
      this.stopOnWorker(task.id, worker, "no progress: the coordinator gave up on this task");
      if (this.retry(task, worker)) return true;
    }
    this.end(task, { to: "failed", error: new WorkerStalledError(silentMs) });
    return false;
  }

  private healthChanged(worker: WorkerEntry, pump = true): void {
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
    this.registry.changed(worker);
    this.observers.workerHealthChanged(worker);
    if (pump && worker.hasCapacity) this.pumpWorker(worker);
  }

  /** Assigns queued tasks of `model` while some worker serving it has a free slot. */
  private pump(model: string): void {
    for (;;) {
      const task = this.queues.peek(model);
      if (!task) return;
      const worker = this.router.pick(task, this.registry.candidates(model));
      if (!worker) return;
      // A task given up on by this worker (a stall) goes back to it only once it acknowledged stopping the old run:
      // the two runs share the task id, and a late chunk of the old one must not pass for the new one's.
      if (worker.cancelling.has(task.id)) return;
      this.queues.remove(task);
      this.assign(task, worker);
    }
  }

  /** Whether tasks of `model` wait for it to be loaded: no worker serves it, and one is loading it. */
  private waitsForLoad(model: string): boolean {
    return !this.registry.isServed(model) && this.placer.isLoading(model);
  }

  private expireQueued(task: Task): void {
    if (task.state !== "queued") return;
    // Waiting for its model to load: the load's own deadline (--model-load-timeout-ms) bounds the wait, not the queue's.
    if (this.waitsForLoad(task.model)) {
      this.queueTimers.set(task.id, setTimeout(() => this.expireQueued(task), this.options.queueTimeoutMs));
      return;
    }
    const error = new QueueTimeoutError(task.model, Date.now() - task.createdAt, this.registry.isServed(task.model));
    this.end(task, { to: "failed", error });
  }

  /** The live task `taskId` of this worker, undefined for a late message, or a ProtocolViolation when it is not its task. */
  private taskOf(worker: WorkerEntry, taskId: string): Task | undefined {
    const task = worker.slots.get(taskId);
    if (task) return isTerminal(task.state) ? undefined : task;
    if (worker.recentlyEnded.has(taskId) || worker.cancelling.has(taskId)) return undefined;
    throw new ProtocolViolation("unknown_task", `task ${taskId} is not assigned to this worker`);
  }

  /** What the placer may ask of the master: sends, the registry's index of served models, the queues. */
  private placerHost(): PlacerHost {
    return {
      log: this.options.log,
      send: (workerId: string, message: LoadModel | UnloadModel | PullModel) => this.registry.get(workerId)?.link.send(message),
      serve: (workerId: string, info: ModelInfo) => {
        const worker = this.registry.get(workerId);
        if (!worker) return;
        this.registry.addModel(worker, info);
        this.observers.workerModelsChanged(worker);
        this.pump(info.id);
      },
      unserve: (workerId: string, model: string) => {
        const worker = this.registry.get(workerId);
        if (!worker) return;
        this.registry.removeModel(worker, model);
        this.router.modelRemoved(worker, model, this.registry.isServed(model));
        this.observers.workerModelsChanged(worker);
      },
      isServed: (model: string) => this.registry.isServed(model),
      notify: (notice) => this.observers.modelPlacement(notice),
      waitingModels: () => this.queues.depths().keys(),
      failWaiting: (model: string, error: CoordinatorError) => {
        for (const task of [...this.queues.all()]) if (task.model === model) this.end(task, { to: "failed", error });
      },
      busy: (workerId: string) => this.registry.get(workerId)?.busy ?? 0,
      inUse: (workerId: string, model: string) => {
        if (this.queues.depth(model) > 0) return true;
        const worker = this.registry.get(workerId);
        if (!worker) return false;
        for (const task of worker.slots.values()) if (task.model === model) return true;
        return false;
      },
    };
  }

  private watchAbort(task: Task, signal: AbortSignal): void {
    const onAbort = () => this.cancel(task, "client disconnected");
    if (signal.aborted) {
      queueMicrotask(onAbort);
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    this.addDisposer(task, () => signal.removeEventListener("abort", onAbort));
  }

  private addDisposer(task: Task, dispose: () => void): void {
    const list = this.disposers.get(task.id);
    if (list) list.push(dispose);
    else this.disposers.set(task.id, [dispose]);
  }
}

/** A worker's usage as the master passes it on: cached tokens are at most the prompt (absent when none). */
function cappedUsage(usage: Usage): Usage {
  const { cachedTokens, ...counts } = usage;
  const cached = Math.min(cachedTokens ?? 0, usage.promptTokens);
  return cached > 0 ? { ...counts, cachedTokens: cached } : counts;
}
