// The API dialects as tests drive them: each route's request body, how its raw SSE frames read (keepalive, output,
// end), and a client per dialect built on that dialect's official SDK. Behaviour every dialect shares (keepalive,
// cancellation, fuzzing) is tested once, over this list.
import Anthropic from "@anthropic-ai/sdk";
import { Ollama } from "ollama";
import type { RunningCoordinator } from "../../src/coordinator.js";
import { openaiClient } from "./cluster.js";

export interface TestMessage {
  role: "user" | "assistant";
  content: string;
}

export interface DialectCase {
  name: "chat completions" | "messages" | "responses" | "ollama";
  path: string;
  /** What separates the stream's frames: a blank line (SSE) or a newline (Ollama's NDJSON). */
  separator: "\n\n" | "\n";
  /** A minimal valid request for `messages`; `maxTokens` bounds the reply (Messages requires a bound: 4,096 by default). */
  body(messages: readonly TestMessage[], stream: boolean, maxTokens?: number): Record<string, unknown>;
  /** Whether a raw SSE frame (without its blank line) is the dialect's keepalive. */
  isKeepalive(frame: string): boolean;
  /** Whether a raw SSE frame carries visible output. */
  isOutput(frame: string): boolean;
  /** Whether a raw SSE frame is the last one of a complete reply. */
  isEnd(frame: string): boolean;
  /** Streams a reply through the dialect's SDK, yielding each piece of visible text until the stream or `signal` ends. */
  streamText(coordinator: RunningCoordinator, messages: readonly TestMessage[], signal: AbortSignal): AsyncGenerator<string>;
  /** A whole (non-streamed) reply's text through the dialect's SDK. */
  complete(coordinator: RunningCoordinator, messages: readonly TestMessage[], signal?: AbortSignal): Promise<string>;
}

export function anthropicClient(coordinator: RunningCoordinator, apiKey = "unused"): Anthropic {
  return new Anthropic({ baseURL: coordinator.url, apiKey, maxRetries: 0, timeout: 20_000 });
}

const MAX_TOKENS = 4_096;

const chatCompletions: DialectCase = {
  name: "chat completions",
  path: "/v1/chat/completions",
  separator: "\n\n",
  body: (messages, stream, maxTokens) => ({ model: "simulator", messages, stream, ...(maxTokens !== undefined && { max_tokens: maxTokens }) }),
  isKeepalive: (frame) => frame === ": keepalive",
  isOutput: (frame) => frame.startsWith("data: {") && /"(content|reasoning_content)":"[^"]/.test(frame),
  isEnd: (frame) => frame === "data: [DONE]",
  async *streamText(coordinator, messages, signal) {
    const stream = await openaiClient(coordinator).chat.completions.create(
      { model: "simulator", messages: [...messages], stream: true },
      { signal },
    );
    for await (const chunk of stream) {
      const text = chunk.choices[0]?.delta.content;
      if (text) yield text;
    }
  },
  async complete(coordinator, messages, signal) {
    const reply = await openaiClient(coordinator).chat.completions.create({ model: "simulator", messages: [...messages] }, { signal });
    return reply.choices[0]?.message.content ?? "";
  },
};

const messagesDialect: DialectCase = {
  name: "messages",
  path: "/v1/messages",
  separator: "\n\n",
  body: (messages, stream, maxTokens = MAX_TOKENS) => ({ model: "simulator", max_tokens: maxTokens, messages, stream }),
  isKeepalive: (frame) => frame.startsWith("event: ping\n"),
  isOutput: (frame) => frame.startsWith("event: content_block_delta\n"),
  isEnd: (frame) => frame.startsWith("event: message_stop\n"),
  async *streamText(coordinator, messages, signal) {
    const stream = await anthropicClient(coordinator).messages.create(
      { model: "simulator", max_tokens: MAX_TOKENS, messages: [...messages], stream: true },
      { signal },
    );
    for await (const event of stream) {
      if (event.type === "content_block_delta" && event.delta.type === "text_delta" && event.delta.text) yield event.delta.text;
    }
  },
  async complete(coordinator, messages, signal) {
    const reply = await anthropicClient(coordinator).messages.create(
      { model: "simulator", max_tokens: MAX_TOKENS, messages: [...messages] },
      { signal },
    );
    return reply.content.map((block) => (block.type === "text" ? block.text : "")).join("");
  },
};

