// Fuzzing the HTTP API, in every dialect: whatever a client posts, the coordinator answers with a proper reply or a
// 4xx in the route's own error shape (never a 500, a crash or a hang), and well-behaved requests carry on.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_PASS_THROUGH_DEPTH, parseChatRequest } from "../src/api/chat-request.js";
import { parseCompletion } from "../src/api/completions.js";
import { embeddingsDialect } from "../src/api/embeddings.js";
import { parseMessagesRequest } from "../src/api/messages-request.js";
import { ollamaEmbedDialect } from "../src/api/ollama-embed.js";
import { parseOllamaChat } from "../src/api/ollama-request.js";
import { keepAliveMs } from "../src/api/keep-alive.js";
import { nothingToGenerate } from "../src/api/ollama-preload.js";
import { parseResponsesRequest } from "../src/api/responses-request.js";
import type { RunningCoordinator } from "../src/coordinator.js";
import { eventually, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { DIALECTS } from "./support/dialects.js";
import { type Json, mutate, mutation, Raw, serialize, utf8Length } from "./support/fuzz-json.js";

const MAX_BODY_BYTES = 64 * 1024;
/** Whether a body's keep_alive, if any, is one the route takes. */
function validKeepAlive(json: unknown): boolean {
  try {
    keepAliveMs((json as { keep_alive?: unknown }).keep_alive);
    return true;
  } catch {
    return false;
  }
}

const LIMITS = { maxMessages: 16, maxPromptChars: 16_000 };
const REQUEST_TIMEOUT_MS = 10_000;

const shortText = fc.string({ unit: "grapheme", maxLength: 40 });
const textParts = (type: string) => fc.array(fc.record({ type: fc.constant(type), text: fc.string({ maxLength: 20 }) }), { maxLength: 2 });
const toolName = fc.stringMatching(/^[a-z_]{1,12}$/);
const citySchema = fc.constant({ type: "object", properties: { city: { type: "string" } } });

/** One route under fuzzing: bodies it must accept, its parser (the oracle), and what its answers must look like. */
interface FuzzRoute {
  name: string;
  path: string;
  /** Bodies the route must accept (a 200 with a proper reply). */
  validBody: fc.Arbitrary<Record<string, unknown>>;
  /** The route's own validation: throws for a body it refuses. */
  parse(json: unknown): unknown;
  /** A small valid body, as text, for byte-level splicing. */
  template: string;
  /** Bodies holding `nested` in a free-form JSON field forwarded to the worker, by field (none: the route has none). */
  nestings: Record<string, (nested: Raw, stream: boolean) => { [key: string]: Json }>;
  expectError(status: number, text: string): void;
  expectWhole(text: string): void;
  expectStream(text: string): void;
  /** Takes a body of any Content-Type (Ollama's routes, as Ollama does); else anything but JSON is a 415. */
  anyContentType?: boolean;
}

function expectNoInternals(message: unknown, text: string): void {
  expect(typeof message === "string" && message.length > 0, text).toBe(true);
  expect(message as string).not.toMatch(/\n\s+at |node_modules|\/src\//);
}

function expectOpenAIError(status: number, text: string): void {
  const body = JSON.parse(text) as { error?: Record<string, unknown> };
  expect(Object.keys(body)).toEqual(["error"]);
  const error = body.error ?? {};
  expect(Object.keys(error).sort(), text).toEqual(["code", "message", "param", "type"]);
  expectNoInternals(error.message, text);
  expect(error.type).toBe(status === 401 ? "authentication_error" : status === 429 ? "rate_limit_error" : "invalid_request_error");
  expect(error.param === null || typeof error.param === "string").toBe(true);
  expect(error.code === null || typeof error.code === "string").toBe(true);
}

function expectAnthropicError(status: number, text: string): void {
  const body = JSON.parse(text) as { type?: unknown; error?: Record<string, unknown> };
  expect(Object.keys(body).sort(), text).toEqual(["error", "type"]);
  expect(body.type).toBe("error");
  const error = body.error ?? {};
  expect(Object.keys(error).sort(), text).toEqual(["message", "type"]);
  expectNoInternals(error.message, text);
  const types: Record<number, string> = { 401: "authentication_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error" };
  expect(error.type).toBe(types[status] ?? "invalid_request_error");
}

/** The `event:` + `data:` frames of a stream, keepalives left out, with each data parsed. */
function namedEvents(text: string): Array<{ event: string; data: Record<string, unknown> }> {
  const events: Array<{ event: string; data: Record<string, unknown> }> = [];
  for (const frame of text.split("\n\n")) {
    if (frame === "" || frame.startsWith(":")) continue;
    const match = /^event: ([^\n]+)\ndata: (.*)$/s.exec(frame);
    expect(match, `a frame that is not event + data: ${frame.slice(0, 200)}`).not.toBeNull();
    const [, event = "", json = ""] = match ?? [];
    const data = JSON.parse(json) as Record<string, unknown>;
    expect(data.type, frame.slice(0, 200)).toBe(event);
    events.push({ event, data });
  }
  return events;
}

/** An OpenAI SSE stream's `data:` payloads, parsed, after checking it ends with `data: [DONE]`. */
function dataChunks(text: string): unknown[] {
  const data = text
    .split("\n\n")
    .filter((frame) => frame.startsWith("data: "))
    .map((frame) => frame.slice("data: ".length));
  expect(data.at(-1), text.slice(-300)).toBe("[DONE]");
  return data.slice(0, -1).map((json) => JSON.parse(json) as unknown);
}

const chatRoute: FuzzRoute = {
  name: "chat completions",
  path: "/v1/chat/completions",
  validBody: fc.record(
    {
      model: fc.constant("simulator"),
      messages: fc.array(
        fc.record({ role: fc.constantFrom("system", "developer", "user", "assistant"), content: fc.oneof(shortText, textParts("text")) }),
        { minLength: 1, maxLength: 3 },
      ),
      stream: fc.boolean(),
      max_tokens: fc.integer({ min: 1, max: 48 }),
      temperature: fc.double({ min: 0, max: 2, noNaN: true }),
      stop: fc.oneof(fc.string({ maxLength: 6 }), fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 })),
      reasoning_format: fc.constantFrom("hidden", "separate", "raw", "deepseek"),
      stream_options: fc.record({ include_usage: fc.boolean() }),
      seed: fc.integer(),
      top_p: fc.double({ min: 0, max: 1, noNaN: true }),
      n: fc.constant(1),
      user: fc.string({ maxLength: 10 }),
      tools: fc.array(fc.record({ type: fc.constant("function"), function: fc.record({ name: toolName, description: fc.string({ maxLength: 20 }), parameters: citySchema }) }), { maxLength: 2 }),
      tool_choice: fc.constantFrom("none", "auto"),
      parallel_tool_calls: fc.boolean(),
      reasoning_effort: fc.constantFrom("low", "high"),
      chat_template_kwargs: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
    },
    { requiredKeys: ["model", "messages", "max_tokens"] },
  ),
  parse: (json) => parseChatRequest(json, LIMITS),
  template: '{"model":"simulator","messages":[{"role":"user","content":"hello there"}],"max_tokens":8}',
  nestings: {
    chat_template_kwargs: (nested, stream) => ({ ...chatBase(stream), chat_template_kwargs: { x: nested } }),
    tools: (nested, stream) => ({ ...chatBase(stream), tools: [{ type: "function", function: { name: "f", parameters: { x: nested } } }] }),
  },
  expectError: expectOpenAIError,
  expectWhole(text) {
    const body = JSON.parse(text) as { object: string; choices: Array<{ message: { role: string; content: unknown }; finish_reason: string }> };
    expect(body.object).toBe("chat.completion");
    expect(body.choices).toHaveLength(1);
    expect(body.choices[0]?.message.role).toBe("assistant");
    expect(typeof body.choices[0]?.message.content).toBe("string");
    expect(["stop", "length"]).toContain(body.choices[0]?.finish_reason);
  },
  expectStream(text) {
    const chunks = dataChunks(text) as Array<{ object?: string; error?: unknown; choices: Array<{ finish_reason: string | null }> }>;
    for (const chunk of chunks) {
      expect(chunk.error, JSON.stringify(chunk)).toBeUndefined();
      expect(chunk.object).toBe("chat.completion.chunk");
    }
    expect(chunks.some((c) => c.choices[0]?.finish_reason === "stop" || c.choices[0]?.finish_reason === "length")).toBe(true);
  },
};

