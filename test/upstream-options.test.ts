// Every request option reaches an OpenAI-compatible upstream under the names it reads, and what it streams back
// (logprobs included) reaches the master: a recording upstream (real HTTP), the real engine, and a real worker runtime
// against a bare-bones master (a ws server) that assigns one task and records what the worker sends.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../src/log.js";
import {
  type Engine,
  type EngineDescription,
  EngineRequestError,
  type GenerationRequest,
  type GenerationResult,
  type GenerationSink,
  textSink,
} from "../src/worker/engines/engine.js";
import { OpenAIUpstreamEngine, UPSTREAM_CAPABILITIES } from "../src/worker/engines/openai-upstream.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { CAPABILITIES, type TokenLogprob } from "../src/worker-protocol/index.js";
import OpenAI from "openai";
import { eventually, openaiClient, startTestCoordinator, TEST_TOKEN } from "./support/cluster.js";
import { completionChunk, type RecordingUpstream, startRecordingUpstream, streamChunks } from "./support/recording-upstream.js";
import { startBareMaster } from "./support/bare-master.js";

let upstream: RecordingUpstream;

beforeAll(async () => {
  upstream = await startRecordingUpstream(["vlm", "text-only"]);
});

afterAll(async () => {
  await upstream.close();
});

const engine = (options: { visionModels?: string[]; models?: string[] } = {}) =>
  new OpenAIUpstreamEngine({ baseUrl: upstream.baseUrl, models: options.models ?? [], maxConcurrency: 4, visionModels: options.visionModels });

function request(model: string, extra: Partial<GenerationRequest> = {}): GenerationRequest {
  return { taskId: "t1", model, messages: [{ role: "user", content: "hi" }], params: {}, ...extra };
}

/** Runs one generation and records what the sink got: each piece's text and logprobs. */
async function generate(req: GenerationRequest) {
  const pieces: Array<{ text: string; logprobs?: readonly TokenLogprob[] }> = [];
  const sink = textSink((text, _tokens, logprobs) => pieces.push(logprobs ? { text, logprobs } : { text }));
  const result = await engine().generate(req, sink, new AbortController().signal);
  return { pieces, result, sent: upstream.requests.at(-1) };
}

describe("a raw prompt through the upstream engine", () => {
  it("goes to the upstream's POST /completions with the prompt and the options, no chat fields, and its text comes back", async () => {
    upstream.reply("raw-model", (res) =>
      streamChunks(res, [
        { object: "text_completion", choices: [{ index: 0, text: " there was", finish_reason: null }] },
        { object: "text_completion", choices: [{ index: 0, text: " a model.", finish_reason: "stop" }] },
      ]),
    );
    const { pieces, result, sent } = await generate(
      request("raw-model", { messages: [], prompt: "Once upon a time", params: { maxTokens: 16, temperature: 0 }, tools: [{ type: "function" }] }),
    );

    expect(upstream.paths.at(-1)).toBe("/v1/completions");
    expect(sent).toMatchObject({ model: "raw-model", prompt: "Once upon a time", stream: true, max_tokens: 16, temperature: 0 });
    expect(sent).not.toHaveProperty("messages");
    expect(sent).not.toHaveProperty("tools");
    expect(pieces.map((piece) => piece.text).join("")).toBe(" there was a model.");
    expect(result.finishReason).toBe("stop");
  });
});

describe("the upstream's prompt cache", () => {
  it("passes on the prompt tokens its server served from cache (prompt_tokens_details.cached_tokens)", async () => {
    upstream.reply("cached", (res) =>
      streamChunks(res, [
        completionChunk({ content: "Hi" }),
        { choices: [{ index: 0, delta: {}, finish_reason: "stop" }], usage: { prompt_tokens: 50, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 48 } } },
      ]),
    );
    upstream.reply("cached-wrong", (res) =>
      streamChunks(res, [
        completionChunk({ content: "Hi" }),
        { choices: [{ index: 0, delta: {}, finish_reason: "stop" }], usage: { prompt_tokens: 5, completion_tokens: 1, prompt_tokens_details: { cached_tokens: "many" } } },
      ]),
    );

    expect((await generate(request("cached"))).result.usage).toEqual({ promptTokens: 50, completionTokens: 1, cachedTokens: 48 });
    expect((await generate(request("cached-wrong"))).result.usage).toEqual({ promptTokens: 5, completionTokens: 1 });
  });
});

