// The upstream engine against a real HTTP server (node:http, port 0) that speaks OpenAI's streaming chat completions.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GenerationRequest, type GenerationResult, textSink } from "../src/worker/engines/engine.js";
import { DEFAULT_CONTEXT_LENGTH, OpenAIUpstreamEngine, UPSTREAM_CAPABILITIES } from "../src/worker/engines/openai-upstream.js";

interface SeenRequest {
  method: string;
  url: string;
  authorization: string | undefined;
  body: Record<string, unknown> | undefined;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown> | undefined) => void | Promise<void>;

let server: Server;
let baseUrl: string;
const seen: SeenRequest[] = [];
/** What the fake upstream does for a chat completion, chosen by the request's model name. */
const chatHandlers = new Map<string, Handler>();
let modelsHandler: Handler;

beforeAll(async () => {
  server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
});

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  let raw = "";
  for await (const chunk of req) raw += String(chunk);
  const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
  seen.push({ method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization, body });
  if (req.url === "/v1/models") return modelsHandler(req, res, body);
  const handler = chatHandlers.get(String(body?.model));
  if (!handler) {
    res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "no such model" } }));
    return;
  }
  await handler(req, res, body);
}

/** Writes each piece as its own socket write, letting the event loop turn between them. */
async function writeInPieces(res: ServerResponse, pieces: string[]): Promise<void> {
  res.writeHead(200, { "content-type": "text/event-stream" });
  for (const piece of pieces) {
    res.write(piece);
    await new Promise((resolve) => setImmediate(resolve));
  }
  res.end();
}

const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
  JSON.stringify({ object: "chat.completion.chunk", choices: [{ index: 0, delta, finish_reason: finishReason }] });

function request(model: string, extra: Partial<GenerationRequest> = {}): GenerationRequest {
  return { taskId: "t1", model, messages: [{ role: "user", content: "hi" }], params: {}, ...extra };
}

async function run(engine: OpenAIUpstreamEngine, req: GenerationRequest, signal = new AbortController().signal) {
  const pieces: string[] = [];
  const result: GenerationResult = await engine.generate(req, textSink((text) => pieces.push(text)), signal);
  return { text: pieces.join(""), pieces, result };
}

const engine = () => new OpenAIUpstreamEngine({ baseUrl, models: [], maxConcurrency: 4, apiKey: "sk-test" });

