// A worker's connection to the master: joins, runs assigned tasks on its engine, cancels them on TaskCancelled.
import { WebSocket } from "ws";
import type { Logger } from "../log.js";
import {
  batchFramesThisTurn,
  CloseCode,
  decodeMasterMessage,
  encode,
  encodeEmbedding,
  type TaskAssigned,
  type TokenLogprob,
  PROTOCOL_VERSION,
  WORKER_PATH,
  type WorkerMessage,
} from "../worker-protocol/index.js";
import type { Engine, EngineDescription, GenerationResult, GenerationSink } from "./engines/engine.js";
import { ModelCommands } from "./model-commands.js";
import { TaskOutput } from "./task-output.js";

export interface WorkerOptions {
  /** The coordinator's address, e.g. ws://head:52415 (the worker path is added when none is given). */
  join: string;
  token: string;
  name: string;
  maxConcurrency: number;
  /** Reconnect after the connection drops (with jittered exponential backoff); off for one-shot use. */
  reconnect: boolean;
  /** With an engine that has a library: how often it is rescanned for changes (default 10 s). */
  libraryScanMs?: number;
  log: Logger;
}

const DEFAULT_LIBRARY_SCAN_MS = 10_000;

/** Tokens merged behind a backlog go out once they reach this size, whatever the backlog. */
const MAX_MERGED_CHUNK_BYTES = 1024 * 1024;

/** Prompt progress reports are sent at most this often per task. */
const PROGRESS_INTERVAL_MS = 250;

/**
 * Close codes after which reconnecting cannot help: the operator must act (a wrong token, an old worker). After
 * any other close the worker comes back, with backoff: a name in use may be freed, a replaced connection was ours.
 */
const finalCloseCodes = new Set<number>([CloseCode.unauthorized, CloseCode.unsupportedVersion]);

/** Closes with a handshake, or tears the socket down if the peer does not answer within a second. */
export function closeSocket(socket: WebSocket, code: number, reason: string): Promise<void> {
  return new Promise<void>((resolve) => {
    const force = setTimeout(() => socket.terminate(), 1_000);
    socket.once("close", () => {
      clearTimeout(force);
      resolve();
    });
    socket.close(code, reason);
  });
}

export function workerUrl(join: string): string {
  const url = new URL(join);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  if (url.pathname === "" || url.pathname === "/") url.pathname = WORKER_PATH;
  return url.toString();
}

/** A worker process's link to its coordinator. `stop()` aborts its tasks and closes; `closed` settles when it is done for good. */
export class WorkerRuntime {
  workerId: string | undefined;
  private socket: WebSocket | undefined;
  private readonly tasks = new Map<string, { controller: AbortController; output: TaskOutput; model: string }>();
  /** Models loaded and unloaded on the master's command, when the engine has a library. */
  private readonly modelCommands: ModelCommands | undefined;
  /** Tasks whose tokens wait for the socket to drain. */
  private readonly waiting = new Set<TaskOutput>();
  /** Flow control: each task's window, from Welcome (none from a master that announces none). */
  private taskWindowBytes = Number.POSITIVE_INFINITY;
  /** Whether the master takes TaskProgress: those that announce a task window do (an older one would refuse it). */
  private masterTakesProgress = false;
  private heartbeat: NodeJS.Timeout | undefined;
  /** When the master was last heard from; a silent master (half-open connection) is given up on. */
  private lastHeard = Date.now();
  private idleWaiters: Array<() => void> = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private stopped = false;
  private resolveClosed!: (info: { code: number; reason: string }) => void;
  /** Settles when the runtime stopped or the master refused it for good. */
  readonly closed = new Promise<{ code: number; reason: string }>((resolve) => {
    this.resolveClosed = resolve;
  });
  private welcomed: ((workerId: string) => void) | undefined;

  constructor(
    private readonly engine: Engine,
    private readonly description: EngineDescription,
    private readonly options: WorkerOptions,
  ) {
    if (engine.library) {
      const abortTasksOf = (model: string) => {
        for (const task of this.tasks.values()) if (task.model === model) task.controller.abort(new Error(`model ${model} unloaded`));
      };
      this.modelCommands = new ModelCommands(engine.library, description.models, (message) => this.send(message), abortTasksOf, options.log);
    }
  }

