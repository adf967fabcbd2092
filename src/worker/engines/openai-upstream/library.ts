// The upstream engine's model library (--upstream-library): the models the upstream lists at `GET /models`, followed
// as that list changes (Ollama pulling a model, llama-server's router mode, LM Studio), loaded and unloaded on the
// master's command.
//
// The upstream manages its own memory and loads a model on its first request, so "loading" here is only checking
// that the upstream lists the model and starting to serve it; "unloading" stops serving it. Every model costs 0
// bytes of the worker's memory, of which there are 0: the master's planner then always finds room (0 free ≥ 0
// needed) and never unloads a model of this worker to make room for another.
import { type LibraryModel, MAX_LIBRARY_MODELS, type ModelInfo, type WorkerMemory } from "../../../worker-protocol/index.js";
import { type LoadOptions, type ModelLibrary, ModelLoadError } from "../engine.js";

/** What the library offers of a model: what the upstream manages costs the worker nothing. */
function libraryEntry(model: ModelInfo): LibraryModel {
  return {
    id: model.id,
    sizeBytes: 0,
    memoryBytes: 0,
    contextLength: model.contextLength,
    ...(model.format !== undefined && { format: model.format }),
    ...(model.capabilities !== undefined && { capabilities: model.capabilities }),
  };
}

export class UpstreamLibrary implements ModelLibrary {
  /** The upstream's models as last fetched, in its order. */
  private listed: ModelInfo[] = [];
  /** Models named with --model: offered and served from the start, whether the upstream lists them or not. */
  private readonly named = new Map<string, ModelInfo>();
  /** Models served now. */
  private readonly loaded = new Map<string, ModelInfo>();
  /** The fetch under way: a scan and a load that want the list at once share it. */
  private fetching: Promise<LibraryModel[]> | undefined;

  constructor(
    /** The upstream's models as it lists them now, as they would be served (rejects when it cannot tell). */
    private readonly fetchModels: () => Promise<ModelInfo[]>,
  ) {}

  /**
   * At the engine's start: fetches the upstream's list, and serves the models named with --model from then on
   * (`unlisted` describes those the upstream does not list). Resolves with the models served.
   */
  async start(named: readonly string[], unlisted: (id: string) => ModelInfo): Promise<ModelInfo[]> {
    await this.refresh();
    for (const id of named) {
      const model = this.find(id) ?? unlisted(id);
      this.named.set(id, model);
      this.loaded.set(id, model);
    }
    return [...this.loaded.values()];
  }

  isLoaded(id: string): boolean {
    return this.loaded.has(id);
  }

  list(): LibraryModel[] {
    const listed = this.listed.map(libraryEntry);
    const unlisted = [...this.named.values()].filter((model) => !this.listed.some((m) => m.id === model.id));
    return [...listed, ...unlisted.map(libraryEntry)];
  }

  /** Fetches the upstream's list again; when that fails, the last list stays and the error is the caller's to report. */
  refresh(): Promise<LibraryModel[]> {
    this.fetching ??= this.fetchList().finally(() => {
      this.fetching = undefined;
    });
    return this.fetching;
  }

  memory(): WorkerMemory {
    return { totalBytes: 0, freeBytes: 0 };
  }

  /**
   * Serves a model the upstream lists (its list is fetched again first when it is not in the last one). Nothing is
   * loaded here: the upstream loads the model on its first request, with its own context length and parallelism, so
   * the options are not used.
   */
  async load(id: string, _options: LoadOptions, _progress: (fraction: number) => void, signal: AbortSignal): Promise<ModelInfo> {
    const served = this.loaded.get(id);
    if (served) return served;
    let model = this.find(id);
    if (!model) {
      await this.refresh().catch((error: unknown) => {
        throw new ModelLoadError(`could not check the upstream's models: ${error instanceof Error ? error.message : String(error)}`, "load_failed");
      });
      model = this.find(id);
    }
    signal.throwIfAborted();
    if (!model) throw new ModelLoadError(`the upstream does not list a model '${id}'`, "unknown_model");
    this.loaded.set(id, model);
    return model;
  }

  /** Stops serving the model; the upstream frees it by its own rules (Ollama's keep_alive, llama-server's router). */
  async unload(id: string): Promise<void> {
    this.loaded.delete(id);
  }

  private find(id: string): ModelInfo | undefined {
    return this.listed.find((model) => model.id === id) ?? this.named.get(id);
  }

  private async fetchList(): Promise<LibraryModel[]> {
    const listed = await this.fetchModels();
    if (listed.length > MAX_LIBRARY_MODELS) {
      throw new Error(`the upstream lists ${listed.length} models; a worker's library holds at most ${MAX_LIBRARY_MODELS}`);
    }
    this.listed = listed;
    return this.list();
  }
}
