// Anthropic's reply shapes from the relay's deltas: the stream of message events, and the whole `message` object.
import type { FinishReason, Usage } from "../worker-protocol/index.js";
import type { AnthropicErrorBody } from "./anthropic-errors.js";
import { type Delta, type ReplyShaper, toolInput } from "./chat-response.js";
import { eventFrame } from "./sse.js";

export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use";

/** How a reply ended, in Anthropic's words: `stop_reason` and the matched `stop_sequence` (null unless one matched). */
export interface ReplyStop {
  reason: StopReason;
  sequence: string | null;
}

/**
 * Why the reply ended. A stop sequence the worker named (the master checked it is one of the request's) is
 * stop_sequence; a reply that called tools stays tool_use even then, as its client must answer the calls.
 */
export function replyStopOf(finished: { finishReason: FinishReason; stopSequence?: string }, shaper: ReplyShaper): ReplyStop {
  const { finishReason, stopSequence } = finished;
  if (finishReason === "length") return { reason: "max_tokens", sequence: null };
  if (finishReason === "tool_calls" || shaper.calledTools) return { reason: "tool_use", sequence: null };
  if (stopSequence !== undefined) return { reason: "stop_sequence", sequence: stopSequence };
  return { reason: "end_turn", sequence: null };
}

type BlockKind = "thinking" | "text" | "tool_use";
type BlockStart = { kind: "thinking" } | { kind: "text" } | { kind: "tool_use"; id: string; name: string };

/** Where content blocks go as deltas open, fill and close them; `index` is the block's place in `content`. */
interface BlockSink {
  open(index: number, block: BlockStart): void;
  append(index: number, kind: BlockKind, text: string): void;
  close(index: number, kind: BlockKind): void;
}

/**
 * Turns deltas into content blocks: a change of kind closes the open block and opens the next (thinking, text,
 * each tool call its own), so blocks never interleave and their indexes rise by one. Runs of deltas of the same
 * kind become one append.
 */
class ContentBlocks {
  private open: { index: number; kind: BlockKind; toolIndex?: number } | undefined;
  private next = 0;

  constructor(private readonly sink: BlockSink) {}

  push(deltas: readonly Delta[]): void {
    let i = 0;
    while (i < deltas.length) {
      const delta = deltas[i] as Delta;
      i += 1;
      if ("toolCallStart" in delta) {
        this.closeOpen();
        const { index: toolIndex, id, name } = delta.toolCallStart;
        this.open = { index: this.next++, kind: "tool_use", toolIndex };
        this.sink.open(this.open.index, { kind: "tool_use", id, name });
      } else if ("toolCallArgs" in delta) {
        const open = this.open;
        // Arguments come between their call's start and end; a stray piece (no such open call) is dropped.
        if (open?.kind === "tool_use" && open.toolIndex === delta.toolCallArgs.index) {
          this.sink.append(open.index, "tool_use", delta.toolCallArgs.text);
        }
      } else if ("toolCallEnd" in delta) {
        if (this.open?.kind === "tool_use" && this.open.toolIndex === delta.toolCallEnd.index) this.closeOpen();
      } else if ("logprobs" in delta) {
        // Anthropic's API has no logprobs (a Messages request never asks for them).
      } else {
        const kind = "content" in delta ? "text" : "thinking";
        let text = "content" in delta ? delta.content : delta.reasoning;
        for (; i < deltas.length; i++) {
          const next = deltas[i] as Delta;
          if (kind === "text" && "content" in next) text += next.content;
          else if (kind === "thinking" && "reasoning" in next) text += next.reasoning;
          else break;
        }
        if (this.open?.kind !== kind) {
          this.closeOpen();
          this.open = { index: this.next++, kind };
          this.sink.open(this.open.index, kind === "text" ? { kind: "text" } : { kind: "thinking" });
        }
        this.sink.append(this.open.index, kind, text);
      }
    }
  }

  closeOpen(): void {
    if (this.open === undefined) return;
    this.sink.close(this.open.index, this.open.kind);
    this.open = undefined;
  }
}

export interface ReplyIdentity {
  id: string;
  model: string;
}

/** The keepalive frame of an Anthropic stream. */
export const PING_FRAME = eventFrame("ping", `{"type":"ping"}`);
const MESSAGE_STOP = eventFrame("message_stop", `{"type":"message_stop"}`);

/**
 * Writes one reply as Anthropic's stream events: message_start, content_block_start/delta/stop per block,
 * message_delta with the stop reason and usage, message_stop. The constant parts of a token's frame are built
 * once, so a token costs one JSON.stringify of its own text.
 */
export class MessageEventWriter implements BlockSink {
  private out = "";
  private readonly blocks = new ContentBlocks(this);

  constructor(private readonly reply: ReplyIdentity) {}

