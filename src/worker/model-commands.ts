// The worker's side of the "models" protocol feature: offers its engine's library, loads and unloads models on the
// master's command one operation at a time, and reports each step (ModelStatus) and library changes (Library). Model
// commands are fenced by the planner's epoch (docs/scaling.md, Fencing): one older than the highest seen is not obeyed.
import type { Logger } from "../log.js";
import type { LibraryModel, LoadModel, ModelInfo, ModelState, ModelStatus, ModelUsage, PullModel, UnloadModel, WorkerMessage } from "../worker-protocol/index.js";
import { FEATURES, NOT_OBEYED } from "../worker-protocol/index.js";
import { type ModelLibrary, ModelLoadError } from "./engines/engine.js";
import type { ModelUse } from "./model-use.js";
import { PullError, pullModel } from "./model-pull.js";

/** Loading progress goes out at most this often per model. */
const PROGRESS_INTERVAL_MS = 250;

export class ModelCommands {
  /** Models served now: those loaded at start, then as loads and unloads complete. */
  private readonly served = new Map<string, ModelInfo>();
  /** Loads under way, by model, and how far each got: aborting one gives the load up. */
  private readonly loading = new Map<string, { controller: AbortController; progress: number }>();
  /** Downloads under way, by pull id. */
  private readonly pulls = new Map<string, AbortController>();
  /** Operations run one after another, in the order the master sent them (an unload frees memory a load needs). */
  private queue: Promise<void> = Promise.resolve();
  private lastLibrary: string;
  private scanTimer: NodeJS.Timeout | undefined;
  private enabled = false;
  private pulling = false;
  /** The highest planner epoch seen on any head (Leader, or a command's epoch); 0: none yet. */
  private epoch = 0;

  constructor(
    private readonly library: ModelLibrary,
    startModels: readonly ModelInfo[],
    private readonly send: (message: WorkerMessage) => void,
    /** Stops the tasks of a model about to be unloaded (the master sends UnloadModel only once none runs). */
    private readonly abortTasksOf: (model: string) => void,
    /** Tasks of each model running now, over all heads, and since when each has been idle. */
    private readonly use: ModelUse,
    private readonly log: Logger,
  ) {
    for (const model of startModels) this.serve(model);
    this.lastLibrary = JSON.stringify(library.list());
  }

  /** What Hello carries: the models served now, and the library. */
  hello(): { models: ModelInfo[]; features: string[]; library: LibraryModel[]; memory: ReturnType<ModelLibrary["memory"]> } {
    const features = this.library.pullDir === undefined ? [FEATURES.models, FEATURES.epoch] : [FEATURES.models, FEATURES.pull, FEATURES.epoch];
    return { models: [...this.served.values()], features, library: this.library.list(), memory: this.library.memory() };
  }

  /** The master's Welcome: the feature is on when it took it up; the library is rescanned every `scanMs`. */
  welcomed(features: readonly string[] | undefined, scanMs: number): void {
    this.enabled = features?.includes(FEATURES.models) ?? false;
    this.pulling = this.enabled && this.library.pullDir !== undefined && (features?.includes(FEATURES.pull) ?? false);
    clearInterval(this.scanTimer);
    this.scanTimer = undefined;
    if (!this.enabled) return;
    this.scanTimer = setInterval(() => void this.rescan(), scanMs);
    this.scanTimer.unref();
  }

  /** The connection closed: no more scans until the next Welcome (loads under way go on). */
  disconnected(): void {
    clearInterval(this.scanTimer);
    this.scanTimer = undefined;
  }

  /** Heartbeat `models`: how each served model is used. */
  usage(): ModelUsage[] {
    return this.use.report();
  }

  /** A head leads the planning at `epoch`: false when a higher epoch was seen already (the notice is stale). */
  leader(epoch: number): boolean {
    if (epoch < this.epoch) return false;
    this.epoch = epoch;
    return true;
  }

