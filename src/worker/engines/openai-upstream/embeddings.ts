// The upstream's `POST /embeddings`: the body of an embedding task, and its answer checked and put in input order.
//
// The whole batch goes in one request, as OpenAI clients send it. `truncate` is not forwarded: the one field for it
// (vLLM's `truncate_prompt_tokens`) keeps an input's last tokens where the protocol drops its end, and OpenAI refuses
// fields it does not know. An input too long for the model is therefore the upstream's to refuse (see
// docs/upstream-options.md).
import { z } from "zod";
import { type EmbedSpec, MAX_EMBEDDING_DIMENSIONS } from "../../../worker-protocol/index.js";
import { EngineRequestError, type EmbeddingRequest } from "../engine.js";

/** Characters a token of text is taken to hold when the upstream's token count is split over the inputs. */
const CHARS_PER_TOKEN = 4;
/**
 * The most bytes one value of a vector may take in the upstream's JSON: a float64 printed in full (24 characters),
 * its comma, and the indentation of a pretty-printed list.
 */
const MAX_BYTES_PER_VALUE = 40;
/** Room for each vector's own fields and for the answer's envelope (model, usage). */
const BYTES_PER_VECTOR = 256;
const ENVELOPE_BYTES = 64 * 1024;
/** The largest answer read whatever the batch: beyond it, the batch is better split by the client. */
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;

/** The request body: the inputs as they are (texts and token arrays), floats asked for, `dimensions` when set. */
export function embeddingsBody(request: EmbeddingRequest): Record<string, unknown> {
  const { inputs, dimensions } = request.embed;
  return { model: request.model, input: inputs, encoding_format: "float", ...(dimensions === undefined ? {} : { dimensions }) };
}

/** The most bytes a well-formed answer to `embed` can take (its vectors at their longest). */
export function maxAnswerBytes(embed: EmbedSpec): number {
  const values = embed.dimensions ?? MAX_EMBEDDING_DIMENSIONS;
  const bound = embed.inputs.length * (values * MAX_BYTES_PER_VALUE + BYTES_PER_VECTOR) + ENVELOPE_BYTES;
  return Math.min(bound, MAX_ANSWER_BYTES);
}

/** An answer's vectors in input order, with each input's share of the prompt tokens. */
export interface UpstreamEmbeddings {
  vectors: number[][];
  tokens: number[];
  promptTokens: number;
}

/**
 * The upstream's answer (`text`) to `embed`, checked: one vector for each input (by `index`, whatever their order),
 * all of one length. An answer that is not that is the upstream's fault (an Error); vectors of another length than
 * the `dimensions` asked for mean the upstream ignored them for a model that cannot shorten its vectors, which is
 * the request's (an EngineRequestError, as when an upstream refuses it).
 */
export function parseEmbeddings(text: string, embed: EmbedSpec): UpstreamEmbeddings {
  const parsed = EmbeddingList.safeParse(safeJson(text));
  if (!parsed.success) throw new Error(`the upstream's answer is not an OpenAI embedding list: ${text.slice(0, 200)}`);
  const { data, usage } = parsed.data;
  const count = embed.inputs.length;
  if (data.length !== count) throw new Error(`the upstream returned ${data.length} embeddings for ${count} inputs`);
  const byIndex = [...data].sort((a, b) => a.index - b.index);
  for (const [position, item] of byIndex.entries()) {
    if (item.index !== position) throw new Error(`the upstream's embeddings are not indexed 0 to ${count - 1} (no index ${position})`);
  }
  const vectors = byIndex.map((item) => item.embedding);
  const length = vectors[0]?.length ?? 0;
  const odd = vectors.find((vector) => vector.length !== length);
  if (odd) throw new Error(`the upstream returned embeddings of different lengths (${length} and ${odd.length} values)`);
  if (embed.dimensions !== undefined && length !== embed.dimensions) {
    throw new EngineRequestError(
      `the upstream returned vectors of ${length} values, not the ${embed.dimensions} dimensions asked for: it does not shorten this model's embeddings`,
      "invalid_request",
    );
  }
  const promptTokens = usage?.prompt_tokens ?? 0;
  return { vectors, tokens: apportionTokens(promptTokens, embed.inputs), promptTokens };
}

/**
 * The upstream counts only the batch's tokens: each input gets a share by its size (a token array's length, a
 * text's characters / 4), rounded by largest remainder so that the shares add up to `total`. Token arrays the
 * upstream counted as given get exactly their length when the batch holds nothing else.
 */
export function apportionTokens(total: number, inputs: EmbedSpec["inputs"]): number[] {
  const weights = inputs.map((input) => (typeof input === "string" ? input.length / CHARS_PER_TOKEN : input.length));
  const sum = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((weight) => (sum > 0 ? (total * weight) / sum : total / inputs.length));
  const shares = exact.map(Math.floor);
  let rest = total - shares.reduce((a, b) => a + b, 0);
  const byRemainder = exact.map((value, i) => ({ i, remainder: value - (shares[i] ?? 0) })).sort((a, b) => b.remainder - a.remainder || a.i - b.i);
  for (const { i } of byRemainder) {
    if (rest <= 0) break;
    shares[i] = (shares[i] ?? 0) + 1;
    rest -= 1;
  }
  return shares;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // not JSON: the caller reports the answer as malformed
  }
}

const EmbeddingList = z.object({
  data: z.array(
    z.object({
      index: z.number().int().nonnegative(),
      embedding: z.array(z.number()).min(1).max(MAX_EMBEDDING_DIMENSIONS),
    }),
  ),
  // Servers that count nothing (or say nothing) leave the tokens at 0, as the chat path does without usage.
  usage: z.object({ prompt_tokens: z.number().int().nonnegative() }).nullish().catch(undefined),
});
