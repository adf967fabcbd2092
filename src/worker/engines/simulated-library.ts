// The simulator's model library: made-up models with a size and a load time, loaded and unloaded on command within
// a memory limit, so that placement (load on demand, eviction, failures) can be tested and shown without weights.
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { LibraryModel, ModelInfo, WorkerMemory } from "../../worker-protocol/index.js";
import { type LoadOptions, type ModelLibrary, ModelLoadError } from "./engine.js";

export interface SimulatedModel {
  id: string;
  /** Bytes on "disk"; its memory once loaded is the same. */
  sizeBytes: number;
  /** How long a load takes. */
  loadMs: number;
  /** A load fails with this message after `loadMs` (for tests of failed loads). */
  failWith?: string;
}

/** How loading progress is reported: this many steps over a load's time. */
const PROGRESS_STEPS = 4;

/** Parses `NAME=SIZE[@LOADMS]` (SIZE in bytes, or with KiB, MiB, GiB), the --sim-library form. */
export function parseSimulatedModel(spec: string): SimulatedModel {
  const match = /^([^=@]+)=(\d+(?:\.\d+)?)(KiB|MiB|GiB)?(?:@(\d+))?$/.exec(spec);
  if (!match) throw new Error(`expected NAME=SIZE[@LOADMS] (e.g. small=2GiB@500), got '${spec}'`);
  const [, id, amount, unit, loadMs] = match;
  const scale = unit === "GiB" ? 2 ** 30 : unit === "MiB" ? 2 ** 20 : unit === "KiB" ? 2 ** 10 : 1;
  return { id: id as string, sizeBytes: Math.round(Number(amount) * scale), loadMs: Number(loadMs ?? 0) };
}

export class SimulatedLibrary implements ModelLibrary {
  private readonly models = new Map<string, SimulatedModel>();
  /** Loaded models, and those being loaded (their memory is taken from the start of the load). */
  private readonly loaded = new Map<string, SimulatedModel>();
  /** The context length each loaded model was loaded with (a load of a loaded model answers with it, as llama does). */
  private readonly loadedContext = new Map<string, number | undefined>();

  constructor(
    models: readonly SimulatedModel[],
    private readonly memoryBytes: number,
    /** The model as served once loaded (the simulator's ModelInfo for an id). */
    private readonly describe: (id: string, contextLength: number | undefined) => ModelInfo,
    private readonly contextLength: number,
    /** A directory whose .gguf files the simulator also offers (as made-up models of the files' sizes), and pulls into. */
    readonly pullDir?: string,
  ) {
    for (const model of models) this.models.set(model.id, model);
  }

  /** Models the worker serves from its start: they are part of the library, and loaded. */
  preload(ids: readonly string[]): void {
    for (const id of ids) {
      const model = this.models.get(id) ?? { id, sizeBytes: 0, loadMs: 0 };
      this.models.set(id, model);
      this.loaded.set(id, model);
    }
  }

  isLoaded(id: string): boolean {
    return this.loaded.has(id);
  }

  list(): LibraryModel[] {
    return [...this.models.values()].map((model) => {
      const { format, capabilities } = this.describe(model.id, undefined);
      return {
        id: model.id,
        sizeBytes: model.sizeBytes,
        memoryBytes: model.sizeBytes,
        contextLength: this.contextLength,
        ...(format !== undefined && { format }),
        ...(capabilities !== undefined && { capabilities }),
      };
    });
  }

  /** Rescans the models dir, if any: each .gguf file there is a model named after it (nothing reads it). */
  async refresh(): Promise<LibraryModel[]> {
    if (this.pullDir === undefined) return this.list();
    const names = await readdir(this.pullDir).catch(() => [] as string[]);
    for (const name of names) {
      if (!name.endsWith(".gguf") || name.startsWith(".")) continue;
      const id = name.slice(0, -".gguf".length);
      if (this.models.has(id)) continue;
      const info = await stat(path.join(this.pullDir, name)).catch(() => undefined);
      if (info?.isFile()) this.models.set(id, { id, sizeBytes: info.size, loadMs: 0 });
    }
    return this.list();
  }

  /** Adds a model to the library, as a file dropped into a models dir would (for tests). */
  add(model: SimulatedModel): void {
    this.models.set(model.id, model);
  }

  memory(): WorkerMemory {
    let used = 0;
    for (const model of this.loaded.values()) used += model.sizeBytes;
    return { totalBytes: this.memoryBytes, freeBytes: Math.max(0, this.memoryBytes - used) };
  }

  async load(id: string, options: LoadOptions, progress: (fraction: number) => void, signal: AbortSignal): Promise<ModelInfo> {
    const model = this.models.get(id);
    if (!model) throw new ModelLoadError(`no model '${id}' in this worker's library`, "unknown_model");
    if (this.loaded.has(id)) return this.describe(id, this.loadedContext.get(id));
    if (model.sizeBytes > this.memory().freeBytes) {
      throw new ModelLoadError(`'${id}' needs ${model.sizeBytes} bytes; ${this.memory().freeBytes} are free`, "out_of_memory");
    }
    this.loaded.set(id, model);
    try {
      for (let step = 1; step <= PROGRESS_STEPS; step++) {
        await sleep(model.loadMs / PROGRESS_STEPS, undefined, { signal });
        progress(step / PROGRESS_STEPS);
      }
      if (model.failWith !== undefined) throw new ModelLoadError(model.failWith, "load_failed");
      this.loadedContext.set(id, options.contextLength);
      return this.describe(id, options.contextLength);
    } catch (error) {
      this.loaded.delete(id);
      throw error;
    }
  }

  async unload(id: string): Promise<void> {
    this.loaded.delete(id);
    this.loadedContext.delete(id);
  }
}