  /**
   * A command from one head; `reply` answers that head alone. A model command older than the highest epoch seen is
   * not obeyed, nor one without an epoch while `heads` (connected now) are several: the answer gives the model's
   * actual state here, which corrects the sender's view.
   */
  handle(message: LoadModel | UnloadModel | PullModel, reply: (message: WorkerMessage) => void, heads = 1): void {
    if (message.type === "PullModel") {
      if (this.pulling) void this.pull(message);
      else this.log.warn({ pullId: message.pullId }, "the master sent PullModel without taking up the pull feature; ignored");
      return;
    }
    if (!this.enabled) {
      this.log.warn({ type: message.type }, "the master sent a model command without taking up the models feature; ignored");
      return;
    }
    if (message.epoch === undefined && heads > 1) {
      this.log.error({ type: message.type, model: message.model, heads }, "a model command without a planner epoch while joined to several heads: they share no planner (start them with --nats); not obeyed");
      reply(this.actualStatus(message.model, NOT_OBEYED.unfenced, "this worker is joined to several heads, and only the one holding the planner lease (heads started with --nats) may load or unload models on it"));
      return;
    }
    if (message.epoch !== undefined && !this.leader(message.epoch)) {
      this.log.warn({ type: message.type, model: message.model, epoch: message.epoch, highest: this.epoch }, "a model command from a stale planner; not obeyed");
      reply(this.actualStatus(message.model, NOT_OBEYED.staleEpoch, `epoch ${message.epoch} is older than ${this.epoch}: another head plans now`));
      return;
    }
    if (message.type === "UnloadModel" && this.loading.has(message.model)) {
      // Giving up a load: the load's own step reports "unloaded".
      this.loading.get(message.model)?.controller.abort(new Error(message.reason ?? "unload requested"));
      return;
    }
    const run = message.type === "LoadModel" ? () => this.load(message) : () => this.unload(message, reply);
    this.queue = this.queue.then(run, run);
  }

  /** Gives up every load and download and stops scanning (the worker is stopping). */
  stop(): void {
    this.disconnected();
    for (const { controller } of this.loading.values()) controller.abort(new Error("worker stopping"));
    for (const controller of this.pulls.values()) controller.abort(new Error("worker stopping"));
  }

  /** Downloads a model file into the models dir, reporting progress; the library is rescanned once it is whole. */
  private async pull(command: PullModel): Promise<void> {
    const dir = this.library.pullDir;
    if (dir === undefined || this.pulls.has(command.pullId)) return;
    const controller = new AbortController();
    this.pulls.set(command.pullId, controller);
    const { pullId } = command;
    // Every report names the pull's URL (and file name, when asked for), so that every head can list it.
    const named = { url: command.url, ...(command.fileName && { fileName: command.fileName }) };
    const status = (state: "downloading" | "done" | "failed", receivedBytes: number, more: Record<string, unknown> = {}) =>
      this.send({ type: "PullStatus", pullId, state, receivedBytes, ...named, ...more });
    status("downloading", 0);
    try {
      const result = await pullModel(
        { url: command.url, dir, ...(command.fileName && { fileName: command.fileName }), ...(command.sha256 && { sha256: command.sha256.toLowerCase() }), ...(command.headers && { headers: command.headers }) },
        (progress) => status("downloading", progress.receivedBytes, progress.totalBytes === undefined ? {} : { totalBytes: progress.totalBytes }),
        controller.signal,
      );
      this.log.info({ pullId, file: result.fileName, bytes: result.bytes }, "model pulled");
      status("done", result.bytes, { totalBytes: result.bytes, fileName: result.fileName, sha256: result.sha256 });
      await this.rescan();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const code = error instanceof PullError ? error.code : controller.signal.aborted ? "cancelled" : "io_error";
      this.log.warn({ pullId, err: message, code }, "model pull failed");
      status("failed", 0, { error: { message: message.slice(0, 4096), code } });
    } finally {
      this.pulls.delete(pullId);
    }
  }

