// Ollama's embeddings on the embedding route: POST /api/embed (inputs in a batch, long ones truncated unless told
// not to) and the older POST /api/embeddings (one prompt, one vector).
import { z } from "zod";
import { MAX_EMBEDDING_DIMENSIONS, MAX_EMBEDDING_INPUTS, type EmbedSpec } from "../worker-protocol/index.js";
import { type EmbeddingDialect, type Embeddings, floatsJson } from "./embedding-route.js";
import { embeddingParser } from "./embeddings.js";
import { keepAliveMs } from "./keep-alive.js";
import { ollamaErrorResponse } from "./route-errors.js";

const common = {
  model: z.string().min(1),
  /** How Ollama runs a model on its own machine; a worker here chose that when it started. */
  options: z.record(z.string(), z.unknown()).optional(),
  /** How long the model stays loaded once idle after this request (see keep-alive.ts); overrides --model-idle-ms. */
  keep_alive: z.union([z.string(), z.number()]).optional(),
};

export const OllamaEmbedRequest = z
  .object({
    ...common,
    input: z.union([z.string(), z.array(z.string()).max(MAX_EMBEDDING_INPUTS, `at most ${MAX_EMBEDDING_INPUTS} inputs per request`)]),
    truncate: z.boolean().optional(),
    dimensions: z.number().int().positive().max(MAX_EMBEDDING_DIMENSIONS).optional(),
  })
  .strict();
export type OllamaEmbedRequest = z.infer<typeof OllamaEmbedRequest>;

export const OllamaEmbeddingsRequest = z.object({ ...common, prompt: z.string() }).strict();
export type OllamaEmbeddingsRequest = z.infer<typeof OllamaEmbeddingsRequest>;

/** Ollama's inputs, without the empty ones it skips ("" and [] embed nothing). */
function embedInputs(request: OllamaEmbedRequest): string[] {
  return (typeof request.input === "string" ? [request.input] : request.input).filter((input) => input !== "");
}

/** Ollama's timing fields, in nanoseconds, from the task's clock (load time: none, models stay loaded here). */
function timings(embeddings: Embeddings | undefined): string {
  const task = embeddings?.task;
  const total = task ? (Date.now() - task.createdAt) * 1e6 : 0;
  return `"total_duration":${total},"load_duration":0,"prompt_eval_count":${embeddings?.promptTokens ?? 0}`;
}

export const ollamaEmbedDialect: EmbeddingDialect<OllamaEmbedRequest> = {
  keepAliveMs: (request) => keepAliveMs(request.keep_alive),
  parse: embeddingParser(OllamaEmbedRequest, embedInputs),
  model: (request) => request.model,
  toEmbed(request): EmbedSpec | undefined {
    const inputs = embedInputs(request);
    if (inputs.length === 0) return undefined;
    // Ollama truncates a long input to the context unless told not to.
    return { inputs, truncate: request.truncate ?? true, ...(request.dimensions !== undefined && { dimensions: request.dimensions }) };
  },
  inputParam: "input",
  errorResponse: ollamaErrorResponse,
  *body(request, embeddings) {
    yield `{"model":${JSON.stringify(request.model)},"embeddings":[`;
    for (const [index, values] of (embeddings?.vectors ?? []).entries()) yield `${index > 0 ? "," : ""}${floatsJson(values)}`;
    yield `],${timings(embeddings)}}`;
  },
};

export const ollamaEmbeddingsDialect: EmbeddingDialect<OllamaEmbeddingsRequest> = {
  keepAliveMs: (request) => keepAliveMs(request.keep_alive),
  parse: embeddingParser(OllamaEmbeddingsRequest, (request) => [request.prompt]),
  model: (request) => request.model,
  // An empty prompt gets an empty embedding, as from Ollama.
  toEmbed: (request) => (request.prompt === "" ? undefined : { inputs: [request.prompt], truncate: true }),
  inputParam: "prompt",
  errorResponse: ollamaErrorResponse,
  *body(_request, embeddings) {
    const values = embeddings?.vectors[0];
    yield `{"embedding":${values ? floatsJson(values) : "[]"}}`;
  },
};
