// The one place where the master's state changes: an event in, the state changed, and the effects that follow out
// (sends, deadlines, which queues to pump, what hearers must be told). Worker messages are checked before they become
// events (worker-messages.ts): an event here is always valid, and applying it never throws. An event that no longer applies (a
// task that already ended, a worker that already left) changes nothing and returns IGNORED.
import { FEATURES, type ModelUsage } from "../../worker-protocol/index.js";
import { applyPlacement, type PlacementEvent } from "../placement/apply.js";
import type { WorkerEntry } from "../registry.js";
import { canTransition, isTerminal, type Task, type TaskState } from "../task.js";
import type { ClusterEffect, ClusterEvent, Ending, TaskLifecycleEvent, WorkerEvent } from "./events.js";
import type { ClusterState } from "./state.js";

/** What an event that changed nothing returns. */
export const IGNORED: readonly ClusterEffect[] = Object.freeze([]);
/** What an event that changed the state without consequences returns (shared: most chunks). */
const NONE: readonly ClusterEffect[] = Object.freeze([]);

/** Applies one event to the state; returns what must follow from it, or IGNORED when it no longer applies. */
export function apply(state: ClusterState, event: ClusterEvent): readonly ClusterEffect[] {
  switch (event.type) {
    case "TaskAdmitted":
    case "TaskQueued":
    case "TaskAssigned":
    case "TaskProgressed":
    case "TaskChunk":
    case "TaskEmbedded":
    case "TaskConsumed":
    case "TaskReasoning":
    case "SlotReleased":
    case "TaskRefused":
    case "TaskStopping":
    case "StopSettled":
    case "TaskFinishedOn":
    case "TaskEnded":
      return applyTask(state, event);
    case "WorkerRegistered":
    case "WorkerRemoved":
    case "WorkerDraining":
    case "WorkerReported":
    case "WorkerHealth":
      return applyWorker(state, event);
    case "WorkerEjectionShared":
      return ejectionShared(state, event);
    default:
      return placementEffects(state, event);
  }
}

function applyTask(state: ClusterState, event: TaskLifecycleEvent): readonly ClusterEffect[] {
  switch (event.type) {
    case "TaskAdmitted":
      state.tasks.set(event.task.id, event.task);
      return NONE;
    case "TaskQueued": {
      const { task } = event;
      if (event.from) return requeued(state, task) ? [{ type: "queueDeadline", task }] : IGNORED;
      state.queues.offer(task);
      return [{ type: "queueDeadline", task }];
    }
    case "TaskAssigned":
      return assigned(state, event.task, event.worker, event.at);
    case "TaskProgressed": {
      const { task } = event;
      task.promptTokensDone = event.promptTokensDone;
      if (event.promptTokens !== undefined) task.promptTokens = event.promptTokens;
      return progressed(state, task, event.worker, event.at);
    }
    case "TaskChunk": {
      const { task, worker, chunk } = event;
      task.outstandingBytes += chunk.bytes;
      task.nextSeq += 1;
      task.completionTokens += chunk.tokens;
      worker.completionTokens += chunk.tokens;
      const effects = progressed(state, task, worker, event.at);
      if (task.state !== "assigned") return effects;
      transition(task, "streaming");
      task.firstTokenAt = event.at;
      return [...effects, { type: "firstToken", task, worker }];
    }
    case "TaskEmbedded": {
      const { task } = event;
      task.embeddingDimensions = event.embedding.values.length;
      task.nextSeq += 1;
      return progressed(state, task, event.worker, event.at);
    }
    case "TaskConsumed":
      return consumed(state, event.task, event.bytes);
    case "TaskReasoning":
      event.task.thinking = event.inReasoning;
      return NONE;
    case "SlotReleased":
      return released(state, event.task, event.worker, event.pump, event.at) ?? IGNORED;
    case "TaskRefused":
      return refused(state, event.task, event.worker);
    case "TaskStopping":
      return stopping(state, event.taskId, event.worker, event.reason, event.at);
    case "StopSettled": {
      const { worker, taskId } = event;
      if (!worker.cancelling.delete(taskId)) return IGNORED;
      worker.refusing = false;
      state.workers.changed(worker);
      // The model's memory may be free for a waiting load only now: its task held it until it stopped.
      const effects: ClusterEffect[] = [{ type: "clearStopDeadline", workerId: worker.id, taskId }, { type: "modelFreed" }];
      if (state.workers.get(worker.id) === worker) effects.push({ type: "pumpWorker", worker });
      return effects;
    }
    case "TaskFinishedOn":
      event.worker.promptTokens += event.usage.promptTokens;
      event.worker.cachedTokens += event.usage.cachedTokens ?? 0;
      return NONE;
    case "TaskEnded":
      return ended(state, event.task, event.ending, event.at);
  }
}