describe("a raw prompt's logprobs through the upstream engine", () => {
  it("asks in the legacy form (logprobs: the number of alternatives) and reads the legacy lists back", async () => {
    upstream.reply("raw-logprobs", (res) =>
      streamChunks(res, [
        {
          object: "text_completion",
          choices: [
            {
              index: 0,
              text: " there was",
              finish_reason: null,
              logprobs: { tokens: [" there", " was"], token_logprobs: [-0.5, null], top_logprobs: [{ " there": -0.5, " then": -1.5 }, null], text_offset: [0, 6] },
            },
          ],
        },
        { object: "text_completion", choices: [{ index: 0, text: "", finish_reason: "stop" }] },
      ]),
    );
    const { pieces, sent } = await generate(request("raw-logprobs", { messages: [], prompt: "Once upon a time", params: {}, logprobs: { top: 2 } }));

    expect(sent).toMatchObject({ prompt: "Once upon a time", logprobs: 2 });
    expect(sent).not.toHaveProperty("top_logprobs");
    expect(pieces.flatMap((piece) => piece.logprobs ?? [])).toEqual([
      { token: " there", logprob: -0.5, top: [{ token: " there", logprob: -0.5 }, { token: " then", logprob: -1.5 }] },
      { token: " was", logprob: -9999, top: [] },
    ]);
  });
});

describe("the upstream engine's request body", () => {
  it("carries every option of the task under the upstream's own names, verbatim", async () => {
    const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
    const schema = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };

    const { sent } = await generate(
      request("every-option", {
        params: {
          maxTokens: 64,
          temperature: 0.7,
          topP: 0.9,
          topK: 40,
          minP: 0.05,
          repetitionPenalty: 1.1,
          frequencyPenalty: 0.5,
          presencePenalty: -0.5,
          logitBias: { "15043": -100, "318": 2.5 },
          stop: ["END", "\n\n"],
          seed: 42,
        },
        responseFormat: { type: "json_schema", name: "weather", schema, strict: true },
        logprobs: { top: 3 },
        tools,
        toolChoice: { type: "function", function: { name: "get_weather" } },
        parallelToolCalls: false,
        reasoningEffort: "low",
        chatTemplateKwargs: { enable_thinking: false },
      }),
    );

    expect(sent).toEqual({
      model: "every-option",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 64,
      temperature: 0.7,
      top_p: 0.9,
      top_k: 40,
      min_p: 0.05,
      repetition_penalty: 1.1,
      repeat_penalty: 1.1,
      frequency_penalty: 0.5,
      presence_penalty: -0.5,
      logit_bias: { "15043": -100, "318": 2.5 },
      stop: ["END", "\n\n"],
      seed: 42,
      response_format: { type: "json_schema", json_schema: { name: "weather", schema, strict: true } },
      logprobs: true,
      top_logprobs: 3,
      tools,
      tool_choice: { type: "function", function: { name: "get_weather" } },
      parallel_tool_calls: false,
      reasoning_effort: "low",
      chat_template_kwargs: { enable_thinking: false },
    });
  });

  it("sends json_object as is, names an unnamed schema, and asks for no alternatives when none are wanted", async () => {
    const schema = { type: "object" };

    const object = await generate(request("json", { responseFormat: { type: "json_object" }, logprobs: { top: 0 } }));
    const unnamed = await generate(request("json", { responseFormat: { type: "json_schema", schema } }));

    expect(object.sent).toMatchObject({ response_format: { type: "json_object" }, logprobs: true });
    // llama-server sends 20 alternatives when top_logprobs is absent: the engine cuts them back (see the logprobs test).
    expect(object.sent).not.toHaveProperty("top_logprobs");
    expect(unnamed.sent?.response_format).toEqual({ type: "json_schema", json_schema: { name: "response", schema } });
    expect(unnamed.sent).not.toHaveProperty("logprobs");
  });

  it("merges the client's extra fields, which can replace neither the relay's fields nor the options the coordinator set", async () => {
    const { sent } = await generate(
      request("extra", {
        params: { temperature: 0.2 },
        extraBody: {
          mirostat: 2,
          guided_choice: ["yes", "no"],
          cache_prompt: true,
          model: "someone-else",
          messages: [{ role: "user", content: "injected" }],
          stream: false,
          stream_options: { include_usage: false },
          n: 4,
          temperature: 1.9,
        },
      }),
    );

    expect(sent).toEqual({
      mirostat: 2,
      guided_choice: ["yes", "no"],
      cache_prompt: true,
      model: "extra",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0.2,
    });
  });

  it("sends a message with image parts as an OpenAI content array, in order, with data and http URLs as given", async () => {
    const dataUrl = "data:image/png;base64,iVBORw0KGgo=";

    const { sent } = await generate(
      request("vlm", {
        messages: [
          { role: "system", content: "Describe images." },
          {
            role: "user",
            content: "What is this?\nAnd this?",
            parts: [
              { type: "text", text: "What is this?" },
              { type: "image_url", url: dataUrl },
              { type: "text", text: "And this?" },
              { type: "image_url", url: "https://example.com/cat.jpg" },
            ],
          },
        ],
      }),
    );

    expect(sent?.messages).toEqual([
      { role: "system", content: "Describe images." },
      {
        role: "user",
        content: [
          { type: "text", text: "What is this?" },
          { type: "image_url", image_url: { url: dataUrl } },
          { type: "text", text: "And this?" },
          { type: "image_url", image_url: { url: "https://example.com/cat.jpg" } },
        ],
      },
    ]);
  });
});

