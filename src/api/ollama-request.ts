// Ollama's API requests (POST /api/chat and /api/generate): their schemas and their translation into a task.
import { z } from "zod";
import type { TaskRequest } from "../master/task.js";
import type { ChatMessage, MessagePart, SamplingParams } from "../worker-protocol/index.js";
import {
  checkPromptLimits,
  FunctionDefinition,
  invalidRequestOf,
  PassThroughObject,
  type ReasoningMode,
  type RequestLimits,
} from "./chat-request.js";
import { InvalidRequestError } from "./errors.js";

/**
 * Ollama's `options`: the sampling ones a worker honours (by the model's capabilities), and the runtime ones that
 * only tune how Ollama itself loads and runs a model, accepted and meaningless here (the worker decides those).
 */
const Options = z
  .object({
    temperature: z.number().min(0).max(2).optional(),
    top_p: z.number().min(0).max(1).optional(),
    top_k: z.number().int().min(-1).optional(),
    min_p: z.number().min(0).max(1).optional(),
    num_predict: z.number().int().min(-2).optional(),
    stop: z.array(z.string()).max(16).optional(),
    seed: z.number().int().optional(),
    repeat_penalty: z.number().positive().max(10).optional(),
    presence_penalty: z.number().min(-2).max(2).optional(),
    frequency_penalty: z.number().min(-2).max(2).optional(),
    // The context is the worker's (it loaded the model with it): a request may not ask for more than the model has.
    num_ctx: z.number().int().positive().optional(),
    // How Ollama runs a model on its own machine; a worker here chose that when it started.
    num_keep: z.number().int().optional(),
    num_batch: z.number().int().optional(),
    num_gpu: z.number().int().optional(),
    main_gpu: z.number().int().optional(),
    num_thread: z.number().int().optional(),
    use_mmap: z.boolean().optional(),
    use_mlock: z.boolean().optional(),
    numa: z.boolean().optional(),
    low_vram: z.boolean().optional(),
  })
  .strict();
type Options = z.infer<typeof Options>;

const ToolCall = z.object({ function: z.object({ name: z.string(), arguments: PassThroughObject.optional() }) });

const Message = z.object({
  role: z.enum(["system", "user", "assistant", "tool"]),
  content: z.string(),
  /** Base64 images (no data: prefix), for models with the vision capability. */
  images: z.array(z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, "must be base64")).optional(),
  thinking: z.string().optional(),
  tool_calls: z.array(ToolCall).optional(),
  tool_name: z.string().optional(),
});

const Tool = z.object({ type: z.literal("function"), function: FunctionDefinition });

const common = {
  model: z.string().min(1),
  /** "json", or a JSON schema the output must validate against. */
  format: z.union([z.literal("json"), PassThroughObject]).optional(),
  options: Options.optional(),
  stream: z.boolean().optional(),
  /** Thinking: on or off, or a level (gpt-oss style: low, medium, high). */
  think: z.union([z.boolean(), z.enum(["low", "medium", "high"])]).optional(),
  /** How long the model stays loaded once idle after this request (see keep-alive.ts); overrides --model-idle-ms. */
  keep_alive: z.union([z.string(), z.number()]).optional(),
};

export const OllamaChatRequest = z.object({ ...common, messages: z.array(Message).min(1), tools: z.array(Tool).optional() }).loose();
export type OllamaChatRequest = z.infer<typeof OllamaChatRequest>;

export const OllamaGenerateRequest = z
  .object({
    ...common,
    prompt: z.string(),
    system: z.string().optional(),
    images: Message.shape.images,
  })
  .loose();
export type OllamaGenerateRequest = z.infer<typeof OllamaGenerateRequest>;

/** Fields Ollama defines that cannot be honoured here, refused by name rather than ignored. */
const refusedFields: Record<string, string> = {
  raw: "raw prompts (without the model's template) are not supported",
  suffix: "fill-in-the-middle (suffix) is not supported",
  context: "the deprecated context array is not supported; send the conversation to /api/chat instead",
  template: "a per-request template is not supported: the worker renders the model's own",
};

