// Ollama's replies: newline-delimited JSON objects while streaming (one per piece, `done: true` last, with its counts
// and durations in nanoseconds), or that last object whole. /api/chat puts text in `message`, /api/generate in
// `response`; reasoning goes in `thinking`, tool calls in `message.tool_calls` with their arguments as objects.
import type { CoordinatorError } from "../master/errors.js";
import type { FinishReason, Usage } from "../worker-protocol/index.js";
import { type Delta, toolInput } from "./chat-response.js";
import { describeError } from "./errors.js";
import type { StreamEncoder } from "./relay.js";
import type { WholeReply } from "./task-route.js";

interface ToolCall {
  function: { name: string; arguments: Record<string, unknown> };
}

/** When a reply's stages happened (ms), for Ollama's durations. */
class Timings {
  readonly startedAt = Date.now();
  firstOutputAt: number | undefined;

  output(): void {
    this.firstOutputAt ??= Date.now();
  }

  /** The final object's counts and durations, in nanoseconds as Ollama reports them. */
  counts(usage: Usage) {
    const now = Date.now();
    const first = this.firstOutputAt ?? now;
    const ns = (ms: number) => Math.max(0, Math.round(ms * 1e6));
    return {
      total_duration: ns(now - this.startedAt),
      load_duration: 0,
      prompt_eval_count: usage.promptTokens,
      prompt_eval_duration: ns(first - this.startedAt),
      eval_count: usage.completionTokens,
      eval_duration: ns(now - first),
    };
  }
}

/** Splits deltas into text, thinking and whole tool calls (a call is complete at its end). */
class Pieces {
  private readonly calls = new Map<number, { name: string; args: string }>();

  take(deltas: readonly Delta[]): { text: string; thinking: string; calls: ToolCall[] } {
    let text = "";
    let thinking = "";
    const calls: ToolCall[] = [];
    for (const delta of deltas) {
      if ("content" in delta) text += delta.content;
      else if ("reasoning" in delta) thinking += delta.reasoning;
      else if ("toolCallStart" in delta) this.calls.set(delta.toolCallStart.index, { name: delta.toolCallStart.name, args: "" });
      else if ("toolCallArgs" in delta) {
        const call = this.calls.get(delta.toolCallArgs.index);
        if (call) call.args += delta.toolCallArgs.text;
      } else if ("toolCallEnd" in delta) {
        const call = this.calls.get(delta.toolCallEnd.index);
        this.calls.delete(delta.toolCallEnd.index);
        if (call) calls.push({ function: { name: call.name, arguments: toolInput(call.args) } });
      }
    }
    return { text, thinking, calls };
  }
}

export interface OllamaReply {
  kind: "chat" | "generate";
  model: string;
}

function doneReason(reason: FinishReason): string {
  return reason === "length" ? "length" : "stop";
}

/** One NDJSON object of the reply, in the shape of its route. */
function piece(reply: OllamaReply, text: string, thinking: string, calls: readonly ToolCall[], done: boolean): Record<string, unknown> {
  const head = { model: reply.model, created_at: new Date().toISOString() };
  if (reply.kind === "generate") return { ...head, response: text, ...(thinking && { thinking }), done };
  const message: Record<string, unknown> = { role: "assistant", content: text };
  if (thinking) message.thinking = thinking;
  if (calls.length > 0) message.tool_calls = calls;
  return { ...head, message, done };
}

const line = (value: unknown) => `${JSON.stringify(value)}\n`;

/** An empty piece: what a stream sends while silent (NDJSON has no comments, and clients parse every line). */
export function keepaliveLine(reply: OllamaReply): string {
  return line(piece(reply, "", "", [], false));
}

/** The encoder of one streamed reply. */
export function ollamaStream(reply: OllamaReply): StreamEncoder {
  const timings = new Timings();
  const pieces = new Pieces();
  const write = (deltas: readonly Delta[]) => {
    const { text, thinking, calls } = pieces.take(deltas);
    if (!text && !thinking && calls.length === 0) return "";
    timings.output();
    return line(piece(reply, text, thinking, calls, false));
  };
  return {
    deltas: write,
    finished: (deltas, event) => write(deltas) + line({ ...piece(reply, "", "", [], true), done_reason: doneReason(event.finishReason), ...timings.counts(event.usage) }),
    failed: (deltas, error: CoordinatorError) => write(deltas) + line({ error: describeError(error).message }),
  };
}

/** The collector of one whole reply. */
export function ollamaWhole(reply: OllamaReply): WholeReply {
  const timings = new Timings();
  const pieces = new Pieces();
  let text = "";
  let thinking = "";
  const calls: ToolCall[] = [];
  return {
    add: (deltas) => {
      const taken = pieces.take(deltas);
      if (taken.text || taken.thinking || taken.calls.length > 0) timings.output();
      text += taken.text;
      thinking += taken.thinking;
      calls.push(...taken.calls);
    },
    body: (event) => ({ ...piece(reply, text, thinking, calls, true), done_reason: doneReason(event.finishReason), ...timings.counts(event.usage) }),
  };
}