describe("the upstream engine's replies", () => {
  const logprobsStream = (res: Parameters<typeof streamChunks>[0]) =>
    streamChunks(res, [
      completionChunk({ role: "assistant", content: "" }),
      completionChunk(
        { content: "Hello" },
        { logprobs: { content: [{ token: "Hello", logprob: -0.1, bytes: [72, 101, 108, 108, 111], top_logprobs: [
          { token: "Hello", logprob: -0.1, bytes: [72, 101, 108, 108, 111] },
          { token: "Hi", logprob: -2.5, bytes: [72, 105] },
          { token: "Hey", logprob: -3, bytes: null },
        ] }] } },
      ),
      completionChunk(
        { content: " world" },
        { logprobs: { content: [
          { token: " wor", logprob: -0.5, bytes: null, top_logprobs: [{ token: " wor", logprob: -0.5 }] },
          { token: "ld", logprob: null, top_logprobs: [] },
        ] } },
      ),
      completionChunk({ content: "!" }, { logprobs: { content: "not a list" } }),
      { choices: [{ index: 0, delta: {}, finish_reason: "stop" }], usage: { prompt_tokens: 5, completion_tokens: 4 } },
    ]);

  it("passes the upstream's streamed logprobs on with the text of their delta, cut to the alternatives asked for", async () => {
    upstream.reply("logprobs", logprobsStream);

    const { pieces, result } = await generate(request("logprobs", { logprobs: { top: 2 } }));

    expect(pieces).toEqual([
      {
        text: "Hello",
        logprobs: [
          {
            token: "Hello",
            logprob: -0.1,
            bytes: [72, 101, 108, 108, 111],
            top: [
              { token: "Hello", logprob: -0.1, bytes: [72, 101, 108, 108, 111] },
              { token: "Hi", logprob: -2.5, bytes: [72, 105] },
            ],
          },
        ],
      },
      {
        text: " world",
        logprobs: [
          { token: " wor", logprob: -0.5, top: [{ token: " wor", logprob: -0.5 }] },
          // A server that prints -inf as null: OpenAI's stand-in for a probability too small to print.
          { token: "ld", logprob: -9999, top: [] },
        ],
      },
      // Unusable logprobs are dropped; the text still comes.
      { text: "!" },
    ]);
    expect(result).toEqual({ finishReason: "stop", usage: { promptTokens: 5, completionTokens: 4 } });
  });

  it("keeps only the sampled token when no alternatives are asked for, and passes no logprobs on to a task that did not ask", async () => {
    upstream.reply("logprobs", logprobsStream);

    const bare = await generate(request("logprobs", { logprobs: { top: 0 } }));
    const unasked = await generate(request("logprobs"));

    expect(bare.pieces[0]).toEqual({ text: "Hello", logprobs: [{ token: "Hello", logprob: -0.1, bytes: [72, 101, 108, 108, 111] }] });
    expect(unasked.pieces).toEqual([{ text: "Hello" }, { text: " world" }, { text: "!" }]);
  });

  it("gives an option the upstream refuses back as the client's error, with the upstream's message", async () => {
    const refuse = (status: number, error: Record<string, unknown>) => (res: Parameters<typeof streamChunks>[0]) => {
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ error }));
    };
    upstream.reply("refuses", refuse(400, { message: "logit_bias is not supported", type: "invalid_request_error" }));
    upstream.reply("unprocessable", refuse(422, { message: "top_k must be an integer" }));
    upstream.reply("too-long", refuse(400, { message: "the request exceeds the available context size", type: "exceed_context_size_error" }));
    upstream.reply("broken", refuse(500, { message: "CUDA out of memory" }));

    const refused = generate(request("refuses"));
    await expect(refused).rejects.toBeInstanceOf(EngineRequestError);
    await expect(refused).rejects.toMatchObject({ code: "invalid_request", message: "the upstream answered 400: logit_bias is not supported" });
    await expect(generate(request("unprocessable"))).rejects.toMatchObject({ code: "invalid_request" });
    await expect(generate(request("too-long"))).rejects.toMatchObject({ code: "context_length_exceeded" });
    // The upstream's own failure is the worker's, not the client's.
    const broken = generate(request("broken"));
    await expect(broken).rejects.toThrow("the upstream answered 500: CUDA out of memory");
    await expect(broken).rejects.not.toBeInstanceOf(EngineRequestError);
  });

  it("reads an error answer only as far as its message needs, and lets the connection go (an error body that never ends)", async () => {
    upstream.reply("endless-error", (res) => {
      res.writeHead(400, { "content-type": "text/plain" });
      const more = () => {
        while (!res.destroyed && res.write("no. ".repeat(16 * 1024)));
        if (!res.destroyed) res.once("drain", more);
      };
      more();
    });

    const refused = generate(request("endless-error"));

    await expect(refused).rejects.toBeInstanceOf(EngineRequestError);
    await expect(refused).rejects.toThrow(/^the upstream answered 400: no\. no\. /);
    await eventually(() => upstream.cutOff.some((body) => body.model === "endless-error"), "the upstream to see the connection close");
  });
});