function transition(task: Task, to: TaskState): boolean {
  if (!canTransition(task.state, to)) return false;
  task.state = to;
  return true;
}

function assigned(state: ClusterState, task: Task, worker: WorkerEntry, at: number): readonly ClusterEffect[] {
  if (!transition(task, "assigned")) return IGNORED;
  state.queues.remove(task);
  task.workerId = worker.id;
  task.nextSeq = 0;
  task.embeddingDimensions = undefined;
  task.assignedAt = at;
  task.progressAt = at;
  task.started = false;
  task.attempts += 1;
  worker.slots.set(task.id, task);
  worker.unstarted += 1;
  state.workers.changed(worker);
  state.router.assigned(task, worker);
  modelUsed(state, worker, task, at);
  return [
    { type: "clearQueueDeadline", taskId: task.id },
    { type: "send", workerId: worker.id, message: { type: "TaskAssigned", taskId: task.id, ...task.request } },
  ];
}

/** The worker showed it is working on the task: the stall clock restarts, and a first sign frees its start slot. */
function progressed(state: ClusterState, task: Task, worker: WorkerEntry, at: number): readonly ClusterEffect[] {
  task.progressAt = at;
  if (task.started) return NONE;
  task.started = true;
  worker.unstarted -= 1;
  state.workers.changed(worker);
  return [{ type: "pumpWorker", worker }];
}

/** The reader consumed `bytes` of a task's output: they are granted back to its worker once a batch is due. */
function consumed(state: ClusterState, task: Task, bytes: number): readonly ClusterEffect[] {
  task.ungrantedBytes += bytes;
  if (task.ungrantedBytes < state.grantBatchBytes || isTerminal(task.state)) return NONE;
  const granted = task.ungrantedBytes;
  task.ungrantedBytes = 0;
  task.outstandingBytes -= granted;
  const worker = workerOf(state, task);
  return worker ? [{ type: "send", workerId: worker.id, message: { type: "TaskCredit", taskId: task.id, bytes: granted } }] : NONE;
}

/** Frees a task's slot on its worker; undefined when it held none there. */
function released(state: ClusterState, task: Task, worker: WorkerEntry, pump: boolean, at: number): ClusterEffect[] | undefined {
  if (worker.slots.get(task.id) !== task) return undefined;
  vacate(state, task, worker, false);
  modelUsed(state, worker, task, at);
  const effects: ClusterEffect[] = [{ type: "modelFreed" }];
  if (pump && state.workers.get(worker.id) === worker) effects.push({ type: "pumpWorker", worker });
  return effects;
}

/**
 * The worker did not start the task: its slot is free here, the worker counts as full until it says otherwise, and
 * the task goes back to the front of its queue for another worker (nothing was lost: the attempt does not count).
 */
function refused(state: ClusterState, task: Task, worker: WorkerEntry): readonly ClusterEffect[] {
  if (worker.slots.get(task.id) !== task || task.state !== "assigned") return IGNORED;
  vacate(state, task, worker, true);
  requeued(state, task);
  task.attempts -= 1;
  return [{ type: "queueDeadline", task }, { type: "pump", model: task.model }];
}

/** Takes the task out of the worker's slots; `refusing`: whether the worker now counts as full until heard from. */
function vacate(state: ClusterState, task: Task, worker: WorkerEntry, refusing: boolean): void {
  worker.slots.delete(task.id);
  if (!task.started) worker.unstarted -= 1;
  worker.refusing = refusing;
  worker.rememberEnded(task.id);
  state.workers.changed(worker);
  state.router.released(task, worker);
}

