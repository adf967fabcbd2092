// The chat completions request: its schema (OpenAI's fields, unknown ones ignored) and its translation into a task.
import { z } from "zod";
import type { TaskRequest } from "../master/task.js";
import type { ChatMessage, MessagePart } from "../worker-protocol/index.js";
import { applyOutputOptions, chatOptionFields, checkOptionPairs, extraFields, refuseUnsupportedOptions, samplingExtensions } from "./chat-options.js";
import { InvalidRequestError } from "./errors.js";

export const ReasoningMode = z.enum(["hidden", "separate", "raw"]);
export type ReasoningMode = z.infer<typeof ReasoningMode>;

/**
 * Per-request `reasoning_format`: our own mode names, plus llama.cpp's names for the same ideas
 * ("none": leave thinking in content; "deepseek", "deepseek-legacy", "auto": separate it).
 */
const reasoningFormatAliases: Record<string, ReasoningMode> = {
  hidden: "hidden",
  separate: "separate",
  raw: "raw",
  none: "raw",
  deepseek: "separate",
  "deepseek-legacy": "separate",
  auto: "separate",
};

/**
 * Deepest nesting allowed in the free-form JSON a request passes through to its worker (tool parameters, chat
 * template arguments). The master re-serializes it for the worker, and JSON.stringify overflows the stack on a
 * value a few thousand levels deep, which a 10 KB body can hold.
 */
export const MAX_PASS_THROUGH_DEPTH = 64;

/** Whether `value` nests objects/arrays more than `limit` levels deep; iterative, so any depth is safe to measure. */
function nestsDeeperThan(value: unknown, limit: number): boolean {
  const pending: Array<{ node: unknown; depth: number }> = [{ node: value, depth: 1 }];
  for (let item = pending.pop(); item !== undefined; item = pending.pop()) {
    if (item.node === null || typeof item.node !== "object") continue;
    if (item.depth > limit) return true;
    for (const child of Object.values(item.node)) pending.push({ node: child, depth: item.depth + 1 });
  }
  return false;
}

/** A JSON object forwarded to the worker as is, bounded in depth. */
export const PassThroughObject = z
  .record(z.string(), z.unknown())
  .refine((value) => !nestsDeeperThan(value, MAX_PASS_THROUGH_DEPTH), {
    message: `must not nest deeper than ${MAX_PASS_THROUGH_DEPTH} levels`,
  });

const TextPart = z.object({ type: z.literal("text"), text: z.string() });
/** An image by URL: an http(s) URL or a data URL (sent on only to models with the vision capability). */
const ImagePart = z.object({
  type: z.literal("image_url"),
  image_url: z.object({ url: z.string().regex(/^(https?:|data:image\/)/i, "must be an http(s) URL or a data:image/ URL"), detail: z.string().optional() }),
});
const ContentPart = z
  .object({ type: z.string() })
  .loose()
  .superRefine((part, ctx) => {
    if (part.type === "text") {
      if (!TextPart.safeParse(part).success) ctx.addIssue({ code: "custom", message: "a text part needs a string 'text'" });
    } else if (part.type === "image_url") {
      const image = ImagePart.safeParse(part);
      if (!image.success) ctx.addIssue({ code: "custom", message: `an image part needs image_url.url: ${image.error.issues[0]?.message ?? "invalid"}` });
    } else {
      ctx.addIssue({ code: "custom", message: `content parts of type '${part.type}' are not supported; use 'text' or 'image_url'` });
    }
  });

const ToolCall = z.object({
  id: z.string(),
  type: z.literal("function"),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

const Message = z.object({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: z
    .union([z.string(), z.array(ContentPart)], { message: "expected a string or an array of content parts" })
    .nullable()
    .optional(),
  name: z.string().optional(),
  tool_calls: z.array(ToolCall).optional(),
  tool_call_id: z.string().optional(),
});

/** A function tool's name, as OpenAI (and Ollama and the Responses API) take it. */
export const ToolName = z.string().regex(/^[a-zA-Z0-9_.-]{1,64}$/, "must be 1-64 letters, digits, '_', '.' or '-'");

/** A function tool's definition in chat completions' shape (Ollama's too). */
export const FunctionDefinition = z.object({
  name: ToolName,
  description: z.string().optional(),
  parameters: PassThroughObject.optional(),
});

const Tool = z.object({
  type: z.literal("function"),
  function: FunctionDefinition.extend({ strict: z.boolean().nullable().optional() }),
});

const ToolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }),
]);

