// The Anthropic Messages request: its schema (Anthropic's fields, unknown ones ignored) and its translation into a task.
import { z } from "zod";
import type { TaskRequest } from "../master/task.js";
import type { ChatMessage, MessagePart } from "../worker-protocol/index.js";
import { PassThroughObject, type ReasoningMode, type RequestLimits } from "./chat-request.js";
import { InvalidRequestError } from "./errors.js";

/** Block types Anthropic defines that the models served here cannot take (text-only), with why. */
const refusedBlocks: Record<string, string> = {
  document: "document content blocks are not supported: the models this coordinator serves take text only",
  search_result: "search_result content blocks are not supported; send the results as text",
  container_upload: "container_upload content blocks are not supported",
};

/** `schema` for blocks whose `type` is one of `allowed`; another type is refused with a message naming it. */
function blockOf<T extends z.ZodType<unknown, { [key: string]: unknown; type: string }>>(allowed: readonly string[], schema: T) {
  return z
    .object({ type: z.string() })
    .loose()
    .superRefine((block, ctx) => {
      if (allowed.includes(block.type)) return;
      const message =
        refusedBlocks[block.type] ??
        `content blocks of type '${block.type}' are not accepted here; expected one of: ${allowed.join(", ")}`;
      ctx.addIssue({ code: "custom", message, path: ["type"], abort: true });
    })
    .pipe(schema);
}

// `cache_control` and `citations` may come on any block; they are accepted and ignored (not declared: stripped).
const TextBlock = z.object({ type: z.literal("text"), text: z.string() });
const ToolUseBlock = z.object({
  type: z.literal("tool_use"),
  id: z.string().min(1),
  name: z.string().min(1),
  input: PassThroughObject,
});
const ToolResultBlock = z.object({
  type: z.literal("tool_result"),
  tool_use_id: z.string().min(1),
  content: z.union([z.string(), z.array(blockOf(["text"], TextBlock))]).optional(),
  is_error: z.boolean().optional(),
});
// Reasoning from earlier assistant turns: accepted and dropped from the prompt, as open models' chat templates drop
// old reasoning anyway; the signature (Anthropic's proof of origin) means nothing to our models.
const ThinkingBlock = z.object({ type: z.literal("thinking") });
const RedactedThinkingBlock = z.object({ type: z.literal("redacted_thinking") });

