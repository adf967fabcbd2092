// The llama engine's models: those it offers (its library), those loading and those loaded, and the memory they
// hold. Models given at start and models loaded on the master's command take the same path (loaded-model.ts).
import type { Llama } from "node-llama-cpp";
import type { LibraryModel, ModelInfo, WorkerMemory } from "../../../worker-protocol/index.js";
import { type LoadOptions, type ModelLibrary, ModelLoadError } from "../engine.js";
import type { LlamaEngineOptions } from "../llama.js";
import type { NodeLlamaCpp } from "./backend.js";
import { type LoadedModel, loadModel, type ModelPlan, unloadModel } from "./loaded-model.js";
import { MemoryBudget } from "./memory-budget.js";
import { estimateMemory, ModelCatalogue, modelId, readInsights } from "./model-library.js";

interface Backend {
  lib: NodeLlamaCpp;
  llama: Llama;
  catalogue: ModelCatalogue;
  budget: MemoryBudget;
}

interface Loading {
  /** Aborted by unload() and close(), besides the caller's signal. */
  controller: AbortController;
  settled: Promise<ModelInfo>;
}

export class LlamaModels implements ModelLibrary {
  private backend: Backend | undefined;
  private readonly loaded = new Map<string, LoadedModel>();
  private readonly loading = new Map<string, Loading>();
  /** Loaded models as the library lists them, kept while they are loaded even if their file goes. */
  private readonly offers = new Map<string, LibraryModel>();

  /** Pulled model files go to the models dir, when there is one (the "pull" protocol feature). */
  readonly pullDir: string | undefined;

  constructor(private readonly options: LlamaEngineOptions) {
    this.pullDir = options.modelsDir;
  }

  /** Scans the library, then loads the --model files as the worker always did (their memory counts, unchecked). */
  async open(lib: NodeLlamaCpp, llama: Llama): Promise<ModelInfo[]> {
    const { options } = this;
    const catalogue = new ModelCatalogue(lib, llama, {
      dir: options.modelsDir,
      paths: options.modelPaths,
      contextLength: options.contextLength,
      embeddings: options.embeddings ?? false,
      onSkippedFile: options.onSkippedFile,
    });
    const backend: Backend = { lib, llama, catalogue, budget: new MemoryBudget(llama, options.memoryLimitBytes) };
    this.backend = backend;
    await Promise.all([catalogue.scan(), backend.budget.update()]);
    for (const path of options.modelPaths) {
      const id = modelId(path);
      if (this.loaded.has(id)) throw new Error(`two model files are both named '${id}'`);
      const plan = { ...this.plan(id, path), contextLength: options.contextLength };
      const report = this.reporter(id);
      const loaded = await loadModel(lib, llama, plan, report).finally(report.stop);
      this.loaded.set(id, loaded);
      const memoryBytes = await estimateMemory(llama, loaded.model.fileInsights, { ...plan, contextLength: loaded.info.contextLength });
      backend.budget.hold(id, memoryBytes);
      this.offers.set(id, catalogue.get(id)?.model ?? offerOf(loaded, memoryBytes));
    }
    await backend.budget.update();
    return [...this.loaded.values()].map((loaded) => loaded.info);
  }

  /** A loaded model, to serve a task with. */
  get(id: string): LoadedModel | undefined {
    return this.loaded.get(id);
  }

  /** The loaded models by id. */
  entries(): IterableIterator<[string, LoadedModel]> {
    return this.loaded.entries();
  }

  list(): LibraryModel[] {
    const listed = this.backend?.catalogue.list() ?? [];
    const gone = [...this.offers.values()].filter((offer) => !listed.some((model) => model.id === offer.id));
    return [...listed, ...gone];
  }

  async refresh(): Promise<LibraryModel[]> {
    const backend = this.started();
    await Promise.all([backend.catalogue.scan(), backend.budget.update()]);
    return this.list();
  }

  memory(): WorkerMemory {
    return this.backend?.budget.memory() ?? { totalBytes: 0, freeBytes: 0 };
  }