const positiveInt = z.number().int().positive();

export const ChatCompletionRequest = z.object({
  model: z.string().min(1),
  messages: z.array(Message).min(1),
  max_tokens: positiveInt.nullable().optional(),
  max_completion_tokens: positiveInt.nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  stop: z.union([z.string(), z.array(z.string()).max(4, "at most 4 stop sequences")]).nullable().optional(),
  seed: z.number().int().nullable().optional(),
  n: z.literal(1, { message: "only n=1 is supported" }).nullable().optional(),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional(),
  user: z.string().optional(),
  tools: z.array(Tool).optional(),
  tool_choice: ToolChoice.optional(),
  parallel_tool_calls: z.boolean().optional(),
  reasoning_effort: z.string().max(32).optional(),
  chat_template_kwargs: PassThroughObject.optional(),
  reasoning_format: z
    .string()
    .refine((v) => v in reasoningFormatAliases, {
      message: `must be one of ${Object.keys(reasoningFormatAliases).join(", ")}`,
    })
    .optional(),
  ...chatOptionFields,
});

/** A valid request, with the fields no API here defines (forwarded to the worker as `extraBody`). */
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest> & { extraBody?: Record<string, unknown> };

/** `messages[0].content` style, as OpenAI names parameters in errors. */
function paramName(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const key of path) out += typeof key === "number" ? `[${key}]` : out ? `.${String(key)}` : String(key);
  return out;
}

export interface RequestLimits {
  maxMessages: number;
  maxPromptChars: number;
}

const noLimits: RequestLimits = { maxMessages: Number.POSITIVE_INFINITY, maxPromptChars: Number.POSITIVE_INFINITY };

/** Validates a parsed JSON body; throws InvalidRequestError naming the first bad field. */
export function parseChatRequest(json: unknown, limits: RequestLimits = noLimits): ChatCompletionRequest {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new InvalidRequestError("The request body must be a JSON object.");
  }
  const body = json as Record<string, unknown>;
  refuseUnsupportedOptions(body);
  const parsed = ChatCompletionRequest.safeParse(json);
  if (!parsed.success) throw invalidRequestOf(parsed.error);
  const request: ChatCompletionRequest = parsed.data;
  checkOptionPairs(request);
  checkLimits(request, limits);
  const extraBody = extraFields(body, ChatCompletionRequest.shape);
  if (extraBody !== undefined) {
    if (nestsDeeperThan(extraBody, MAX_PASS_THROUGH_DEPTH)) {
      throw new InvalidRequestError(`Fields this API does not define must not nest deeper than ${MAX_PASS_THROUGH_DEPTH} levels.`);
    }
    request.extraBody = extraBody;
  }
  return request;
}

/** `json` as `schema` validates it, or a 400 naming what is wrong. */
export function validated<T>(schema: z.ZodType<T>, json: unknown): T {
  const result = schema.safeParse(json);
  if (result.success) return result.data;
  throw invalidRequestOf(result.error);
}

/** A schema's first complaint about a body, in OpenAI's words: the missing or invalid parameter, named. */
export function invalidRequestOf(error: z.ZodError): InvalidRequestError {
  const issue = error.issues[0];
  if (issue?.code === "unrecognized_keys") {
    const param = paramName([...issue.path, issue.keys[0] ?? ""]);
    return new InvalidRequestError(`Unrecognized request argument supplied: '${param}'; this route does not take it.`, param, "unsupported_parameter");
  }
  const param = issue ? paramName(issue.path) : null;
  if (issue && issue.code === "invalid_type" && issue.message.includes("received undefined")) {
    return new InvalidRequestError(`Missing required parameter: '${param}'.`, param);
  }
  return new InvalidRequestError(`Invalid value for '${param}': ${issue?.message ?? "invalid"}.`, param);
}