/** An image, inline (base64) or by URL: sent on as an image part to models with the vision capability. */
const ImageBlock = z.object({
  type: z.literal("image"),
  source: z.discriminatedUnion("type", [
    z.object({
      type: z.literal("base64"),
      media_type: z.enum(["image/jpeg", "image/png", "image/gif", "image/webp"]),
      data: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, "must be base64"),
    }),
    z.object({ type: z.literal("url"), url: z.string().regex(/^https?:\/\//i, "must be an http(s) URL") }),
  ]),
});

const UserBlock = blockOf(["text", "image", "tool_result"], z.discriminatedUnion("type", [TextBlock, ImageBlock, ToolResultBlock]));
const AssistantBlock = blockOf(
  ["text", "tool_use", "thinking", "redacted_thinking"],
  z.discriminatedUnion("type", [TextBlock, ToolUseBlock, ThinkingBlock, RedactedThinkingBlock]),
);

const Message = z.discriminatedUnion("role", [
  z.object({ role: z.literal("user"), content: z.union([z.string(), z.array(UserBlock)]) }),
  z.object({ role: z.literal("assistant"), content: z.union([z.string(), z.array(AssistantBlock)]) }),
  // System turns in the middle of the conversation (Anthropic's mid-conversation-system beta; Claude Code sends them).
  z.object({ role: z.literal("system"), content: z.union([z.string(), z.array(blockOf(["text"], TextBlock))]) }),
]);
type Message = z.infer<typeof Message>;

const Tool = z
  .object({ type: z.string().nullable().optional() })
  .loose()
  .superRefine((tool, ctx) => {
    if (tool.type == null || tool.type === "custom") return;
    const message = `server tools ('${tool.type}') are not supported: the coordinator runs no tools; define a custom tool with name and input_schema`;
    ctx.addIssue({ code: "custom", message, path: ["type"], abort: true });
  })
  .pipe(
    z.object({
      name: z.string().regex(/^[a-zA-Z0-9_-]{1,128}$/, "must be 1-128 letters, digits, '_' or '-'"),
      description: z.string().optional(),
      input_schema: PassThroughObject,
    }),
  );

const parallelOption = { disable_parallel_tool_use: z.boolean().optional() };
const ToolChoice = z.discriminatedUnion("type", [
  z.object({ type: z.literal("auto"), ...parallelOption }),
  z.object({ type: z.literal("any"), ...parallelOption }),
  z.object({ type: z.literal("tool"), name: z.string().min(1), ...parallelOption }),
  z.object({ type: z.literal("none") }),
]);

/** `display: "omitted"` asks for thinking without its text: our hidden mode. */
const thinkingDisplay = { display: z.enum(["summarized", "omitted"]).nullable().optional() };
const Thinking = z.discriminatedUnion("type", [
  // budget_tokens is accepted but not enforced: the task protocol has no separate thinking budget (max_tokens bounds
  // thinking and answer together, as it does at Anthropic).
  z.object({ type: z.literal("enabled"), budget_tokens: z.number().int().positive(), ...thinkingDisplay }),
  z.object({ type: z.literal("disabled") }),
  // The model decides whether to think: its template is left alone, and what it thinks is shown.
  z.object({ type: z.literal("adaptive"), ...thinkingDisplay }),
  z.object({ type: z.literal("between_tools") }),
]);

const TextOrBlocks = z.union([z.string(), z.array(blockOf(["text"], TextBlock))]);

const OutputFormat = z.object({ type: z.literal("json_schema"), schema: PassThroughObject });

/** Every field but max_tokens: what count_tokens takes. */
export const CountTokensRequest = z.object({
  model: z.string().min(1),
  system: TextOrBlocks.optional(),
  messages: z.array(Message).min(1),
  tools: z.array(Tool).optional(),
  tool_choice: ToolChoice.optional(),
  thinking: Thinking.optional(),
});
export type CountTokensRequest = z.infer<typeof CountTokensRequest>;

export const MessagesRequest = CountTokensRequest.extend({
  max_tokens: z.number().int().positive(),
  stop_sequences: z.array(z.string()).max(16).optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().min(0).max(1).optional(),
  // Needs the model's "sampling" capability (refused before queueing otherwise).
  top_k: z.number().int().nonnegative().optional(),
  metadata: z.object({ user_id: z.string().nullable().optional() }).nullable().optional(),
  stream: z.boolean().optional(),
  service_tier: z.string().optional(),
  output_config: z
    .object({
      /** How hard the model should think: passed to the chat template as the reasoning effort. */
      effort: z.enum(["low", "medium", "high", "max"]).nullable().optional(),
      /** Structured output: JSON that validates against `schema` (the model's json_schema capability). */
      format: OutputFormat.nullable().optional(),
    })
    .nullable()
    .optional(),
  /** The older spelling of output_config.format (the structured-outputs beta). */
  output_format: OutputFormat.nullable().optional(),
  // Server-side context editing. Clearing old thinking is what always happens here (past reasoning never reaches the
  // prompt); other edits (clearing tool results) would change the prompt in ways not done here: refused by name.
  context_management: z
    .object({
      edits: z
        .array(
          z.object({ type: z.string() }).loose().refine((edit) => edit.type.startsWith("clear_thinking_"), {
            message: "only clear_thinking edits are supported (past thinking never reaches the prompt here); other context edits are not",
            path: ["type"],
          }),
        )
        .optional(),
    })
    .nullable()
    .optional(),
});
export type MessagesRequest = z.infer<typeof MessagesRequest>;

/** `messages.0.content.1.type`, as Anthropic names fields in its error messages (its body has no param field). */
function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  return path.map(String).join(".");
}

function parseWith<T extends z.ZodType>(schema: T, json: unknown): z.infer<T> {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new InvalidRequestError("The request body must be a JSON object.");
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue ? fieldPath(issue.path) : "";
  if (issue && issue.code === "invalid_type" && issue.message.includes("received undefined")) {
    throw new InvalidRequestError(`${field}: Field required`, field);
  }
  throw new InvalidRequestError(`${field}: ${issue?.message ?? "invalid value"}`, field || null);
}

/** Validates a Messages body; throws InvalidRequestError naming the first bad field. */
export function parseMessagesRequest(json: unknown, limits: RequestLimits): MessagesRequest {
  const request = parseWith(MessagesRequest, json);
  checkLimits(request, limits);
  return request;
}

/** Validates a count_tokens body (a Messages body without max_tokens). */
export function parseCountTokensRequest(json: unknown, limits: RequestLimits): CountTokensRequest {
  const request = parseWith(CountTokensRequest, json);
  checkLimits(request, limits);
  return request;
}

function checkLimits(request: CountTokensRequest, limits: RequestLimits): void {
  if (request.messages.length > limits.maxMessages) {
    throw new InvalidRequestError(
      `messages: too many messages: ${request.messages.length}. This coordinator accepts at most ${limits.maxMessages}.`,
      "messages",
      "too_many_messages",
    );
  }
  let chars = 0;
  for (const message of toChatMessages(request)) chars += message.content.length;
  if (chars > limits.maxPromptChars) {
    throw new InvalidRequestError(
      `messages: the prompt holds ${chars} characters; this coordinator accepts at most ${limits.maxPromptChars}.`,
      "messages",
      "prompt_too_long",
    );
  }
}

// Text blocks of one turn are joined by a blank line: clients (Claude Code among them) send separate paragraphs
// (reminders, then the question) as separate blocks.
const BLOCK_SEPARATOR = "\n\n";

function textOf(content: z.infer<typeof TextOrBlocks>): string {
  return typeof content === "string" ? content : content.map((block) => block.text).join(BLOCK_SEPARATOR);
}

/** The conversation as chat messages: system first, tool results as tool turns, tool uses as tool calls. */
export function toChatMessages(request: CountTokensRequest): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (request.system !== undefined) {
    const system = textOf(request.system);
    if (system !== "") out.push({ role: "system", content: system });
  }
  const toolNames = new Map<string, string>();
  for (const message of request.messages) {
    if (message.role === "user") userTurn(message.content, toolNames, out);
    else if (message.role === "system") out.push({ role: "system", content: textOf(message.content) });
    else assistantTurn(message.content, toolNames, out);
  }
  return out;
}

