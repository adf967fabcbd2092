// The Responses API request (POST /v1/responses): its schema (OpenAI's fields, unknown ones ignored) and its
// translation into a task. Nothing is stored between requests, so every request carries its whole conversation.
import { z } from "zod";
import type { TaskRequest } from "../master/task.js";
import type { ChatMessage, MessagePart, ModelInfo } from "../worker-protocol/index.js";
import { checkPromptLimits, invalidRequestOf, PassThroughObject, type ReasoningMode, type RequestLimits, ToolName } from "./chat-request.js";
import { InvalidRequestError } from "./errors.js";

/** The `type` of an object a client sent, when it has a string one. */
function typeOf(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null || !("type" in value)) return undefined;
  return typeof value.type === "string" ? value.type : undefined;
}

/** A discriminated union's error for a `type` it does not know: names the type, and what to send instead. */
function onlyTypes(what: string, supported: string) {
  return {
    error: (issue: { code?: string | undefined; input?: unknown }) => {
      if (issue.code !== "invalid_union") return undefined;
      const type = typeOf(issue.input);
      return type === undefined
        ? `${what} need a 'type' (${supported})`
        : `${what} of type '${type}' are not supported here; send ${supported}`;
    },
  };
}

/** A plain string where OpenAI also takes a list of parts stands for one text part. */
const textOrParts = <T extends z.ZodType>(part: T, textType: string) =>
  z.preprocess(
    (value) => (typeof value === "string" ? [{ type: textType, text: value }] : value),
    z.array(part, { error: (issue) => (issue.code === "invalid_type" && issue.input !== undefined ? "expected a string or an array of content parts" : undefined) }),
  );

// Images, files and audio need a multimodal engine, which no worker announces yet: refused, naming the part.
const ContentPart = z.discriminatedUnion(
  "type",
  [
    z.object({ type: z.literal("input_text"), text: z.string() }),
    // The assistant's own earlier replies, sent back as history.
    z.object({ type: z.literal("output_text"), text: z.string() }),
    z.object({ type: z.literal("refusal"), refusal: z.string() }),
    // An image by URL (http(s) or a data URL): sent on to models with the vision capability.
    z.object({
      type: z.literal("input_image"),
      image_url: z.string().regex(/^(https?:|data:image\/)/i, "must be an http(s) URL or a data:image/ URL"),
      detail: z.string().nullish(),
    }),
  ],
  onlyTypes("content parts", "'input_text' or 'input_image' (or 'output_text' in assistant history)"),
);

const MessageItem = z.object({
  type: z.literal("message"),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: textOrParts(ContentPart, "input_text"),
});

const FunctionCallItem = z.object({
  type: z.literal("function_call"),
  call_id: z.string().min(1),
  name: z.string(),
  arguments: z.string(),
});

const FunctionCallOutputItem = z.object({
  type: z.literal("function_call_output"),
  call_id: z.string().min(1),
  output: textOrParts(
    z.discriminatedUnion("type", [z.object({ type: z.literal("input_text"), text: z.string() })], onlyTypes("output parts", "'input_text'")),
    "input_text",
  ),
});

/**
 * A reasoning item from an earlier turn. Accepted and left out of the prompt: chat templates drop the reasoning of
 * past turns too (the model sees its earlier answers and calls, not its earlier thinking), and what we returned
 * carries no `encrypted_content` to restore.
 */
const ReasoningItem = z.object({ type: z.literal("reasoning") });

// An item without a `type` is a message ({role, content}), as OpenAI's "easy input message".
const InputItem = z.preprocess(
  (value) => (typeof value === "object" && value !== null && !Array.isArray(value) && !("type" in value) ? { ...value, type: "message" } : value),
  z.discriminatedUnion(
    "type",
    [MessageItem, FunctionCallItem, FunctionCallOutputItem, ReasoningItem],
    onlyTypes("input items", "'message', 'function_call', 'function_call_output' or 'reasoning'"),
  ),
);

const FunctionTool = z.object({
  type: z.literal("function"),
  name: ToolName,
  description: z.string().nullish(),
  parameters: PassThroughObject.nullish(),
  strict: z.boolean().nullish(),
});
export type FunctionTool = z.infer<typeof FunctionTool>;

/** A group of function tools under one name (Codex sends its sub-agent tools so): offered as the functions it holds. */
const NamespaceTool = z.object({
  type: z.literal("namespace"),
  name: z.string(),
  description: z.string().nullish(),
  tools: z.array(FunctionTool),
});

/**
 * Tools that run on OpenAI's side. Nothing here can run them, so the model is not offered them (it can only call what
 * it is shown), and the response's `tools` lists what it was offered. Clients that always send one (Codex sends
 * web_search) then work; a request that forces one is refused (see toResponsesTask).
 */
const HOSTED_TOOLS = [
  "web_search",
  "web_search_preview",
  "web_search_2025_08_26",
  "web_search_preview_2025_03_11",
  "file_search",
  "code_interpreter",
  "computer_use_preview",
  "image_generation",
  "mcp",
  "local_shell",
] as const;
const HostedTool = z.object({ type: z.enum(HOSTED_TOOLS) }).loose();

