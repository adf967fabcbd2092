// A task: one chat request on its way through the cluster, its state machine and the events its client reads.
import type { FinishReason, TaskAssigned, TokenLogprob, Usage } from "../worker-protocol/index.js";
import type { CoordinatorError } from "./errors.js";
import type { RoutedTask } from "./routing/policy.js";
import { routingText } from "./routing/routing-text.js";

/** What the API asks the master to run. */
export type TaskRequest = Omit<TaskAssigned, "type" | "taskId">;

/** What the API knows of a request beyond the task itself, for routing and placement. */
export interface TaskHints {
  /** A client-supplied session key (routing by session); never sent to workers. */
  sessionKey?: string | undefined;
  /** How long the model may stay loaded once idle after this request (Ollama's keep_alive); Infinity: for ever. */
  keepAliveMs?: number | undefined;
  /** The HTTP request's id (X-Request-Id) and API route, for logs and the dashboard; never sent to workers. */
  requestId?: string | undefined;
  route?: string | undefined;
}

export type TaskState = "queued" | "assigned" | "streaming" | "finished" | "failed" | "cancelled";

/** Where a task was when it was cancelled: the stage metrics and logs speak of. */
export type CancelStage = "loading" | "queued" | "prefill" | "thinking" | "streaming";

export type TaskEvent =
  /** `bytes`: what the chunk counts against the task's flow-control window (see worker-protocol/flow-control.ts). */
  | { type: "chunk"; text: string; tokens: number; bytes: number; logprobs?: TokenLogprob[] }
  /** An embedding task's vector for input `index` (in order; after a failover, from 0 again). */
  | { type: "embedding"; index: number; values: Float32Array; tokens: number }
  /** `stopSequence`: which of the request's `params.stop` strings ended the reply, when the worker said so. */
  | { type: "finished"; finishReason: FinishReason; usage: Usage; stopSequence?: string }
  | { type: "failed"; error: CoordinatorError }
  | { type: "cancelled"; stage: CancelStage; reason: string };

const allowed: Record<TaskState, readonly TaskState[]> = {
  queued: ["assigned", "failed", "cancelled"],
  // Back to queued only when its worker was lost before it produced anything (failover).
  assigned: ["queued", "streaming", "finished", "failed", "cancelled"],
  streaming: ["finished", "failed", "cancelled"],
  finished: [],
  failed: [],
  cancelled: [],
};

export function isTerminal(state: TaskState): boolean {
  return allowed[state].length === 0;
}

export function canTransition(from: TaskState, to: TaskState): boolean {
  return allowed[from].includes(to);
}

/**
 * A queue of task events with one reader. The reader drains synchronously with `pull()` and waits with
 * `ready()` only when nothing is buffered, so a burst of chunks costs one wake-up, not one per chunk.
 * `onConsumed` hears of every chunk the reader takes: that is what grants the worker more of its window.
 */
export class TaskEventChannel {
  private buffer: TaskEvent[] = [];
  private head = 0;
  private wake: (() => void) | undefined;
  private ended = false;
  onConsumed: ((bytes: number) => void) | undefined;

  push(event: TaskEvent): void {
    if (this.ended) return;
    this.buffer.push(event);
    const wake = this.wake;
    if (wake) {
      this.wake = undefined;
      wake();
    }
  }

  /** No more events will come after those already pushed. */
  end(): void {
    this.ended = true;
    const wake = this.wake;
    if (wake) {
      this.wake = undefined;
      wake();
    }
  }

  /** The next buffered event, or undefined when none is buffered (check `done` then). */
  pull(): TaskEvent | undefined {
    if (this.head >= this.buffer.length) return undefined;
    const event = this.buffer[this.head] as TaskEvent;
    this.head += 1;
    if (this.head === this.buffer.length) {
      this.buffer.length = 0;
      this.head = 0;
    }
    if (event.type === "chunk") this.onConsumed?.(event.bytes);
    return event;
  }

  /** True once the channel has ended and every event was pulled. */
  get done(): boolean {
    return this.ended && this.head >= this.buffer.length;
  }

  /** Resolves when an event is buffered or the channel ended. */
  ready(): Promise<void> {
    if (this.head < this.buffer.length || this.ended) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }
}

export class Task implements RoutedTask {
  state: TaskState = "queued";
  workerId: string | undefined;
  readonly createdAt = Date.now();
  assignedAt: number | undefined;
  firstTokenAt: number | undefined;
  endedAt: number | undefined;
  /** The next chunk sequence number (or embedding index) expected from the worker, from 0 on each assignment. */
  nextSeq = 0;
  /** An embedding task: the length of the vectors its worker sent so far (all must have the same). */
  embeddingDimensions: number | undefined;
  completionTokens = 0;
  /** Workers this task has been assigned to so far. */
  attempts = 0;
  /** Flow control: bytes received from the worker and not yet granted back to it (TaskCredit). */
  outstandingBytes = 0;
  /** Bytes the reader consumed that the worker has not been granted yet (grants go out in batches). */
  ungrantedBytes = 0;
  /** When the worker last showed progress on this task (assignment, TaskProgress, a chunk): for stall detection. */
  progressAt = 0;
  /** Whether the worker has shown any sign of working on this task (TaskProgress or a first chunk). */
  started = false;
  /** Prompt processing as the worker last reported it (TaskProgress), for the dashboard. */
  promptTokensDone = 0;
  promptTokens: number | undefined;
  /** Whether the model's output is inside its reasoning, as the API's parser last said (a cancellation then counts as "thinking"). */
  thinking = false;
  /** A client-supplied session key, for routing by session; never sent to workers. */
  readonly sessionKey: string | undefined;
  /** How long its model may stay loaded once idle after it (Ollama's keep_alive), if the request said. */
  readonly keepAliveMs: number | undefined;
  /** The HTTP request's id (X-Request-Id), for logs and the dashboard; never sent to workers. */
  readonly requestId: string | undefined;
  /** The API route that made the task (`/v1/messages`, …), for the dashboard; never sent to workers. */
  readonly route: string | undefined;
  readonly events = new TaskEventChannel();
  private routed: string | undefined;

  constructor(
    readonly id: string,
    readonly request: TaskRequest,
    hints: TaskHints = {},
  ) {
    this.sessionKey = hints.sessionKey;
    this.keepAliveMs = hints.keepAliveMs;
    this.requestId = hints.requestId;
    this.route = hints.route;
  }

  /** The prompt as routing compares prompts (made on first use: the least-loaded policy never asks). */
  get text(): string {
    this.routed ??= routingText(this.request);
    return this.routed;
  }

  get model(): string {
    return this.request.model;
  }

  /** The stage a cancellation at this moment would be counted in. */
  get stage(): CancelStage {
    if (this.state === "queued") return "queued";
    if (this.state === "assigned") return "prefill";
    return this.thinking ? "thinking" : "streaming";
  }
}
