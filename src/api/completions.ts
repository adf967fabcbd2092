// POST /v1/completions: OpenAI's legacy completions, a raw prompt continued with no chat template (the model's
// "raw_prompt" capability), as a dialect of the task route: `text_completion` objects, whole or as SSE chunks.
import { nanoid } from "nanoid";
import { z } from "zod";
import type { TaskRequest } from "../master/task.js";
import type { Master } from "../master/master.js";
import type { FinishReason, ModelInfo } from "../worker-protocol/index.js";
import { chatOptionFields, samplingExtensions } from "./chat-options.js";
import { invalidRequestOf, type RequestLimits } from "./chat-request.js";
import { type Delta, usageBody } from "./chat-response.js";
import { errorResponse, InvalidRequestError, mapError } from "./errors.js";
import type { StreamEncoder } from "./relay.js";
import { dataFrames } from "./sse.js";
import { type Dialect, taskRoute, type TaskRouteOptions, type WholeReply } from "./task-route.js";

/** OpenAI's default for completions (and vLLM's): a request without max_tokens gets 16 tokens. */
const DEFAULT_MAX_TOKENS = 16;

const { top_k, min_p, repetition_penalty, repeat_penalty, frequency_penalty, presence_penalty, logit_bias } = chatOptionFields;

export const CompletionRequest = z.object({
  model: z.string().min(1),
  prompt: z.union(
    [z.string(), z.array(z.string()).length(1, "send one prompt per request (an array of one string is taken)")],
    { message: "expected a string (token arrays are not supported)" },
  ),
  max_tokens: z.number().int().positive().nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  stop: z.union([z.string(), z.array(z.string()).max(4, "at most 4 stop sequences")]).nullable().optional(),
  seed: z.number().int().nullable().optional(),
  n: z.literal(1, { message: "only n=1 is supported" }).nullable().optional(),
  best_of: z.literal(1, { message: "only best_of=1 is supported" }).nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional(),
  echo: z.boolean().nullable().optional(),
  /** The legacy form: how many alternatives per token (0–5), with each token's own logprob. */
  logprobs: z.number().int().min(0).max(5).nullable().optional(),
  user: z.string().optional(),
  top_k,
  min_p,
  repetition_penalty,
  repeat_penalty,
  frequency_penalty,
  presence_penalty,
  logit_bias,
});
export type CompletionRequest = z.infer<typeof CompletionRequest>;

/** Legacy fields this coordinator cannot honour, refused by name. */
const refused: Record<string, string> = {
  suffix: "suffix (fill-in-the-middle) is not supported",
};

export function parseCompletion(json: unknown, limits: RequestLimits): CompletionRequest {
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new InvalidRequestError("The request body must be a JSON object.");
  for (const [field, why] of Object.entries(refused)) {
    const value = (json as Record<string, unknown>)[field];
    if (value !== undefined && value !== null) throw new InvalidRequestError(`Unsupported parameter: ${why}.`, field, "unsupported_parameter");
  }
  const parsed = CompletionRequest.safeParse(json);
  if (!parsed.success) throw invalidRequestOf(parsed.error);
  if (parsed.data.echo && parsed.data.logprobs != null) {
    throw new InvalidRequestError("echo with logprobs needs the prompt's logprobs, which workers do not report; drop one of them.", "echo", "unsupported_parameter");
  }
  const prompt = promptOf(parsed.data);
  if (prompt.length > limits.maxPromptChars) {
    throw new InvalidRequestError(`The prompt holds ${prompt.length} characters; this coordinator accepts at most ${limits.maxPromptChars}.`, "prompt", "prompt_too_long");
  }
  return parsed.data;
}

function promptOf(request: CompletionRequest): string {
  return typeof request.prompt === "string" ? request.prompt : (request.prompt[0] ?? "");
}

function toTask(request: CompletionRequest): TaskRequest {
  const stop = typeof request.stop === "string" ? [request.stop] : (request.stop ?? undefined);
  return {
    model: request.model,
    messages: [],
    prompt: promptOf(request),
    params: {
      maxTokens: request.max_tokens ?? DEFAULT_MAX_TOKENS,
      ...(request.temperature != null && { temperature: request.temperature }),
      ...(request.top_p != null && { topP: request.top_p }),
      ...(stop !== undefined && stop.length > 0 && { stop }),
      ...(request.seed != null && { seed: request.seed }),
      ...samplingExtensions(request),
    },
    ...(request.logprobs != null && { logprobs: { top: request.logprobs } }),
  };
}

/** The reply cannot outgrow the model's context. */
function checkMaxTokens(request: CompletionRequest, model: ModelInfo | undefined): void {
  if (model === undefined || request.max_tokens == null || request.max_tokens <= model.contextLength) return;
  throw new InvalidRequestError(
    `max_tokens is too large: ${request.max_tokens}. The model '${model.id}' holds at most ${model.contextLength} tokens.`,
    "max_tokens",
  );
}