function parseWith<T extends z.ZodType>(schema: T, json: unknown): z.infer<T> {
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new InvalidRequestError("The request body must be a JSON object.");
  for (const [field, why] of Object.entries(refusedFields)) {
    const value = (json as Record<string, unknown>)[field];
    if (value !== undefined && value !== null && value !== false && value !== "") throw new InvalidRequestError(`${field}: ${why}`, field);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw invalidRequestOf(parsed.error);
  return parsed.data;
}

function checkLimits(messages: readonly ChatMessage[], limits: RequestLimits): void {
  let chars = 0;
  for (const message of messages) chars += message.content.length;
  checkPromptLimits(messages.length, chars, limits, "messages");
}

/** A valid Ollama request of either kind, with its conversation already as chat messages. */
export interface OllamaRequest {
  kind: "chat" | "generate";
  body: OllamaChatRequest | OllamaGenerateRequest;
  messages: ChatMessage[];
}

export function parseOllamaChat(json: unknown, limits: RequestLimits): OllamaRequest {
  const body = parseWith(OllamaChatRequest, json);
  const messages = body.messages.map(chatMessage);
  checkLimits(messages, limits);
  return { kind: "chat", body, messages };
}

export function parseOllamaGenerate(json: unknown, limits: RequestLimits): OllamaRequest {
  const body = parseWith(OllamaGenerateRequest, json);
  const messages: ChatMessage[] = [];
  if (body.system) messages.push({ role: "system", content: body.system });
  messages.push(chatMessage({ role: "user", content: body.prompt, ...(body.images && { images: body.images }) }));
  checkLimits(messages, limits);
  return { kind: "generate", body, messages };
}

/** An image's media type from its first bytes (Ollama sends bare base64). */
function imageUrl(base64: string): string {
  const type = base64.startsWith("/9j/") ? "jpeg" : base64.startsWith("R0lGOD") ? "gif" : base64.startsWith("UklGR") ? "webp" : "png";
  return `data:image/${type};base64,${base64}`;
}

function chatMessage(message: z.infer<typeof Message>): ChatMessage {
  const out: ChatMessage = { role: message.role, content: message.content };
  if (message.images && message.images.length > 0) {
    const parts: MessagePart[] = [{ type: "text", text: message.content }];
    for (const image of message.images) parts.push({ type: "image_url", url: imageUrl(image) });
    out.parts = parts;
  }
  if (message.tool_calls) {
    out.toolCalls = message.tool_calls.map((call, i) => ({
      id: `call_${i}`,
      type: "function",
      function: { name: call.function.name, arguments: JSON.stringify(call.function.arguments ?? {}) },
    }));
  }
  if (message.tool_name !== undefined) out.name = message.tool_name;
  return out;
}

function samplingOf(options: Options | undefined): SamplingParams {
  if (options === undefined) return {};
  return {
    // num_predict -1 (until done) and -2 (fill the context) both mean no limit of the request's own.
    ...(options.num_predict !== undefined && options.num_predict > 0 && { maxTokens: options.num_predict }),
    ...(options.temperature !== undefined && { temperature: options.temperature }),
    ...(options.top_p !== undefined && { topP: options.top_p }),
    ...(options.stop !== undefined && options.stop.length > 0 && { stop: options.stop }),
    ...(options.seed !== undefined && { seed: options.seed }),
    ...(options.top_k !== undefined && { topK: Math.max(0, options.top_k) }),
    ...(options.min_p !== undefined && { minP: options.min_p }),
    ...(options.repeat_penalty !== undefined && { repetitionPenalty: options.repeat_penalty }),
    ...(options.presence_penalty !== undefined && { presencePenalty: options.presence_penalty }),
    ...(options.frequency_penalty !== undefined && { frequencyPenalty: options.frequency_penalty }),
  };
}

/** The task the master runs for this request. */
export function toOllamaTask(request: OllamaRequest): TaskRequest {
  const { body } = request;
  const task: TaskRequest = { model: body.model, messages: request.messages, params: samplingOf(body.options) };
  const tools = request.kind === "chat" ? (body as OllamaChatRequest).tools : undefined;
  if (tools !== undefined && tools.length > 0) task.tools = tools;
  if (body.format === "json") task.responseFormat = { type: "json_object" };
  else if (body.format !== undefined) task.responseFormat = { type: "json_schema", schema: body.format };
  if (body.think === true) task.chatTemplateKwargs = { enable_thinking: true };
  else if (body.think === false) task.chatTemplateKwargs = { enable_thinking: false };
  else if (typeof body.think === "string") task.reasoningEffort = body.think;
  return task;
}

/** Thinking asked for: shown in the `thinking` field; turned off or not asked: hidden (Ollama's default). */
export function ollamaReasoningMode(request: OllamaRequest, _fallback: ReasoningMode): ReasoningMode {
  const think = request.body.think;
  return think === undefined || think === false ? "hidden" : "separate";
}