// Custom (free-form grammar) tools would need their own call items and constrained decoding: refused.
const Tool = z.discriminatedUnion("type", [FunctionTool, NamespaceTool, HostedTool], onlyTypes("tools", "'function' tools (or 'namespace' groups of them)"));
type Tool = z.infer<typeof Tool>;

/** The function tools a model is offered: namespaces opened, hosted tools left out. */
export function offeredTools(tools: readonly Tool[] | null | undefined): FunctionTool[] {
  const out: FunctionTool[] = [];
  for (const tool of tools ?? []) {
    if (tool.type === "function") out.push(tool);
    else if (tool.type === "namespace") out.push(...tool.tools);
  }
  return out;
}

const ToolChoice = z.union(
  [z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), name: z.string() })],
  { error: () => "must be 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}" },
);

const TextFormat = z.discriminatedUnion(
  "type",
  [
    z.object({ type: z.literal("text") }),
    z.object({ type: z.literal("json_object") }),
    z.object({
      type: z.literal("json_schema"),
      name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'"),
      description: z.string().nullish(),
      schema: PassThroughObject,
      strict: z.boolean().nullish(),
    }),
  ],
  onlyTypes("text formats", "'text', 'json_object' or 'json_schema'"),
);

export const ResponsesBody = z.object({
  model: z.string().min(1),
  // A string is one user message.
  input: z.preprocess(
    (value) => (typeof value === "string" ? [{ type: "message", role: "user", content: value }] : value),
    z.array(InputItem, { error: (issue) => (issue.code === "invalid_type" && issue.input !== undefined ? "expected a string or an array of input items" : undefined) }),
  ),
  instructions: z.string().nullish(),
  max_output_tokens: z.number().int().positive().nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  tools: z.array(Tool).nullish(),
  tool_choice: ToolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  reasoning: z
    .object({
      effort: z.enum(["none", "minimal", "low", "medium", "high", "xhigh", "max"]).nullish(),
      // We return the reasoning itself, whole, rather than a summary of it.
      summary: z.enum(["auto", "concise", "detailed"]).nullish(),
    })
    .nullish(),
  text: z.object({ format: TextFormat.nullish(), verbosity: z.enum(["low", "medium", "high"]).nullish() }).nullish(),
  stream: z.boolean().nullish(),
  // Accepted so clients that always send them work; nothing is ever stored, and nothing extra is included.
  store: z.boolean().nullish(),
  include: z.array(z.string()).nullish(),
  /** With include "message.output_text.logprobs": how many alternatives each token's logprob carries. */
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  metadata: z.record(z.string(), z.string().max(512)).nullish(),
  user: z.string().nullish(),
  /** Codex sends one per conversation: the session key routing may keep a conversation on one worker by. */
  prompt_cache_key: z.string().max(1024).nullish(),
  truncation: z.enum(["auto", "disabled"]).nullish(),
  service_tier: z.string().nullish(),
  // Features that need responses kept on the server: refused by name in `refuseStatefulFeatures`.
  previous_response_id: z.string().nullish(),
  conversation: z.unknown().optional(),
  background: z.boolean().nullish(),
  prompt: z.unknown().optional(),
});
export type ResponsesBody = z.infer<typeof ResponsesBody>;

/** A valid request, with its conversation already in the chat messages a worker's template renders. */
export interface ResponsesRequest {
  body: ResponsesBody;
  messages: ChatMessage[];
}

const noLimits: RequestLimits = { maxMessages: Number.POSITIVE_INFINITY, maxPromptChars: Number.POSITIVE_INFINITY };

/** Validates a parsed JSON body; throws InvalidRequestError naming the first bad (or unsupported) field. */
export function parseResponsesRequest(json: unknown, limits: RequestLimits = noLimits): ResponsesRequest {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new InvalidRequestError("The request body must be a JSON object.");
  }
  const parsed = ResponsesBody.safeParse(json);
  if (!parsed.success) throw invalidRequestOf(parsed.error);
  refuseStatefulFeatures(parsed.data);
  const choice = parsed.data.tool_choice;
  if (typeof choice === "object" && choice !== null && !offeredTools(parsed.data.tools).some((tool) => tool.name === choice.name)) {
    throw new InvalidRequestError(`tool_choice names the function '${choice.name}', which is not among the tools.`, "tool_choice");
  }
  const messages = chatMessages(parsed.data);
  checkLimits(messages, limits);
  return { body: parsed.data, messages };
}

function refuseStatefulFeatures(body: ResponsesBody): void {
  const refuse = (param: string, what: string) => {
    throw new InvalidRequestError(
      `'${param}' is not supported: this coordinator stores no ${what}. Send the whole conversation in 'input' instead.`,
      param,
      "unsupported_parameter",
    );
  };
  if (body.previous_response_id != null) refuse("previous_response_id", "responses");
  if (body.conversation != null) refuse("conversation", "conversations");
  if (body.prompt != null) refuse("prompt", "prompt templates");
  if (body.background === true) refuse("background", "responses to fetch later");
}

