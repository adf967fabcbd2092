// Fuzzing both trust boundaries: whatever a client posts or a worker sends, the coordinator answers 4xx or drops
// that one peer (never a 500, a crash or a hang), and well-behaved traffic carries on beside it.
import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_PASS_THROUGH_DEPTH, parseChatRequest } from "../src/api/chat-request.js";
import type { RunningCoordinator } from "../src/coordinator.js";
import { CloseCode, decodeWorkerMessage, PROTOCOL_VERSION } from "../src/worker-protocol/index.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, TEST_TOKEN, type TestWorker } from "./support/cluster.js";
import { connectPeer, hello } from "./support/peer.js";

// ---------- JSON with holes: values a serializer would never write, and mutations of valid messages ----------

/** JSON text spliced in as is: number literals JSON.stringify cannot write, deep nesting, escaped lone surrogates. */
class Raw {
  constructor(readonly text: string) {}
}
type Json = null | boolean | number | string | Raw | Json[] | { [key: string]: Json };

function serialize(value: Json): string {
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return `[${value.map(serialize).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${serialize(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

const rawLiterals = ["-0", "-0.0", "1e308", "-1e308", "1e999", "-1e999", "5e-324", "1E+2", "123456789012345678901234567890"];
const escapedSurrogates = ['"\\ud800"', '"\\udfff"', '"a\\ud83d"', '"\\ude00\\ud83d"', '"\\u0000"'];
const oddStrings = [
  "NaN", "Infinity", "-Infinity", "1e400", "0x1F", "１２", "", " ", "\u0000", "\u202e", "🙂", "👩‍👩‍👧‍👦",
  "<think>", "</think>", "data: [DONE]\n\n", "\r\n\r\n", "__proto__", "SIMULATOR",
];

const surrogateSoup = fc.string({ unit: fc.constantFrom("\ud800", "\udbff", "\udc00", "\udfff", "a", "🙂", "é"), maxLength: 40 });
const hugeString = fc
  .record({ length: fc.integer({ min: 1_000, max: 300_000 }), unit: fc.constantFrom("x", "é", "🙂", "\ud800") })
  .map(({ length, unit }) => unit.repeat(Math.ceil(length / unit.length)));
const deepNest = fc
  .record({ depth: fc.integer({ min: 10, max: 30_000 }), kind: fc.constantFrom("array", "object") })
  .map(({ depth, kind }) =>
    new Raw(kind === "array" ? "[".repeat(depth) + "]".repeat(depth) : '{"a":'.repeat(depth) + "1" + "}".repeat(depth)),
  );

const weirdValue: fc.Arbitrary<Json> = fc.oneof(
  { arbitrary: fc.constantFrom<Json>(null, true, false, 0, -1, 0.5, 2.5, 4097, [], {}, [{}], { "0": 0 }), weight: 4 },
  { arbitrary: fc.constantFrom(...rawLiterals, ...escapedSurrogates).map((text) => new Raw(text)), weight: 3 },
  { arbitrary: fc.constantFrom(...oddStrings), weight: 3 },
  { arbitrary: surrogateSoup, weight: 2 },
  { arbitrary: fc.string({ unit: "grapheme", maxLength: 30 }), weight: 2 },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>, weight: 2 },
  { arbitrary: hugeString, weight: 1 },
  { arbitrary: deepNest, weight: 1 },
);

interface Mutation {
  op: "delete" | "replace" | "wrap" | "add" | "stringify";
  at: number;
  key: string;
  value: Json;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  op: fc.constantFrom("delete", "replace", "replace", "wrap", "add", "stringify"),
  at: fc.nat(),
  key: fc.oneof(fc.constantFrom("__proto__", "constructor", "model", "messages", "role", "content", "type", ""), fc.string({ maxLength: 8 })),
  value: weirdValue,
});

type Container = Json[] | { [key: string]: Json };

function isContainer(value: Json | undefined): value is Container {
  return value !== null && typeof value === "object" && !(value instanceof Raw);
}

/** Every (container, key) slot in the tree, parents before children. */
function slots(root: Container): Array<{ parent: Container; key: string }> {
  const out: Array<{ parent: Container; key: string }> = [];
  const visit = (node: Container) => {
    for (const key of Object.keys(node)) {
      out.push({ parent: node, key });
      const child = (node as Record<string, Json>)[key];
      if (isContainer(child)) visit(child);
    }
  };
  visit(root);
  return out;
}

function put(parent: Container, key: string, value: Json): void {
  // defineProperty, so a "__proto__" key becomes a plain field (as JSON.parse makes it) rather than a prototype.
  Object.defineProperty(parent, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * A fresh copy of a generated value: fast-check hands out the same instance of a constant (`[]`, `{}`) to every
 * mutation and run, and inserting it twice into a tree being mutated would make the tree cyclic.
 */
function fresh(value: Json): Json {
  if (value instanceof Raw || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map(fresh);
  const out: { [key: string]: Json } = {};
  for (const [key, child] of Object.entries(value)) put(out, key, fresh(child));
  return out;
}

/** Applies the mutations to a copy of `base` (a plain JSON object). */
function mutate(base: object, mutations: readonly Mutation[]): Json {
  const root = JSON.parse(JSON.stringify(base)) as Container;
  for (const m of mutations) {
    const all = slots(root);
    const slot = all[m.at % Math.max(1, all.length)];
    if (!slot) break;
    const { parent, key } = slot;
    const current = (parent as Record<string, Json>)[key] as Json;
    switch (m.op) {
      case "delete":
        if (Array.isArray(parent)) parent.splice(Number(key), 1);
        else delete parent[key];
        break;
      case "replace":
        put(parent, key, fresh(m.value));
        break;
      case "wrap":
        put(parent, key, [current]);
        break;
      case "add":
        if (Array.isArray(current)) current.push(fresh(m.value));
        else if (isContainer(current)) put(current, m.key, fresh(m.value));
        else put(parent, key, { [m.key]: fresh(m.value) });
        break;
      case "stringify":
        put(parent, key, serialize(current));
        break;
    }
  }
  return root;
}

function utf8Length(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/** Resolves with `promise`, or rejects after `ms` saying what never happened. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------- the HTTP API ----------

const MAX_BODY_BYTES = 64 * 1024;
const LIMITS = { maxMessages: 16, maxPromptChars: 16_000 };
const REQUEST_TIMEOUT_MS = 10_000;

const chatMessage = fc.record({
  role: fc.constantFrom("system", "developer", "user", "assistant"),
  content: fc.oneof(
    fc.string({ unit: "grapheme", maxLength: 40 }),
    fc.array(fc.record({ type: fc.constant("text"), text: fc.string({ maxLength: 20 }) }), { maxLength: 2 }),
  ),
});

const tool = fc.record({
  type: fc.constant("function"),
  function: fc.record({
    name: fc.stringMatching(/^[a-z_]{1,12}$/),
    description: fc.string({ maxLength: 20 }),
    parameters: fc.constant({ type: "object", properties: { city: { type: "string" } } }),
  }),
});

/** A body the API must accept. */
const validBody = fc.record(
  {
    model: fc.constant("simulator"),
    messages: fc.array(chatMessage, { minLength: 1, maxLength: 3 }),
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
    tools: fc.array(tool, { maxLength: 2 }),
    tool_choice: fc.constantFrom("none", "auto"),
    parallel_tool_calls: fc.boolean(),
    reasoning_effort: fc.constantFrom("low", "high"),
    chat_template_kwargs: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
  },
  { requiredKeys: ["model", "messages", "max_tokens"] },
);

/** What the server makes of the bytes: UTF-8 with replacement characters, like Request.text(). */
function acceptedByTheSchema(body: Uint8Array | string): boolean {
  const text = typeof body === "string" ? body : new TextDecoder().decode(body);
  try {
    parseChatRequest(JSON.parse(text), LIMITS);
    return true;
  } catch {
    return false;
  }
}

function expectOpenAIError(status: number, text: string): void {
  const body = JSON.parse(text) as { error?: Record<string, unknown> };
  expect(Object.keys(body)).toEqual(["error"]);
  const error = body.error ?? {};
  expect(Object.keys(error).sort(), text).toEqual(["code", "message", "param", "type"]);
  expect(typeof error.message === "string" && error.message.length > 0, text).toBe(true);
  expect(error.type).toBe(status === 401 ? "authentication_error" : status === 429 ? "rate_limit_error" : "invalid_request_error");
  expect(error.param === null || typeof error.param === "string").toBe(true);
  expect(error.code === null || typeof error.code === "string").toBe(true);
  expect(error.message as string).not.toMatch(/\n\s+at |node_modules|\/src\//);
}

function expectCompletion(text: string): void {
  const body = JSON.parse(text) as { object: string; choices: Array<{ message: { role: string; content: unknown }; finish_reason: string }> };
  expect(body.object).toBe("chat.completion");
  expect(body.choices).toHaveLength(1);
  expect(body.choices[0]?.message.role).toBe("assistant");
  expect(typeof body.choices[0]?.message.content).toBe("string");
  expect(["stop", "length"]).toContain(body.choices[0]?.finish_reason);
}

function expectStream(text: string): void {
  const data = text
    .split("\n\n")
    .filter((frame) => frame.startsWith("data: "))
    .map((frame) => frame.slice("data: ".length));
  expect(data.at(-1), text.slice(-300)).toBe("[DONE]");
  const chunks = data.slice(0, -1).map((json) => JSON.parse(json) as { object?: string; error?: unknown; choices: Array<{ finish_reason: string | null }> });
  for (const chunk of chunks) {
    expect(chunk.error, JSON.stringify(chunk)).toBeUndefined();
    expect(chunk.object).toBe("chat.completion.chunk");
  }
  expect(chunks.some((c) => c.choices[0]?.finish_reason === "stop" || c.choices[0]?.finish_reason === "length")).toBe(true);
}

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

  /** Posts a body and checks the answer is sane: 2xx only for a valid body, else an OpenAI-shaped 4xx; never 5xx. */
  async function postAndCheck(body: Uint8Array | string | null, contentType: string | null = "application/json"): Promise<number> {
    const headers: Record<string, string> = contentType === null ? {} : { "content-type": contentType };
    const response = await fetch(`${coordinator.url}/v1/chat/completions`, {
      method: "POST",
      headers,
      body,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await response.text();
    const status = response.status;
    const shown = `status ${status}: ${text.slice(0, 300)}`;
    expect(status < 500, shown).toBe(true);
    if (status >= 200 && status < 300) {
      expect(body !== null && acceptedByTheSchema(body), `2xx for a body the schema refuses: ${shown}`).toBe(true);
      if (response.headers.get("content-type")?.startsWith("text/event-stream")) expectStream(text);
      else expectCompletion(text);
    } else {
      expect(status >= 400 && status < 500, shown).toBe(true);
      expectOpenAIError(status, text);
    }
    return status;
  }

  it("answers random JSON with 2xx or an OpenAI-shaped 4xx (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (value) => {
        await postAndCheck(JSON.stringify(value));
      }),
      { numRuns: 60 },
    );
  });

  it("answers mutated valid requests with a proper completion or an OpenAI-shaped 4xx (property)", async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(validBody, fc.array(mutation, { maxLength: 4 }), async (body, mutations) => {
        const text = serialize(mutate(body, mutations));
        const status = await postAndCheck(text);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        if (mutations.length === 0) expect(status).toBe(200);
        if (utf8Length(text) > MAX_BODY_BYTES) expect(status).toBe(413);
      }),
      { numRuns: 150 },
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
    const template = Buffer.from('{"model":"simulator","messages":[{"role":"user","content":"hello there"}],"max_tokens":8}');
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
      { numRuns: 60 },
    );
  });

  it("refuses every content type but JSON with a 415, and answers an empty JSON body with a 400 (property)", async () => {
    const json = ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON;charset=UTF-8", "application/problem+json"];
    const notJson = [
      null, "", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
      "application/json; charset=latin1", "application/json; charset=utf-16", "application/octet-stream", "image/png",
    ];
    const body = fc.oneof(validBody.map((b) => JSON.stringify(b)), fc.string({ maxLength: 50 }), fc.constant(""));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...json, ...notJson), body, async (type, text) => {
        const status = await postAndCheck(text, type);
        if (type === null || !json.includes(type)) expect(status).toBe(415);
        else if (text === "") expect(status).toBe(400);
      }),
      { numRuns: 40 },
    );
    expect(await postAndCheck(null)).toBe(400);
    expect(await postAndCheck(null, null)).toBe(415);
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
        const response = await fetch(`${coordinator.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
          duplex: "half",
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        } as RequestInit);
        expect(response.status).toBe(413);
        expectOpenAIError(413, await response.text());
      }),
      { numRuns: 12 },
    );
  });

  it("passes free-form JSON through to the worker, and refuses nesting too deep to forward (property)", async () => {
    const depth = fc.oneof(fc.integer({ min: 1, max: 2 * MAX_PASS_THROUGH_DEPTH }), fc.integer({ min: 1, max: 12_000 }));
    await fc.assert(
      fc.asyncProperty(depth, fc.constantFrom("chat_template_kwargs", "tools"), fc.boolean(), async (levels, field, stream) => {
        const nested = new Raw("[".repeat(levels) + "]".repeat(levels));
        const body: { [key: string]: Json } = { model: "simulator", messages: [{ role: "user", content: "deep" }], max_tokens: 8, stream };
        if (field === "chat_template_kwargs") body.chat_template_kwargs = { x: nested };
        else body.tools = [{ type: "function", function: { name: "f", parameters: { x: nested } } }];
        const status = await postAndCheck(serialize(body));
        // The object holding `x` is one level; `x` adds `levels` more.
        expect(status).toBe(1 + levels <= MAX_PASS_THROUGH_DEPTH ? 200 : 400);
      }),
      { numRuns: 40 },
    );
  });

  it("still serves a well-formed request through the openai SDK, and holds no task", async () => {
    const client = openaiClient(coordinator);
    const completion = await client.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "still fine?" }] });
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(completion.choices[0]?.message.content).toContain("still fine?");

    let streamed = "";
    const stream = await client.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "and streaming?" }], stream: true });
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta.content ?? "";
    expect(streamed).toContain("and streaming?");
    await eventually(() => coordinator.master.liveTasks === 0, "no task left in the master");
  });
});