describe("OpenAIUpstreamEngine", () => {
  it("discovers the upstream's models and their context lengths from whichever field the server fills", async () => {
    modelsHandler = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({
          object: "list",
          data: [
            { id: "llama-server-model", object: "model", owned_by: "llamacpp", meta: { n_ctx_train: 8192 } },
            { id: "vllm-model", object: "model", max_model_len: 32768 },
            { id: "ollama-model", object: "model", context_length: "not a number" },
          ],
        }),
      );
    };

    const description = await engine().start();
    const named = await new OpenAIUpstreamEngine({ baseUrl: `${baseUrl}/`, models: ["vllm-model", "other"], maxConcurrency: 1 }).start();

    expect(description.device.kind).toBe("remote");
    const capabilities = [...UPSTREAM_CAPABILITIES];
    expect(description.models).toEqual([
      { id: "llama-server-model", contextLength: 8192, format: "hermes", ownedBy: "llamacpp", capabilities },
      { id: "vllm-model", contextLength: 32768, format: "hermes", capabilities },
      { id: "ollama-model", contextLength: DEFAULT_CONTEXT_LENGTH, format: "hermes", capabilities },
    ]);
    expect(named.models.map((m) => [m.id, m.contextLength])).toEqual([
      ["vllm-model", 32768],
      ["other", DEFAULT_CONTEXT_LENGTH],
    ]);
    expect(seen.find((r) => r.url === "/v1/models")?.authorization).toBe("Bearer sk-test");
  });

  it("streams content, decoding SSE split anywhere, with CRLF, comments and multi-line data, and takes usage from the last chunk", async () => {
    chatHandlers.set("plain", (_req, res) =>
      writeInPieces(res, [
        ": keep-alive comment\r\n\r\n",
        `data: ${chunk({ role: "assistant", content: "" })}\r\n\r`,
        `\ndata: ${chunk({ content: "Hel" })}\r\n\r\n`,
        `data: ${chunk({ content: "lo" })}\n\nda`,
        `ta: {"choices": [{"index": 0, "delta":\ndata:  {"content": ", world"}, "finish_reason": "length"}]}\n\n`,
        `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 } })}\n\n`,
        "data: [DONE]\n\n",
      ]),
    );

    const { text, result } = await run(
      engine(),
      request("plain", { params: { maxTokens: 20, temperature: 0.5, topP: 0.9, stop: ["END"], seed: 3 } }),
    );

    expect(text).toBe("Hello, world");
    expect(result).toEqual({ finishReason: "length", usage: { promptTokens: 11, completionTokens: 3 } });
    const sent = seen.findLast((r) => r.url === "/v1/chat/completions");
    expect(sent?.authorization).toBe("Bearer sk-test");
    expect(sent?.body).toEqual({
      model: "plain",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 20,
      temperature: 0.5,
      top_p: 0.9,
      stop: ["END"],
      seed: 3,
    });
  });

  it("puts reasoning the upstream separated back into <think> tags, and counts chunks when no usage comes", async () => {
    chatHandlers.set("reasoner", (_req, res) =>
      writeInPieces(res, [
        `data: ${chunk({ reasoning_content: "The user" })}\n\n`,
        `data: ${chunk({ reasoning_content: " says hi." })}\n\n`,
        `data: ${chunk({ content: "Hello!" })}\n\n`,
        `data: ${chunk({}, "stop")}\n\n`,
        "data: [DONE]\n\n",
      ]),
    );
    chatHandlers.set("ollama-reasoner", (_req, res) =>
      writeInPieces(res, [`data: ${chunk({ reasoning: "Hmm." })}\n\n`, "data: [DONE]\n\n"]),
    );

    const separated = await run(engine(), request("reasoner"));
    const unfinished = await run(engine(), request("ollama-reasoner"));

    expect(separated.text).toBe("<think>The user says hi.</think>Hello!");
    expect(separated.result).toEqual({ finishReason: "stop", usage: { promptTokens: 0, completionTokens: 3 } });
    expect(unfinished.text).toBe("<think>Hmm.</think>");
  });

  it("writes tool calls the upstream parsed as Hermes <tool_call> blocks", async () => {
    chatHandlers.set("tools", (_req, res) =>
      writeInPieces(res, [
        `data: ${chunk({ tool_calls: [{ index: 0, id: "c1", type: "function", function: { name: "get_weather", arguments: "" } }] })}\n\n`,
        `data: ${chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city": ' } }] })}\n\n`,
        `data: ${chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] })}\n\n`,
        `data: ${chunk({ tool_calls: [{ index: 1, id: "c2", type: "function", function: { name: "now" } }] })}\n\n`,
        `data: ${chunk({}, "tool_calls")}\n\n`,
        "data: [DONE]\n\n",
      ]),
    );

    const { text, result } = await run(engine(), request("tools", { tools: [{ type: "function", function: { name: "get_weather" } }] }));

    expect(text).toBe(
      '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call><tool_call>{"name": "now", "arguments": {}}</tool_call>',
    );
    expect(result.finishReason).toBe("tool_calls");
    expect(seen.findLast((r) => r.url === "/v1/chat/completions")?.body?.tools).toEqual([
      { type: "function", function: { name: "get_weather" } },
    ]);
  });

  it("passes on vLLM's stop_reason when it is one of the task's stops; a token id, another string or none names nothing", async () => {
    /** A vLLM-style reply whose last choice says `finish_reason` and `stop_reason` (absent, as llama-server: undefined). */
    const endsWith = (finishReason: string, stopReason?: string | number | null) => (_req: IncomingMessage, res: ServerResponse) =>
      writeInPieces(res, [
        `data: ${chunk({ content: "Hello" })}\n\n`,
        `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: "" }, finish_reason: finishReason, ...(stopReason !== undefined && { stop_reason: stopReason }) }] })}\n\n`,
        "data: [DONE]\n\n",
      ]);
    chatHandlers.set("vllm-stop-string", endsWith("stop", "\n\nUser:"));
    chatHandlers.set("vllm-stop-token", endsWith("stop", 128009));
    chatHandlers.set("vllm-unrequested", endsWith("stop", "<|im_end|>"));
    chatHandlers.set("vllm-eos", endsWith("stop", null));
    chatHandlers.set("llama-server", endsWith("stop"));
    chatHandlers.set("vllm-length", endsWith("length", "END"));
    const params = { stop: ["END", "\n\nUser:"] };

    const named = await run(engine(), request("vllm-stop-string", { params }));
    const others = await Promise.all(
      ["vllm-stop-token", "vllm-unrequested", "vllm-eos", "llama-server", "vllm-length"].map(async (model) => (await run(engine(), request(model, { params }))).result),
    );

    expect(seen.at(-1)?.body?.stop).toEqual(["END", "\n\nUser:"]);
    expect(named.text).toBe("Hello");
    expect(named.result).toEqual({ finishReason: "stop", stopSequence: "\n\nUser:", usage: { promptTokens: 0, completionTokens: 1 } });
    expect(others.map((result) => [result.finishReason, result.stopSequence])).toEqual([
      ["stop", undefined],
      ["stop", undefined],
      ["stop", undefined],
      ["stop", undefined],
      ["length", undefined],
    ]);
  });

  it("rejects with the upstream's own error message", async () => {
    chatHandlers.set("ollama-error", (_req, res) => {
      res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: "model requires more memory" }));
    });
    chatHandlers.set("mid-stream-error", (_req, res) =>
      writeInPieces(res, [`data: ${chunk({ content: "a" })}\n\n`, `data: {"error": {"message": "context overflow"}}\n\n`]),
    );

    chatHandlers.set("no-stream", (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "streaming is off" } }));
    });

    await expect(run(engine(), request("missing"))).rejects.toThrow("the upstream answered 404: no such model");
    await expect(run(engine(), request("no-stream"))).rejects.toThrow("streaming is off");
    await expect(run(engine(), request("ollama-error"))).rejects.toThrow("model requires more memory");
    await expect(run(engine(), request("mid-stream-error"))).rejects.toThrow("context overflow");
    const unreachable = new OpenAIUpstreamEngine({ baseUrl: "http://127.0.0.1:1/v1", models: ["x"], maxConcurrency: 1 });
    await expect(run(unreachable, request("x"))).rejects.toThrow(/could not be reached/);
  });

  it("closes the upstream request when the signal aborts", async () => {
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((resolve) => (upstreamClosed = resolve));
    chatHandlers.set("endless", (_req, res) => {
      res.on("close", upstreamClosed);
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`data: ${chunk({ content: "first" })}\n\n`); // and then nothing more, until the client goes away
    });
    const controller = new AbortController();

    const generation = engine().generate(request("endless"), textSink(() => controller.abort()), controller.signal);

    await expect(generation).rejects.toThrow();
    await expect(withDeadline(closed, 5_000)).resolves.toBeUndefined();
  });
});