function chatBase(stream: boolean): { [key: string]: Json } {
  return { model: "simulator", messages: [{ role: "user", content: "deep" }], max_tokens: 8, stream };
}

function messagesBase(stream: boolean): { [key: string]: Json } {
  return { model: "simulator", messages: [{ role: "user", content: "deep" }], max_tokens: 8, stream };
}

const messagesRoute: FuzzRoute = {
  name: "messages",
  path: "/v1/messages",
  validBody: fc.record(
    {
      model: fc.constant("simulator"),
      max_tokens: fc.integer({ min: 1, max: 48 }),
      messages: fc.array(fc.record({ role: fc.constantFrom("user", "assistant"), content: fc.oneof(shortText, textParts("text")) }), { minLength: 1, maxLength: 3 }),
      system: fc.oneof(shortText, textParts("text")),
      stream: fc.boolean(),
      stop_sequences: fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }),
      temperature: fc.double({ min: 0, max: 1, noNaN: true }),
      top_p: fc.double({ min: 0, max: 1, noNaN: true }),
      metadata: fc.record({ user_id: fc.string({ maxLength: 10 }) }),
      tools: fc.array(fc.record({ name: toolName, description: fc.string({ maxLength: 20 }), input_schema: citySchema }), { maxLength: 2 }),
      tool_choice: fc.constantFrom({ type: "auto" }, { type: "none" }),
      thinking: fc.constantFrom({ type: "enabled", budget_tokens: 1_024 }, { type: "disabled" }),
    },
    { requiredKeys: ["model", "messages", "max_tokens"] },
  ),
  parse: (json) => parseMessagesRequest(json, LIMITS),
  template: '{"model":"simulator","messages":[{"role":"user","content":"hello there"}],"max_tokens":8}',
  nestings: {
    input_schema: (nested, stream) => ({ ...messagesBase(stream), tools: [{ name: "f", input_schema: { x: nested } }] }),
    tool_use: (nested, stream) => ({
      ...messagesBase(stream),
      messages: [
        { role: "user", content: "deep" },
        { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "f", input: { x: nested } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "done" }] },
      ],
    }),
  },
  expectError: expectAnthropicError,
  expectWhole(text) {
    const body = JSON.parse(text) as { type: string; role: string; content: Array<{ type: string }>; stop_reason: string };
    expect(body.type).toBe("message");
    expect(body.role).toBe("assistant");
    expect(Array.isArray(body.content)).toBe(true);
    expect(["end_turn", "max_tokens", "stop_sequence"]).toContain(body.stop_reason);
  },
  expectStream(text) {
    const events = namedEvents(text).filter((e) => e.event !== "ping");
    expect(events[0]?.event, text.slice(0, 300)).toBe("message_start");
    expect(events.at(-1)?.event, text.slice(-300)).toBe("message_stop");
    expect(events.some((e) => e.event === "error"), text.slice(-300)).toBe(false);
    const delta = events.find((e) => e.event === "message_delta")?.data as { delta?: { stop_reason?: string } } | undefined;
    expect(["end_turn", "max_tokens", "stop_sequence"]).toContain(delta?.delta?.stop_reason);
  },
};