interface Identity {
  id: string;
  created: number;
  model: string;
}

function identity(request: CompletionRequest): Identity {
  return { id: `cmpl-${nanoid(24)}`, created: Math.floor(Date.now() / 1000), model: request.model };
}

function textOf(deltas: readonly Delta[]): string {
  let text = "";
  for (const delta of deltas) if ("content" in delta) text += delta.content;
  return text;
}

/** The legacy logprobs object: parallel lists of the tokens, their logprobs, their alternatives and offsets. */
interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Array<Record<string, number>>;
  text_offset: number[];
}

/**
 * Collects the legacy logprobs of the text's tokens (null when the request did not ask), each token's offset counted
 * in characters from the start of the whole text, across chunks.
 */
class LegacyLogprobsWriter {
  private offset = 0;

  constructor(private readonly wanted: boolean) {}

  /** The logprobs of `deltas`' tokens, advancing the offset. */
  take(deltas: readonly Delta[]): LegacyLogprobs | null {
    if (!this.wanted) return null;
    const out: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    for (const delta of deltas) {
      if (!("logprobs" in delta)) continue;
      for (const entry of delta.logprobs) {
        out.tokens.push(entry.token);
        out.token_logprobs.push(entry.logprob);
        out.top_logprobs.push(Object.fromEntries((entry.top ?? [entry]).map((alternative) => [alternative.token, alternative.logprob])));
        out.text_offset.push(this.offset);
        this.offset += entry.token.length;
      }
    }
    return out;
  }
}

function choice(text: string, finishReason: FinishReason | null, logprobs: LegacyLogprobs | null = null) {
  return { text, index: 0, logprobs, finish_reason: finishReason };
}

function completionStream(request: CompletionRequest): StreamEncoder {
  const reply = identity(request);
  const head = { id: reply.id, object: "text_completion", created: reply.created, model: reply.model };
  const logprobs = new LegacyLogprobsWriter(request.logprobs != null);
  const chunk = (text: string, finishReason: FinishReason | null, deltas: readonly Delta[] = []) =>
    JSON.stringify({ ...head, choices: [choice(text, finishReason, finishReason === null ? logprobs.take(deltas) : null)] });
  const encoder: StreamEncoder = {
    deltas: (deltas) => {
      const text = textOf(deltas);
      return text === "" ? "" : dataFrames([chunk(text, null, deltas)]);
    },
    finished: (deltas, event) => {
      const text = textOf(deltas);
      const chunks = text === "" ? [] : [chunk(text, null, deltas)];
      chunks.push(chunk("", event.finishReason === "length" ? "length" : "stop"));
      if (request.stream_options?.include_usage) chunks.push(JSON.stringify({ ...head, choices: [], usage: usageBody(event.usage) }));
      return `${dataFrames(chunks)}data: [DONE]\n\n`;
    },
    failed: (deltas, error) => {
      const text = textOf(deltas);
      return `${dataFrames([...(text === "" ? [] : [chunk(text, null)]), JSON.stringify(mapError(error).body)])}data: [DONE]\n\n`;
    },
  };
  // echo: the prompt comes back first, as the start of the text.
  if (request.echo) encoder.opening = () => dataFrames([chunk(promptOf(request), null)]);
  return encoder;
}

function completionWhole(request: CompletionRequest): WholeReply {
  const reply = identity(request);
  let text = request.echo ? promptOf(request) : "";
  /** The reply's logprob deltas, written out as one legacy object at the end. */
  const logprobs: Delta[] = [];
  return {
    add: (deltas) => {
      text += textOf(deltas);
      for (const delta of deltas) if ("logprobs" in delta) logprobs.push(delta);
    },
    body: (event) => ({
      id: reply.id,
      object: "text_completion",
      created: reply.created,
      model: reply.model,
      choices: [choice(text, event.finishReason === "length" ? "length" : "stop", new LegacyLogprobsWriter(request.logprobs != null).take(logprobs))],
      usage: usageBody(event.usage),
    }),
  };
}

export const completionsDialect: Dialect<CompletionRequest> = {
  parse: parseCompletion,
  model: (request) => request.model,
  streams: (request) => request.stream === true,
  check: checkMaxTokens,
  toTask,
  // A raw completion is text, with no reasoning or tool-call markup to take apart.
  reasoningMode: () => "raw",
  errorResponse,
  streamEncoder: completionStream,
  wholeReply: completionWhole,
};

export function completionsHandler(master: Master, options: TaskRouteOptions) {
  return taskRoute(master, completionsDialect, options);
}
