// What is loaded where: each worker's library, memory and models (loading, loaded, unloading), and the explicit
// placements. Changed only by applyPlacement (apply.ts); read by the planner and the API.
import type { LibraryModel, WorkerMemory } from "../../worker-protocol/index.js";

export type SlotState = "loading" | "loaded" | "unloading";

/** Pin of a model loaded at its worker's start (by --model): never unloaded for idleness, nor evicted. */
export const STARTUP_PIN = "startup";

/** One model on one worker. */
export interface ModelSlot {
  model: string;
  state: SlotState;
  /** "loading": how far, 0 to 1. */
  progress: number;
  /** Its memory, as the worker's library estimates it. */
  memoryBytes: number;
  /** When it entered its state. */
  since: number;
  /** When a task of it was last assigned or ended here. */
  lastUsedAt: number;
  /** How long it may stay idle, when a request said (Ollama's keep_alive); Infinity: for ever. */
  keepAliveMs: number | undefined;
  /** The placement that pins it (or STARTUP_PIN): never unloaded for idleness, never evicted. */
  pin: string | undefined;
  /** The context length it was loaded with (as its worker reports it once loaded; while loading, as asked). */
  contextLength: number | undefined;
  /** The concurrency it was asked to load with, if any. */
  concurrency: number | undefined;
}

/** A worker that loads and unloads models on command (it took up the "models" protocol feature). */
export interface WorkerModels {
  workerId: string;
  name: string;
  library: Map<string, LibraryModel>;
  memory: WorkerMemory;
  slots: Map<string, ModelSlot>;
  /** Whether it downloads model files on command (the "pull" feature). */
  pulls: boolean;
}

/** An explicit placement (POST /v1/placements): `replicas` instances of a model, pinned while it exists. */
export interface Placement {
  id: string;
  model: string;
  replicas: number;
  /** The worker asked for (its id or name), if any. */
  worker: string | undefined;
  contextLength: number | undefined;
  concurrency: number | undefined;
  createdAt: number;
  /**
   * The names of the workers its instances were placed on (names, not connection ids: every head knows a worker by
   * its name). A head that did not place it pins what those workers report loading or loaded of the model.
   */
  workers: string[];
}

/** A download into a worker's models dir (POST /v1/models/pull). */
export interface Pull {
  id: string;
  workerId: string;
  workerName: string;
  url: string;
  fileName: string | undefined;
  state: "downloading" | "done" | "failed";
  receivedBytes: number;
  totalBytes: number | undefined;
  sha256: string | undefined;
  error: { message: string; code: string | undefined } | undefined;
  startedAt: number;
  endedAt: number | undefined;
}

/** Ended pulls kept for /v1/cluster (the oldest go first). */
export const ENDED_PULLS_KEPT = 64;

export class PlacementState {
  readonly workers = new Map<string, WorkerModels>();
  readonly placements = new Map<string, Placement>();
  readonly pulls = new Map<string, Pull>();

  /** The slots of `model`, with their workers. */
  *slotsOf(model: string): Generator<{ worker: WorkerModels; slot: ModelSlot }> {
    for (const worker of this.workers.values()) {
      const slot = worker.slots.get(model);
      if (slot) yield { worker, slot };
    }
  }

  /** The placement whose instance `model` on the worker named `workerName` is, if any. */
  pinOf(workerName: string, model: string): string | undefined {
    for (const placement of this.placements.values()) if (placement.model === model && placement.workers.includes(workerName)) return placement.id;
    return undefined;
  }

  /** Whether some worker offers `model` in its library. */
  isOffered(model: string): boolean {
    for (const worker of this.workers.values()) if (worker.library.has(model)) return true;
    return false;
  }

  /** Whether some worker is loading `model`. */
  isLoading(model: string): boolean {
    for (const { slot } of this.slotsOf(model)) if (slot.state === "loading") return true;
    return false;
  }

  /** Every model some worker offers. */
  offeredModels(): Set<string> {
    const out = new Set<string>();
    for (const worker of this.workers.values()) for (const id of worker.library.keys()) out.add(id);
    return out;
  }
}

/** Memory of a worker's models as the master counts it: everything loading, loaded or still unloading. */
export function usedBytes(worker: WorkerModels): number {
  let used = 0;
  for (const slot of worker.slots.values()) used += slot.memoryBytes;
  return used;
}

/** What another model may use on the worker: its total (within its --memory-limit) less its models'. */
export function freeBytes(worker: WorkerModels): number {
  return Math.max(0, worker.memory.totalBytes - usedBytes(worker));
}

/** A worker's memory as /v1/cluster and the metrics show it: total, taken (total less free) and free. */
export function memoryOf(worker: WorkerModels): { totalBytes: number; usedBytes: number; freeBytes: number } {
  const free = freeBytes(worker);
  return { totalBytes: worker.memory.totalBytes, usedBytes: worker.memory.totalBytes - free, freeBytes: free };
}
