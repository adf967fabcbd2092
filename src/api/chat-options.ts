// The chat completions options beyond messages and the basic sampling: the sampling extensions vLLM and llama.cpp
// take, structured output, logprobs, the options refused by name, and the fields no API here defines (forwarded).
import { z } from "zod";
import type { TaskRequest } from "../master/task.js";
import type { ResponseFormat, SamplingParams } from "../worker-protocol/index.js";
import { InvalidRequestError } from "./errors.js";

/** A token id of the model's vocabulary, as OpenAI's logit_bias keys are (decimal strings). */
const TokenId = z.string().regex(/^\d{1,9}$/, "keys must be token ids (decimal integers)");

export const LogitBias = z.record(TokenId, z.number().min(-100).max(100));

const SchemaName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'");

export const ChatResponseFormat = z.discriminatedUnion(
  "type",
  [
    z.object({ type: z.literal("text") }),
    z.object({ type: z.literal("json_object") }),
    z.object({
      type: z.literal("json_schema"),
      json_schema: z.object({
        name: SchemaName,
        description: z.string().optional(),
        schema: z.record(z.string(), z.unknown()).optional(),
        strict: z.boolean().nullable().optional(),
      }),
    }),
  ],
  { error: () => "must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", \"json_schema\": {...}}" },
);
export type ChatResponseFormat = z.infer<typeof ChatResponseFormat>;

/** The options of this file, as fields of the chat completions schema. */
export const chatOptionFields = {
  frequency_penalty: z.number().min(-2).max(2).nullable().optional(),
  presence_penalty: z.number().min(-2).max(2).nullable().optional(),
  logit_bias: LogitBias.nullable().optional(),
  logprobs: z.boolean().nullable().optional(),
  top_logprobs: z.number().int().min(0).max(20).nullable().optional(),
  response_format: ChatResponseFormat.nullable().optional(),
  // Extensions of vLLM and llama.cpp: -1 (vLLM) and 0 (llama.cpp) both mean "no top-k".
  top_k: z.number().int().min(-1).nullable().optional(),
  min_p: z.number().min(0).max(1).nullable().optional(),
  repetition_penalty: z.number().positive().max(10).nullable().optional(),
  /** llama.cpp's name for repetition_penalty. */
  repeat_penalty: z.number().positive().max(10).nullable().optional(),
  // Accepted, and nothing to do: nothing is stored, no tier or cache key applies, and the user id goes nowhere.
  store: z.boolean().nullable().optional(),
  metadata: z.record(z.string(), z.string()).nullable().optional(),
  service_tier: z.string().max(32).nullable().optional(),
  prompt_cache_key: z.string().max(1024).nullable().optional(),
  safety_identifier: z.string().max(1024).nullable().optional(),
};

/** OpenAI options this coordinator cannot honour, refused by name, with why. */
const refusedOptions: Record<string, string> = {
  functions: "'functions' is deprecated and not supported; send 'tools' instead",
  function_call: "'function_call' is deprecated and not supported; send 'tool_choice' instead",
  audio: "audio output is not supported: the models served here write text",
  prediction: "predicted outputs are not supported",
  web_search_options: "web search is not supported: the coordinator runs no tools",
};

type OptionRequest = {
  tools?: ReadonlyArray<{ function: { name: string } }> | undefined;
  tool_choice?: unknown;
} & { [K in keyof typeof chatOptionFields]?: z.infer<(typeof chatOptionFields)[K]> } & {
  modalities?: unknown;
};

/** Refuses what a request asks for that no worker can do, naming the parameter. */
export function refuseUnsupportedOptions(json: Record<string, unknown>): void {
  for (const [name, why] of Object.entries(refusedOptions)) {
    if (json[name] !== undefined && json[name] !== null) throw new InvalidRequestError(`Unsupported parameter: ${why}.`, name, "unsupported_parameter");
  }
  const modalities = json.modalities;
  if (modalities !== undefined && modalities !== null && !(Array.isArray(modalities) && modalities.every((m) => m === "text"))) {
    throw new InvalidRequestError("Unsupported parameter: only the 'text' modality is supported.", "modalities", "unsupported_parameter");
  }
}

/** Checks that need two fields together, as OpenAI does. */
export function checkOptionPairs(request: OptionRequest): void {
  const choice = request.tool_choice;
  if (typeof choice === "object" && choice !== null && "function" in choice) {
    const name = (choice as { function: { name: string } }).function.name;
    if (!(request.tools ?? []).some((tool) => tool.function.name === name)) {
      throw new InvalidRequestError(`tool_choice names the function '${name}', which is not among the tools.`, "tool_choice");
    }
  }
  if (request.top_logprobs != null && request.logprobs !== true) {
    throw new InvalidRequestError("top_logprobs requires logprobs to be true.", "top_logprobs");
  }
  if (request.response_format?.type === "json_schema" && request.response_format.json_schema.schema === undefined) {
    throw new InvalidRequestError("response_format.json_schema.schema is required.", "response_format.json_schema.schema");
  }
}

/** The sampling extensions as task parameters. */
export function samplingExtensions(
  request: Pick<OptionRequest, "top_k" | "min_p" | "repetition_penalty" | "repeat_penalty" | "frequency_penalty" | "presence_penalty" | "logit_bias">,
): Partial<SamplingParams> {
  const repetition = request.repetition_penalty ?? request.repeat_penalty;
  return {
    // 0 and -1 both ask for no top-k cut, which the protocol says with 0 (an engine's own default may cut).
    ...(request.top_k != null && { topK: Math.max(0, request.top_k) }),
    ...(request.min_p != null && { minP: request.min_p }),
    ...(repetition != null && { repetitionPenalty: repetition }),
    ...(request.frequency_penalty != null && { frequencyPenalty: request.frequency_penalty }),
    ...(request.presence_penalty != null && { presencePenalty: request.presence_penalty }),
    ...(request.logit_bias != null && Object.keys(request.logit_bias).length > 0 && { logitBias: request.logit_bias }),
  };
}

/** response_format as the task's structured output (text is no constraint at all). */
export function taskResponseFormat(format: ChatResponseFormat | null | undefined): ResponseFormat | undefined {
  if (format == null || format.type === "text") return undefined;
  if (format.type === "json_object") return { type: "json_object" };
  const { name, schema, strict } = format.json_schema;
  return { type: "json_schema", name, schema: schema ?? {}, ...(strict != null && { strict }) };
}

/** Sets the task's structured output and logprobs from the request. */
export function applyOutputOptions(task: TaskRequest, request: OptionRequest): void {
  const responseFormat = taskResponseFormat(request.response_format);
  if (responseFormat) task.responseFormat = responseFormat;
  if (request.logprobs === true) task.logprobs = { top: request.top_logprobs ?? 0 };
}

/**
 * The fields of `json` that `known` does not define: forwarded to the worker as `extraBody` (an upstream server may
 * know them; other engines ignore them). Empty: undefined.
 */
export function extraFields(json: Record<string, unknown>, known: Record<string, unknown>): Record<string, unknown> | undefined {
  let extra: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(json)) {
    if (Object.hasOwn(known, key) || key === "modalities") continue;
    extra ??= {};
    Object.defineProperty(extra, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return extra;
}
