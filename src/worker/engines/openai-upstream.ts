// The upstream engine: a worker in front of an OpenAI-compatible server (llama-server, vLLM, SGLang, Ollama, LM Studio, mlx_lm.server).
//
// Replies are streamed from `POST {baseUrl}/chat/completions` and turned back into raw model text for the
// master's parser: reasoning that the upstream already separated (`reasoning_content` / `reasoning`) is wrapped
// in `<think>`…`</think>` again, and tool calls it already parsed are written as Hermes `<tool_call>` blocks.
// Cancelling is aborting the HTTP request: that is what makes those servers stop generating.
// Which stop string ended a reply is passed on only when the upstream names it in the choice's `stop_reason`
// (vLLM) and it is one of the task's; llama-server's chat endpoint names none, so its stops end unnamed.
//
// Every request option is forwarded (see openai-upstream/request-body.ts and docs/upstream-options.md), so each model
// announces every capability but vision and embeddings, which only the operator knows (--upstream-vision,
// --upstream-embeddings; embeddings are computed by the upstream's POST /embeddings). Whether the upstream
// honours an option is its own business: an option it refuses comes back as its 400, which the client sees as its
// own 400 (EngineRequestError), with the upstream's message.
//
// With --upstream-library the upstream's model list is a library the master loads from and unloads on command, and
// it is fetched again as the worker rescans (see openai-upstream/library.ts and docs/placement.md).
import { z } from "zod";
import { CAPABILITIES, type ModelInfo, normalizeEmbedding } from "../../worker-protocol/index.js";
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
import { readBounded } from "./openai-upstream/bounded-body.js";
import { embeddingsBody, maxAnswerBytes, parseEmbeddings } from "./openai-upstream/embeddings.js";
import { UpstreamLibrary } from "./openai-upstream/library.js";
import { chatCompletionBody, completionBody } from "./openai-upstream/request-body.js";
import { SseDecoder } from "./openai-upstream/sse-decoder.js";
import { StreamChunk, UpstreamReply } from "./openai-upstream/stream-reply.js";

export interface OpenAIUpstreamOptions {
  /** The upstream's OpenAI base URL, with its `/v1`, e.g. `http://127.0.0.1:8080/v1`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer …`. */
  apiKey?: string;
  /** Model names to serve; empty means every model the upstream lists at `GET /models`. */
  models: string[];
  /** How many tasks the worker runs at once; the runtime enforces it, the upstream queues beyond its own limit. */
  maxConcurrency: number;
  /** Models that take images (the vision capability); `*` stands for every model. */
  visionModels?: string[];
  /** Models the upstream computes embeddings with (the embeddings capabilities); `*` stands for every model. */
  embeddingModels?: string[];
  /**
   * Offer the upstream's models as a library that follows its model list (--upstream-library): the master loads and
   * unloads them on command, and only the models in `models` are served from the start.
   */
  library?: boolean;
}

/** Context length reported for a model when the upstream does not say. */
export const DEFAULT_CONTEXT_LENGTH = 4096;
/** The markup this engine's text carries: `<think>` reasoning and Hermes `<tool_call>` blocks. */
export const UPSTREAM_TEXT_FORMAT = "hermes";
const DISCOVERY_TIMEOUT_MS = 15_000;
/** The most of the upstream's model list read: far more than thousands of models take. */
const MAX_MODEL_LIST_BYTES = 16 * 1024 * 1024;
/** What the engine forwards for every model: the upstream decides whether it can do it. */
export const UPSTREAM_CAPABILITIES: readonly string[] = [
  CAPABILITIES.chat,
  CAPABILITIES.tools,
  CAPABILITIES.toolChoiceRequired,
  CAPABILITIES.sampling,
  CAPABILITIES.logitBias,
  CAPABILITIES.jsonObject,
  CAPABILITIES.jsonSchema,
  CAPABILITIES.logprobs,
  // Sent to the upstream's POST /completions (llama-server, vLLM, SGLang, Ollama and LM Studio serve it).
  CAPABILITIES.rawPrompt,
];
/**
 * What the engine adds for the models named with --upstream-embeddings: each task's inputs go to the upstream's
 * POST /embeddings, `dimensions` included (the upstream decides whether the model can shorten its vectors).
 */
export const UPSTREAM_EMBEDDING_CAPABILITIES: readonly string[] = [CAPABILITIES.embeddings, CAPABILITIES.embeddingDimensions];
/** The most of an upstream error body read for its message (an error page can be any size). */
const MAX_ERROR_BODY_BYTES = 1024 * 1024;
/** Upstream statuses that mean the request itself was refused (an option or a prompt it does not take), not the worker. */
const CLIENT_ERROR_STATUSES = new Set([400, 413, 422]);

