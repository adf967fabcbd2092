// Shapes a task's text into what the client sees: reasoning split per mode, tool calls, OpenAI chunks and messages.
import type { ParseEvent, StreamParser } from "../parser/types.js";
import type { FinishReason, TokenLogprob, Usage } from "../worker-protocol/index.js";
import type { ReasoningMode } from "./chat-request.js";

/** Which field carries reasoning: DeepSeek/vLLM's `reasoning_content` (default), OpenRouter/Ollama's `reasoning`, or both. */
export type ReasoningField = "reasoning_content" | "reasoning" | "both";

export function reasoningKeys(field: ReasoningField): readonly string[] {
  return field === "both" ? ["reasoning_content", "reasoning"] : [field];
}

/**
 * One client-visible piece of a reply, in no dialect's shape: text, reasoning, or a tool call's start (its id and
 * name), a piece of its JSON arguments, and its end. Each dialect's encoder turns these into its own frames.
 */
export type Delta =
  | { content: string }
  | { reasoning: string }
  | { toolCallStart: { index: number; id: string; name: string } }
  | { toolCallArgs: { index: number; text: string } }
  | { toolCallEnd: { index: number } }
  /** The logprobs of the tokens that became the content delta just before (chat completions reports them). */
  | { logprobs: readonly TokenLogprob[] };

/** Turns model text into deltas for one reply, according to the reasoning mode. */
export class ReplyShaper {
  private sawToolCall = false;
  /** Reasoning tokens so far: each chunk's tokens in proportion to the reasoning it held (the parser decides). */
  private reasoningShare = 0;
  /** Logprobs of tokens the parser holds back, waiting to see whether they became content. */
  private pendingLogprobs: TokenLogprob[] = [];
  /** The model's output is inside its reasoning section right now. */
  inReasoning = false;

  constructor(
    private readonly mode: ReasoningMode,
    private readonly parser: StreamParser,
  ) {}

  /** Whether the reply called a tool (finish_reason becomes "tool_calls"). */
  get calledTools(): boolean {
    return this.sawToolCall;
  }

  /** The reasoning tokens the parser saw (an estimate where a chunk held both reasoning and answer). */
  get reasoningTokens(): number {
    return Math.round(this.reasoningShare);
  }

  /** Shapes the next chunk of model text; `tokens` is how many model tokens it holds. */
  push(text: string, out: Delta[], tokens = 0): void {
    const events = this.parser.feed(text);
    if (tokens > 0 && text.length > 0) {
      let chars = 0;
      for (const event of events) if (event.kind === "reasoning") chars += event.text.length;
      if (chars > 0) this.reasoningShare += tokens * Math.min(1, chars / text.length);
    }
    this.apply(events, out);
  }

  /**
   * Shapes a chunk whose tokens come with their logprobs, token by token, so that each token's logprob follows the
   * content it became; tokens that became reasoning, markup or tool calls have none in the reply (OpenAI reports the
   * logprobs of the content). A token the parser holds back (a possible tag) waits for what it turns out to be.
   */
  pushWithLogprobs(text: string, logprobs: readonly TokenLogprob[], out: Delta[]): void {
    let joined = "";
    for (const entry of logprobs) joined += entry.token;
    if (joined !== text) {
      this.push(text, out, logprobs.length); // tokens that do not spell the text cannot be placed
      return;
    }
    for (const entry of logprobs) {
      const from = out.length;
      this.push(entry.token, out, 1);
      this.pendingLogprobs.push(entry);
      this.placeLogprobs(out, from);
    }
  }

  finish(out: Delta[]): void {
    const from = out.length;
    this.apply(this.parser.finish(), out);
    this.placeLogprobs(out, from);
    this.pendingLogprobs = [];
  }

  /** Gives the waiting logprobs to the content the last push made, or drops them when it made something else. */
  private placeLogprobs(out: Delta[], from: number): void {
    if (this.pendingLogprobs.length === 0) return;
    let content = false;
    let other = false;
    for (let i = from; i < out.length; i++) {
      if ("content" in (out[i] as Delta)) content = true;
      else other = true;
    }
    if (content) {
      out.push({ logprobs: this.pendingLogprobs });
      this.pendingLogprobs = [];
    } else if (other || this.inReasoning) this.pendingLogprobs = [];
  }

  private apply(events: ParseEvent[], out: Delta[]): void {
    for (const event of events) {
      switch (event.kind) {
        case "content":
          if (event.text) out.push({ content: event.text });
          this.inReasoning = false;
          break;
        case "reasoning":
          if (this.mode === "separate" && event.text) out.push({ reasoning: event.text });
          this.inReasoning = true;
          break;
        case "tool_call_start":
          this.sawToolCall = true;
          out.push({ toolCallStart: { index: event.index, id: event.id, name: event.name } });
          break;
        case "tool_call_args":
          if (event.text) out.push({ toolCallArgs: { index: event.index, text: event.text } });
          break;
        case "tool_call_end":
          out.push({ toolCallEnd: { index: event.index } });
          break;
      }
    }
  }
}

export function finishReasonOf(reason: FinishReason, shaper: ReplyShaper): FinishReason {
  return reason === "stop" && shaper.calledTools ? "tool_calls" : reason;
}


/** OpenAI's usage object; `reasoningTokens` as the parser counted them (at most the completion's tokens). */
export function usageBody(usage: Usage, reasoningTokens = 0) {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedTokens ?? 0 },
    completion_tokens_details: { reasoning_tokens: Math.min(reasoningTokens, usage.completionTokens) },
  };
}