const responsesRoute: FuzzRoute = {
  name: "responses",
  path: "/v1/responses",
  validBody: fc.record(
    {
      model: fc.constant("simulator"),
      input: fc.oneof(
        shortText,
        fc.array(fc.record({ role: fc.constantFrom("user", "assistant", "system", "developer"), content: fc.oneof(shortText, textParts("input_text")) }), {
          minLength: 1,
          maxLength: 3,
        }),
      ),
      instructions: shortText,
      max_output_tokens: fc.integer({ min: 1, max: 48 }),
      temperature: fc.double({ min: 0, max: 2, noNaN: true }),
      top_p: fc.double({ min: 0, max: 1, noNaN: true }),
      stream: fc.boolean(),
      tools: fc.array(fc.record({ type: fc.constant("function"), name: toolName, description: fc.string({ maxLength: 20 }), parameters: citySchema }), { maxLength: 2 }),
      tool_choice: fc.constantFrom("none", "auto"),
      parallel_tool_calls: fc.boolean(),
      reasoning: fc.record({ effort: fc.constantFrom("low", "high") }),
      store: fc.boolean(),
      metadata: fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.string({ maxLength: 10 }), { maxKeys: 2 }),
      text: fc.constant({ format: { type: "text" } }),
    },
    { requiredKeys: ["model", "input", "max_output_tokens"] },
  ),
  parse: (json) => parseResponsesRequest(json, LIMITS),
  template: '{"model":"simulator","input":"hello there","max_output_tokens":8}',
  nestings: {
    parameters: (nested, stream) => ({
      model: "simulator",
      input: "deep",
      max_output_tokens: 8,
      stream,
      tools: [{ type: "function", name: "f", parameters: { x: nested } }],
    }),
  },
  expectError: expectOpenAIError,
  expectWhole(text) {
    const body = JSON.parse(text) as { object: string; status: string; output: unknown[] };
    expect(body.object).toBe("response");
    expect(["completed", "incomplete"]).toContain(body.status);
    expect(Array.isArray(body.output)).toBe(true);
  },
  expectStream(text) {
    const events = namedEvents(text);
    expect(events[0]?.event, text.slice(0, 300)).toBe("response.created");
    expect(["response.completed", "response.incomplete"], text.slice(-300)).toContain(events.at(-1)?.event);
    expect(events.some((e) => e.event === "response.failed" || e.event === "error"), text.slice(-300)).toBe(false);
    const numbers = events.map((e) => e.data.sequence_number as number);
    expect(numbers).toEqual(numbers.map((_, i) => i));
  },
};

