// The contract every inference engine of a worker fulfils (simulator, llama.cpp, OpenAI-compatible upstream).
import type { DeviceInfo, EmbedSpec, FinishReason, ModelCache, ModelInfo, TaskAssigned, TokenLogprob, Usage } from "../../worker-protocol/index.js";

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
  models: ModelInfo[];
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