function checkLimits(request: ChatCompletionRequest, limits: RequestLimits): void {
  let chars = 0;
  for (const message of request.messages) chars += textOf(message.content).length;
  checkPromptLimits(request.messages.length, chars, limits, "messages");
}

/**
 * Refuses a conversation over the coordinator's limits (`--max-messages`, `--max-prompt-chars`): `messages` many
 * messages holding `chars` characters, in the request's field `param`.
 */
export function checkPromptLimits(messages: number, chars: number, limits: RequestLimits, param: "messages" | "input"): void {
  if (messages > limits.maxMessages) {
    const what = param === "input" ? "input messages" : "messages";
    throw new InvalidRequestError(`Too many ${what}: ${messages}. This coordinator accepts at most ${limits.maxMessages}.`, param, "too_many_messages");
  }
  if (chars > limits.maxPromptChars) {
    const holds = param === "input" ? "The input holds" : "The messages hold";
    throw new InvalidRequestError(`${holds} ${chars} characters; this coordinator accepts at most ${limits.maxPromptChars}.`, param, "prompt_too_long");
  }
}

export function reasoningModeOf(request: ChatCompletionRequest, fallback: ReasoningMode): ReasoningMode {
  return request.reasoning_format ? (reasoningFormatAliases[request.reasoning_format] ?? fallback) : fallback;
}

/** A message's text: its text parts joined with newlines (as vLLM joins them). */
function textOf(content: z.infer<typeof Message>["content"]): string {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  const texts: string[] = [];
  for (const part of content) if (part.type === "text" && typeof part.text === "string") texts.push(part.text);
  return texts.join("\n");
}

/** The message's parts in order, when it holds an image (else undefined: its text says it all). */
function partsOf(content: z.infer<typeof Message>["content"]): MessagePart[] | undefined {
  if (!Array.isArray(content) || !content.some((part) => part.type === "image_url")) return undefined;
  return content.map((part) => {
    const image = ImagePart.safeParse(part);
    return image.success ? { type: "image_url" as const, url: image.data.image_url.url } : { type: "text" as const, text: String(part.text ?? "") };
  });
}

/** The task the master runs for this request. */
export function toTaskRequest(request: ChatCompletionRequest): TaskRequest {
  const messages: ChatMessage[] = request.messages.map((m) => {
    const message: ChatMessage = { role: m.role, content: textOf(m.content) };
    const parts = partsOf(m.content);
    if (parts !== undefined) message.parts = parts;
    if (m.name !== undefined) message.name = m.name;
    if (m.tool_calls !== undefined) message.toolCalls = m.tool_calls;
    if (m.tool_call_id !== undefined) message.toolCallId = m.tool_call_id;
    return message;
  });
  const maxTokens = request.max_completion_tokens ?? request.max_tokens ?? undefined;
  const stop = typeof request.stop === "string" ? [request.stop] : (request.stop ?? undefined);
  const task: TaskRequest = {
    model: request.model,
    messages,
    params: {
      ...(maxTokens !== undefined && { maxTokens }),
      ...(request.temperature != null && { temperature: request.temperature }),
      ...(request.top_p != null && { topP: request.top_p }),
      ...(stop !== undefined && stop.length > 0 && { stop }),
      ...(request.seed != null && { seed: request.seed }),
      ...samplingExtensions(request),
    },
  };
  applyOutputOptions(task, request);
  if (request.extraBody !== undefined) task.extraBody = request.extraBody;
  if (request.tools !== undefined) task.tools = request.tools;
  if (request.tool_choice !== undefined) task.toolChoice = request.tool_choice;
  if (request.parallel_tool_calls !== undefined) task.parallelToolCalls = request.parallel_tool_calls;
  if (request.reasoning_effort !== undefined) task.reasoningEffort = request.reasoning_effort;
  if (request.chat_template_kwargs !== undefined) task.chatTemplateKwargs = request.chat_template_kwargs;
  return task;
}
