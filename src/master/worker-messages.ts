// What a worker says, checked before it changes anything: a message about a task that is not the worker's, a chunk out
// of sequence or past its window, a refusal after a start, an embedding of the wrong shape is a protocol violation; a
// late message (about a task that ended) is counted and dropped; everything else becomes events for the one reducer.
import type { Logger } from "../log.js";
import type { TaskEmbedding, TaskFinished, TokenChunk, Usage, WorkerMessage } from "../worker-protocol/index.js";
import { chunkCost, decodeEmbedding } from "../worker-protocol/index.js";
import type { ChunkEvent, ClusterEffect, ClusterEvent, EmbeddingEvent, Ending } from "./cluster/events.js";
import { EngineError, ProtocolViolation } from "./errors.js";
import type { Observers } from "./observer.js";
import type { ModelPlacer } from "./placement/placer.js";
import type { WorkerEntry } from "./registry.js";
import { isTerminal, type Task } from "./task.js";

/** What message checking needs of the master. */
export interface MessageHost {
  readonly options: { readonly taskWindowBytes: number; readonly log: Logger };
  readonly observers: Observers;
  readonly placer: ModelPlacer;
  dispatch(event: ClusterEvent): readonly ClusterEffect[];
  end(task: Task, ending: Ending): void;
}

export class WorkerMessages {
  constructor(private readonly host: MessageHost) {}

  /** Turns a validated message from a registered worker into events. Throws ProtocolViolation for messages it may not send. */
  handle(worker: WorkerEntry, message: WorkerMessage): void {
    switch (message.type) {
      case "Heartbeat":
        this.host.dispatch({ type: "WorkerReported", worker, running: message.running, cache: message.cache, models: message.models, at: Date.now() });
        return;
      case "Hello":
        throw new ProtocolViolation("duplicate_hello", "Hello was already received on this connection");
      case "Draining":
        this.host.dispatch({ type: "WorkerDraining", worker });
        return;
      case "Library":
      case "ModelStatus":
        if (!worker.loadsModels) throw new ProtocolViolation("feature_not_negotiated", `${message.type} needs the "models" feature, which this connection did not take up`);
        this.host.placer.report(worker.id, message);
        return;
      case "PullStatus":
        if (!worker.pullsModels) throw new ProtocolViolation("feature_not_negotiated", `PullStatus needs the "pull" feature, which this connection did not take up`);
        this.host.placer.report(worker.id, message);
        return;
      case "TokenChunk":
        return this.chunk(worker, message);
      case "TaskEmbedding": {
        const task = this.taskOf(worker, message.taskId);
        if (!task) return this.host.observers.staleMessage(message.type);
        return this.embedded(task, worker, message);
      }
      case "TaskProgress": {
        const task = this.taskOf(worker, message.taskId);
        if (!task) return this.host.observers.staleMessage(message.type);
        const { promptTokensDone, promptTokens } = message;
        this.host.dispatch({ type: "TaskProgressed", task, worker, promptTokensDone, promptTokens, at: Date.now() });
        return;
      }
      case "TaskFinished": {
        const task = this.taskOf(worker, message.taskId);
        if (!task) return this.lateEnd(worker, message.taskId, message.type);
        const inputs = task.request.embed?.inputs.length;
        if (inputs !== undefined && task.nextSeq !== inputs) {
          throw new ProtocolViolation("missing_embeddings", `task ${message.taskId} finished with ${task.nextSeq} of its ${inputs} embeddings`);
        }
        const usage = cappedUsage(message.usage);
        const stopSequence = this.requestedStop(worker, task, message);
        this.host.dispatch({ type: "SlotReleased", task, worker, pump: true, at: Date.now() });
        this.host.dispatch({ type: "WorkerHealth", worker, outcome: "success", at: Date.now(), pump: true });
        this.host.dispatch({ type: "TaskFinishedOn", worker, usage });
        this.host.end(task, { to: "finished", finishReason: message.finishReason, usage, stopSequence });
        return;
      }
      case "TaskFailed": {
        const task = this.taskOf(worker, message.taskId);
        if (!task) return this.lateEnd(worker, message.taskId, message.type);
        this.host.dispatch({ type: "SlotReleased", task, worker, pump: true, at: Date.now() });
        const error = new EngineError(message.error.message, message.error.code);
        // A request the worker refused as malformed says nothing about the worker's health.
        if (!error.isClientError) this.host.dispatch({ type: "WorkerHealth", worker, outcome: "failure", at: Date.now(), pump: true });
        this.host.end(task, { to: "failed", error });
        return;
      }
      case "TaskRefused": {
        if (!worker.refusesTasks) throw new ProtocolViolation("feature_not_negotiated", `TaskRefused needs the "refuse" feature, which this connection did not take up`);
        const task = this.taskOf(worker, message.taskId);
        // Refused after the master gave up on it (a cancel crossed the refusal): nothing runs, the slot is free.
        if (!task) return this.lateEnd(worker, message.taskId, message.type);
        if (task.started || task.state !== "assigned") {
          throw new ProtocolViolation("unexpected_refusal", `task ${message.taskId} was already started: TaskRefused must come first`);
        }
        this.host.dispatch({ type: "TaskRefused", task, worker, reason: message.reason });
        return;
      }
      case "TaskCancelAck": {
        if (worker.cancelling.has(message.taskId)) {
          this.host.options.log.debug({ worker: worker.id, task: message.taskId, completionTokens: message.completionTokens }, "task stopped on its worker");
          this.host.dispatch({ type: "StopSettled", taskId: message.taskId, worker });
          return;
        }
        if (worker.slots.has(message.taskId)) {
          throw new ProtocolViolation("unexpected_ack", `task ${message.taskId} was not cancelled`);
        }
        // An ack after the deadline freed the slot anyway: late, not wrong.
        if (worker.recentlyEnded.has(message.taskId)) return this.host.observers.staleMessage(message.type);
        throw new ProtocolViolation("unknown_task", `task ${message.taskId} is not assigned to this worker`);
      }
    }
  }

