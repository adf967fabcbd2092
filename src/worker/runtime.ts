// A worker process: runs the tasks its coordinator heads assign on its engine, one pool of slots for all of them,
// cancels them on TaskCancelled, and loads models on command. Each head is one connection (head-link.ts).
import type { Logger } from "../log.js";
import {
  CloseCode,
  encodeEmbedding,
  FEATURES,
  type Hello,
  type MasterMessage,
  PROTOCOL_VERSION,
  type TaskAssigned,
  type TokenLogprob,
  type Welcome,
  type WorkerMessage,
} from "../worker-protocol/index.js";
import type { Engine, EngineDescription, GenerationResult, GenerationSink } from "./engines/engine.js";
import { type HeadHost, HeadLink, workerUrl } from "./head-link.js";
import { ModelCommands } from "./model-commands.js";
import { ModelUse } from "./model-use.js";
import { TaskOutput } from "./task-output.js";

export { closeSocket, workerUrl } from "./head-link.js";

export interface WorkerOptions {
  /** The coordinator's address, e.g. ws://head:52415 (the worker path is added when none is given); several heads: comma-separated. */
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

/**
 * Features every worker speaks: it refuses tasks it has no slot for, and joins every head of a cluster (of which only
 * the planner's lease holder sends model commands to one whose models are loaded on command).
 */
const WORKER_FEATURES = [FEATURES.refuse, FEATURES.heads];

/** Tokens merged behind a backlog go out once they reach this size, whatever the backlog. */
const MAX_MERGED_CHUNK_BYTES = 1024 * 1024;

/** Prompt progress reports are sent at most this often per task. */
const PROGRESS_INTERVAL_MS = 250;

/** A worker process's links to its coordinator heads. `stop()` aborts its tasks and closes; `closed` settles when it is done for good. */
export class WorkerRuntime {
  private readonly links: HeadLink[];
  private readonly host: HeadHost;
  /** Models loaded and unloaded on the master's command, when the engine has a library. */
  private readonly modelCommands: ModelCommands | undefined;
  /** With a library: how each served model is used, over all heads. */
  private readonly use: ModelUse | undefined;
  private idleWaiters: Array<() => void> = [];
  private stopped = false;
  /** Told to take no new tasks (drain): those assigned anyway are refused. */
  private draining = false;
  private welcomed: (() => void) | undefined;
  /** Settles when the runtime stopped, or every head refused it for good (the first head's close). */
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(
    private readonly engine: Engine,
    private readonly description: EngineDescription,
    private readonly options: WorkerOptions,
  ) {
    const heads = [...new Set(options.join.split(",").map((join) => join.trim()).filter((join) => join.length > 0))];
    const host: HeadHost = {
      hello: () => this.hello(),
      welcomed: (link: HeadLink, welcome: Welcome) => this.onWelcome(link, welcome),
      message: (link: HeadLink, message: Exclude<MasterMessage, Welcome>) => this.onMessage(link, message),
      disconnected: (link: HeadLink) => this.onDisconnect(link),
      running: () => this.runningTasks,
      cacheStats: () => this.engine.cacheStats?.(),
      modelUsage: () => this.modelCommands?.usage(),
      log: options.log,
    };
    this.host = host;
    this.links = heads.map((join) => new HeadLink(join, host, options.reconnect));
    this.closed = Promise.all(this.links.map((link) => link.closed)).then((closes) => closes[0] ?? { code: CloseCode.normal, reason: "no head to join" });
    if (engine.library) {
      const abortTasksOf = (model: string) => {
        for (const link of this.links) for (const task of link.tasks.values()) if (task.model === model) task.controller.abort(new Error(`model ${model} unloaded`));
      };
      this.use = new ModelUse((model) => this.runningOf(model));
      this.modelCommands = new ModelCommands(engine.library, description.models, (message) => this.report(message), abortTasksOf, this.use, options.log);
    }
  }

  /** The id the first head gave this worker, once welcomed. */
  get workerId(): string | undefined {
    return this.links[0]?.workerId;
  }

  /** Connects to every head and resolves with the first head's worker id once all welcomed it (rejects if one closes first). */
  start(): Promise<string> {
    const joined = [...this.links];
    return new Promise((resolve, reject) => {
      this.welcomed = () => {
        if (!joined.every((link) => link.workerId !== undefined)) return;
        this.welcomed = undefined;
        resolve(this.links[0]?.workerId as string);
      };
      for (const link of joined) link.closed.then((info) => reject(new Error(`the master closed the connection (${info.code}: ${info.reason})`)));
      for (const link of joined) link.connect();
    });
  }

  /** Tasks running on the engine, for every head: each holds one of the worker's slots until its engine stops. */
  get runningTasks(): number {
    let running = 0;
    for (const link of this.links) running += link.tasks.size;
    return running;
  }