function expectOllamaError(_status: number, text: string): void {
  const body = JSON.parse(text) as { error?: unknown };
  expect(Object.keys(body), text).toEqual(["error"]);
  expectNoInternals(body.error, text);
}

const ollamaRoute: FuzzRoute = {
  name: "ollama chat",
  path: "/api/chat",
  anyContentType: true,
  validBody: fc.record(
    {
      model: fc.constant("simulator"),
      messages: fc.array(fc.record({ role: fc.constantFrom("system", "user", "assistant"), content: shortText }), { minLength: 1, maxLength: 3 }),
      stream: fc.boolean(),
      options: fc.record(
        {
          num_predict: fc.integer({ min: 1, max: 48 }),
          temperature: fc.double({ min: 0, max: 2, noNaN: true }),
          top_p: fc.double({ min: 0, max: 1, noNaN: true }),
          top_k: fc.integer({ min: 1, max: 100 }),
          seed: fc.integer(),
          stop: fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }),
          num_gpu: fc.integer({ min: 0, max: 99 }),
        },
        { requiredKeys: ["num_predict"] },
      ),
      think: fc.boolean(),
      format: fc.constant("json"),
      keep_alive: fc.constantFrom("5m", 0, -1),
      tools: fc.array(fc.record({ type: fc.constant("function"), function: fc.record({ name: toolName, description: fc.string({ maxLength: 20 }), parameters: citySchema }) }), { maxLength: 2 }),
    },
    { requiredKeys: ["model", "messages", "options"] },
  ),
  // A body with no messages is a load (or, with keep_alive 0, an unload) request: answered without a task.
  parse: (json) => (nothingToGenerate("/api/chat", json) && validKeepAlive(json) ? undefined : parseOllamaChat(json, LIMITS)),
  template: '{"model":"simulator","messages":[{"role":"user","content":"hello there"}],"stream":false,"options":{"num_predict":8}}',
  nestings: {
    parameters: (nested, stream) => ({
      model: "simulator",
      messages: [{ role: "user", content: "deep" }],
      stream,
      options: { num_predict: 8 },
      tools: [{ type: "function", function: { name: "f", parameters: { x: nested } } }],
    }),
    tool_calls: (nested, stream) => ({
      model: "simulator",
      stream,
      options: { num_predict: 8 },
      messages: [
        { role: "user", content: "deep" },
        { role: "assistant", content: "", tool_calls: [{ function: { name: "f", arguments: { x: nested } } }] },
        { role: "tool", content: "done", tool_name: "f" },
      ] as Json[],
    }),
  },
  expectError: expectOllamaError,
  expectWhole(text) {
    const body = JSON.parse(text) as { model: string; message: { role: string; content: unknown }; done: boolean; done_reason: string };
    expect(body.message.role).toBe("assistant");
    expect(typeof body.message.content).toBe("string");
    expect(body.done).toBe(true);
    // "load" and "unload" answer a request with no messages (see nothingToGenerate).
    expect(["stop", "length", "load", "unload"]).toContain(body.done_reason);
  },
  expectStream(text) {
    const lines = text.trim().split("\n").map((line) => JSON.parse(line) as { done?: boolean; error?: unknown; done_reason?: string });
    expect(lines.some((line) => line.error !== undefined), text.slice(-300)).toBe(false);
    expect(lines.at(-1)?.done, text.slice(-300)).toBe(true);
    expect(["stop", "length"]).toContain(lines.at(-1)?.done_reason);
  },
};