type UserContent = Extract<Message, { role: "user" }>["content"];
type AssistantContent = Extract<Message, { role: "assistant" }>["content"];

/** A user turn in block order: each run of text blocks one user message, each tool result one tool message. */
function userTurn(content: UserContent, toolNames: ReadonlyMap<string, string>, out: ChatMessage[]): void {
  if (typeof content === "string") {
    out.push({ role: "user", content });
    return;
  }
  let texts: string[] = [];
  let parts: MessagePart[] = [];
  const flush = () => {
    const withImage = parts.some((part) => part.type === "image_url");
    if (texts.length > 0 || withImage) {
      const message: ChatMessage = { role: "user", content: texts.join(BLOCK_SEPARATOR) };
      if (withImage) message.parts = parts;
      out.push(message);
    }
    texts = [];
    parts = [];
  };
  for (const block of content) {
    if (block.type === "text") {
      texts.push(block.text);
      parts.push({ type: "text", text: block.text });
      continue;
    }
    if (block.type === "image") {
      const url = block.source.type === "url" ? block.source.url : `data:${block.source.media_type};base64,${block.source.data}`;
      parts.push({ type: "image_url", url });
      continue;
    }
    flush();
    const result = block.content === undefined ? "" : textOf(block.content);
    // Chat templates have no error flag on a tool turn: the text says it instead.
    const message: ChatMessage = { role: "tool", content: block.is_error ? `Error: ${result}` : result, toolCallId: block.tool_use_id };
    const name = toolNames.get(block.tool_use_id);
    if (name !== undefined) message.name = name;
    out.push(message);
  }
  flush();
}