// ---------- the worker protocol ----------

const MAX_WORKER_PAYLOAD = 64 * 1024;

interface Frame {
  data: string | Buffer;
  binary?: boolean;
}

/** What the master must do with a frame: the close code, and the ProtocolError it sends first (if any). */
interface Expected {
  code: number;
  error?: string;
  /** The first frame was accepted: the connection stayed open until the probe that follows it. */
  kept?: boolean;
}

/** The oracle for a frame sent before Hello; a valid Hello is kept, and the probe Hello after it is a duplicate. */
function expectedBeforeHello(text: string): Expected {
  if (utf8Length(text) > MAX_WORKER_PAYLOAD) return { code: CloseCode.tooLarge };
  const decoded = decodeWorkerMessage(text);
  // A Hello that lacks a token (as a string) is refused as unauthorized, whatever else is wrong with it.
  if (!decoded.ok) return helloWithoutToken(text) ? { code: CloseCode.unauthorized, error: "unauthorized" } : { code: CloseCode.protocolError, error: "invalid_message" };
  const message = decoded.message;
  if (message.type !== "Hello") return { code: CloseCode.protocolError, error: "hello_expected" };
  if (message.protocolVersion !== PROTOCOL_VERSION) return { code: CloseCode.unsupportedVersion, error: "unsupported_version" };
  if (message.token !== TEST_TOKEN) return { code: CloseCode.unauthorized, error: "unauthorized" };
  return { code: CloseCode.protocolError, error: "duplicate_hello", kept: true };
}