export class OpenAIUpstreamEngine implements Engine {
  readonly kind = "openai";
  /** With --upstream-library: the upstream's models, loaded and unloaded on the master's command. */
  readonly library: UpstreamLibrary | undefined;
  private readonly baseUrl: string;
  /** Aborted by close(): gives up a model list being fetched. */
  private readonly closing = new AbortController();

  constructor(private readonly options: OpenAIUpstreamOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    if (!/^https?:\/\//.test(this.baseUrl)) throw new Error(`--upstream must be an http(s) URL, got '${options.baseUrl}'`);
    if (!Number.isInteger(options.maxConcurrency) || options.maxConcurrency < 1) {
      throw new Error("maxConcurrency must be a positive integer");
    }
    if (options.library) this.library = new UpstreamLibrary(() => this.listModels());
  }

  async start(): Promise<EngineDescription> {
    const device = { kind: "remote" as const, name: new URL(this.baseUrl).host, memoryBytes: 0 };
    if (!this.library) return { device, models: await this.discoverModels() };
    // The models named are served from the start; the others wait for the master to load them.
    const models = await this.library.start(this.options.models, (id) => this.unlisted(id));
    if (this.library.list().length === 0) throw new Error(`the upstream ${this.baseUrl} lists no models; name them with --model`);
    return { device, models };
  }

  async generate(request: GenerationRequest, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult> {
    this.checkServed(request.model);
    // A raw prompt goes to the upstream's legacy completions, which apply no chat template.
    const raw = request.prompt !== undefined;
    const response = await this.fetchUpstream(raw ? "/completions" : "/chat/completions", signal, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify(raw ? completionBody(request) : chatCompletionBody(request)),
    });
    if (response.headers.get("content-type")?.includes("application/json")) {
      throw new Error(`the upstream answered with JSON instead of an event stream: ${(await upstreamError(response)).message}`);
    }
    if (!response.body) throw new Error("the upstream sent no response body");
    // The upstream answered: it is working on the prompt (its first token may still take a while).
    sink.progress(0);
    const reply = new UpstreamReply(sink, request.params.stop ?? [], request.logprobs?.top);
    const lines = new SseDecoder();
    const text = new TextDecoder();
    for await (const bytes of response.body) {
      for (const data of lines.push(text.decode(bytes, { stream: true }))) {
        if (data === "[DONE]") return reply.finish(); // leaving the loop cancels the body
        reply.apply(parseChunk(data));
      }
      // Flow control: while the client is not reading, the upstream's response is not read either (TCP pushes back).
      const room = sink.ready();
      if (room) await room;
    }
    for (const data of lines.push(text.decode())) if (data !== "[DONE]") reply.apply(parseChunk(data));
    return reply.finish();
  }

  /** One `POST /embeddings` for the whole batch; the vectors go to the sink normalised, in input order. */
  async embed(request: EmbeddingRequest, sink: EmbeddingSink, signal: AbortSignal): Promise<EmbeddingResult> {
    this.checkServed(request.model);
    const response = await this.fetchUpstream("/embeddings", signal, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(embeddingsBody(request)),
    });
    const limit = maxAnswerBytes(request.embed);
    const { text, complete } = await readBounded(response, limit);
    if (!complete) throw new Error(`the upstream's embeddings answer is larger than ${limit} bytes`);
    const { vectors, tokens, promptTokens } = parseEmbeddings(text, request.embed);
    for (const [i, vector] of vectors.entries()) sink.vector(normalizeEmbedding(vector), tokens[i] ?? 0);
    return { promptTokens };
  }

  async close(): Promise<void> {
    // Each reply's connection closes with its stream; only a model list may be on its way.
    this.closing.abort(new Error("the engine is closing"));
  }

  /** With a library, a task of a model not loaded here (unloaded meanwhile) fails before reaching the upstream. */
  private checkServed(model: string): void {
    if (this.library && !this.library.isLoaded(model)) throw new Error(`model '${model}' is not loaded on this worker`);
  }

  private capabilities(model: string): string[] {
    const named = (models: readonly string[] = []) => models.includes("*") || models.includes(model);
    return [
      ...UPSTREAM_CAPABILITIES,
      ...(named(this.options.visionModels) ? [CAPABILITIES.vision] : []),
      ...(named(this.options.embeddingModels) ? UPSTREAM_EMBEDDING_CAPABILITIES : []),
    ];
  }

  /** The configured models, or all the upstream lists; context lengths from whatever fields the upstream fills. */
  private async discoverModels(): Promise<ModelInfo[]> {
    const listed = await this.listModels();
    if (this.options.models.length === 0) {
      if (listed.length === 0) throw new Error(`the upstream ${this.baseUrl} lists no models; name them with --model`);
      return listed;
    }
    return this.options.models.map((id) => listed.find((model) => model.id === id) ?? this.unlisted(id));
  }

