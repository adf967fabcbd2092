// The Responses API's reply: its output items (reasoning, message, function call) built from a task's deltas, and
// the response object around them. Shared by the streamed and the whole reply, so both say the same thing.
import { nanoid } from "nanoid";
import type { TokenLogprob, Usage } from "../worker-protocol/index.js";
import type { Delta } from "./chat-response.js";
import { type FunctionTool, offeredTools, type ResponsesRequest } from "./responses-request.js";

export type ItemStatus = "in_progress" | "completed" | "incomplete";

/** One token's logprob in the Responses API's shape (as chat completions' `logprobs.content` entries). */
export interface OutputLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }>;
}

export interface OutputText {
  type: "output_text";
  text: string;
  annotations: never[];
  /** The text's tokens' logprobs, when the request included `message.output_text.logprobs`. */
  logprobs: OutputLogprob[];
}

function outputLogprobs(entries: readonly TokenLogprob[]): OutputLogprob[] {
  return entries.map((entry) => ({
    token: entry.token,
    logprob: entry.logprob,
    bytes: entry.bytes ?? [...Buffer.from(entry.token, "utf8")],
    top_logprobs: (entry.top ?? []).map((top) => ({ token: top.token, logprob: top.logprob, bytes: top.bytes ?? [...Buffer.from(top.token, "utf8")] })),
  }));
}

export interface ReasoningText {
  type: "reasoning_text";
  text: string;
}

export interface MessageItem {
  type: "message";
  id: string;
  status: ItemStatus;
  role: "assistant";
  content: OutputText[];
}

export interface SummaryText {
  type: "summary_text";
  text: string;
}

/**
 * The model's reasoning, whole: as `reasoning_text` content, or (when the request asked for a summary) as its
 * `summary_text`, since no summary is made of it and clients such as Codex and the Vercel AI SDK show only summaries.
 */
export interface ReasoningItem {
  type: "reasoning";
  id: string;
  status: ItemStatus;
  summary: SummaryText[];
  content: ReasoningText[];
}

/** Where a reasoning item's text goes: its `content` (reasoning_text) or its `summary` (summary_text). */
export type ReasoningForm = "text" | "summary";

export interface FunctionCallItem {
  type: "function_call";
  id: string;
  status: ItemStatus;
  call_id: string;
  name: string;
  arguments: string;
}

export type OutputItem = MessageItem | ReasoningItem | FunctionCallItem;

export type ResponseStatus = "in_progress" | "completed" | "incomplete" | "failed";

export interface ResponseUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number; cache_write_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

/** What a failed response says went wrong; `code` is one of OpenAI's (server_error, rate_limit_exceeded, invalid_prompt). */
export interface ResponseFailure {
  code: "server_error" | "rate_limit_exceeded" | "invalid_prompt";
  message: string;
}

export type ResponseBody = ReturnType<ResponseObject["with"]>;

/** Hears an output item open, grow and close, in order (the stream encoder turns each into events). */
export interface OutputListener {
  added(item: OutputItem, index: number): void;
  /** More message text (with its tokens' logprobs, when asked for), reasoning text or call arguments for the item at `index`. */
  text(item: OutputItem, index: number, text: string, logprobs?: readonly OutputLogprob[]): void;
  done(item: OutputItem, index: number): void;
}

/** The one part of a message or reasoning item that receives its text. */
export function textPartOf(item: MessageItem | ReasoningItem): OutputText | ReasoningText | SummaryText | undefined {
  return item.type === "message" ? item.content[0] : (item.summary[0] ?? item.content[0]);
}

function itemId(prefix: string): string {
  return `${prefix}_${nanoid(24)}`;
}

/**
 * Builds the output items from deltas. Text and reasoning go to the open item of their kind, opening a new one (and
 * closing the previous) whenever the kind changes; each tool call is an item of its own, closed at its end.
 */
export class ResponseOutput {
  readonly items: OutputItem[] = [];
  /** The message or reasoning item receiving text, while it is the latest item. */
  private open: MessageItem | ReasoningItem | undefined;
  /** The output index of each tool call (by the parser's call index) still open. */
  private readonly calls = new Map<number, number>();

  constructor(
    private readonly listener?: OutputListener,
    private readonly reasoningForm: ReasoningForm = "text",
  ) {}

  add(deltas: readonly Delta[]): void {
    let i = 0;
    while (i < deltas.length) {
      const delta = deltas[i] as Delta;
      i += 1;
      if ("toolCallStart" in delta) this.startCall(delta.toolCallStart);
      else if ("toolCallArgs" in delta) this.callArguments(delta.toolCallArgs.index, delta.toolCallArgs.text);
      else if ("toolCallEnd" in delta) this.endCall(delta.toolCallEnd.index);
      else if ("logprobs" in delta) continue; // placed with the text they follow (below)
      else {
        // A run of text deltas of one kind becomes one piece of text (one event when streamed), with its logprobs.
        const kind = "content" in delta ? "message" : "reasoning";
        let text = "content" in delta ? delta.content : delta.reasoning;
        let logprobs: OutputLogprob[] | undefined;
        for (; i < deltas.length; i++) {
          const next = deltas[i] as Delta;
          if (kind === "message" && "content" in next) text += next.content;
          else if (kind === "message" && "logprobs" in next) (logprobs ??= []).push(...outputLogprobs(next.logprobs));
          else if (kind === "reasoning" && "reasoning" in next) text += next.reasoning;
          else break;
        }
        this.appendText(kind, text, logprobs);
      }
    }
  }

  /** Closes every item still open: `completed`, or `incomplete` when the reply was cut short. */
  close(status: "completed" | "incomplete"): void {
    this.closeText(status);
    for (const index of this.calls.values()) this.closeItem(this.items[index] as OutputItem, index, status);
    this.calls.clear();
  }

