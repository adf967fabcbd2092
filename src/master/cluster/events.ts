// What can happen to the master's state (events) and what must follow once it has (effects). `apply` (apply.ts) is
// the one function that turns an event into a state change and its effects; the master only decides which events
// happen (from requests, worker messages and timers) and carries out the effects.
//
// Task and worker events name this process's own objects (a task, a worker's connection entry): they are this head's
// alone. Placement events are plain data, so they can be shared with other heads (docs/scaling.md).
import type { FinishReason, MasterMessage, ModelCache, ModelUsage, TaskRefused as TaskRefusedMessage, Usage } from "../../worker-protocol/index.js";
import type { CoordinatorError } from "../errors.js";
import type { PlacementEffect, PlacementEvent } from "../placement/apply.js";
import type { WorkerEntry } from "../registry.js";
import type { CancelStage, Task, TaskEvent } from "../task.js";

/** How a task reached a terminal state; carries what the task's client is told. */
export type Ending =
  | { to: "finished"; finishReason: FinishReason; usage: Usage; stopSequence: string | undefined }
  | { to: "failed"; error: CoordinatorError }
  /** `stage`: where the task was when cancelled, as metrics and logs count it. */
  | { to: "cancelled"; reason: string; stage: CancelStage };

export type ChunkEvent = Extract<TaskEvent, { type: "chunk" }>;
export type EmbeddingEvent = Extract<TaskEvent, { type: "embedding" }>;

export type TaskLifecycleEvent =
  /** Admitted by the master: alive from now on, queued or assigned next. */
  | { type: "TaskAdmitted"; task: Task }
  /** Waits in its model's queue; `from`: a task taken back from a lost or stalled worker, ahead of the others. */
  | { type: "TaskQueued"; task: Task; from: WorkerEntry | undefined }
  | { type: "TaskAssigned"; task: Task; worker: WorkerEntry; at: number }
  /** The worker reported prompt processing (TaskProgress). */
  | { type: "TaskProgressed"; task: Task; worker: WorkerEntry; promptTokensDone: number; promptTokens: number | undefined; at: number }
  /** A chunk of output, checked (in sequence, within the window): it goes to the task's reader. */
  | { type: "TaskChunk"; task: Task; worker: WorkerEntry; chunk: ChunkEvent; at: number }
  /** One vector of an embedding task, checked (in order, of the task's one length). */
  | { type: "TaskEmbedded"; task: Task; worker: WorkerEntry; embedding: EmbeddingEvent; at: number }
  /** The task's reader consumed `bytes` of its output (flow control: they are granted back to the worker in batches). */
  | { type: "TaskConsumed"; task: Task; bytes: number }
  /** The task's output went into or out of its reasoning (a cancellation then counts as "thinking"). */
  | { type: "TaskReasoning"; task: Task; inReasoning: boolean }
  /** The task no longer holds a slot on the worker (it ended there, or the worker left); `pump`: give the slot away. */
  | { type: "SlotReleased"; task: Task; worker: WorkerEntry; pump: boolean; at: number }
  /** The coordinator gave up on a task its worker still runs: the worker is told to stop; the slot stays taken until it acknowledges. */
  | { type: "TaskStopping"; taskId: string; worker: WorkerEntry; reason: string; at: number }
  /** The worker acknowledged a stop, or its deadline passed: the slot is free. */
  | { type: "StopSettled"; taskId: string; worker: WorkerEntry }
  /** The worker refused the task (no slot, or draining): back to the front of its queue, the attempt not counted. */
  | { type: "TaskRefused"; task: Task; worker: WorkerEntry; reason: TaskRefusedMessage["reason"] }
  /** The worker finished the task: its usage counts on the worker. */
  | { type: "TaskFinishedOn"; worker: WorkerEntry; usage: Usage }
  | { type: "TaskEnded"; task: Task; ending: Ending; at: number };

/** A worker, by name, out of rotation on every head until `until` (ms epoch): an ejection some head shared. */
export interface SharedEjection {
  name: string;
  until: number;
  /** Ejections in a row: how long the next one lasts. */
  ejections: number;
}

export type WorkerEvent =
  /**
   * `features`: the protocol features its connection took up (see FEATURES); `ejection`: one shared for its name that
   * has not ended yet (it starts out of rotation).
   */
  | { type: "WorkerRegistered"; worker: WorkerEntry; features: readonly string[]; ejection?: SharedEjection | undefined }
  | { type: "WorkerRemoved"; worker: WorkerEntry }
  | { type: "WorkerDraining"; worker: WorkerEntry }
  /** Its heartbeat: what its engine runs and caches, and how each model it serves is used. */
  | { type: "WorkerReported"; worker: WorkerEntry; running: number | undefined; cache: readonly ModelCache[] | undefined; models: readonly ModelUsage[] | undefined; at: number }
  /** A task on it finished (success), failed or stalled (failure), or the clock moved (tick: an ejection may be over). */
  | { type: "WorkerHealth"; worker: WorkerEntry; outcome: "success" | "failure" | "tick"; at: number; pump: boolean }
  /** A head (this one too) shared an ejection: the connected worker of that name, if any, is out of rotation until then. */
  | ({ type: "WorkerEjectionShared"; at: number } & SharedEjection);

export type ClusterEvent = TaskLifecycleEvent | WorkerEvent | PlacementEvent;

export type ClusterEffect =
  | { type: "send"; workerId: string; message: MasterMessage }
  /** Start (or restart) a queued task's wait deadline; clear it. */
  | { type: "queueDeadline"; task: Task }
  | { type: "clearQueueDeadline"; taskId: string }
  /** Start a stop's acknowledgement deadline; clear it. */
  | { type: "stopDeadline"; workerId: string; taskId: string }
  | { type: "clearStopDeadline"; workerId: string; taskId: string }
  /** Give free slots to waiting tasks: of one model, or of every model a worker serves. */
  | { type: "pump"; model: string }
  | { type: "pumpWorker"; worker: WorkerEntry }
  /** Hearers only (metrics, logs, dashboard): these changes are not visible in the event alone. */
  | { type: "firstToken"; task: Task; worker: WorkerEntry }
  | { type: "healthChanged"; worker: WorkerEntry }
  /** This head ejected the worker (its own tasks failed): every head is told. */
  | { type: "shareEjection"; worker: WorkerEntry }
  /** This head's probe of the worker succeeded: the shared ejection goes. */
  | { type: "clearEjection"; worker: WorkerEntry }
  | { type: "modelsChanged"; worker: WorkerEntry }
  | { type: "loaded"; workerId: string; model: string; loadMs: number }
  /** Queued tasks of the model are gone and nobody serves it: a load for them may be given up. */
  | { type: "abandoned"; model: string }
  /** A task let go of its slot: memory that waiting loads need may be free to take now. */
  | { type: "modelFreed" }
  /** No task is alive any more. */
  | { type: "idle" }
  /** Placement follow-ups that need the planner: a failed load, or waiting tasks that need a new plan. */
  | Extract<PlacementEffect, { type: "loadFailed" | "replan" }>;