describe("the upstream engine's capabilities", () => {
  it("announces everything it forwards for every model, and vision only for the models the operator named", async () => {
    const none = await engine().start();
    const named = await engine({ visionModels: ["vlm"] }).start();
    const all = await engine({ visionModels: ["*"], models: ["text-only"] }).start();

    const capabilities = (description: EngineDescription) => description.models.map((model) => [model.id, model.capabilities]);
    const forwarded = [...UPSTREAM_CAPABILITIES];
    expect(forwarded).toEqual(
      expect.arrayContaining(["tools", "tool_choice_required", "sampling", "logit_bias", "json_object", "json_schema", "logprobs"]),
    );
    expect(forwarded).not.toContain(CAPABILITIES.vision);
    expect(capabilities(none)).toEqual([
      ["vlm", forwarded],
      ["text-only", forwarded],
    ]);
    expect(capabilities(named)).toEqual([
      ["vlm", [...forwarded, "vision"]],
      ["text-only", forwarded],
    ]);
    expect(capabilities(all)).toEqual([["text-only", [...forwarded, "vision"]]]);
  });
});

/** An engine the test drives: `produce` runs inside generate, with the sink. */
class ScriptedEngine implements Engine {
  readonly kind = "scripted";
  constructor(private readonly produce: (sink: GenerationSink) => Promise<number>) {}
  async start(): Promise<EngineDescription> {
    return { device: { kind: "simulator", name: "test", memoryBytes: 0 }, models: [{ id: "m", contextLength: 1_000 }] };
  }
  async generate(_request: GenerationRequest, sink: GenerationSink): Promise<GenerationResult> {
    const tokens = await this.produce(sink);
    return { finishReason: "stop", usage: { promptTokens: 1, completionTokens: tokens } };
  }
  async close(): Promise<void> {}
}