  private appendText(kind: "message" | "reasoning", text: string, logprobs?: OutputLogprob[]): void {
    let item = this.open;
    if (item?.type !== kind) {
      this.closeText("completed");
      item =
        kind === "message"
          ? { type: "message", id: itemId("msg"), status: "in_progress", role: "assistant", content: [] }
          : { type: "reasoning", id: itemId("rs"), status: "in_progress", summary: [], content: [] };
      this.addItem(item);
      if (item.type === "message") item.content.push({ type: "output_text", text: "", annotations: [], logprobs: [] });
      else if (this.reasoningForm === "summary") item.summary.push({ type: "summary_text", text: "" });
      else item.content.push({ type: "reasoning_text", text: "" });
      this.open = item;
    }
    const part = textPartOf(item) as OutputText | ReasoningText | SummaryText;
    part.text += text;
    if (logprobs !== undefined && part.type === "output_text") part.logprobs.push(...logprobs);
    this.listener?.text(item, this.items.length - 1, text, logprobs);
  }

  private closeText(status: "completed" | "incomplete"): void {
    if (this.open === undefined) return;
    this.closeItem(this.open, this.items.indexOf(this.open), status);
    this.open = undefined;
  }

  private startCall(start: { index: number; id: string; name: string }): void {
    this.closeText("completed");
    const item: FunctionCallItem = { type: "function_call", id: itemId("fc"), status: "in_progress", call_id: start.id, name: start.name, arguments: "" };
    this.calls.set(start.index, this.addItem(item));
  }

  private callArguments(callIndex: number, text: string): void {
    // Arguments for a call never announced (a parser quirk) still reach the client, in an item of their own.
    const index = this.calls.get(callIndex) ?? this.startedCall(callIndex);
    const item = this.items[index] as FunctionCallItem;
    item.arguments += text;
    this.listener?.text(item, index, text);
  }

  private startedCall(callIndex: number): number {
    this.startCall({ index: callIndex, id: `call_${nanoid(24)}`, name: "" });
    return this.calls.get(callIndex) as number;
  }

  private endCall(callIndex: number): void {
    const index = this.calls.get(callIndex);
    if (index === undefined) return;
    this.calls.delete(callIndex);
    this.closeItem(this.items[index] as OutputItem, index, "completed");
  }

  private addItem(item: OutputItem): number {
    const index = this.items.push(item) - 1;
    this.listener?.added(item, index);
    return index;
  }

  private closeItem(item: OutputItem, index: number, status: "completed" | "incomplete"): void {
    item.status = status;
    this.listener?.done(item, index);
  }
}

/** Token counts in the Responses API's words; `reasoningTokens` as the parser counted them. */
export function responseUsage(usage: Usage, reasoningTokens = 0): ResponseUsage {
  return {
    input_tokens: usage.promptTokens,
    input_tokens_details: { cached_tokens: usage.cachedTokens ?? 0, cache_write_tokens: 0 },
    output_tokens: usage.completionTokens,
    output_tokens_details: { reasoning_tokens: Math.min(reasoningTokens, usage.completionTokens) },
    total_tokens: usage.promptTokens + usage.completionTokens,
  };
}

/** The response object's fields that change as the reply goes on. */
export interface ResponseState {
  status: ResponseStatus;
  output: OutputItem[];
  usage?: ResponseUsage;
  error?: ResponseFailure;
  incompleteReason?: "max_output_tokens";
}

/** A function tool as the response object lists it (every field present). */
/** The structured output the request asked for, as OpenAI echoes it (plain text when none). */
function echoedFormat(format: NonNullable<ResponsesRequest["body"]["text"]>["format"]) {
  if (format == null || format.type === "text") return { type: "text" as const };
  if (format.type === "json_object") return { type: "json_object" as const };
  return {
    type: "json_schema" as const,
    name: format.name,
    schema: format.schema,
    strict: format.strict ?? null,
    ...(format.description != null && { description: format.description }),
  };
}

function echoedTool(tool: FunctionTool) {
  return {
    type: "function" as const,
    name: tool.name,
    description: tool.description ?? null,
    parameters: tool.parameters ?? null,
    strict: tool.strict ?? null,
  };
}

/** One reply's response object: its identity and the request's settings, fixed once; its state, given each time. */
export class ResponseObject {
  readonly id = `resp_${nanoid(24)}`;
  readonly createdAt = Math.floor(Date.now() / 1000);

  constructor(private readonly request: ResponsesRequest) {}

  /** The whole object, in the field order OpenAI sends (usage only once it is known). */
  with(state: ResponseState) {
    const { body } = this.request;
    return {
      id: this.id,
      object: "response" as const,
      created_at: this.createdAt,
      status: state.status,
      background: false,
      error: state.error ?? null,
      incomplete_details: state.incompleteReason ? { reason: state.incompleteReason } : null,
      instructions: body.instructions ?? null,
      max_output_tokens: body.max_output_tokens ?? null,
      model: body.model,
      output: state.output,
      parallel_tool_calls: body.parallel_tool_calls ?? true,
      previous_response_id: null,
      reasoning: { effort: body.reasoning?.effort ?? null, summary: body.reasoning?.summary ?? null },
      service_tier: "default" as const,
      // Nothing is kept, whatever the request asked.
      store: false,
      temperature: body.temperature ?? null,
      text: { format: echoedFormat(body.text?.format) },
      tool_choice: body.tool_choice ?? "auto",
      tools: offeredTools(body.tools).map(echoedTool),
      top_p: body.top_p ?? null,
      truncation: body.truncation ?? "disabled",
      ...(state.usage !== undefined && { usage: state.usage }),
      ...(body.user != null && { user: body.user }),
      metadata: body.metadata ?? {},
    };
  }
}