  /** A model named with --model that the upstream does not list: served with the defaults. */
  private unlisted(id: string): ModelInfo {
    return { id, contextLength: DEFAULT_CONTEXT_LENGTH, format: UPSTREAM_TEXT_FORMAT, capabilities: this.capabilities(id) };
  }

  /** The models the upstream lists at `GET /models` now, as this engine serves them. */
  private async listModels(): Promise<ModelInfo[]> {
    const signal = AbortSignal.any([AbortSignal.timeout(DISCOVERY_TIMEOUT_MS), this.closing.signal]);
    const response = await this.fetchUpstream("/models", signal, { method: "GET" });
    const { text, complete } = await readBounded(response, MAX_MODEL_LIST_BYTES);
    if (!complete) throw new Error(`the upstream's GET ${this.baseUrl}/models answered more than ${MAX_MODEL_LIST_BYTES} bytes`);
    const parsed = ModelList.safeParse(safeJson(text));
    if (!parsed.success) throw new Error(`the upstream's GET ${this.baseUrl}/models did not return an OpenAI model list`);
    return parsed.data.data.map((model) => ({
      id: model.id,
      contextLength: model.max_model_len ?? model.context_length ?? model.meta?.n_ctx_train ?? DEFAULT_CONTEXT_LENGTH,
      format: UPSTREAM_TEXT_FORMAT,
      ...(model.owned_by ? { ownedBy: model.owned_by } : {}),
      capabilities: this.capabilities(model.id),
    }));
  }

  /** Fetches from the upstream; network failures and HTTP errors reject with a message naming the upstream. */
  private async fetchUpstream(path: string, signal: AbortSignal, init: RequestInit): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.options.apiKey) headers.set("authorization", `Bearer ${this.options.apiKey}`);
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, { ...init, headers, signal });
    } catch (error) {
      if (signal.aborted) throw error;
      const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : String(error);
      throw new Error(`the upstream ${this.baseUrl} could not be reached: ${cause}`, { cause: error });
    }
    if (response.ok) return response;
    const error = await upstreamError(response);
    const message = `the upstream answered ${response.status}: ${error.message}`;
    if (!CLIENT_ERROR_STATUSES.has(response.status)) throw new Error(message);
    throw new EngineRequestError(message, error.contextExceeded ? "context_length_exceeded" : "invalid_request");
  }
}

/**
 * An upstream error response: its text (OpenAI's `{error: {message}}`, Ollama's `{error}`, or the body), and whether
 * it says the prompt did not fit (OpenAI's and vLLM's code, llama-server's type).
 */
async function upstreamError(response: Response): Promise<{ message: string; contextExceeded: boolean }> {
  const { text: body } = await readBounded(response, MAX_ERROR_BODY_BYTES).catch(() => ({ text: "" }));
  const parsed = ErrorBody.safeParse(safeJson(body));
  if (parsed.success) {
    const { error, message } = parsed.data;
    const text = typeof error === "string" ? error : (error?.message ?? message);
    const contextExceeded = typeof error === "object" && (error.code === "context_length_exceeded" || error.type === "exceed_context_size_error");
    if (text) return { message: text, contextExceeded };
  }
  return { message: body.trim().slice(0, 1000) || response.statusText || "no error message", contextExceeded: false };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // not JSON: the caller falls back to the raw text
  }
}

const PositiveInt = z.number().int().positive();
/** Unusable optional fields are ignored rather than failing the whole list. */
const optional = <T extends z.ZodType>(schema: T) => schema.optional().catch(undefined);

const ModelList = z.object({
  data: z.array(
    z.object({
      id: z.string().min(1).max(256),
      owned_by: optional(z.string().max(256)),
      max_model_len: optional(PositiveInt), // vLLM, SGLang
      context_length: optional(PositiveInt), // LM Studio, OpenRouter-style
      meta: optional(z.object({ n_ctx_train: optional(PositiveInt) })), // llama-server
    }),
  ),
});

const ErrorBody = z.object({
  error: z
    .union([z.string(), z.object({ message: z.string(), code: z.unknown().optional(), type: z.unknown().optional() })])
    .optional(),
  message: z.string().optional(),
});

/** One event's data as a chat completion chunk; an error event or anything else rejects with the upstream's message. */
function parseChunk(data: string): StreamChunk {
  const parsed = StreamChunk.safeParse(safeJson(data));
  if (!parsed.success) throw new Error(`the upstream sent a stream chunk that is not a chat completion chunk: ${data.slice(0, 200)}`);
  const { error } = parsed.data;
  if (error) throw new Error(`the upstream failed: ${typeof error === "string" ? error : error.message}`);
  return parsed.data;
}
