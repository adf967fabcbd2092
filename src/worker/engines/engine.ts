// The contract every inference engine of a worker fulfils (simulator, llama.cpp, OpenAI-compatible upstream).
import type { DeviceInfo, FinishReason, ModelInfo, TaskAssigned, Usage } from "../../worker-protocol/index.js";

/** What the engine is asked to generate: the task as the master assigned it. */
export type GenerationRequest = Omit<TaskAssigned, "type">;

/** Receives generated text as soon as the engine has it. */
export interface GenerationSink {
  /** `tokens` is how many model tokens `text` holds, when the engine knows. */
  text(text: string, tokens?: number): void;
}

export interface GenerationResult {
  finishReason: FinishReason;
  usage: Usage;
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
