// The master: admits tasks, assigns them to workers, and applies every task state change in one place.
import { nanoid } from "nanoid";
import type { Logger } from "../log.js";
import type { FinishReason, Hello, Usage, WorkerMessage } from "../worker-protocol/index.js";
import { CloseCode, PROTOCOL_VERSION } from "../worker-protocol/index.js";
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
} from "./errors.js";
import { type ClusterView, clusterView } from "./cluster-view.js";
import { Observers } from "./observer.js";
import { WorkerEntry, type WorkerLink, WorkerRegistry } from "./registry.js";
import { ModelQueues } from "./scheduler.js";
import { canTransition, isTerminal, Task, type TaskRequest, type TaskState } from "./task.js";

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
  log: Logger;
}

/** How a task reached a terminal state; carries what the task's client is told. */
type Ending =
  | { to: "finished"; finishReason: FinishReason; usage: Usage }
  | { to: "failed"; error: CoordinatorError }
  | { to: "cancelled"; reason: string };

export class Master {
  readonly registry = new WorkerRegistry();
  /** Subscribers to what happens (metrics, logs, dashboard). */
  readonly observers = new Observers();
  private readonly queues: ModelQueues;
  /** Queued tasks' wait deadlines. */
  private readonly queueTimers = new Map<string, NodeJS.Timeout>();
  /** Tasks not yet in a terminal state. */
  private readonly live = new Map<string, Task>();
  /** Per live task: what to undo when it ends (queue timer, abort listener). */
  private readonly disposers = new Map<string, Array<() => void>>();
  /** Cancelled tasks whose worker slot waits for an acknowledgement, with the timer that frees it anyway. */
  private readonly pendingAcks = new Map<string, { worker: WorkerEntry; timer: NodeJS.Timeout }>();
  private accepting = true;
  private idleWaiters: Array<() => void> = [];

  constructor(readonly options: MasterOptions) {
    this.queues = new ModelQueues(options.queueMaxLength);
  }

  // ---------- the API side ----------

  /**
   * Admits a request: runs it on a free worker at once, or queues it. Throws ModelNotFoundError, QueueFullError
   * or UnavailableError synchronously, so the API can answer with a status before it starts a stream.
   * Aborting `signal` cancels the task at whatever stage it is.
   */
  submit(request: TaskRequest, signal: AbortSignal): Task {
    if (!this.accepting) throw new UnavailableError("The coordinator is shutting down.");
    if (!this.registry.isServed(request.model) && !this.registry.servedWithin(request.model, this.options.modelMemoryMs)) {
      throw new ModelNotFoundError(request.model);
    }
    if (this.live.size >= this.options.maxLiveTasks) throw new OverloadedError(this.options.maxLiveTasks);
    const worker = this.queues.depth(request.model) === 0 ? this.registry.pick(request.model) : undefined;
    if (!worker && this.queues.isFull(request.model)) {
      throw new QueueFullError(request.model, Math.max(1, Math.ceil(this.options.queueTimeoutMs / 1000 / 4)));
    }
    const task = new Task(`task-${nanoid(12)}`, request);
    this.live.set(task.id, task);
    this.watchAbort(task, signal);
    if (worker) this.assign(task, worker);
    else this.enqueue(task, false);
    return task;
  }