  /** A chunk of output, checked before it becomes an event: in sequence, within the task's window. */
  private chunk(worker: WorkerEntry, message: TokenChunk): void {
    const task = this.taskOf(worker, message.taskId);
    if (!task) return this.host.observers.staleMessage(message.type);
    if (task.request.embed) throw new ProtocolViolation("unexpected_chunk", `task ${message.taskId} is an embedding task: send TaskEmbedding`);
    if (message.seq < task.nextSeq) return this.host.observers.staleMessage(message.type); // a duplicate: already relayed
    if (message.seq > task.nextSeq) {
      throw new ProtocolViolation("bad_sequence", `chunk ${message.seq} of ${message.taskId} skips ahead of ${task.nextSeq}`);
    }
    if (task.outstandingBytes >= this.host.options.taskWindowBytes) {
      throw new ProtocolViolation(
        "window_exceeded",
        `task ${message.taskId} already has ${task.outstandingBytes} bytes outstanding (window ${this.host.options.taskWindowBytes}); wait for TaskCredit`,
      );
    }
    const bytes = chunkCost(message.text, message.logprobs);
    const tokens = message.tokens ?? 1;
    // Logprobs only for a task that asked for them (a worker cannot push them on anyone else).
    const chunk: ChunkEvent =
      message.logprobs !== undefined && task.request.logprobs !== undefined
        ? { type: "chunk", text: message.text, tokens, bytes, logprobs: message.logprobs }
        : { type: "chunk", text: message.text, tokens, bytes };
    this.host.dispatch({ type: "TaskChunk", task, worker, chunk, at: Date.now() });
  }

  /**
   * The stop string a TaskFinished names, when it is one the task asked for and the reply ended by a stop. Anything
   * else is ignored (and logged), not a protocol error: it must not reach the client, but it costs no other task.
   */
  private requestedStop(worker: WorkerEntry, task: Task, message: TaskFinished): string | undefined {
    const named = message.stopSequence;
    if (named === undefined) return undefined;
    if (message.finishReason === "stop" && task.request.params.stop?.includes(named)) return named;
    this.host.options.log.warn(
      { worker: worker.id, workerName: worker.name, task: task.id, finishReason: message.finishReason, stopSequence: named.slice(0, 200) },
      "ignoring a stopSequence that is not one of the task's stops",
    );
    return undefined;
  }

  /** A task the worker was told to stop ended anyway (the cancel crossed its end on the wire): its slot is free. */
  private lateEnd(worker: WorkerEntry, taskId: string, type: string): void {
    this.host.dispatch({ type: "StopSettled", taskId, worker });
    this.host.observers.staleMessage(type);
  }

  /**
   * One vector of an embedding task, checked before it reaches the task's reader: in input order, a well-formed
   * float32 vector of the task's one length. The task stays "assigned" (nothing reaches its client before the
   * last vector), so a worker lost half way through hands the whole batch to another.
   */
  private embedded(task: Task, worker: WorkerEntry, message: TaskEmbedding): void {
    const { embed } = task.request;
    if (!embed) throw new ProtocolViolation("unexpected_embedding", `task ${message.taskId} is not an embedding task`);
    if (message.index < task.nextSeq) return this.host.observers.staleMessage(message.type);
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
    const embedding: EmbeddingEvent = { type: "embedding", index: message.index, values, tokens: message.tokens };
    this.host.dispatch({ type: "TaskEmbedded", task, worker, embedding, at: Date.now() });
  }

  /** The live task `taskId` of this worker, undefined for a late message, or a ProtocolViolation when it is not its task. */
  private taskOf(worker: WorkerEntry, taskId: string): Task | undefined {
    const task = worker.slots.get(taskId);
    if (task) return isTerminal(task.state) ? undefined : task;
    if (worker.recentlyEnded.has(taskId) || worker.cancelling.has(taskId)) return undefined;
    throw new ProtocolViolation("unknown_task", `task ${taskId} is not assigned to this worker`);
  }
}

/** A worker's usage as the master passes it on: cached tokens are at most the prompt (absent when none). */
function cappedUsage(usage: Usage): Usage {
  const { cachedTokens, ...counts } = usage;
  const cached = Math.min(cachedTokens ?? 0, usage.promptTokens);
  return cached > 0 ? { ...counts, cachedTokens: cached } : counts;
}
