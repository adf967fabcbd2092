// What the master reports as it works: metrics, request logs and the dashboard subscribe here, never inside the lifecycle.
import type { CoordinatorError } from "./errors.js";
import type { PlacementNotice } from "./placement/placer.js";
import type { WorkerEntry } from "./registry.js";
import type { CancelStage, Task } from "./task.js";

/** How a task ended, as observers see it. */
export type TaskOutcome =
  | { state: "finished" }
  | { state: "failed"; error: CoordinatorError }
  | { state: "cancelled"; stage: CancelStage; reason: string };

/** Every method is optional; each is called synchronously, so it must be cheap and must not throw. */
export interface MasterObserver {
  taskQueued?(task: Task): void;
  taskAssigned?(task: Task, worker: WorkerEntry): void;
  /** The first chunk of text arrived from the worker. */
  taskFirstToken?(task: Task, worker: WorkerEntry): void;
  /** A chunk of `tokens` tokens arrived (the per-token path: keep it O(1)). */
  taskTokens?(task: Task, worker: WorkerEntry, tokens: number): void;
  taskEnded?(task: Task, outcome: TaskOutcome): void;
  /** A task whose worker was lost before it produced anything goes back to the queue. */
  taskRetried?(task: Task, lostWorker: WorkerEntry): void;
  /** The worker refused the task (no free slot, or draining): it goes to another worker or waits. */
  taskRefused?(task: Task, worker: WorkerEntry, reason: string): void;
  /** A running task showed no progress for too long: it is failed over (before output) or failed. */
  taskStalled?(task: Task, worker: WorkerEntry): void;
  workerJoined?(worker: WorkerEntry): void;
  /** A worker was ejected from rotation, put on probation, or restored (see worker-health.ts). */
  workerHealthChanged?(worker: WorkerEntry): void;
  workerLeft?(worker: WorkerEntry): void;
  /** A model load started, ended (loaded or failed) or an unload started, on a worker that loads on command. */
  modelPlacement?(notice: PlacementNotice): void;
  /** The models a worker serves changed (it loaded or is unloading one). */
  workerModelsChanged?(worker: WorkerEntry): void;
  /** A worker broke the protocol and was disconnected. */
  protocolError?(code: string): void;
  /** A late or duplicate worker message was ignored (a chunk after the end, a second finish, …). */
  staleMessage?(type: string): void;
  /** A routing policy chose a worker for a task of `model`, for `reason`. */
  routed?(model: string, policy: string, reason: string): void;
}

/** Fans one event out to every registered observer. */
export class Observers implements Required<MasterObserver> {
  private readonly list: MasterObserver[] = [];

  add(observer: MasterObserver): () => void {
    this.list.push(observer);
    return () => {
      const at = this.list.indexOf(observer);
      if (at >= 0) this.list.splice(at, 1);
    };
  }

  taskQueued(task: Task): void {
    for (const o of this.list) o.taskQueued?.(task);
  }
  taskAssigned(task: Task, worker: WorkerEntry): void {
    for (const o of this.list) o.taskAssigned?.(task, worker);
  }
  taskFirstToken(task: Task, worker: WorkerEntry): void {
    for (const o of this.list) o.taskFirstToken?.(task, worker);
  }
  taskTokens(task: Task, worker: WorkerEntry, tokens: number): void {
    for (const o of this.list) o.taskTokens?.(task, worker, tokens);
  }
  taskEnded(task: Task, outcome: TaskOutcome): void {
    for (const o of this.list) o.taskEnded?.(task, outcome);
  }
  taskRetried(task: Task, lostWorker: WorkerEntry): void {
    for (const o of this.list) o.taskRetried?.(task, lostWorker);
  }
  taskRefused(task: Task, worker: WorkerEntry, reason: string): void {
    for (const o of this.list) o.taskRefused?.(task, worker, reason);
  }
  taskStalled(task: Task, worker: WorkerEntry): void {
    for (const o of this.list) o.taskStalled?.(task, worker);
  }
  workerJoined(worker: WorkerEntry): void {
    for (const o of this.list) o.workerJoined?.(worker);
  }
  workerHealthChanged(worker: WorkerEntry): void {
    for (const o of this.list) o.workerHealthChanged?.(worker);
  }
  workerLeft(worker: WorkerEntry): void {
    for (const o of this.list) o.workerLeft?.(worker);
  }
  modelPlacement(notice: PlacementNotice): void {
    for (const o of this.list) o.modelPlacement?.(notice);
  }
  workerModelsChanged(worker: WorkerEntry): void {
    for (const o of this.list) o.workerModelsChanged?.(worker);
  }
  protocolError(code: string): void {
    for (const o of this.list) o.protocolError?.(code);
  }
  staleMessage(type: string): void {
    for (const o of this.list) o.staleMessage?.(type);
  }

  routed(model: string, policy: string, reason: string): void {
    for (const o of this.list) o.routed?.(model, policy, reason);
  }
}