  /** Tasks of `model` running on the engine, for every head. */
  private runningOf(model: string): number {
    let running = 0;
    for (const link of this.links) for (const task of link.tasks.values()) if (task.model === model) running += 1;
    return running;
  }

  /** Tells every head to stop assigning new tasks, and resolves when the running ones are done. */
  async drain(): Promise<void> {
    this.draining = true;
    this.report({ type: "Draining" });
    if (this.runningTasks === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Aborts every task, closes every connection and stops reconnecting. */
  async stop(code: number = CloseCode.normal, reason = "worker stopping"): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.modelCommands?.stop();
    for (const link of this.links) for (const { controller } of link.tasks.values()) controller.abort(new Error(reason));
    await Promise.all(this.links.map((link) => link.stop(code, reason)));
  }

  /** What the worker says of itself, to every head alike. */
  private hello(): Hello {
    const models = this.modelCommands?.hello();
    return {
      type: "Hello",
      protocolVersion: PROTOCOL_VERSION,
      token: this.options.token,
      worker: {
        name: this.options.name,
        device: this.description.device,
        maxConcurrency: this.options.maxConcurrency,
        engine: this.engine.kind,
      },
      ...(models ? { ...models, features: [...models.features, ...WORKER_FEATURES] } : { models: this.description.models, features: WORKER_FEATURES }),
    };
  }

  /** What the worker reports about itself (drain, models, pulls) goes to every head it is connected to. */
  private report(message: WorkerMessage): void {
    for (const link of this.links) if (link.isOpen) link.send(message);
  }

  private onWelcome(link: HeadLink, welcome: Welcome): void {
    link.takesRefusals = welcome.features?.includes(FEATURES.refuse) ?? false;
    link.takesEpoch = welcome.features?.includes(FEATURES.epoch) ?? false;
    if (welcome.features?.includes(FEATURES.heads) && welcome.heads) this.learnHeads(link, welcome.heads);
    this.modelCommands?.welcomed(welcome.features, this.options.libraryScanMs ?? DEFAULT_LIBRARY_SCAN_MS);
    if (this.draining) link.send({ type: "Draining" });
    this.options.log.info({ head: link.url, workerId: welcome.workerId }, "joined the coordinator");
    this.welcomed?.();
  }

  private onDisconnect(link: HeadLink): void {
    if (!this.links.some((other) => other.isOpen)) this.modelCommands?.disconnected();
    // Nobody is left to read these tasks' output: stop generating at once (other heads' tasks go on).
    for (const { controller } of link.tasks.values()) controller.abort(new Error("connection to the master lost"));
  }

  private onMessage(link: HeadLink, message: Exclude<MasterMessage, Welcome>): void {
    switch (message.type) {
      case "TaskAssigned": {
        // The judge of its own slots, over all heads: a task it has no slot for (one a head gave up on may still be
        // stopping, another head may have taken the last one), or any task once draining, is refused at once. A
        // head that does not take refusals gets the old behaviour: the task runs.
        const refusal = this.draining ? "draining" : this.runningTasks >= this.options.maxConcurrency ? "no_slot" : undefined;
        if (refusal && link.takesRefusals) {
          link.refusedSinceFree = true;
          link.send({ type: "TaskRefused", taskId: message.taskId, reason: refusal });
          return;
        }
        void this.run(message, link);
        return;
      }
      case "TaskCancelled":
        link.tasks.get(message.taskId)?.controller.abort(new Error(message.reason));
        return;
      case "TaskCredit":
        // A grant for a task that has ended meanwhile is a normal race.
        link.tasks.get(message.taskId)?.output.grant(message.bytes);
        return;
      case "LoadModel":
      case "UnloadModel":
      case "PullModel":
        if (this.modelCommands) this.modelCommands.handle(message, (answer) => link.send(answer), this.links.filter((other) => other.isOpen).length);
        else this.options.log.warn({ type: message.type }, "this worker's engine cannot load, unload or pull models; ignored");
        return;
      case "Leader":
        if (!this.modelCommands) this.options.log.warn({ head: link.url }, "this worker's engine loads no models on command; Leader ignored");
        else if (!this.modelCommands.leader(message.epoch)) this.options.log.warn({ head: link.url, epoch: message.epoch }, "a Leader older than the highest epoch seen; ignored");
        return;
      case "Heads":
        this.learnHeads(link, message.heads);
        return;
      case "Heartbeat":
        return;
      case "ProtocolError":
        this.options.log.error({ head: link.url, code: message.code }, `the master reported a protocol error: ${message.message}`);
        return;
    }
  }

  /**
   * A head listed the cluster's heads: the worker joins those it has no link to, and leaves those it joined only
   * because a head listed them once no connected head lists them any more (heads given with --join stay).
   */
  private learnHeads(from: HeadLink, heads: readonly string[]): void {
    if (this.stopped) return;
    from.listedHeads = new Set(heads.flatMap((head) => (URL.canParse(head) ? [workerUrl(head)] : [])));
    const known = new Set(this.links.map((link) => link.url));
    for (const url of from.listedHeads) {
      if (known.has(url)) continue;
      const link = new HeadLink(url, this.host, true, true);
      this.links.push(link);
      this.options.log.info({ head: url }, "joining a head another head listed");
      link.connect();
    }
    const listed = new Set(this.links.filter((link) => link.isOpen).flatMap((link) => [...link.listedHeads]));
    for (const link of [...this.links]) {
      if (!link.learned || listed.has(link.url)) continue;
      this.links.splice(this.links.indexOf(link), 1);
      for (const { controller } of link.tasks.values()) controller.abort(new Error("the head left the cluster"));
      void link.stop(CloseCode.normal, "no head lists this one any more");
    }
  }

  /** A slot freed: every head that was refused since the last one hears it at once (it counts the worker as full). */
  private slotFreed(): void {
    if (this.runningTasks === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
    for (const link of this.links) {
      if (!link.refusedSinceFree) continue;
      link.refusedSinceFree = false;
      link.sendHeartbeat();
    }
  }

  private async run(task: TaskAssigned, link: HeadLink): Promise<void> {
    const { taskId } = task;
    const controller = new AbortController();
    const { signal } = controller;
    const send = (message: WorkerMessage) => link.send(message);
    const output = new TaskOutput(taskId, link.taskWindowBytes, send);
    link.tasks.set(taskId, { controller, output, model: task.model });
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
        link.flushSoon(output, MAX_MERGED_CHUNK_BYTES);
      },
      progress: (done: number, total?: number) => {
        const now = Date.now();
        if (signal.aborted || !link.takesProgress || now - progressAt < PROGRESS_INTERVAL_MS) return;
        progressAt = now;
        send({ type: "TaskProgress", taskId, promptTokensDone: done, ...(total === undefined ? {} : { promptTokens: total }) });
      },
      ready: () => (signal.aborted ? undefined : output.ready()),
    };
    // The master counts a task it has no sign of as not started: say at once that this one is.
    if (link.takesProgress) send({ type: "TaskProgress", taskId, promptTokensDone: 0 });
    progressAt = Date.now();
    try {
      const result = task.embed ? await this.embed(task, sink, send, signal) : await this.engine.generate(task, sink, signal);
      if (!signal.aborted) {
        await this.sendRest(link, output, signal);
        if (!signal.aborted) send({ type: "TaskFinished", taskId, ...result });
      }
    } catch (error) {
      if (!signal.aborted) {
        await this.sendRest(link, output, signal);
        const message = error instanceof Error ? error.message : String(error);
        // Engines may tag an error with a protocol error code (e.g. context_length_exceeded: the client's fault).
        const code = (error as { code?: unknown } | null)?.code;
        this.options.log.warn({ taskId, err: message }, "generation failed");
        if (!signal.aborted) {
          send({ type: "TaskFailed", taskId, error: typeof code === "string" && code.length <= 64 ? { message, code } : { message } });
        }
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      // Tokens still held back after a cancellation have no reader left: they are dropped.
      link.forget(output);
      link.tasks.delete(taskId);
      this.use?.ended(task.model);
      this.slotFreed();
      // Cancellation is decided by the signal alone, however the engine ended (resolved, rejected, any error type).
      if (signal.aborted) {
        this.options.log.info({ taskId, reason: String(signal.reason?.message ?? signal.reason), produced }, "task stopped");
        send({ type: "TaskCancelAck", taskId, completionTokens: produced });
      }
    }
  }

  /** Runs an embedding task: each vector goes out as its own TaskEmbedding, in input order. */
  private async embed(task: TaskAssigned, sink: GenerationSink, send: (message: WorkerMessage) => void, signal: AbortSignal): Promise<GenerationResult> {
    const { taskId, model, embed } = task;
    if (!embed) throw new Error("not an embedding task");
    if (!this.engine.embed) throw new Error(`the ${this.engine.kind} engine does not compute embeddings`);
    let index = 0;
    const vectors = {
      vector: (values: Float32Array | readonly number[], tokens: number) => {
        if (signal.aborted) return;
        send({ type: "TaskEmbedding", taskId, index, embedding: encodeEmbedding(values), tokens });
        index += 1;
      },
      progress: sink.progress,
    };
    const { promptTokens } = await this.engine.embed({ taskId, model, embed }, vectors, signal);
    return { finishReason: "stop", usage: { promptTokens, completionTokens: 0 } };
  }

  /** Sends the task's last held text, waiting for window room if it must (the end goes after all of its text). */
  private async sendRest(link: HeadLink, output: TaskOutput, signal: AbortSignal): Promise<void> {
    link.forget(output);
    output.flush();
    if (!signal.aborted) await output.sent();
  }
}