/** Back to the front of its queue, off any worker: a task that lost its worker before any output, or was refused. */
function requeued(state: ClusterState, task: Task): boolean {
  if (!transition(task, "queued")) return false;
  task.workerId = undefined;
  state.queues.offerFront(task);
  return true;
}

/**
 * Takes a task off its worker and tells the worker to stop it. The slot stays taken until the worker acknowledges
 * or the deadline passes; messages about the task from then on are late, not wrong.
 */
function stopping(state: ClusterState, taskId: string, worker: WorkerEntry, reason: string, at: number): ClusterEffect[] {
  const task = worker.slots.get(taskId);
  const effects = (task && released(state, task, worker, false, at)) || [];
  worker.cancelling.set(taskId, task?.model ?? "");
  state.workers.changed(worker);
  effects.push({ type: "send", workerId: worker.id, message: { type: "TaskCancelled", taskId, reason } });
  effects.push({ type: "stopDeadline", workerId: worker.id, taskId });
  return effects;
}

function ended(state: ClusterState, task: Task, ending: Ending, at: number): readonly ClusterEffect[] {
  // Still on its worker only when the coordinator ends it (a cancel, a limit, shutdown): the worker must stop. A
  // worker that ended the task itself, left or stalled has already been let go of it.
  const worker = workerOf(state, task);
  const wasQueued = task.state === "queued";
  if (!transition(task, ending.to)) return IGNORED;
  task.endedAt = at;
  state.tasks.delete(task.id);
  const effects: ClusterEffect[] = [{ type: "clearQueueDeadline", taskId: task.id }];
  if (wasQueued) {
    state.queues.remove(task);
    if (state.queues.depth(task.model) === 0 && !state.workers.isServed(task.model)) effects.push({ type: "abandoned", model: task.model });
  }
  if (worker && ending.to !== "finished") {
    effects.push(...stopping(state, task.id, worker, ending.to === "failed" ? ending.error.message : ending.reason, at));
  }
  if (state.tasks.size === 0) effects.push({ type: "idle" });
  return effects;
}

/** The worker a live task runs on, if it is still connected. */
export function workerOf(state: ClusterState, task: Task): WorkerEntry | undefined {
  const worker = task.workerId ? state.workers.get(task.workerId) : undefined;
  return worker?.slots.get(task.id) === task ? worker : undefined;
}

/**
 * The worker's own count of its models' use, over every head: a model another head's tasks keep busy is as used as
 * one this head's tasks do, so the planner never unloads it as idle (docs/scaling.md §6, "Usage").
 */
function usedElsewhere(state: ClusterState, workerId: string, usage: readonly ModelUsage[], at: number): void {
  const slots = state.placement.workers.get(workerId)?.slots;
  if (!slots) return;
  for (const { id, running, idleMs } of usage) {
    const slot = slots.get(id);
    if (slot?.state !== "loaded") continue;
    slot.lastUsedAt = Math.max(slot.lastUsedAt, running > 0 ? at : at - idleMs);
  }
}

/** A task of the model started or ended on the worker: it was in use then (idle unloads count from the last use). */
function modelUsed(state: ClusterState, worker: WorkerEntry, task: Task, at: number): void {
  if (!worker.loadsModels) return;
  applyPlacement(state.placement, { type: "ModelUsed", workerId: worker.id, model: task.model, at, ...(task.keepAliveMs !== undefined && { keepAliveMs: task.keepAliveMs }) });
}