/** An assistant turn as one message: its text, and its tool uses as OpenAI-shaped tool calls; thinking is dropped. */
function assistantTurn(content: AssistantContent, toolNames: Map<string, string>, out: ChatMessage[]): void {
  if (typeof content === "string") {
    out.push({ role: "assistant", content });
    return;
  }
  const texts: string[] = [];
  const toolCalls: Array<{ id: string; type: "function"; function: { name: string; arguments: string } }> = [];
  for (const block of content) {
    if (block.type === "text") texts.push(block.text);
    else if (block.type === "tool_use") {
      toolNames.set(block.id, block.name);
      toolCalls.push({ id: block.id, type: "function", function: { name: block.name, arguments: JSON.stringify(block.input) } });
    }
  }
  const message: ChatMessage = { role: "assistant", content: texts.join(BLOCK_SEPARATOR) };
  if (toolCalls.length > 0) message.toolCalls = toolCalls;
  out.push(message);
}

/** The task the master runs for this request. */
export function toTaskRequest(request: MessagesRequest): TaskRequest {
  const task: TaskRequest = {
    model: request.model,
    messages: toChatMessages(request),
    params: {
      maxTokens: request.max_tokens,
      ...(request.temperature !== undefined && { temperature: request.temperature }),
      ...(request.top_p !== undefined && { topP: request.top_p }),
      ...(request.stop_sequences !== undefined && request.stop_sequences.length > 0 && { stop: request.stop_sequences }),
      ...(request.top_k !== undefined && { topK: request.top_k }),
    },
  };
  if (request.tools !== undefined && request.tools.length > 0) {
    task.tools = request.tools.map((tool) => ({
      type: "function",
      function: { name: tool.name, ...(tool.description !== undefined && { description: tool.description }), parameters: tool.input_schema },
    }));
  }
  const choice = request.tool_choice;
  if (choice !== undefined) {
    task.toolChoice =
      choice.type === "auto" ? "auto"
      : choice.type === "any" ? "required"
      : choice.type === "none" ? "none"
      : { type: "function", function: { name: choice.name } };
    if (choice.type !== "none" && choice.disable_parallel_tool_use !== undefined) {
      task.parallelToolCalls = !choice.disable_parallel_tool_use;
    }
  }
  if (request.output_config?.effort != null) task.reasoningEffort = request.output_config.effort;
  const format = request.output_config?.format ?? request.output_format;
  if (format != null) task.responseFormat = { type: "json_schema", schema: format.schema };
  // Qwen-style templates read enable_thinking; others ignore it. Adaptive thinking leaves the template to decide.
  if (request.thinking?.type === "enabled") task.chatTemplateKwargs = { enable_thinking: true };
  if (request.thinking?.type === "disabled") task.chatTemplateKwargs = { enable_thinking: false };
  return task;
}

/** Thinking requested → thinking blocks; thinking disabled or its display omitted → hidden; absent → the default. */
export function reasoningModeOf(request: MessagesRequest, fallback: ReasoningMode): ReasoningMode {
  const thinking = request.thinking;
  if (thinking === undefined) return fallback;
  if (thinking.type === "disabled") return "hidden";
  if ("display" in thinking && thinking.display === "omitted") return "hidden";
  return "separate";
}