/**
 * Serialises `chat.completion.chunk` events. The parts that never change within a stream are serialised once,
 * so a token costs one JSON.stringify of its own text.
 */
export class ChunkSerializer {
  private readonly head: string;
  private readonly tail: string;
  private roleSent = false;

  private readonly reasoningKeys: readonly string[];

  constructor(id: string, created: number, model: string, includeUsage: boolean, reasoningField: ReasoningField = "reasoning_content") {
    this.reasoningKeys = reasoningKeys(reasoningField);
    this.head = `{"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(model)},"choices":[{"index":0,"delta":`;
    this.tail = includeUsage ? `}]${',"usage":null'}}` : "}]}";
  }

  /** Consecutive deltas of the same kind merge into one chunk; the first chunk also carries the role. */
  deltas(deltas: readonly Delta[]): string[] {
    const out: string[] = [];
    let i = 0;
    while (i < deltas.length) {
      const delta = deltas[i] as Delta;
      if ("toolCallStart" in delta) {
        const { index, id, name } = delta.toolCallStart;
        const call = { index, id, type: "function", function: { name, arguments: "" } };
        out.push(this.chunk(`{${this.role()}"tool_calls":[${JSON.stringify(call)}]}`));
        i += 1;
        continue;
      }
      if ("toolCallArgs" in delta) {
        const call = { index: delta.toolCallArgs.index, function: { arguments: delta.toolCallArgs.text } };
        out.push(this.chunk(`{${this.role()}"tool_calls":[${JSON.stringify(call)}]}`));
        i += 1;
        continue;
      }
      if ("toolCallEnd" in delta || "logprobs" in delta) {
        i += 1; // OpenAI's chunks have no end of a tool call; logprobs go with the content they follow (below)
        continue;
      }
      const key = "content" in delta ? "content" : "reasoning";
      let text = "";
      let logprobs: TokenLogprob[] | undefined;
      while (i < deltas.length) {
        const next = deltas[i] as Delta;
        if (key === "content" && "content" in next) text += next.content;
        else if (key === "content" && "logprobs" in next) (logprobs ??= []).push(...next.logprobs);
        else if (key === "reasoning" && "reasoning" in next) text += next.reasoning;
        else break;
        i += 1;
      }
      const json = JSON.stringify(text);
      const fields = key === "content" ? `"content":${json}` : this.reasoningKeys.map((k) => `"${k}":${json}`).join(",");
      out.push(this.chunk(`{${this.role()}${fields}}`, logprobs));
    }
    return out;
  }

  finish(reason: FinishReason): string {
    const delta = this.roleSent ? "{}" : `{${this.role()}"content":""}`;
    return `${this.head}${delta},"logprobs":null,"finish_reason":"${reason}"${this.tail}`;
  }

  /** The closing chunk of `stream_options.include_usage`: no choices, just usage. */
  usage(usage: Usage, id: string, created: number, model: string, reasoningTokens = 0): string {
    return JSON.stringify({
      id,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [],
      usage: usageBody(usage, reasoningTokens),
    });
  }

  private chunk(deltaJson: string, logprobs?: readonly TokenLogprob[]): string {
    const logprobsJson = logprobs === undefined ? "null" : JSON.stringify(logprobsBody(logprobs));
    return `${this.head}${deltaJson},"logprobs":${logprobsJson},"finish_reason":null${this.tail}`;
  }

  private role(): string {
    if (this.roleSent) return "";
    this.roleSent = true;
    return `"role":"assistant",`;
  }
}

/** Logprobs in OpenAI's shape: `{content: [{token, logprob, bytes, top_logprobs}], refusal: null}`. */
export function logprobsBody(logprobs: readonly TokenLogprob[]) {
  return {
    content: logprobs.map((entry) => ({
      token: entry.token,
      logprob: entry.logprob,
      bytes: entry.bytes ?? null,
      top_logprobs: (entry.top ?? []).map((top) => ({ token: top.token, logprob: top.logprob, bytes: top.bytes ?? null })),
    })),
    refusal: null,
  };
}

/** Accumulates a whole reply for a non-streaming response. */
export class ReplyCollector {
  content = "";
  reasoning = "";
  /** The logprobs of the content's tokens, when the request asked for them. */
  readonly logprobs: TokenLogprob[] = [];
  readonly toolCalls: Array<{ id: string; type: "function"; function: { name: string; arguments: string } }> = [];

  add(deltas: readonly Delta[]): void {
    for (const delta of deltas) {
      if ("content" in delta) this.content += delta.content;
      else if ("reasoning" in delta) this.reasoning += delta.reasoning;
      else if ("logprobs" in delta) this.logprobs.push(...delta.logprobs);
      else if ("toolCallStart" in delta) {
        const { index, id, name } = delta.toolCallStart;
        this.toolCalls[index] = { id, type: "function", function: { name, arguments: "" } };
      } else if ("toolCallArgs" in delta) {
        const { index, text } = delta.toolCallArgs;
        const call = (this.toolCalls[index] ??= { id: `call_${index}`, type: "function", function: { name: "", arguments: "" } });
        call.function.arguments += text;
      }
    }
  }
}

/**
 * A tool call's arguments as the object that Anthropic's and Ollama's clients expect (OpenAI's keep the text).
 * Arguments that are not a JSON object (the parser warns of those) are kept as text under `_raw_arguments` rather
 * than lost, so the client's tool validation fails visibly, showing what the model wrote.
 */
export function toolInput(text: string): Record<string, unknown> {
  if (text.trim() === "") return {};
  try {
    const value: unknown = JSON.parse(text);
    if (value !== null && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // not JSON: kept as text below
  }
  return { _raw_arguments: text };
}