const completionsRoute: FuzzRoute = {
  name: "legacy completions",
  path: "/v1/completions",
  validBody: fc.record(
    {
      model: fc.constant("simulator"),
      prompt: fc.oneof(shortText, fc.array(shortText, { minLength: 1, maxLength: 1 })),
      max_tokens: fc.integer({ min: 1, max: 48 }),
      temperature: fc.double({ min: 0, max: 2, noNaN: true }),
      top_p: fc.double({ min: 0, max: 1, noNaN: true }),
      stop: fc.oneof(fc.string({ maxLength: 6 }), fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 })),
      seed: fc.integer(),
      echo: fc.boolean(),
      stream: fc.boolean(),
      stream_options: fc.record({ include_usage: fc.boolean() }),
      top_k: fc.integer({ min: 1, max: 100 }),
    },
    { requiredKeys: ["model", "prompt"] },
  ),
  parse: (json) => parseCompletion(json, LIMITS),
  template: '{"model":"simulator","prompt":"hello there","max_tokens":8}',
  nestings: {},
  expectError: expectOpenAIError,
  expectWhole(text) {
    const body = JSON.parse(text) as { object: string; choices: Array<{ text: unknown; finish_reason: string }> };
    expect(body.object).toBe("text_completion");
    expect(typeof body.choices[0]?.text).toBe("string");
    expect(["stop", "length"]).toContain(body.choices[0]?.finish_reason);
  },
  expectStream(text) {
    for (const chunk of dataChunks(text) as Array<{ object?: string }>) expect(chunk.object, JSON.stringify(chunk)).toBe("text_completion");
  },
};

