// Every chat completions option reaches the worker or is refused with a 400 naming it: a wire tap between a simulator
// worker and a real coordinator shows what the worker is asked; the official openai SDK is the client.
import fc from "fast-check";
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { SIMULATED_LOGPROB } from "../src/worker/engines/simulator.js";
import type { TaskAssigned } from "../src/worker-protocol/index.js";
import { openaiClient, startSimWorker, startTestCoordinator, type TestWorker, withExtensions } from "./support/cluster.js";
import { startWireTap, type WireTap } from "./support/wire-tap.js";

const messages = [{ role: "user" as const, content: "Plan a trip." }];

describe("chat completions options", () => {
  let coordinator: RunningCoordinator;
  let client: OpenAI;
  let tap: WireTap;
  const workers: TestWorker[] = [];

  beforeAll(async () => {
    coordinator = await startTestCoordinator();
    client = openaiClient(coordinator);
    tap = await startWireTap(coordinator.workerUrl);
    workers.push(await startSimWorker({ workerUrl: tap.url }, { tokensPerSecond: 0 }));
    // A worker from before capabilities: it announces none, so it can do what every worker could (tools).
    workers.push(await startSimWorker({ workerUrl: tap.url }, { models: ["legacy"], capabilities: null, tokensPerSecond: 0 }));
  });

  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await tap.close();
    await coordinator.close();
  });

  /** The task the worker was last assigned for `model`. */
  function lastAssigned(model = "simulator"): TaskAssigned {
    for (let i = tap.messages.length - 1; i >= 0; i--) {
      const tapped = tap.messages[i];
      if (tapped?.from === "master" && tapped.message.type === "TaskAssigned" && tapped.message.model === model) return tapped.message;
    }
    throw new Error(`no task assigned for ${model}`);
  }

  async function refusal(body: Record<string, unknown>): Promise<{ status: number; param: unknown; code: unknown; message: string }> {
    const response = await fetch(`${coordinator.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "simulator", messages, ...body }),
    });
    const { error } = (await response.json()) as { error: { param: unknown; code: unknown; message: string } };
    return { status: response.status, param: error.param, code: error.code, message: error.message };
  }

  it("passes every sampling option on to the worker under the protocol's names", async () => {
    await client.chat.completions.create(
      withExtensions(
        { model: "simulator", messages, temperature: 0.3, top_p: 0.9, seed: 7, stop: ["\n\n"], frequency_penalty: 0.5, presence_penalty: -0.5, max_completion_tokens: 64 },
        { top_k: 40, min_p: 0.05, repetition_penalty: 1.1 },
      ),
    );

    expect(lastAssigned().params).toEqual({
      maxTokens: 64,
      temperature: 0.3,
      topP: 0.9,
      seed: 7,
      stop: ["\n\n"],
      topK: 40,
      minP: 0.05,
      repetitionPenalty: 1.1,
      frequencyPenalty: 0.5,
      presencePenalty: -0.5,
    });
  });

  it("takes llama.cpp's repeat_penalty for repetition_penalty, and top_k 0 or -1 as no top-k cut (topK 0)", async () => {
    await client.chat.completions.create(withExtensions({ model: "simulator", messages }, { repeat_penalty: 1.3, top_k: -1 }));

    expect(lastAssigned().params).toEqual({ repetitionPenalty: 1.3, topK: 0 });
  });

  it("answers a JSON object for response_format json_object, and a value of the schema for json_schema", async () => {
    const schema = {
      type: "object",
      properties: { city: { type: "string", minLength: 6 }, days: { type: "integer", minimum: 3 }, tags: { type: "array", items: { enum: ["sea", "hills"] }, minItems: 2 } },
      required: ["city", "days", "tags"],
      additionalProperties: false,
    };
    const object = await client.chat.completions.create({ model: "simulator", messages, response_format: { type: "json_object" } });
    const objectTask = lastAssigned();
    const structured = await client.chat.completions.create({
      model: "simulator",
      messages,
      response_format: { type: "json_schema", json_schema: { name: "trip", schema, strict: true } },
    });

    expect(objectTask.responseFormat).toEqual({ type: "json_object" });
    expect(JSON.parse(object.choices[0]?.message.content ?? "")).toEqual(expect.any(Object));
    expect(lastAssigned().responseFormat).toEqual({ type: "json_schema", name: "trip", schema, strict: true });
    expect(JSON.parse(structured.choices[0]?.message.content ?? "")).toEqual({ city: "textxx", days: 3, tags: ["sea", "sea"] });
  });

  it("forces a tool call for tool_choice required and for a named function", async () => {
    const tools: OpenAI.Chat.ChatCompletionTool[] = [
      { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } },
      { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { zone: { type: "string" } } } } },
    ];
    const required = await client.chat.completions.create({ model: "simulator", messages, tools, tool_choice: "required" });
    const named = await client.chat.completions.create({ model: "simulator", messages, tools, tool_choice: { type: "function", function: { name: "get_time" } } });

    expect(required.choices[0]?.finish_reason).toBe("tool_calls");
    expect(required.choices[0]?.message.tool_calls?.map((call) => call.type === "function" && [call.function.name, JSON.parse(call.function.arguments)])).toEqual([
      ["get_weather", { city: "text" }],
    ]);
    expect(named.choices[0]?.message.tool_calls?.map((call) => call.type === "function" && call.function.name)).toEqual(["get_time"]);
    expect(lastAssigned().toolChoice).toEqual({ type: "function", function: { name: "get_time" } });
  });

  it("returns the logprobs of the content's tokens, streamed per chunk and in the whole reply (reasoning has none)", async () => {
    const whole = await client.chat.completions.create({ model: "simulator", messages, logprobs: true, top_logprobs: 2 });
    const stream = await client.chat.completions.create({ model: "simulator", messages, logprobs: true, stream: true });
    let streamed = "";
    const streamedLogprobs: OpenAI.Chat.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of stream) {
      streamed += chunk.choices[0]?.delta.content ?? "";
      streamedLogprobs.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    }

    expect(lastAssigned().logprobs).toEqual({ top: 0 });
    const content = whole.choices[0]?.message.content ?? "";
    const entries = whole.choices[0]?.logprobs?.content ?? [];
    expect(entries.map((e) => e.token).join("")).toBe(content);
    expect(entries.every((e) => e.logprob === SIMULATED_LOGPROB && e.top_logprobs.length === 2)).toBe(true);
    expect(entries[0]?.top_logprobs).toEqual([
      { token: entries[0]?.token, logprob: SIMULATED_LOGPROB, bytes: null },
      { token: "alt1", logprob: -1, bytes: null },
    ]);
    expect(entries[0]?.bytes).toEqual([...Buffer.from(entries[0]?.token ?? "", "utf8")]);
    expect(streamedLogprobs.map((e) => e.token).join("")).toBe(streamed);
    expect(streamed).toBe(content);
  });

  it("forwards fields no API here defines as extraBody, for an upstream server that knows them", async () => {
    await client.chat.completions.create(withExtensions({ model: "simulator", messages }, { guided_choice: ["yes", "no"], ignore_eos: false }));

    expect(lastAssigned().extraBody).toEqual({ guided_choice: ["yes", "no"], ignore_eos: false });
  });

  it("refuses, naming the parameter, what no worker here can do and what breaks OpenAI's own rules", async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ functions: [{ name: "f", parameters: {} }] }, "functions"],
      [{ function_call: "auto" }, "function_call"],
      [{ audio: { voice: "alloy", format: "mp3" } }, "audio"],
      [{ modalities: ["text", "audio"] }, "modalities"],
      [{ prediction: { type: "content", content: "x" } }, "prediction"],
      [{ web_search_options: {} }, "web_search_options"],
      [{ n: 2 }, "n"],
      [{ stop: ["a", "b", "c", "d", "e"] }, "stop"],
      [{ top_logprobs: 3 }, "top_logprobs"],
      [{ response_format: { type: "xml" } }, "response_format.type"],
      [{ response_format: { type: "json_schema", json_schema: { name: "x" } } }, "response_format.json_schema.schema"],
      [{ tools: [{ type: "function", function: { name: "a" } }], tool_choice: { type: "function", function: { name: "b" } } }, "tool_choice"],
      [{ logit_bias: { "12": "high" } }, "logit_bias.12"],
      [{ messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "", format: "wav" } }] }] }, "messages[0].content[0]"],
    ];
    for (const [body, param] of cases) {
      const answer = await refusal(body);
      expect({ param: answer.param, status: answer.status }, JSON.stringify(body)).toEqual({ param, status: 400 });
    }
  });

  it("refuses before queueing what the model's workers do not announce, naming the parameter", async () => {
    const image = { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } };
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ logit_bias: { "15": -100 } }, "logit_bias", "logit_bias"],
      [{ model: "legacy", logprobs: true, top_logprobs: 2 }, "logprobs", "logprobs"],
      [{ messages: [{ role: "user", content: [{ type: "text", text: "What is this?" }, image] }] }, "messages", "vision"],
      [{ model: "legacy", top_k: 5 }, "top_k", "sampling"],
      [{ model: "legacy", response_format: { type: "json_object" } }, "response_format", "json_object"],
      [{ model: "legacy", tools: [{ type: "function", function: { name: "a" } }], tool_choice: "required" }, "tool_choice", "tool_choice_required"],
    ];
    const assignedBefore = tap.messages.filter((t) => t.message.type === "TaskAssigned").length;
    for (const [body, param, capability] of cases) {
      const answer = await refusal(body);
      expect({ status: answer.status, param: answer.param, code: answer.code }, JSON.stringify(body)).toEqual({ status: 400, param, code: "unsupported_parameter" });
      expect(answer.message).toContain(`'${capability}'`);
    }
    expect(tap.messages.filter((t) => t.message.type === "TaskAssigned").length).toBe(assignedBefore);
    // What a worker from before capabilities always did still works.
    const legacy = await client.chat.completions.create({ model: "legacy", messages, tools: [{ type: "function", function: { name: "a" } }] });
    expect(legacy.choices[0]?.finish_reason).toBe("stop");
  });

  it("lists each model's capabilities in /v1/models", async () => {
    const { data } = (await (await fetch(`${coordinator.url}/v1/models`)).json()) as { data: Array<{ id: string; capabilities: string[] }> };

    expect(Object.fromEntries(data.map((m) => [m.id, m.capabilities]))).toEqual({
      simulator: ["chat", "embeddings", "embedding_dimensions", "tools", "tool_choice_required", "sampling", "json_object", "json_schema", "logprobs", "raw_prompt"],
      legacy: ["chat", "tools"],
    });
  });

  it("loses no honoured field between the API and the worker (property)", async () => {
    const options = fc.record(
      {
        temperature: fc.double({ min: 0, max: 2, noNaN: true }),
        top_p: fc.double({ min: 0, max: 1, noNaN: true }),
        seed: fc.integer(),
        max_tokens: fc.integer({ min: 1, max: 32 }),
        // Valid Unicode only: a lone surrogate cannot cross the worker's UTF-8 WebSocket unchanged (it becomes U+FFFD).
        stop: fc.array(fc.string({ unit: "grapheme", minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 4 }),
        top_k: fc.integer({ min: 1, max: 100 }),
        min_p: fc.double({ min: 0, max: 1, noNaN: true }),
        repetition_penalty: fc.double({ min: 0.5, max: 2, noNaN: true }),
        frequency_penalty: fc.double({ min: -2, max: 2, noNaN: true }),
        presence_penalty: fc.double({ min: -2, max: 2, noNaN: true }),
        response_format: fc.constantFrom({ type: "json_object" }, { type: "json_schema", json_schema: { name: "s", schema: { type: "object", properties: { a: { type: "boolean" } } } } }),
        chat_template_kwargs: fc.dictionary(fc.stringMatching(/^[a-z]{1,6}$/), fc.jsonValue({ maxDepth: 2, stringUnit: "grapheme" }), { maxKeys: 2 }),
        reasoning_effort: fc.constantFrom("low", "high"),
        parallel_tool_calls: fc.boolean(),
        extra: fc.dictionary(fc.stringMatching(/^x_[a-z]{1,6}$/), fc.jsonValue({ maxDepth: 2, stringUnit: "grapheme" }), { minKeys: 1, maxKeys: 2 }),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(options, async ({ extra, ...fields }) => {
        const body = { model: "simulator", messages, ...fields, ...extra };
        const response = await fetch(`${coordinator.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        expect(response.status, await response.text()).toBe(200);
        const task = lastAssigned();
        const expected = {
          maxTokens: fields.max_tokens,
          temperature: fields.temperature,
          topP: fields.top_p,
          seed: fields.seed,
          stop: fields.stop,
          topK: fields.top_k,
          minP: fields.min_p,
          repetitionPenalty: fields.repetition_penalty,
          frequencyPenalty: fields.frequency_penalty,
          presencePenalty: fields.presence_penalty,
        };
        // As JSON carries them (-0 arrives as 0).
        expect(task.params).toEqual(JSON.parse(JSON.stringify(expected)));
        const format = fields.response_format;
        expect(task.responseFormat).toEqual(
          format === undefined ? undefined : format.type === "json_object" ? format : { type: "json_schema", name: "s", schema: format.json_schema.schema },
        );
        // Free-form JSON as JSON carries it too (a -0 anywhere in it arrives as 0).
        const asJson = (value: unknown) => (value === undefined ? undefined : (JSON.parse(JSON.stringify(value)) as unknown));
        expect(task.chatTemplateKwargs).toEqual(asJson(fields.chat_template_kwargs));
        expect(task.reasoningEffort).toEqual(fields.reasoning_effort);
        expect(task.parallelToolCalls).toEqual(fields.parallel_tool_calls);
        expect(task.extraBody).toEqual(asJson(extra));
      }),
      { numRuns: 40 },
    );
  });
});