  private async load(command: LoadModel): Promise<void> {
    const { model } = command;
    if (this.served.has(model)) {
      this.report(model, "loaded", { info: this.served.get(model) });
      return;
    }
    const controller = new AbortController();
    const underway = { controller, progress: 0 };
    this.loading.set(model, underway);
    this.report(model, "loading", { progress: 0 });
    let reportedAt = Date.now();
    const progress = (fraction: number) => {
      const now = Date.now();
      underway.progress = Math.min(1, Math.max(0, fraction));
      if (now - reportedAt < PROGRESS_INTERVAL_MS || controller.signal.aborted) return;
      reportedAt = now;
      this.report(model, "loading", { progress: underway.progress });
    };
    const options = { ...(command.contextLength && { contextLength: command.contextLength }), ...(command.concurrency && { concurrency: command.concurrency }) };
    try {
      const info = await this.library.load(model, options, progress, controller.signal);
      if (controller.signal.aborted) {
        await this.library.unload(model);
        this.report(model, "unloaded");
        return;
      }
      this.serve(info);
      this.log.info({ model }, "model loaded");
      this.report(model, "loaded", { info });
    } catch (error) {
      if (controller.signal.aborted) {
        this.report(model, "unloaded");
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      const code = error instanceof ModelLoadError ? error.code : "load_failed";
      this.log.warn({ model, err: message, code }, "model load failed");
      this.report(model, "failed", { error: { message: message.slice(0, 4096), code } });
    } finally {
      this.loading.delete(model);
    }
  }

  private async unload(command: UnloadModel, reply: (message: WorkerMessage) => void): Promise<void> {
    const { model } = command;
    // Judged when its turn comes, over every head's tasks: only this worker sees them all.
    const running = this.use.running(model);
    if (command.ifIdle && running > 0 && this.served.has(model)) {
      this.log.info({ model, running, reason: command.reason }, "not unloading a model in use");
      reply(this.actualStatus(model, NOT_OBEYED.inUse, `${running} task(s) of ${model} are running on this worker`));
      return;
    }
    this.served.delete(model);
    this.use.forget(model);
    this.report(model, "unloading");
    this.abortTasksOf(model);
    try {
      await this.library.unload(model);
      this.log.info({ model, reason: command.reason }, "model unloaded");
    } catch (error) {
      this.log.error({ model, err: error instanceof Error ? error.message : String(error) }, "model unload failed");
    }
    this.report(model, "unloaded");
  }

  private serve(info: ModelInfo): void {
    this.served.set(info.id, info);
    this.use.loaded(info.id);
  }

  /** A ModelStatus to every head; one that settles the model (loaded, unloaded, failed) carries the memory after it. */
  private report(model: string, state: ModelState, fields: Pick<ModelStatus, "progress" | "info" | "error"> = {}): void {
    this.send(this.status(model, state, fields));
  }

  private status(model: string, state: ModelState, fields: Pick<ModelStatus, "progress" | "info" | "error">): ModelStatus {
    const settled = state === "loaded" || state === "unloaded" || state === "failed";
    return { type: "ModelStatus", model, state, ...fields, ...(settled && { memory: this.library.memory() }) };
  }

  /** The answer to a command not obeyed: the model's actual state here (loaded, loading, else unloaded), and why. */
  private actualStatus(model: string, code: string, message: string): ModelStatus {
    const error = { message, code };
    const info = this.served.get(model);
    if (info) return this.status(model, "loaded", { info, error });
    const underway = this.loading.get(model);
    if (underway) return this.status(model, "loading", { progress: underway.progress, error });
    return this.status(model, "unloaded", { error });
  }

  private async rescan(): Promise<void> {
    try {
      const library = await this.library.refresh();
      const text = JSON.stringify(library);
      if (text === this.lastLibrary) return;
      this.lastLibrary = text;
      this.send({ type: "Library", library, memory: this.library.memory() });
    } catch (error) {
      this.log.warn({ err: error instanceof Error ? error.message : String(error) }, "library scan failed");
    }
  }
}
