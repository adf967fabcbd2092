// The llama.cpp engine: runs GGUF models in this process through node-llama-cpp, an optional peer dependency
// loaded only here (see llama/backend.ts for how it stays offline). Its parts live in llama/.
import type { Llama } from "node-llama-cpp";
import type { ModelCache } from "../../worker-protocol/index.js";
import {
  type EmbeddingRequest,
  type EmbeddingResult,
  type EmbeddingSink,
  type Engine,
  type EngineDescription,
  EngineRequestError,
  type GenerationRequest,
  type GenerationResult,
  type GenerationSink,
} from "./engine.js";
import type { GpuChoice } from "./index.js";
import { describeDevice, loadNodeLlamaCpp, type NodeLlamaCpp, openLlama } from "./llama/backend.js";
import { renderPrompt } from "./llama/chat-template.js";
import { decode } from "./llama/decode.js";
import type { LoadedModel } from "./llama/loaded-model.js";
import { LlamaModels } from "./llama/models.js";
import { outputGrammar } from "./llama/output-grammar.js";

export interface LlamaEngineOptions {
  /** GGUF files loaded at start; each is served under its file name without `.gguf`. May be empty with `modelsDir`. */
  modelPaths: string[];
  /**
   * A folder whose `*.gguf` files (not those of its subfolders) the engine offers to load on command, beside
   * `modelPaths` (see docs/llama-options.md, "Library").
   */
  modelsDir?: string;
  /** The most memory, in bytes, the models may need together (as estimated); loads beyond it are refused. */
  memoryLimitBytes?: number;
  gpu: GpuChoice;
  /** Tasks served at once per model, each on its own context sequence. */
  maxConcurrency: number;
  /** Tokens per sequence (prompt and reply); defaults to what the model was trained on, as memory allows. */
  contextLength?: number;
  /** CPU threads per context; defaults to node-llama-cpp's choice, or 1 for tiny models (< 32 MB) where more only adds overhead. */
  threads?: number;
  /** Every model also computes embeddings (embedding-only models always do); see docs/llama-options.md. */
  embeddings?: boolean;
  /**
   * Keep each sequence's tokens after its task and evaluate only what a new prompt adds to the longest prefix cached
   * (default true; see docs/llama-options.md, "Prompt cache"). Off: every task evaluates its whole prompt.
   */
  promptCache?: boolean;
  /** Receives llama.cpp's log lines (warnings and errors); without it node-llama-cpp prints them itself. */
  onLog?: (level: string, message: string) => void;
  /** Reports each model file's loading, from 0 to 1 (the CLI draws a progress bar from it). */
  onLoadProgress?: (model: string, fraction: number) => void;
  /** A file of the library that is not offered, and why (not a GGUF, unreadable, its name taken). */
  onSkippedFile?: (path: string, reason: string) => void;
}

export class LlamaEngine implements Engine {
  readonly kind = "llama";
  /** Its models: loaded at start, and loaded and unloaded on command. */
  readonly library: LlamaModels;
  private llama: Llama | undefined;
  private lib: NodeLlamaCpp | undefined;

  constructor(private readonly options: LlamaEngineOptions) {
    if (options.modelPaths.length === 0 && options.modelsDir === undefined) {
      throw new Error("the llama engine needs --model PATH.gguf or --models-dir DIR");
    }
    if (!Number.isInteger(options.maxConcurrency) || options.maxConcurrency < 1) {
      throw new Error("maxConcurrency must be a positive integer");
    }
    this.library = new LlamaModels(options);
  }

  async start(): Promise<EngineDescription> {
    if (this.llama) throw new Error("the llama engine is already started");
    const lib = await loadNodeLlamaCpp();
    this.lib = lib;
    this.llama = await openLlama(lib, this.options);
    const models = await this.library.open(lib, this.llama);
    return { device: await describeDevice(this.llama), models };
  }

  async generate(request: GenerationRequest, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult> {
    const loaded = this.served(request.model);
    if (!this.lib || !this.llama) throw new Error("the llama engine is not started");
    const { chat } = loaded;
    if (!chat) throw new EngineRequestError(`'${loaded.info.id}' is an embedding model: it does not generate text`, "invalid_request");
    const prompt = renderPrompt(this.lib, loaded.model, chat.chatWrapper, request);
    if (prompt.tokens.length >= chat.context.contextSize) {
      throw new EngineRequestError(
        `the prompt is ${prompt.tokens.length} tokens, but '${loaded.info.id}' holds at most ${chat.context.contextSize} tokens`,
        "context_length_exceeded",
      );
    }
    const reasoningOpened = prompt.openedWith.includes("<think>");
    // Awaited only when there is one: a task without a grammar reaches its sequence in this turn, as before.
    const building = outputGrammar(this.llama, request, { format: loaded.info.format, reasoningOpened });
    const grammar = building && (await building);
    const sequence = await chat.sequences.acquire(prompt.tokens, signal);
    // A task that ends, however (cancelled included), leaves its sequence holding exactly what node-llama-cpp says;
    // one that throws may have stopped inside an evaluation, so its sequence is not reused.
    let intact = false;
    try {
      const { model } = loaded;
      const { params, logprobs } = request;
      const result = await decode({ lib: this.lib, model, sequence, prompt, params, grammar, logprobs }, sink, signal);
      intact = true;
      return result;
    } finally {
      await chat.sequences.release(sequence, intact);
    }
  }

  /** Per text-generating model: its sequences holding tokens (free or busy) and their tokens; none without the cache. */
  cacheStats(): ModelCache[] {
    if (this.options.promptCache === false) return [];
    const caches: ModelCache[] = [];
    for (const [model, { chat }] of this.library.entries()) if (chat) caches.push({ model, ...chat.sequences.stats() });
    return caches;
  }

  async embed(request: EmbeddingRequest, sink: EmbeddingSink, signal: AbortSignal): Promise<EmbeddingResult> {
    const loaded = this.served(request.model);
    if (!loaded.embedder) {
      throw new EngineRequestError(`'${loaded.info.id}' computes no embeddings on this worker (it was started without --embeddings)`, "invalid_request");
    }
    return loaded.embedder.embed(request, sink, signal);
  }

  async close(): Promise<void> {
    const llama = this.llama;
    this.llama = undefined;
    try {
      await this.library.close();
    } finally {
      await llama?.dispose(); // whatever a failed unload left behind goes with it
    }
  }

  /** A loaded model; one never loaded, unloaded or still loading is refused. */
  private served(model: string): LoadedModel {
    const loaded = this.library.get(model);
    if (!loaded) throw new Error(`this worker does not serve the model '${model}' (it is not loaded)`);
    return loaded;
  }
}