const embeddingInput = fc.oneof(
  fc.string({ minLength: 1, maxLength: 40 }),
  fc.array(fc.string({ minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 4 }),
  fc.array(fc.nat({ max: 50_000 }), { minLength: 1, maxLength: 8 }),
  fc.array(fc.array(fc.nat({ max: 50_000 }), { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 3 }),
);

/** A whole embeddings answer: vectors of one length, unit length when given as floats. */
function expectVectors(vectors: unknown[]): void {
  const lengths = new Set(vectors.map((vector) => (typeof vector === "string" ? Buffer.from(vector, "base64").length / 4 : (vector as number[]).length)));
  expect(lengths.size).toBeLessThanOrEqual(1);
  for (const vector of vectors) if (Array.isArray(vector)) expect(Math.hypot(...(vector as number[]))).toBeCloseTo(1, 4);
}

const embeddingsRoute: FuzzRoute = {
  name: "embeddings",
  path: "/v1/embeddings",
  validBody: fc.record(
    {
      model: fc.constant("simulator"),
      input: embeddingInput,
      encoding_format: fc.constantFrom("float", "base64"),
      dimensions: fc.integer({ min: 1, max: 256 }),
      user: fc.string({ maxLength: 10 }),
    },
    { requiredKeys: ["model", "input"] },
  ),
  parse: (json) => embeddingsDialect.parse(json, LIMITS),
  template: '{"model":"simulator","input":["hello there","general kenobi"]}',
  nestings: {},
  expectError: expectOpenAIError,
  expectWhole(text) {
    const body = JSON.parse(text) as { object: string; data: Array<{ object: string; embedding: unknown }>; usage: { prompt_tokens: number } };
    expect(body.object).toBe("list");
    expect(body.data.every((item) => item.object === "embedding")).toBe(true);
    expectVectors(body.data.map((item) => item.embedding));
    expect(body.usage.prompt_tokens).toBeGreaterThanOrEqual(0);
  },
  expectStream(text) {
    throw new Error(`the embeddings route does not stream: ${text.slice(0, 100)}`);
  },
};

const ollamaEmbedRoute: FuzzRoute = {
  name: "ollama embed",
  path: "/api/embed",
  anyContentType: true,
  validBody: fc.record(
    {
      model: fc.constant("simulator"),
      input: fc.oneof(shortText, fc.array(shortText, { maxLength: 4 })),
      truncate: fc.boolean(),
      dimensions: fc.integer({ min: 1, max: 256 }),
      keep_alive: fc.constantFrom("5m", 0, -1),
      options: fc.record({ num_ctx: fc.integer({ min: 1, max: 4096 }) }),
    },
    { requiredKeys: ["model", "input"] },
  ),
  parse: (json) => ollamaEmbedDialect.parse(json, LIMITS),
  template: '{"model":"simulator","input":["hello there","general kenobi"]}',
  nestings: {},
  expectError: expectOllamaError,
  expectWhole(text) {
    const body = JSON.parse(text) as { model: string; embeddings: unknown[]; prompt_eval_count: number };
    expect(body.model).toBe("simulator");
    expectVectors(body.embeddings);
    expect(typeof body.prompt_eval_count).toBe("number");
  },
  expectStream(text) {
    throw new Error(`/api/embed does not stream: ${text.slice(0, 100)}`);
  },
};

const ROUTES: readonly FuzzRoute[] = [chatRoute, messagesRoute, responsesRoute, ollamaRoute, completionsRoute, embeddingsRoute, ollamaEmbedRoute];

describe("fuzzing the HTTP API", () => {
  let coordinator: RunningCoordinator;
  let worker: TestWorker;

  beforeAll(async () => {
    coordinator = await startTestCoordinator({ maxBodyBytes: MAX_BODY_BYTES, ...LIMITS });
    worker = await startSimWorker(coordinator, { tokensPerSecond: 0, maxConcurrency: 8 });
  });

  afterAll(async () => {
    await worker.stop();
    await coordinator.close();
  });

  describe.each(ROUTES.map((route) => [route.name, route] as const))("%s", (_name, route) => {
    /** What the server makes of the bytes (UTF-8 with replacement characters, like Request.text()) and whether the route takes it. */
    function acceptedByTheRoute(body: Uint8Array | string): boolean {
      const text = typeof body === "string" ? body : new TextDecoder().decode(body);
      try {
        route.parse(JSON.parse(text));
        return true;
      } catch {
        return false;
      }
    }

    /** Posts a body and checks the answer is sane: 2xx only for a valid body, else a 4xx in the route's shape; never 5xx. */
    async function postAndCheck(body: Uint8Array | string | null, contentType: string | null = "application/json"): Promise<number> {
      const headers: Record<string, string> = contentType === null ? {} : { "content-type": contentType };
      const response = await fetch(`${coordinator.url}${route.path}`, { method: "POST", headers, body, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      const text = await response.text();
      const status = response.status;
      const shown = `status ${status}: ${text.slice(0, 300)}`;
      expect(status < 500, shown).toBe(true);
      if (status >= 200 && status < 300) {
        expect(body !== null && acceptedByTheRoute(body), `2xx for a body the route refuses: ${shown}`).toBe(true);
        const type = response.headers.get("content-type") ?? "";
        if (type.startsWith("text/event-stream") || type.startsWith("application/x-ndjson")) route.expectStream(text);
        else route.expectWhole(text);
      } else {
        expect(status >= 400 && status < 500, shown).toBe(true);
        route.expectError(status, text);
      }
      return status;
    }

    it("answers random JSON with 2xx or a 4xx in the route's shape (property)", async () => {
      await fc.assert(
        fc.asyncProperty(fc.jsonValue(), async (value) => {
          await postAndCheck(JSON.stringify(value));
        }),
        { numRuns: 40 },
      );
    });

    it("answers mutated valid requests with a proper reply or a 4xx in the route's shape (property)", async () => {
      const statuses = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(route.validBody, fc.array(mutation, { maxLength: 4 }), async (body, mutations) => {
          const text = serialize(mutate(body, mutations));
          const status = await postAndCheck(text);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (mutations.length === 0) expect(status, text).toBe(200);
          if (utf8Length(text) > MAX_BODY_BYTES) expect(status).toBe(413);
        }),
        { numRuns: 120 },
      );
      // The generator must reach both sides of the boundary, or the property proves little.
      expect(statuses.get(200) ?? 0).toBeGreaterThan(5);
      expect(statuses.get(400) ?? 0).toBeGreaterThan(5);
    });

    it("survives invalid UTF-8 anywhere in the body (property)", async () => {
      const badBytes = fc.constantFrom(
        [0xc3, 0x28], [0xff], [0xfe, 0xff], [0xa0, 0xa1], [0xe2, 0x28, 0xa1], [0xf0, 0x28, 0x8c, 0xbc],
        [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xef, 0xbb, 0xbf], [0x00],
      );
      const template = Buffer.from(route.template);
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            // Spliced into a valid request, at a random offset (inside a string, or between tokens).
            fc.tuple(fc.nat({ max: template.length }), fc.array(badBytes, { minLength: 1, maxLength: 3 })).map(([at, inserts]) =>
              Uint8Array.from([...template.subarray(0, at), ...inserts.flat(), ...template.subarray(at)]),
            ),
            fc.uint8Array({ maxLength: 200 }),
          ),
          async (bytes) => {
            await postAndCheck(bytes);
          },
        ),
        { numRuns: 40 },
      );
    });

    it("refuses every content type but JSON with a 415, and answers an empty JSON body with a 400 (property)", async () => {
      const json = ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON;charset=UTF-8", "application/problem+json"];
      const notJson = [
        null, "", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
        "application/json; charset=latin1", "application/json; charset=utf-16", "application/octet-stream", "image/png",
      ];
      const body = fc.oneof(route.validBody.map((b) => JSON.stringify(b)), fc.string({ maxLength: 50 }), fc.constant(""));
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...json, ...notJson), body, async (type, text) => {
          const status = await postAndCheck(text, type);
          if (route.anyContentType) expect(status).not.toBe(415);
          else if (type === null || !json.includes(type)) expect(status).toBe(415);
          if (text === "" && (route.anyContentType || (type !== null && json.includes(type)))) expect(status).toBe(400);
        }),
        { numRuns: 30 },
      );
      expect(await postAndCheck(null)).toBe(400);
      expect(await postAndCheck(null, null)).toBe(route.anyContentType ? 400 : 415);
    });

    it("refuses bodies over the limit with 413, whether or not they announce their length (property)", async () => {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: MAX_BODY_BYTES + 1, max: MAX_BODY_BYTES * 4 }), fc.boolean(), async (size, chunked) => {
          const bytes = Buffer.alloc(size, "a");
          const body = chunked
            ? new ReadableStream<Uint8Array>({
                start(controller) {
                  for (let at = 0; at < bytes.length; at += 16_384) controller.enqueue(bytes.subarray(at, at + 16_384));
                  controller.close();
                },
              })
            : bytes;
          const response = await fetch(`${coordinator.url}${route.path}`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body,
            duplex: "half",
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
          } as RequestInit);
          expect(response.status).toBe(413);
          route.expectError(413, await response.text());
        }),
        { numRuns: 8 },
      );
    });

    // Only routes with free-form JSON fields (chat's tools and template arguments, …) forward nesting to a worker.
    if (Object.keys(route.nestings).length === 0) return;
    it("passes free-form JSON through to the worker, and refuses nesting too deep to forward (property)", async () => {
      const depth = fc.oneof(fc.integer({ min: 1, max: 2 * MAX_PASS_THROUGH_DEPTH }), fc.integer({ min: 1, max: 12_000 }));
      const fields = Object.keys(route.nestings);
      await fc.assert(
        fc.asyncProperty(depth, fc.constantFrom(...fields), fc.boolean(), async (levels, field, stream) => {
          const nested = new Raw("[".repeat(levels) + "]".repeat(levels));
          const status = await postAndCheck(serialize(route.nestings[field]?.(nested, stream) ?? {}));
          // The object holding `x` is one level; `x` adds `levels` more.
          expect(status).toBe(1 + levels <= MAX_PASS_THROUGH_DEPTH ? 200 : 400);
        }),
        { numRuns: 25 },
      );
    });
  });

  it.each(DIALECTS.map((dialect) => [dialect.name, dialect] as const))(
    "still serves well-formed requests through the %s SDK, and holds no task",
    async (_name, dialect) => {
      const whole = await dialect.complete(coordinator, [{ role: "user", content: "still fine?" }]);
      expect(whole).toContain("still fine?");

      let streamed = "";
      for await (const text of dialect.streamText(coordinator, [{ role: "user", content: "and streaming?" }], new AbortController().signal)) streamed += text;
      expect(streamed).toContain("and streaming?");
      await eventually(() => coordinator.master.liveTasks === 0, "no task left in the master");
    },
  );
});
