// The memory a llama worker's models may use: the device's (RAM on the CPU, VRAM on a GPU) within --memory-limit,
// less what its loaded and loading models are estimated to need.
import os from "node:os";
import type { Llama } from "node-llama-cpp";
import type { WorkerMemory } from "../../../worker-protocol/index.js";
import { ModelLoadError } from "../engine.js";

interface DeviceMemory {
  total: number;
  free: number;
}

/**
 * Keeps each model's estimate while it is loading or loaded. RAM is read on every call (`os.freemem()`: what Linux
 * calls available); VRAM is read asynchronously by node-llama-cpp, so a GPU's reading is the one of the last
 * `update()` (at start, after each load and unload, on each refresh of the library).
 */
export class MemoryBudget {
  private readonly held = new Map<string, number>();
  private vram: DeviceMemory = { total: 0, free: 0 };

  constructor(
    private readonly llama: Llama,
    private readonly limitBytes?: number,
  ) {}

  /** The device's memory within the limit, and what is free in it for another model (never more than the device has). */
  memory(): WorkerMemory {
    const device = this.llama.gpu === false ? { total: os.totalmem(), free: os.freemem() } : this.vram;
    const totalBytes = Math.min(device.total, this.limitBytes ?? Number.POSITIVE_INFINITY);
    let used = 0;
    for (const bytes of this.held.values()) used += bytes;
    return { totalBytes, freeBytes: Math.max(0, Math.min(totalBytes - used, device.free)) };
  }

  /** Holds `bytes` for `model`, or refuses (out_of_memory) when they are more than is free. */
  reserve(model: string, bytes: number): void {
    const { freeBytes, totalBytes } = this.memory();
    if (bytes > freeBytes) {
      throw new ModelLoadError(
        `'${model}' needs about ${mib(bytes)} MiB, but ${mib(freeBytes)} MiB of ${mib(totalBytes)} MiB are free for models on this worker`,
        "out_of_memory",
      );
    }
    this.held.set(model, bytes);
  }

  /** Records what a model holds without checking it fits (models given at start load as they always did). */
  hold(model: string, bytes: number): void {
    this.held.set(model, bytes);
  }

  release(model: string): void {
    this.held.delete(model);
  }

  /** Reads the GPU's VRAM again (nothing to do on the CPU). */
  async update(): Promise<void> {
    if (this.llama.gpu === false) return;
    const { total, free } = await this.llama.getVramState();
    this.vram = { total, free };
  }
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}