  /** Cancels a task (client gone); a no-op when it already ended. */
  cancel(task: Task, reason: string): void {
    this.end(task, { to: "cancelled", reason });
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

  /** Registers a worker that completed the handshake; a worker of the same name replaces its old registration. */
  registerWorker(hello: Hello, link: WorkerLink): WorkerEntry {
    const previous = this.registry.findByName(hello.worker.name);
    if (previous) {
      this.options.log.info({ worker: previous.id, workerName: previous.name }, "worker replaced by a new connection");
      this.workerLeft(previous, new WorkerLostError("The worker restarted."));
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
    );
    this.registry.add(worker);
    this.observers.workerJoined(worker);
    link.send({
      type: "Welcome",
      protocolVersion: PROTOCOL_VERSION,
      workerId: worker.id,
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
    });
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
        return;
      case "Hello":
        throw new ProtocolViolation("duplicate_hello", "Hello was already received on this connection");
      case "Draining":
        worker.state = "draining";
        this.registry.changed(worker);
        return;
      case "TokenChunk": {
        const task = this.taskOf(worker, message.taskId);
        if (!task) return this.observers.staleMessage(message.type);
        if (message.seq < task.nextSeq) return this.observers.staleMessage(message.type); // a duplicate: already relayed
        if (message.seq > task.nextSeq) {
          throw new ProtocolViolation("bad_sequence", `chunk ${message.seq} of ${message.taskId} skips ahead of ${task.nextSeq}`);
        }
        task.nextSeq += 1;
        const tokens = message.tokens ?? 1;
        task.completionTokens += tokens;
        worker.completionTokens += tokens;
        if (task.state === "assigned") {
          this.transition(task, "streaming");
          this.observers.taskFirstToken(task, worker);
        }
        this.observers.taskTokens(task, worker, tokens);
        task.events.push({ type: "chunk", text: message.text, tokens });
        return;
      }
      case "TaskFinished": {
        const task = this.taskOf(worker, message.taskId);
        this.release(worker, message.taskId);
        if (task) this.end(task, { to: "finished", finishReason: message.finishReason, usage: message.usage });
        else this.observers.staleMessage(message.type);
        return;
      }
      case "TaskFailed": {
        const task = this.taskOf(worker, message.taskId);
        this.release(worker, message.taskId);
        if (task) this.end(task, { to: "failed", error: new EngineError(message.error.message, message.error.code) });
        else this.observers.staleMessage(message.type);
        return;
      }
      case "TaskCancelAck": {
        if (this.taskOf(worker, message.taskId)) {
          throw new ProtocolViolation("unexpected_ack", `task ${message.taskId} was not cancelled`);
        }
        this.release(worker, message.taskId);
        return;
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
    this.observers.workerLeft(worker);
    const retried = new Set<string>();
    for (const task of [...worker.slots.values()]) {
      worker.slots.delete(task.id);
      this.clearPendingAck(task.id);
      if (task.state === "assigned" && task.attempts < this.options.maxAttempts && this.accepting) {
        this.requeue(task, worker);
        retried.add(task.model);
      } else {
        this.end(task, { to: "failed", error });
      }
    }
    for (const model of retried) this.pump(model);
    this.options.log.info({ worker: worker.id, workerName: worker.name }, "worker left");
  }

  // ---------- state ----------

  /** The live state of workers, models and queues (for /v1/cluster, metrics and the dashboard). */
  snapshot(): ClusterView {
    return clusterView(this.registry, this.queues.depths(), this.live.size);
  }

  /** Tasks not yet ended (for shutdown and leak checks). */
  get liveTasks(): number {
    return this.live.size;
  }

  /** Stops admitting, cancels every live task and lets go of all timers. */
  close(reason = "coordinator shutting down"): void {
    this.accepting = false;
    for (const task of [...this.live.values()]) {
      this.end(task, { to: "failed", error: new UnavailableError(reason) });
      this.sendCancel(task, reason);
    }
    for (const [, pending] of this.pendingAcks) clearTimeout(pending.timer);
    this.pendingAcks.clear();
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
    task.assignedAt = Date.now();
    task.attempts += 1;
    worker.slots.set(task.id, task);
    this.registry.changed(worker);
    this.observers.taskAssigned(task, worker);
    try {
      worker.link.send({ type: "TaskAssigned", taskId: task.id, ...task.request });
    } catch (error) {
      // The task could not even be put on the wire (a bug of ours or an unserialisable request): fail it, free the slot.
      this.options.log.error({ task: task.id, err: error }, "could not send a task to its worker");
      worker.slots.delete(task.id);
      this.registry.changed(worker);
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

  private clearPendingAck(taskId: string): void {
    const pending = this.pendingAcks.get(taskId);
    if (pending) {
      clearTimeout(pending.timer);
      this.pendingAcks.delete(taskId);
    }
  }

  private end(task: Task, ending: Ending): void {
    const stage = task.stage;
    const wasQueued = task.state === "queued";
    if (!this.transition(task, ending.to)) return;
    task.endedAt = Date.now();
    this.live.delete(task.id);
    this.clearQueueTimer(task.id);
    for (const dispose of this.disposers.get(task.id) ?? []) dispose();
    this.disposers.delete(task.id);
    if (wasQueued) this.queues.remove(task);
    switch (ending.to) {
      case "finished":
        task.events.push({ type: "finished", finishReason: ending.finishReason, usage: ending.usage });
        this.observers.taskEnded(task, { state: "finished" });
        break;
      case "failed":
        task.events.push({ type: "failed", error: ending.error });
        this.observers.taskEnded(task, { state: "failed", error: ending.error });
        break;
      case "cancelled":
        task.events.push({ type: "cancelled", stage, reason: ending.reason });
        this.observers.taskEnded(task, { state: "cancelled", stage, reason: ending.reason });
        this.sendCancel(task, ending.reason);
        break;
    }
    task.events.end();
    if (this.live.size === 0) for (const waiter of [...this.idleWaiters]) waiter();
  }

  /** Tells the task's worker to stop; its slot is held until the worker acknowledges or the ack deadline passes. */
  private sendCancel(task: Task, reason: string): void {
    const worker = task.workerId ? this.registry.get(task.workerId) : undefined;
    if (!worker || !worker.slots.has(task.id)) return;
    worker.link.send({ type: "TaskCancelled", taskId: task.id, reason });
    const timer = setTimeout(() => {
      this.options.log.warn({ worker: worker.id, task: task.id }, "no TaskCancelAck in time; freeing the slot");
      this.release(worker, task.id);
    }, this.options.cancelAckTimeoutMs);
    this.pendingAcks.set(task.id, { worker, timer });
  }

  private release(worker: WorkerEntry, taskId: string): void {
    this.clearPendingAck(taskId);
    const task = worker.slots.get(taskId);
    if (!task) return;
    worker.slots.delete(taskId);
    this.registry.changed(worker);
    worker.rememberEnded(taskId);
    if (this.registry.get(worker.id) === worker) for (const model of worker.models) this.pump(model.id);
  }

  /** Assigns queued tasks of `model` while some worker serving it has a free slot. */
  private pump(model: string): void {
    for (;;) {
      const task = this.queues.peek(model);
      if (!task) return;
      const worker = this.registry.pick(model);
      if (!worker) return;
      this.queues.remove(task);
      this.assign(task, worker);
    }
  }

  private expireQueued(task: Task): void {
    if (task.state !== "queued") return;
    const error = new QueueTimeoutError(task.model, Date.now() - task.createdAt, this.registry.isServed(task.model));
    this.end(task, { to: "failed", error });
  }

  /** The live task `taskId` of this worker, undefined for a late message, or a ProtocolViolation when it is not its task. */
  private taskOf(worker: WorkerEntry, taskId: string): Task | undefined {
    const task = worker.slots.get(taskId);
    if (task) return isTerminal(task.state) ? undefined : task;
    if (worker.recentlyEnded.has(taskId)) return undefined;
    throw new ProtocolViolation("unknown_task", `task ${taskId} is not assigned to this worker`);
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