const responsesDialect: DialectCase = {
  name: "responses",
  path: "/v1/responses",
  separator: "\n\n",
  body: (messages, stream, maxTokens) => ({
    model: "simulator",
    input: messages,
    stream,
    ...(maxTokens !== undefined && { max_output_tokens: maxTokens }),
  }),
  isKeepalive: (frame) => frame === ": keepalive",
  isOutput: (frame) => /^event: response\.(output_text|reasoning_text)\.delta\n/.test(frame),
  isEnd: (frame) => frame.startsWith("event: response.completed\n"),
  async *streamText(coordinator, messages, signal) {
    const stream = await openaiClient(coordinator).responses.create(
      { model: "simulator", input: [...messages], stream: true },
      { signal },
    );
    for await (const event of stream) {
      if (event.type === "response.output_text.delta" && event.delta) yield event.delta;
    }
  },
  async complete(coordinator, messages, signal) {
    const reply = await openaiClient(coordinator).responses.create({ model: "simulator", input: [...messages] }, { signal });
    return reply.output_text;
  },
};

/** Ollama's line of a stream, parsed (keepalive lines are empty pieces). */
function ollamaLine(frame: string): { message?: { content?: string; thinking?: string }; done?: boolean } {
  try {
    return JSON.parse(frame) as { message?: { content?: string }; done?: boolean };
  } catch {
    return {};
  }
}

const ollamaDialect: DialectCase = {
  name: "ollama",
  path: "/api/chat",
  separator: "\n",
  body: (messages, stream, maxTokens) => ({
    model: "simulator",
    messages,
    stream,
    ...(maxTokens !== undefined && { options: { num_predict: maxTokens } }),
  }),
  isKeepalive: (frame) => {
    const line = ollamaLine(frame);
    return line.done === false && line.message?.content === "" && line.message.thinking === undefined;
  },
  isOutput: (frame) => Boolean(ollamaLine(frame).message?.content),
  isEnd: (frame) => ollamaLine(frame).done === true,
  async *streamText(coordinator, messages, signal) {
    const stream = await new Ollama({ host: coordinator.url }).chat({ model: "simulator", messages: [...messages], stream: true });
    const abort = () => stream.abort();
    signal.addEventListener("abort", abort, { once: true });
    try {
      for await (const part of stream) if (part.message.content) yield part.message.content;
    } finally {
      signal.removeEventListener("abort", abort);
    }
  },
  async complete(coordinator, messages, signal) {
    // The client aborts only streams itself; a whole reply is abandoned through its fetch.
    const ollama = new Ollama({ host: coordinator.url, fetch: (input, init) => fetch(input, { ...init, ...(signal && { signal }) }) });
    return (await ollama.chat({ model: "simulator", messages: [...messages] })).message.content;
  },
};

export const DIALECTS: readonly DialectCase[] = [chatCompletions, messagesDialect, responsesDialect, ollamaDialect];

/** POSTs a streaming request in `dialect` and returns the stream's frames as written (SSE frames or NDJSON lines). */
export async function postFrames(coordinator: RunningCoordinator, dialect: DialectCase, body: unknown): Promise<{ status: number; frames: string[] }> {
  const response = await fetch(`${coordinator.url}${dialect.path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, frames: text.split(dialect.separator).filter((frame) => frame.length > 0) };
}

/** Each dialect with its name first, for `describe.each`. */
export const EACH_DIALECT = DIALECTS.map((dialect) => [dialect.name, dialect] as const);
