// POST /v1/embeddings: OpenAI's embeddings, on the embedding route. One task embeds the whole batch.
import { z } from "zod";
import type { Master } from "../master/master.js";
import { encodeEmbedding, type EmbedSpec, MAX_EMBEDDING_DIMENSIONS, MAX_EMBEDDING_INPUTS } from "../worker-protocol/index.js";
import { invalidRequestOf, type RequestLimits } from "./chat-request.js";
import { type EmbeddingDialect, type Embeddings, embeddingRoute, floatsJson } from "./embedding-route.js";
import { errorResponse, InvalidRequestError } from "./errors.js";
import type { TaskRouteOptions } from "./task-route.js";

const TokenIds = z.array(z.number().int().nonnegative()).min(1, "a token array must not be empty");
const Text = z.string().min(1, "must not be empty");

export const EmbeddingRequest = z
  .object({
    model: z.string().min(1),
    input: z.union([
      Text,
      z.array(Text).min(1).max(MAX_EMBEDDING_INPUTS, `at most ${MAX_EMBEDDING_INPUTS} inputs per request`),
      TokenIds,
      z.array(TokenIds).min(1).max(MAX_EMBEDDING_INPUTS, `at most ${MAX_EMBEDDING_INPUTS} inputs per request`),
    ]),
    encoding_format: z.enum(["float", "base64"]).optional(),
    dimensions: z.number().int().positive().max(MAX_EMBEDDING_DIMENSIONS).optional(),
    user: z.string().optional(),
  })
  // No field is dropped unread: one this route does not know is refused by name.
  .strict();
export type EmbeddingRequest = z.infer<typeof EmbeddingRequest>;

/** The inputs as a list: one text, texts, one token array, or token arrays. */
export function inputsOf(input: EmbeddingRequest["input"]): Array<string | number[]> {
  if (typeof input === "string") return [input];
  if (input.every((item): item is number => typeof item === "number")) return [input];
  return input as Array<string | number[]>;
}

/** Refuses inputs whose characters (a token counting as one) pass the prompt limit. */
function checkInputLimits(inputs: ReadonlyArray<string | readonly number[]>, limits: RequestLimits, param: string): void {
  const chars = inputs.reduce((sum, input) => sum + input.length, 0);
  if (chars > limits.maxPromptChars) {
    throw new InvalidRequestError(`The inputs hold ${chars} characters; this coordinator accepts at most ${limits.maxPromptChars}.`, param, "prompt_too_long");
  }
}

/** An embeddings dialect's parser: the body by `schema`, then its inputs (`inputs` of it) against the prompt limit. */
export function embeddingParser<T extends z.ZodType>(schema: T, inputs: (request: z.infer<T>) => ReadonlyArray<string | readonly number[]>) {
  return (json: unknown, limits: RequestLimits): z.infer<T> => {
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw invalidRequestOf(parsed.error);
    checkInputLimits(inputs(parsed.data), limits, "input");
    return parsed.data;
  };
}

function toEmbed(request: EmbeddingRequest): EmbedSpec {
  return { inputs: inputsOf(request.input), ...(request.dimensions !== undefined && { dimensions: request.dimensions }) };
}

/** OpenAI's list of `embedding` objects, each vector as floats or as base64 of its float32 values. */
function* body(request: EmbeddingRequest, embeddings: Embeddings | undefined): Generator<string> {
  const { vectors = [], promptTokens = 0 } = embeddings ?? {};
  const base64 = request.encoding_format === "base64";
  yield '{"object":"list","data":[';
  for (const [index, values] of vectors.entries()) {
    const embedding = base64 ? JSON.stringify(encodeEmbedding(values)) : floatsJson(values);
    yield `${index > 0 ? "," : ""}{"object":"embedding","index":${index},"embedding":${embedding}}`;
  }
  yield `],"model":${JSON.stringify(request.model)},"usage":${JSON.stringify({ prompt_tokens: promptTokens, total_tokens: promptTokens })}}`;
}

export const embeddingsDialect: EmbeddingDialect<EmbeddingRequest> = {
  parse: embeddingParser(EmbeddingRequest, (request) => inputsOf(request.input)),
  model: (request) => request.model,
  toEmbed,
  inputParam: "input",
  errorResponse,
  body,
};

export function embeddingsHandler(master: Master, options: TaskRouteOptions) {
  return embeddingRoute(master, embeddingsDialect, options);
}