type Part = { text: string } | { refusal: string } | { image_url: string };

function textOf(parts: ReadonlyArray<Part>): string {
  let text = "";
  for (const part of parts) text += "text" in part ? part.text : "refusal" in part ? part.refusal : "";
  return text;
}

/** A message's parts in order when it holds an image (else undefined: its text says it all). */
function partsOf(parts: ReadonlyArray<Part>): MessagePart[] | undefined {
  if (!parts.some((part) => "image_url" in part)) return undefined;
  return parts.map((part) =>
    "image_url" in part ? { type: "image_url" as const, url: part.image_url } : { type: "text" as const, text: "text" in part ? part.text : part.refusal },
  );
}

/**
 * The conversation as chat messages: `instructions` first as the system message, then the items in order. Function
 * calls join the assistant turn they follow (one assistant message with its tool calls, as chat templates expect),
 * their outputs become tool messages.
 */
function chatMessages(body: ResponsesBody): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (body.instructions) messages.push({ role: "system", content: body.instructions });
  for (const item of body.input) {
    switch (item.type) {
      case "message": {
        const message: ChatMessage = { role: item.role, content: textOf(item.content) };
        const parts = partsOf(item.content);
        if (parts !== undefined) message.parts = parts;
        messages.push(message);
        break;
      }
      case "function_call": {
        const call = { id: item.call_id, type: "function", function: { name: item.name, arguments: item.arguments } };
        const last = messages.at(-1);
        if (last?.role === "assistant") (last.toolCalls ??= []).push(call);
        else messages.push({ role: "assistant", content: "", toolCalls: [call] });
        break;
      }
      case "function_call_output":
        messages.push({ role: "tool", content: textOf(item.output), toolCallId: item.call_id });
        break;
      case "reasoning":
        break; // see ReasoningItem
    }
  }
  if (messages.length === 0) throw new InvalidRequestError("The input holds no message to answer.", "input");
  return messages;
}

function checkLimits(messages: readonly ChatMessage[], limits: RequestLimits): void {
  let chars = 0;
  for (const message of messages) chars += message.content.length;
  checkPromptLimits(messages.length, chars, limits, "input");
}

/** A reply cannot outgrow the model's context: refuse such a limit before queueing, in OpenAI's words. */
export function checkMaxOutputTokens(request: ResponsesRequest, model: ModelInfo | undefined): void {
  const maxTokens = request.body.max_output_tokens;
  if (model === undefined || maxTokens == null || maxTokens <= model.contextLength) return;
  throw new InvalidRequestError(
    `max_output_tokens is too large: ${maxTokens}. The model '${model.id}' holds at most ${model.contextLength} tokens ` +
      `(input and output), whereas you provided ${maxTokens}.`,
    "max_output_tokens",
  );
}

/** Asking for `reasoning` shows the model's reasoning as a reasoning item; otherwise the coordinator's default applies. */
export function responsesReasoningMode(request: ResponsesRequest, fallback: ReasoningMode): ReasoningMode {
  return request.body.reasoning != null ? "separate" : fallback;
}

/** A function tool as the chat templates (and so the task) take it: OpenAI's chat completions shape. */
function chatTool(tool: FunctionTool) {
  return {
    type: "function",
    function: {
      name: tool.name,
      ...(tool.description != null && { description: tool.description }),
      ...(tool.parameters != null && { parameters: tool.parameters }),
      ...(tool.strict != null && { strict: tool.strict }),
    },
  };
}

/** The task the master runs for this request. */
export function toResponsesTask(request: ResponsesRequest): TaskRequest {
  const { body } = request;
  const task: TaskRequest = {
    model: body.model,
    messages: request.messages,
    params: {
      ...(body.max_output_tokens != null && { maxTokens: body.max_output_tokens }),
      ...(body.temperature != null && { temperature: body.temperature }),
      ...(body.top_p != null && { topP: body.top_p }),
    },
  };
  const tools = offeredTools(body.tools);
  if (tools.length > 0) task.tools = tools.map(chatTool);
  if (body.tool_choice != null) {
    const choice = body.tool_choice;
    task.toolChoice = typeof choice === "string" ? choice : { type: "function", function: { name: choice.name } };
  }
  if (body.parallel_tool_calls != null) task.parallelToolCalls = body.parallel_tool_calls;
  if (body.reasoning?.effort != null) task.reasoningEffort = body.reasoning.effort;
  // Logprobs when included, or when alternatives are asked for (top_logprobs means nothing without them).
  if (body.include?.includes("message.output_text.logprobs") || body.top_logprobs != null) task.logprobs = { top: body.top_logprobs ?? 0 };
  const format = body.text?.format;
  if (format?.type === "json_object") task.responseFormat = { type: "json_object" };
  if (format?.type === "json_schema") {
    task.responseFormat = { type: "json_schema", name: format.name, schema: format.schema, ...(format.strict != null && { strict: format.strict }) };
  }
  return task;
}
