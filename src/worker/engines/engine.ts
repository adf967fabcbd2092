// The contract every inference engine of a worker fulfils (simulator, llama.cpp, OpenAI-compatible upstream).
import type {
  DeviceInfo,
  EmbedSpec,
  FinishReason,
  LibraryModel,
  ModelCache,
  ModelInfo,
  TaskAssigned,
  TokenLogprob,
  Usage,
  WorkerMemory,
} from "../../worker-protocol/index.js";

/** What the engine is asked to generate: the task as the master assigned it. */
export type GenerationRequest = Omit<TaskAssigned, "type">;

/** Receives generated text as soon as the engine has it. */
export interface GenerationSink {
  /**
   * `tokens` is how many model tokens `text` holds, when the engine knows; `logprobs`, when the task asked for them,
   * has one entry per token of `text`, in order.
   */
  text(text: string, tokens?: number, logprobs?: readonly TokenLogprob[]): void;
  /**
   * Prompt processing progress: `done` of `total` prompt tokens evaluated. A long prefill reports it now and then,
   * so that the master does not take the silence for a stalled task.
   */
  progress(done: number, total?: number): void;
  /**
   * Flow control: undefined while the task may produce more, or a promise that resolves once it may (its client
   * caught up) or the task is aborted. Engines await it between tokens, which pauses generation for a client that
   * is not reading: the sampling loop waits, the upstream's response is not read.
   */
  ready(): Promise<void> | undefined;
}

/** A sink that only takes text and never pauses the engine (for engines run outside a worker: tools, benchmarks). */
export function textSink(text: GenerationSink["text"]): GenerationSink {
  return { text, progress() {}, ready: () => undefined };
}

export interface GenerationResult {
  finishReason: FinishReason;
  usage: Usage;
  /** With finishReason "stop": the request's `params.stop` string that ended the reply (not a chat template's own). */
  stopSequence?: string;
}

/** What the engine is asked to embed: an embedding task as the master assigned it. */
export interface EmbeddingRequest {
  taskId: string;
  model: string;
  embed: EmbedSpec;
}

/** Receives each input's vector as soon as the engine has it. */
export interface EmbeddingSink {
  /**
   * The next input's vector, in input order, L2-normalised (normalizeEmbedding), of `embed.dimensions` values when
   * set; `tokens` is the input's length in model tokens (after truncation).
   */
  vector(values: Float32Array | readonly number[], tokens: number): void;
  /** As GenerationSink.progress: shows a long batch is alive. */
  progress(done: number, total?: number): void;
}

export interface EmbeddingResult {
  /** Tokens of all inputs together. */
  promptTokens: number;
}

export interface EngineDescription {
  device: DeviceInfo;
  /** Models loaded at start (may be empty for an engine with a library). */
  models: ModelInfo[];
}

/** How the master asks for a model to be loaded (LoadModel); absent fields: the engine's defaults. */
export interface LoadOptions {
  contextLength?: number;
  /** Tasks it should run at once (context sequences). */
  concurrency?: number;
}

/** A load the engine refuses or fails; `code` reaches the master (e.g. out_of_memory, unknown_model). */
export class ModelLoadError extends Error {
  constructor(
    message: string,
    readonly code: "out_of_memory" | "unknown_model" | "load_failed" | "busy",
  ) {
    super(message);
  }
}

/**
 * Loading and unloading models on the master's command (the "models" protocol feature). An engine that has it
 * offers a library; `memory().freeBytes` is what another model may use, within the worker's --memory-limit.
 */
export interface ModelLibrary {
  /** What the engine could load now, loaded models included. Cheap: the last scan. */
  list(): LibraryModel[];
  /** Scans again (a models dir, an upstream's model list); resolves with the new list. */
  refresh(): Promise<LibraryModel[]>;
  memory(): WorkerMemory;
  /**
   * Loads a model of the library and resolves with it as served. `progress` gets fractions 0–1. Aborting `signal`
   * gives up the load (the promise rejects, and nothing of the model stays in memory). Rejects with a
   * ModelLoadError (out_of_memory when it would not fit in memory().freeBytes).
   */
  load(model: string, options: LoadOptions, progress: (fraction: number) => void, signal: AbortSignal): Promise<ModelInfo>;
  /** Frees everything the model holds (the worker calls it only once none of its tasks runs). */
  unload(model: string): Promise<void>;
  /** The directory model files are pulled into (the "pull" protocol feature), for libraries read from one. */
  readonly pullDir?: string;
}

export interface Engine {
  /** "simulator", "llama", "openai": reported to the master in Hello. */
  readonly kind: string;
  /** Loads what it needs (model files, upstream discovery) and says what it serves. Called once before joining. */
  start(): Promise<EngineDescription>;
  /**
   * Generates a reply, calling `sink.text` for each piece. When `signal` aborts, the engine must stop
   * within one token step and settle the promise (resolve or reject: the caller decides by the signal,
   * not by the outcome). Errors that are not cancellations reject with an Error whose message is safe
   * to show a client.
   */
  generate(request: GenerationRequest, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult>;
  /**
   * Embeds every input of `request.embed`, in order, calling `sink.vector` for each (engines whose models announce
   * the "embeddings" capability). Aborting `signal` stops it between inputs at the latest, as for generate. An input
   * the model cannot take (too long without `truncate`, a token id outside its vocabulary) rejects with an
   * EngineRequestError.
   */
  embed?(request: EmbeddingRequest, sink: EmbeddingSink, signal: AbortSignal): Promise<EmbeddingResult>;
  /**
   * What the engine keeps in its prompt caches now, per model (engines that reuse prompt prefixes): sent with every
   * heartbeat, so it must be cheap.
   */
  cacheStats?(): ModelCache[];
  /** Models loaded and unloaded at run time, for engines that can (see ModelLibrary). */
  readonly library?: ModelLibrary;
  /** Frees models, contexts and sockets. */
  close(): Promise<void>;
}

/** The request itself cannot be served (too long a prompt, a malformed conversation): the client sees a 400. */
export class EngineRequestError extends Error {
  constructor(
    message: string,
    readonly code: "context_length_exceeded" | "invalid_request",
  ) {
    super(message);
  }
}