function applyWorker(state: ClusterState, event: Exclude<WorkerEvent, { type: "WorkerEjectionShared" }>): readonly ClusterEffect[] {
  const { worker } = event;
  switch (event.type) {
    case "WorkerRegistered": {
      worker.loadsModels = event.features.includes(FEATURES.models);
      worker.pullsModels = event.features.includes(FEATURES.pull);
      worker.refusesTasks = event.features.includes(FEATURES.refuse);
      worker.learnsHeads = event.features.includes(FEATURES.heads);
      worker.fencesCommands = event.features.includes(FEATURES.epoch);
      // Out of rotation before it can be handed a task.
      const ejected = event.ejection !== undefined && worker.health.shared(event.ejection.until, event.ejection.ejections);
      state.workers.add(worker);
      return ejected ? [{ type: "healthChanged", worker }, { type: "pumpWorker", worker }] : [{ type: "pumpWorker", worker }];
    }
    case "WorkerRemoved": {
      if (state.workers.get(worker.id) !== worker) return IGNORED;
      state.workers.remove(worker);
      state.router.workerRemoved(worker, (model) => state.workers.isServed(model));
      const effects: ClusterEffect[] = [];
      if (worker.loadsModels) effects.push(...placementEffects(state, { type: "WorkerLeft", workerId: worker.id }));
      for (const taskId of worker.cancelling.keys()) effects.push({ type: "clearStopDeadline", workerId: worker.id, taskId });
      worker.cancelling.clear();
      return effects;
    }
    case "WorkerDraining":
      worker.state = "draining";
      state.workers.changed(worker);
      return NONE;
    case "WorkerReported":
      if (event.running !== undefined) worker.reportedRunning = event.running;
      if (event.cache !== undefined) worker.cache = event.cache;
      if (event.models !== undefined) {
        worker.modelUsage = event.models;
        usedElsewhere(state, worker.id, event.models, event.at);
      }
      if (!worker.refusing) return NONE;
      // It refused a task: its heartbeat is its word that it may take one again.
      worker.refusing = false;
      state.workers.changed(worker);
      return [{ type: "pumpWorker", worker }];
    case "WorkerHealth": {
      const { health } = worker;
      const changed = event.outcome === "success" ? health.success() : event.outcome === "failure" ? health.failure(event.at) : health.tick(event.at);
      if (!changed) return NONE;
      state.workers.changed(worker);
      const effects: ClusterEffect[] = [{ type: "healthChanged", worker }];
      // An ejection of its own is shared; a probe that succeeded ends the shared one (a tick only starts probation).
      if (health.state === "ejected") effects.push({ type: "shareEjection", worker });
      else if (health.state === "healthy") effects.push({ type: "clearEjection", worker });
      if (event.pump && worker.hasCapacity) effects.push({ type: "pumpWorker", worker });
      return effects;
    }
  }
}

/**
 * An ejection shared by a head (this one too, harmlessly): the connected worker of that name is out of rotation until
 * its end; one already over changes nothing.
 */
function ejectionShared(state: ClusterState, event: Extract<WorkerEvent, { type: "WorkerEjectionShared" }>): readonly ClusterEffect[] {
  const worker = state.workers.findByName(event.name);
  if (!worker || event.until <= event.at || !worker.health.shared(event.until, event.ejections)) return IGNORED;
  state.workers.changed(worker);
  return [{ type: "healthChanged", worker }];
}

/** What is loaded where: the placement state changes, and the models a worker serves follow it. */
function placementEffects(state: ClusterState, event: PlacementEvent): ClusterEffect[] {
  const effects: ClusterEffect[] = [];
  for (const effect of applyPlacement(state.placement, event)) {
    switch (effect.type) {
      case "send":
        effects.push(effect);
        break;
      case "serve": {
        const worker = state.workers.get(effect.workerId);
        if (effect.loadMs !== undefined) effects.push({ type: "loaded", workerId: effect.workerId, model: effect.info.id, loadMs: effect.loadMs });
        if (!worker) break;
        state.workers.addModel(worker, effect.info);
        effects.push({ type: "modelsChanged", worker }, { type: "pump", model: effect.info.id });
        break;
      }
      case "unserve": {
        const worker = state.workers.get(effect.workerId);
        if (!worker) break;
        state.workers.removeModel(worker, effect.model);
        state.router.modelRemoved(worker, effect.model, state.workers.isServed(effect.model));
        effects.push({ type: "modelsChanged", worker });
        break;
      }
      case "loadFailed":
      case "replan":
        effects.push(effect);
        break;
    }
  }
  return effects;
}