function helloWithoutToken(text: string): boolean {
  try {
    const json = JSON.parse(text) as unknown;
    return typeof json === "object" && json !== null && (json as { type?: unknown }).type === "Hello" && typeof (json as { token?: unknown }).token !== "string";
  } catch {
    return false;
  }
}

/** The oracle for a frame sent after a valid Hello by a worker that holds no task; the probe is an ack for an unknown task. */
function expectedAfterHello(text: string): Expected {
  if (utf8Length(text) > MAX_WORKER_PAYLOAD) return { code: CloseCode.tooLarge };
  const decoded = decodeWorkerMessage(text);
  if (!decoded.ok) return { code: CloseCode.protocolError, error: "invalid_message" };
  switch (decoded.message.type) {
    case "Hello":
      return { code: CloseCode.protocolError, error: "duplicate_hello" };
    case "Heartbeat":
    case "Draining":
      return { code: CloseCode.protocolError, error: "unknown_task", kept: true };
    default:
      return { code: CloseCode.protocolError, error: "unknown_task", kept: false };
  }
}

const baseMessages: ReadonlyArray<Record<string, unknown>> = [
  { type: "TokenChunk", taskId: "task-fuzz", seq: 0, text: "x", tokens: 1 },
  { type: "TaskFinished", taskId: "task-fuzz", finishReason: "stop", usage: { promptTokens: 1, completionTokens: 1 } },
  { type: "TaskFailed", taskId: "task-fuzz", error: { message: "boom", code: "engine_error" } },
  { type: "TaskCancelAck", taskId: "task-fuzz", completionTokens: 3 },
  { type: "TaskProgress", taskId: "task-fuzz", promptTokensDone: 10, promptTokens: 20 },
  { type: "Heartbeat", at: 1_764_000_000_000, running: 0 },
  { type: "Draining" },
];