  async load(id: string, options: LoadOptions, progress: (fraction: number) => void, signal: AbortSignal): Promise<ModelInfo> {
    const backend = this.started();
    const loaded = this.loaded.get(id);
    if (loaded) return loaded.info;
    if (this.loading.has(id)) throw new ModelLoadError(`'${id}' is loading already`, "busy");
    const file = backend.catalogue.get(id);
    if (!file) throw new ModelLoadError(`'${id}' is not in this worker's library`, "unknown_model");
    const plan = { ...this.plan(id, file.path, options.concurrency), contextLength: options.contextLength ?? file.model.contextLength };
    const controller = new AbortController();
    const settled = this.loadOnCommand(backend, plan, file.model, progress, AbortSignal.any([signal, controller.signal]));
    this.loading.set(id, { controller, settled });
    try {
      return await settled;
    } finally {
      this.loading.delete(id);
    }
  }

  /** Gives up a load under way and frees the model; a model neither loading nor loaded is left alone. */
  async unload(id: string): Promise<void> {
    const loading = this.loading.get(id);
    if (loading) {
      loading.controller.abort(new Error(`'${id}' was unloaded before it finished loading`));
      // The load's own caller gets its rejection. It may have finished before the abort: then it is freed below.
      await loading.settled.catch(() => undefined);
    }
    const loaded = this.loaded.get(id);
    const budget = this.backend?.budget;
    if (!loaded || !budget) return;
    this.loaded.delete(id); // from now on its tasks are refused
    this.offers.delete(id);
    try {
      await unloadModel(loaded);
    } finally {
      budget.release(id);
      await budget.update();
    }
  }

  /** Gives up every load under way and frees every model. */
  async close(): Promise<void> {
    const ids = new Set([...this.loading.keys(), ...this.loaded.keys()]);
    await Promise.all([...ids].map((id) => this.unload(id)));
    this.backend = undefined;
  }

  private async loadOnCommand(
    backend: Backend,
    plan: ModelPlan & { contextLength: number },
    offer: LibraryModel,
    progress: (fraction: number) => void,
    signal: AbortSignal,
  ): Promise<ModelInfo> {
    const { lib, llama, budget } = backend;
    const { id } = plan;
    let reserved = false;
    const report = this.reporter(id, progress);
    try {
      signal.throwIfAborted();
      // Estimated for what is asked (its context length and sequences), which may differ from the library's default.
      const memoryBytes = await estimateMemory(llama, await readInsights(lib, llama, plan.path), plan);
      signal.throwIfAborted();
      budget.reserve(id, memoryBytes);
      reserved = true;
      const loaded = await loadModel(lib, llama, plan, report, signal);
      this.loaded.set(id, loaded);
      this.offers.set(id, offer);
      return loaded.info;
    } catch (error) {
      if (reserved) budget.release(id);
      throw signal.aborted ? signal.reason : loadFailure(lib, id, error);
    } finally {
      report.stop();
      await budget.update();
    }
  }

  /** A model's setup by the engine's options; its context length is the caller's to set. */
  private plan(id: string, path: string, sequences?: number): ModelPlan {
    const { options } = this;
    return {
      id,
      path,
      sequences: sequences ?? options.maxConcurrency,
      threads: options.threads,
      embeddings: options.embeddings ?? false,
      promptCache: options.promptCache ?? true,
    };
  }

  /**
   * Forwards a load's progress to `progress` and the engine's onLoadProgress, rising only, and not once `stop()`ped:
   * node-llama-cpp may deliver a last report after the load settled.
   */
  private reporter(id: string, progress?: (fraction: number) => void): ((fraction: number) => void) & { stop(): void } {
    let last = -1;
    let open = true;
    const report = (fraction: number) => {
      if (!open || fraction <= last) return;
      last = fraction;
      progress?.(fraction);
      this.options.onLoadProgress?.(id, fraction);
    };
    return Object.assign(report, { stop: () => void (open = false) });
  }

  private started(): Backend {
    if (!this.backend) throw new Error("the llama engine is not started");
    return this.backend;
  }
}

/** A load that failed for another reason than its signal: out_of_memory when llama.cpp found too little, else load_failed. */
function loadFailure(lib: NodeLlamaCpp, id: string, error: unknown): ModelLoadError {
  if (error instanceof ModelLoadError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  const code = error instanceof lib.InsufficientMemoryError ? "out_of_memory" : "load_failed";
  const failure = new ModelLoadError(`could not load '${id}': ${reason}`, code);
  failure.cause = error;
  return failure;
}

/** The library's entry for a loaded model whose file it does not list (a --model file it could not read ahead). */
function offerOf(loaded: LoadedModel, memoryBytes: number): LibraryModel {
  const { id, contextLength, format, capabilities } = loaded.info;
  return { id, sizeBytes: loaded.model.size, memoryBytes, contextLength, ...(format !== undefined && { format }), capabilities };
}
