// Picks and builds a worker's engine; heavy engines are loaded only when chosen.
import type { Engine } from "./engine.js";
import { SimulatorEngine, type SimulatorOptions } from "./simulator.js";

export type GpuChoice = "auto" | "cuda" | "metal" | "vulkan" | "cpu";

export interface EngineOptions {
  engine: "sim" | "llama" | "openai";
  /** Model files (llama) or model names (openai, sim). */
  models: string[];
  /** llama: a folder of GGUF files offered to load on command. */
  modelsDir?: string;
  /** llama: the most memory, in bytes, its models may need together. */
  memoryLimitBytes?: number;
  maxConcurrency: number;
  gpu: GpuChoice;
  contextLength?: number;
  /** llama: CPU threads per model context. */
  threads?: number;
  /** llama: every model also computes embeddings. */
  embeddings?: boolean;
  /** llama: keep sequences' tokens between tasks and reuse prompt prefixes (default true). */
  promptCache?: boolean;
  /** llama: where llama.cpp's own log lines go. */
  onLog?: (level: string, message: string) => void;
  /** llama: loading progress of each model file, 0 to 1. */
  onLoadProgress?: (model: string, fraction: number) => void;
  /** llama: a file of the models dir that is not offered, and why. */
  onSkippedFile?: (path: string, reason: string) => void;
  upstream?: string;
  upstreamKey?: string;
  /** openai: models that take images; `*` for every model. */
  upstreamVision?: string[];
  /** openai: models the upstream computes embeddings with; `*` for every model. */
  upstreamEmbeddings?: string[];
  /** openai: offer the upstream's model list as a library, followed as it changes. */
  upstreamLibrary?: boolean;
  sim: SimulatorOptions;
}

export async function createEngine(options: EngineOptions): Promise<Engine> {
  switch (options.engine) {
    case "sim":
      return new SimulatorEngine(options.models, options.sim);
    case "llama": {
      const { LlamaEngine } = await import("./llama.js");
      return new LlamaEngine({
        modelPaths: options.models,
        modelsDir: options.modelsDir,
        memoryLimitBytes: options.memoryLimitBytes,
        gpu: options.gpu,
        maxConcurrency: options.maxConcurrency,
        contextLength: options.contextLength,
        threads: options.threads,
        embeddings: options.embeddings,
        promptCache: options.promptCache,
        onLog: options.onLog,
        onLoadProgress: options.onLoadProgress,
        onSkippedFile: options.onSkippedFile,
      });
    }
    case "openai": {
      const { OpenAIUpstreamEngine } = await import("./openai-upstream.js");
      if (!options.upstream) throw new Error("--upstream is required with --engine openai");
      return new OpenAIUpstreamEngine({
        baseUrl: options.upstream,
        apiKey: options.upstreamKey,
        models: options.models,
        maxConcurrency: options.maxConcurrency,
        visionModels: options.upstreamVision,
        embeddingModels: options.upstreamEmbeddings,
        library: options.upstreamLibrary,
      });
    }
  }
}