describe("upstream engine flow control", () => {
  it("stops reading the upstream's response while the sink has no room, so the upstream is held back", async () => {
    // The upstream writes as fast as its socket takes it, and says when it has to wait for a drain.
    let waitingSince: number | undefined;
    let drains = 0;
    let stop = false;
    chatHandlers.set("flood", async (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.on("close", () => (stop = true));
      const piece = `data: ${chunk({ content: "z".repeat(4096) })}\n\n`;
      while (!stop) {
        if (res.write(piece)) continue;
        waitingSince = Date.now();
        await new Promise((resolve) => res.once("drain", resolve));
        waitingSince = undefined;
        drains += 1;
      }
    });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let released = false;
    let pieces = 0;
    /** Once released, read well past what the socket buffers held (so the upstream must have written more). */
    let abortAt = Number.POSITIVE_INFINITY;
    const controller = new AbortController();
    const sink = {
      text() {
        pieces += 1;
        if (pieces >= abortAt) controller.abort();
      },
      progress() {},
      ready: () => (released || pieces < 10 ? undefined : gate),
    };

    const generation = engine().generate(request("flood"), sink, controller.signal);
    // Held: the upstream ends up waiting for a drain that does not come.
    await expect(
      withDeadline(
        (async () => {
          while (waitingSince === undefined || Date.now() - waitingSince < 1_000) await new Promise((resolve) => setTimeout(resolve, 20));
        })(),
        20_000,
      ),
    ).resolves.toBeUndefined();
    const drainsWhileHeld = drains;
    const piecesWhileHeld = pieces;

    // Released: reading resumes, the upstream drains again, and the sink gets more.
    abortAt = pieces + 4_000;
    released = true;
    release();
    await generation.catch(() => undefined);
    expect(drains).toBeGreaterThan(drainsWhileHeld);
    expect(pieces).toBeGreaterThan(piecesWhileHeld);
  });
});

function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