  /**
   * message_start. Input tokens are not known until the worker finishes (it counts the prompt as it evaluates it):
   * 0 here, the real figure in message_delta's usage (which the SDKs take over the start's).
   */
  start(): string {
    const message = {
      id: this.reply.id,
      type: "message",
      role: "assistant",
      model: this.reply.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 0, output_tokens: 0 },
    };
    return eventFrame("message_start", JSON.stringify({ type: "message_start", message }));
  }

  deltas(deltas: readonly Delta[]): string {
    this.blocks.push(deltas);
    return this.take();
  }

  /** The last deltas, the open block's end, message_delta and message_stop. */
  finish(deltas: readonly Delta[], stop: ReplyStop, usage: Usage): string {
    this.blocks.push(deltas);
    this.blocks.closeOpen();
    const delta = { stop_reason: stop.reason, stop_sequence: stop.sequence };
    const counts = anthropicUsage(usage);
    this.out += eventFrame("message_delta", JSON.stringify({ type: "message_delta", delta, usage: counts }));
    this.out += MESSAGE_STOP;
    return this.take();
  }

  /** The last deltas, then `event: error` (the stream ends there, as Anthropic's does). */
  fail(deltas: readonly Delta[], error: AnthropicErrorBody): string {
    this.blocks.push(deltas);
    this.out += eventFrame("error", JSON.stringify(error));
    return this.take();
  }

  open(index: number, block: BlockStart): void {
    const content =
      block.kind === "text" ? `{"type":"text","text":""}`
      : block.kind === "thinking" ? `{"type":"thinking","thinking":""}`
      : JSON.stringify({ type: "tool_use", id: block.id, name: block.name, input: {} });
    this.out += eventFrame("content_block_start", `{"type":"content_block_start","index":${index},"content_block":${content}}`);
  }

  append(index: number, kind: BlockKind, text: string): void {
    const delta =
      kind === "text" ? `{"type":"text_delta","text":${JSON.stringify(text)}}`
      : kind === "thinking" ? `{"type":"thinking_delta","thinking":${JSON.stringify(text)}}`
      : `{"type":"input_json_delta","partial_json":${JSON.stringify(text)}}`;
    this.out += eventFrame("content_block_delta", `{"type":"content_block_delta","index":${index},"delta":${delta}}`);
  }

  close(index: number, kind: BlockKind): void {
    // Anthropic ends a thinking block with its signature (its proof of origin); ours has none to give, so it is empty.
    if (kind === "thinking") {
      this.out += eventFrame("content_block_delta", `{"type":"content_block_delta","index":${index},"delta":{"type":"signature_delta","signature":""}}`);
    }
    this.out += eventFrame("content_block_stop", `{"type":"content_block_stop","index":${index}}`);
  }

  private take(): string {
    const frames = this.out;
    this.out = "";
    return frames;
  }
}

export type ContentBlock =
  | { type: "thinking"; thinking: string; signature: string }
  | { type: "text"; text: string }
  | { type: "tool_use"; id: string; name: string; input: Record<string, unknown> };

/** Collects a whole reply's content blocks, in order. */
export class MessageCollector implements BlockSink {
  readonly content: ContentBlock[] = [];
  private readonly args = new Map<number, string>();
  private readonly blocks = new ContentBlocks(this);

  add(deltas: readonly Delta[]): void {
    this.blocks.push(deltas);
  }

  /** The message object; call once, after the last deltas. */
  message(reply: ReplyIdentity, stop: ReplyStop, usage: Usage) {
    this.blocks.closeOpen();
    return {
      id: reply.id,
      type: "message",
      role: "assistant",
      model: reply.model,
      content: this.content,
      stop_reason: stop.reason,
      stop_sequence: stop.sequence,
      usage: anthropicUsage(usage),
    };
  }

  open(index: number, block: BlockStart): void {
    if (block.kind === "text") this.content[index] = { type: "text", text: "" };
    else if (block.kind === "thinking") this.content[index] = { type: "thinking", thinking: "", signature: "" };
    else this.content[index] = { type: "tool_use", id: block.id, name: block.name, input: {} };
  }

  append(index: number, _kind: BlockKind, text: string): void {
    const block = this.content[index];
    if (block?.type === "text") block.text += text;
    else if (block?.type === "thinking") block.thinking += text;
    else if (block?.type === "tool_use") this.args.set(index, (this.args.get(index) ?? "") + text);
  }

  close(index: number): void {
    const block = this.content[index];
    if (block?.type === "tool_use") block.input = toolInput(this.args.get(index) ?? "");
  }
}

/**
 * Anthropic's usage: `input_tokens` are those evaluated anew, `cache_read_input_tokens` those read from the engine's
 * cache (the prompt is their sum, as Anthropic counts it); nothing is written to a cache on request.
 */
export function anthropicUsage(usage: Usage) {
  const cached = usage.cachedTokens ?? 0;
  return { input_tokens: usage.promptTokens - cached, output_tokens: usage.completionTokens, cache_read_input_tokens: cached, cache_creation_input_tokens: 0 };
}