  /** Connects and resolves with the worker id once the master welcomed it (rejects if it closes first). */
  start(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.welcomed = resolve;
      this.closed.then((info) => reject(new Error(`the master closed the connection (${info.code}: ${info.reason})`)));
      this.connect();
    });
  }

  get runningTasks(): number {
    return this.tasks.size;
  }

  /** Tells the master to stop assigning new tasks, and resolves when the running ones are done. */
  async drain(): Promise<void> {
    this.send({ type: "Draining" });
    if (this.tasks.size === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Aborts every task, closes the connection and stops reconnecting. */
  async stop(code: number = CloseCode.normal, reason = "worker stopping"): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.modelCommands?.stop();
    for (const { controller } of this.tasks.values()) controller.abort(new Error(reason));
    const socket = this.socket;
    if (socket && socket.readyState !== WebSocket.CLOSED) {
      await closeSocket(socket, code, reason);
    }
    this.finish(code, reason);
  }

  private connect(): void {
    const { log } = this.options;
    const socket = new WebSocket(workerUrl(this.options.join), { maxPayload: 64 * 1024 * 1024 });
    this.socket = socket;
    socket.on("open", () => {
      this.send({
        type: "Hello",
        protocolVersion: PROTOCOL_VERSION,
        token: this.options.token,
        worker: {
          name: this.options.name,
          device: this.description.device,
          maxConcurrency: this.options.maxConcurrency,
          engine: this.engine.kind,
        },
        ...(this.modelCommands?.hello() ?? { models: this.description.models }),
      });
    });
    socket.on("message", (data) => {
      this.lastHeard = Date.now();
      this.onMessage(data.toString());
    });
    socket.on("error", (error) => log.warn({ err: error.message }, "connection to the master failed"));
    socket.on("close", (code, reasonBuffer) => {
      const reason = reasonBuffer.toString();
      clearInterval(this.heartbeat);
      this.heartbeat = undefined;
      this.modelCommands?.disconnected();
      // Nobody is left to read these tasks' output: stop generating at once.
      for (const { controller } of this.tasks.values()) controller.abort(new Error("connection to the master lost"));
      if (this.stopped) return;
      if (finalCloseCodes.has(code) || !this.options.reconnect) {
        log.error({ code, reason }, "the master closed the connection");
        this.finish(code, reason);
        return;
      }
      const delay = Math.min(30_000, 250 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      this.attempt += 1;
      if (code === CloseCode.nameInUse) {
        log.error({ code, reason, retryInMs: Math.round(delay) }, `another live worker is connected as '${this.options.name}': give this one its own --name; retrying`);
      } else log.warn({ code, reason, retryInMs: Math.round(delay) }, "disconnected from the master; reconnecting");
      this.retryTimer = setTimeout(() => this.connect(), delay);
    });
  }

  /** Heartbeats to the master; three intervals without a word from it means the connection is dead. */
  private startHeartbeat(intervalMs: number): void {
    clearInterval(this.heartbeat);
    this.lastHeard = Date.now();
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeard > intervalMs * 3) {
        this.options.log.warn("the master went silent; reconnecting");
        this.socket?.terminate();
        return;
      }
      const cache = this.engine.cacheStats?.();
      this.send({ type: "Heartbeat", at: Date.now(), running: this.tasks.size, ...(cache && cache.length > 0 && { cache }) });
    }, intervalMs);
  }

  private finish(code: number, reason: string): void {
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.retryTimer);
    this.resolveClosed({ code, reason });
  }

  private onMessage(data: string): void {
    const decoded = decodeMasterMessage(data);
    if (!decoded.ok) {
      this.options.log.error({ error: decoded.error }, "invalid message from the master");
      return;
    }
    const message = decoded.message;
    switch (message.type) {
      case "Welcome":
        this.workerId = message.workerId;
        this.taskWindowBytes = message.taskWindowBytes ?? Number.POSITIVE_INFINITY;
        this.masterTakesProgress = message.taskWindowBytes !== undefined;
        this.attempt = 0;
        this.startHeartbeat(message.heartbeatIntervalMs);
        this.modelCommands?.welcomed(message.features, this.options.libraryScanMs ?? DEFAULT_LIBRARY_SCAN_MS);
        this.options.log.info({ workerId: message.workerId }, "joined the coordinator");
        this.welcomed?.(message.workerId);
        this.welcomed = undefined;
        return;
      case "TaskAssigned":
        void this.run(message);
        return;
      case "TaskCancelled":
        this.tasks.get(message.taskId)?.controller.abort(new Error(message.reason));
        return;
      case "TaskCredit":
        // A grant for a task that has ended meanwhile is a normal race.
        this.tasks.get(message.taskId)?.output.grant(message.bytes);
        return;
      case "LoadModel":
      case "UnloadModel":
      case "PullModel":
        if (this.modelCommands) this.modelCommands.handle(message);
        else this.options.log.warn({ type: message.type }, "this worker's engine cannot load, unload or pull models; ignored");
        return;
      case "Heartbeat":
        return;
      case "ProtocolError":
        this.options.log.error({ code: message.code }, `the master reported a protocol error: ${message.message}`);
        return;
    }
  }

  private async run(task: TaskAssigned): Promise<void> {
    const { taskId } = task;
    const controller = new AbortController();
    const { signal } = controller;
    const output = new TaskOutput(taskId, this.taskWindowBytes, (message) => this.send(message));
    this.tasks.set(taskId, { controller, output, model: task.model });
    // An engine waiting for room in the window must not outlive its task.
    const onAbort = () => output.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    let produced = 0;
    let progressAt = 0;
    const sink = {
      text: (text: string, tokens?: number, logprobs?: readonly TokenLogprob[]) => {
        // Counted before the abort check: the acknowledgement then tells how far the engine really got.
        produced += tokens ?? 0;
        if (signal.aborted || text.length === 0) return;
        output.add(text, tokens, logprobs);
        // While the network keeps up a token goes out in its own turn (the turn's frames leave together); behind a
        // backlog left by earlier turns, tokens merge, one frame a task, until it drains.
        // A merged frame stays far below the master's frame limit (--max-worker-payload, 16 MiB by default).
        const socket = this.socket;
        if (!socket || batchFramesThisTurn(socket) === 0 || output.frameBytes >= MAX_MERGED_CHUNK_BYTES) output.flush();
        else this.waiting.add(output);
      },
      progress: (done: number, total?: number) => {
        const now = Date.now();
        if (signal.aborted || !this.masterTakesProgress || now - progressAt < PROGRESS_INTERVAL_MS) return;
        progressAt = now;
        this.send({ type: "TaskProgress", taskId, promptTokensDone: done, ...(total === undefined ? {} : { promptTokens: total }) });
      },
      ready: () => (signal.aborted ? undefined : output.ready()),
    };
    // The master counts a task it has no sign of as not started: say at once that this one is.
    if (this.masterTakesProgress) this.send({ type: "TaskProgress", taskId, promptTokensDone: 0 });
    progressAt = Date.now();
    try {
      const result = task.embed ? await this.embed(task, sink, signal) : await this.engine.generate(task, sink, signal);
      if (!signal.aborted) {
        await this.sendRest(output, signal);
        if (!signal.aborted) this.send({ type: "TaskFinished", taskId, ...result });
      }
    } catch (error) {
      if (!signal.aborted) {
        await this.sendRest(output, signal);
        const message = error instanceof Error ? error.message : String(error);
        // Engines may tag an error with a protocol error code (e.g. context_length_exceeded: the client's fault).
        const code = (error as { code?: unknown } | null)?.code;
        this.options.log.warn({ taskId, err: message }, "generation failed");
        if (!signal.aborted) {
          this.send({ type: "TaskFailed", taskId, error: typeof code === "string" && code.length <= 64 ? { message, code } : { message } });
        }
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      // Tokens still held back after a cancellation have no reader left: they are dropped.
      this.waiting.delete(output);
      this.tasks.delete(taskId);
      if (this.tasks.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
      // Cancellation is decided by the signal alone, however the engine ended (resolved, rejected, any error type).
      if (signal.aborted) {
        this.options.log.info({ taskId, reason: String(signal.reason?.message ?? signal.reason), produced }, "task stopped");
        this.send({ type: "TaskCancelAck", taskId, completionTokens: produced });
      }
    }
  }

  /** Runs an embedding task: each vector goes out as its own TaskEmbedding, in input order. */
  private async embed(task: TaskAssigned, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult> {
    const { taskId, model, embed } = task;
    if (!embed) throw new Error("not an embedding task");
    if (!this.engine.embed) throw new Error(`the ${this.engine.kind} engine does not compute embeddings`);
    let index = 0;
    const vectors = {
      vector: (values: Float32Array | readonly number[], tokens: number) => {
        if (signal.aborted) return;
        this.send({ type: "TaskEmbedding", taskId, index, embedding: encodeEmbedding(values), tokens });
        index += 1;
      },
      progress: sink.progress,
    };
    const { promptTokens } = await this.engine.embed({ taskId, model, embed }, vectors, signal);
    return { finishReason: "stop", usage: { promptTokens, completionTokens: 0 } };
  }

  /** Sends the task's last held text, waiting for window room if it must (the end goes after all of its text). */
  private async sendRest(output: TaskOutput, signal: AbortSignal): Promise<void> {
    this.waiting.delete(output);
    output.flush();
    if (!signal.aborted) await output.sent();
  }

  private send(message: WorkerMessage): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    batchFramesThisTurn(socket);
    socket.send(encode(message), this.onWritten);
  }

  /** A frame reached the kernel: once nothing is left buffered, the tokens merged meanwhile go out, one frame a task. */
  private readonly onWritten = (): void => {
    if (this.waiting.size === 0 || (this.socket?.bufferedAmount ?? 0) > 0) return;
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const outbox of waiting) outbox.flush();
  };
}