describe("logprobs through a worker", () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  async function join(at: { url: string }, workerEngine: Engine) {
    const runtime = new WorkerRuntime(workerEngine, await workerEngine.start(), {
      join: at.url,
      token: "t",
      name: "logprobs",
      maxConcurrency: 1,
      reconnect: false,
      log: silentLogger,
    });
    cleanup.push(() => runtime.stop());
    await runtime.start();
  }

  it("puts the upstream's logprobs into the TokenChunks of their text", async () => {
    upstream.reply("vlm", (res) =>
      streamChunks(res, [
        completionChunk({ content: "Yes" }, { logprobs: { content: [{ token: "Yes", logprob: -0.25, bytes: [89, 101, 115], top_logprobs: [{ token: "Yes", logprob: -0.25 }] }] } }),
        completionChunk({ content: "." }, { logprobs: { content: [{ token: ".", logprob: -1, top_logprobs: [{ token: ".", logprob: -1 }] }] } }),
        completionChunk({}, { finish_reason: "stop" }),
      ]),
    );
    const master = await startBareMaster({ taskId: "t1", model: "vlm", messages: [{ role: "user", content: "ok?" }], params: {}, logprobs: { top: 1 } });
    cleanup.push(master.close);

    await join(master, engine());
    await eventually(master.finished, "TaskFinished");

    const chunks = master.chunks();
    expect(chunks.map((c) => c.text).join("")).toBe("Yes.");
    expect(chunks.flatMap((c) => c.logprobs ?? [])).toEqual([
      { token: "Yes", logprob: -0.25, bytes: [89, 101, 115], top: [{ token: "Yes", logprob: -0.25 }] },
      { token: ".", logprob: -1, top: [{ token: ".", logprob: -1 }] },
    ]);
    expect(upstream.requests.at(-1)).toMatchObject({ logprobs: true, top_logprobs: 1 });
  });

  it("concatenates the logprobs in order when tokens made behind a backed-up connection merge into one chunk", async () => {
    const tokens = 300;
    const piece = "x".repeat(32 * 1024);
    const master = await startBareMaster({ taskId: "t1", model: "m", messages: [{ role: "user", content: "hi" }], params: {}, logprobs: { top: 0 } });
    cleanup.push(master.close);

    await join(
      master,
      new ScriptedEngine(async (sink) => {
        master.pauseReading();
        for (let i = 0; i < tokens; i++) {
          sink.text(`${i}:${piece}|`, 1, [{ token: `t${i}`, logprob: -i }]);
          // One token a turn, as a real engine yields between decode steps.
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        // Text without logprobs (markup an engine adds) merges without shifting the others.
        sink.text("</think>", 0);
        master.resumeReading();
        return tokens;
      }),
    );
    await eventually(master.finished, "TaskFinished", 20_000);

    const chunks = master.chunks();
    expect(chunks.length).toBeLessThan(tokens / 2);
    expect(chunks.flatMap((c) => (c.logprobs ?? []).map((entry) => entry.token))).toEqual(Array.from({ length: tokens }, (_, i) => `t${i}`));
    // Each chunk carries the logprobs of exactly the tokens of its text.
    for (const chunk of chunks) {
      const starts = chunk.text.match(/(^|\|)\d+:/g) ?? [];
      expect(chunk.logprobs?.length ?? 0).toBe(starts.length);
    }
  });
});

describe("an option the upstream refuses, through a coordinator", () => {
  it("reaches the client as a 400 with the upstream's message, and leaves the worker in rotation", async () => {
    upstream.reply("refuses", (res) => {
      res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "this server takes no seed" } }));
    });
    upstream.reply("text-only", (res) => streamChunks(res, [completionChunk({ content: "fine" }, { finish_reason: "stop" })]));
    const coordinator = await startTestCoordinator();
    const workerEngine = engine({ models: ["refuses", "text-only"] });
    const runtime = new WorkerRuntime(workerEngine, await workerEngine.start(), {
      join: coordinator.workerUrl,
      token: TEST_TOKEN,
      name: "upstream",
      maxConcurrency: 2,
      reconnect: false,
      log: silentLogger,
    });
    try {
      await runtime.start();
      const client = openaiClient(coordinator);

      // More refusals than --eject-after-failures (3): the client's errors say nothing about the worker.
      for (let i = 0; i < 4; i++) {
        const refused = client.chat.completions.create({ model: "refuses", messages: [{ role: "user", content: "hi" }], seed: 1 });
        await expect(refused).rejects.toBeInstanceOf(OpenAI.BadRequestError);
        await expect(refused).rejects.toMatchObject({ status: 400, message: expect.stringContaining("this server takes no seed") });
      }
      const fine = await client.chat.completions.create({ model: "text-only", messages: [{ role: "user", content: "hi" }] });
      expect(fine.choices[0]?.message.content).toBe("fine");
    } finally {
      await runtime.stop();
      await coordinator.close();
    }
  });
});