/** A (possibly) broken message: a protocol message as is or with 1–3 mutations, or any JSON, or not JSON at all. */
const fuzzFrame = (bases: ReadonlyArray<object>): fc.Arbitrary<string> =>
  fc.oneof(
    { arbitrary: fc.constantFrom(...bases).map((base) => JSON.stringify(base)), weight: 2 },
    { arbitrary: fc.tuple(fc.constantFrom(...bases), fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([base, m]) => serialize(mutate(base, m))), weight: 6 },
    { arbitrary: fc.jsonValue().map((value) => JSON.stringify(value)), weight: 1 },
    { arbitrary: fc.string({ maxLength: 40 }), weight: 1 },
  );

describe("fuzzing the worker protocol", () => {
  let coordinator: RunningCoordinator;
  let legit: TestWorker;
  const legitName = `legit-${randomUUID()}`;
  let stopTraffic = false;
  let traffic: Promise<Array<{ content: string; finish: string | null }>>;

  /** Well-formed streaming requests, one after another, until told to stop. */
  async function legitTraffic(): Promise<Array<{ content: string; finish: string | null }>> {
    const client = openaiClient(coordinator);
    const results: Array<{ content: string; finish: string | null }> = [];
    for (let i = 0; !stopTraffic || i === 0; i++) {
      const stream = await client.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: `request ${i}` }], stream: true });
      let content = "";
      let finish: string | null = null;
      for await (const chunk of stream) {
        content += chunk.choices[0]?.delta.content ?? "";
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      results.push({ content, finish });
    }
    return results;
  }

  beforeAll(async () => {
    // Many generated Hellos carry wrong or no tokens: the per-address ban (its own test) would turn the rest away.
    coordinator = await startTestCoordinator({ maxWorkerPayload: MAX_WORKER_PAYLOAD, workerTokenFailures: 0 });
    legit = await startSimWorker(coordinator, { name: legitName, tokensPerSecond: 400, replyTokens: 30 });
    traffic = legitTraffic();
    traffic.catch(() => {}); // awaited (and its failure reported) by the last test
    await legit.log.until(() => legit.log.started.length > 0, "the legit worker to take a task");
  });

  afterAll(async () => {
    stopTraffic = true;
    await traffic.catch(() => {});
    await legit.stop();
    await coordinator.close();
  });

  /** Sends the frames on a fresh connection and reports how the master ended it; it must end it. */
  async function exchange(frames: readonly Frame[]) {
    const peer = await connectPeer(coordinator);
    try {
      for (const frame of frames) peer.socket.send(frame.data, { binary: frame.binary ?? false });
      const { code } = await within(peer.closed, 5_000, "the master to close the connection");
      return {
        code,
        error: peer.received.find((m) => m.type === "ProtocolError"),
        welcomed: peer.received.some((m) => m.type === "Welcome"),
      };
    } finally {
      peer.socket.terminate();
    }
  }

  function checkOutcome(outcome: Awaited<ReturnType<typeof exchange>>, expected: Expected, probeTaskId?: string): void {
    expect(outcome.code).toBe(expected.code);
    if (expected.error === undefined) {
      expect(outcome.error).toBeUndefined();
      return;
    }
    expect(outcome.error?.code).toBe(expected.error);
    if (probeTaskId !== undefined && expected.kept !== undefined) {
      expect(String(outcome.error?.message).includes(probeTaskId), `kept=${expected.kept}: ${String(outcome.error?.message)}`).toBe(expected.kept);
    }
  }

  it("refuses a broken first message, and welcomes a valid Hello (property)", async () => {
    const rogueHello = { ...hello(), worker: { ...hello().worker, name: `fuzz-${randomUUID()}` } };
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.oneof({ arbitrary: fuzzFrame([rogueHello]), weight: 3 }, fuzzFrame(baseMessages)), async (text) => {
        fc.pre(!text.includes("simulator")); // a rogue must never offer the model the legit traffic asks for
        const expected = expectedBeforeHello(text);
        const outcome = await exchange([{ data: text }, { data: JSON.stringify(hello()) }]);
        checkOutcome(outcome, expected);
        expect(outcome.welcomed).toBe(expected.kept === true);
        const label = expected.kept ? "kept" : (expected.error ?? String(expected.code));
        seen.set(label, (seen.get(label) ?? 0) + 1);
      }),
      { numRuns: 120, examples: [[JSON.stringify(rogueHello)], ...baseMessages.map((base) => [JSON.stringify(base)] as [string])] },
    );
    // Both sides of the boundary must be reached, or the property proves little.
    expect(seen.get("kept") ?? 0).toBeGreaterThan(3);
    expect(seen.get("invalid_message") ?? 0).toBeGreaterThan(3);
  });

  it("refuses broken messages after Hello, and keeps the connection for valid ones (property)", async () => {
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fuzzFrame([hello(), ...baseMessages]), async (text) => {
        const probeTaskId = `probe-${randomUUID()}`;
        const outcome = await exchange([
          { data: JSON.stringify(hello()) },
          { data: text },
          { data: JSON.stringify({ type: "TaskCancelAck", taskId: probeTaskId }) },
        ]);
        const expected = expectedAfterHello(text);
        checkOutcome(outcome, expected, probeTaskId);
        const label = expected.kept ? "kept" : (expected.error ?? String(expected.code));
        seen.set(label, (seen.get(label) ?? 0) + 1);
      }),
      // Every message as is, on top of the generated ones: both sides of the boundary are reached by design, not by
      // luck (only Heartbeat and Draining keep the connection: ~6 % of the generated frames).
      { numRuns: 150, examples: [hello(), ...baseMessages].map((base) => [JSON.stringify(base)] as [string]) },
    );
    expect(seen.get("kept") ?? 0).toBeGreaterThan(3);
    expect(seen.get("unknown_task") ?? 0).toBeGreaterThan(3);
    expect(seen.get("invalid_message") ?? 0).toBeGreaterThan(3);
  });

  it("disconnects a worker that reports on the legit worker's tasks (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...baseMessages.slice(0, 4)), fc.nat(), async (base, pick) => {
        const stolen = legit.log.started[pick % legit.log.started.length] as string;
        const outcome = await exchange([{ data: JSON.stringify(hello()) }, { data: JSON.stringify({ ...base, taskId: stolen }) }]);
        checkOutcome(outcome, { code: CloseCode.protocolError, error: "unknown_task" });
        expect(String(outcome.error?.message)).toContain(stolen);
      }),
      { numRuns: 30 },
    );
  });

  it("refuses binary frames, oversize frames and invalid UTF-8 text, before and after Hello (property)", async () => {
    const kind = fc.oneof(
      fc.uint8Array({ maxLength: 256 }).map((bytes) => ({ frame: { data: Buffer.from(bytes), binary: true }, expected: { code: CloseCode.protocolError, error: "binary_frame" } })),
      fc.constant({ frame: { data: Buffer.from(JSON.stringify(hello())), binary: true }, expected: { code: CloseCode.protocolError, error: "binary_frame" } }),
      fc.tuple(fc.integer({ min: MAX_WORKER_PAYLOAD + 1, max: MAX_WORKER_PAYLOAD * 3 }), fc.boolean()).map(([size, binary]) => ({
        frame: { data: Buffer.alloc(size, "{"), binary },
        expected: { code: CloseCode.tooLarge },
      })),
      fc.constantFrom([0xc3, 0x28], [0xff], [0xed, 0xa0, 0x80], [0xc0, 0xaf]).map((bad) => ({
        frame: { data: Buffer.from([...Buffer.from('{"type":"Heartbeat","at":1,"x":"'), ...bad, ...Buffer.from('"}')]), binary: false },
        expected: { code: 1007 }, // RFC 6455 "invalid frame payload data": ws refuses it before the master sees it
      })),
    );
    await fc.assert(
      fc.asyncProperty(kind, fc.boolean(), async ({ frame, expected }, afterHello) => {
        const frames: Frame[] = afterHello ? [{ data: JSON.stringify(hello()) }, frame] : [frame];
        checkOutcome(await exchange(frames), expected);
      }),
      { numRuns: 40 },
    );
  });

  it("served the legit traffic throughout, and lists only the legit worker with no task left", async () => {
    stopTraffic = true;
    const results = await within(traffic, 20_000, "the legit traffic to end");
    expect(results.length).toBeGreaterThan(1);
    for (const result of results) {
      expect(result.finish).toBe("stop");
      expect(result.content).toContain("you said");
    }
    await eventually(() => coordinator.master.snapshot().workers.length === 1, "the rogue workers to be gone");
    expect(coordinator.master.snapshot().workers.map((w) => w.name)).toEqual([legitName]);
    await eventually(() => coordinator.master.liveTasks === 0, "no task left in the master");
    expect((await fetch(`${coordinator.url}/health`)).status).toBe(200);
  });
});
