// Tool calls end to end through the openai SDK: a simulator worker scripted with Hermes and Harmony output.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type OpenAI from "openai";
import type { RunningCoordinator } from "../src/coordinator.js";
import { openaiClient, startSimWorker, startTestCoordinator, type TestWorker, withExtensions } from "./support/cluster.js";

const hermesScript =
  '<think>The user wants weather for two cities; call the tool twice.</think>' +
  '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>\n' +
  '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo", "unit": "celsius"}}\n</tool_call>';

const harmonyScript =
  "<|channel|>analysis<|message|>Need the weather; call the tool.<|end|>" +
  "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" +
  '{"city":"Oslo"}<|call|>';

const harmonyAnswer =
  "<|channel|>analysis<|message|>Simple greeting.<|end|><|start|>assistant<|channel|>final<|message|>Hello from Harmony!<|return|>";

const malformedScript = 'Checking.<tool_call>{name: get_weather, arguments: {city: Paris}}</tool_call> Done.';

const tools: OpenAI.Chat.ChatCompletionTool[] = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Current weather",
      parameters: { type: "object", properties: { city: { type: "string" }, unit: { type: "string" } }, required: ["city"] },
    },
  },
];
const messages = [{ role: "user" as const, content: "Weather in Paris and Tokyo?" }];

interface StreamedCall {
  id?: string;
  name?: string;
  arguments: string;
}

async function collect(stream: AsyncIterable<OpenAI.Chat.ChatCompletionChunk>) {
  const calls: StreamedCall[] = [];
  let content = "";
  let reasoning = "";
  let finish: string | null = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    content += choice.delta.content ?? "";
    reasoning += (choice.delta as { reasoning_content?: string }).reasoning_content ?? "";
    for (const call of choice.delta.tool_calls ?? []) {
      const entry = (calls[call.index] ??= { arguments: "" });
      if (call.id) entry.id = call.id;
      if (call.function?.name) entry.name = call.function.name;
      entry.arguments += call.function?.arguments ?? "";
    }
    finish = choice.finish_reason ?? finish;
  }
  return { calls, content, reasoning, finish };
}

describe("tool calls end to end", () => {
  let coordinator: RunningCoordinator;
  let client: OpenAI;
  const workers: TestWorker[] = [];

  beforeAll(async () => {
    coordinator = await startTestCoordinator();
    client = openaiClient(coordinator);
    workers.push(
      await startSimWorker(coordinator, { models: ["qwen-tools"], script: hermesScript, format: "hermes", tokensPerSecond: 2_000 }),
      await startSimWorker(coordinator, { models: ["gpt-oss-tools"], script: harmonyScript, format: "harmony", tokensPerSecond: 2_000 }),
      await startSimWorker(coordinator, { models: ["gpt-oss-chat"], script: harmonyAnswer, format: "harmony", tokensPerSecond: 2_000 }),
      await startSimWorker(coordinator, { models: ["broken-tools"], script: malformedScript, format: "hermes", tokensPerSecond: 2_000 }),
    );
  });

  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await coordinator.close();
  });

  it("streams two parallel Hermes tool calls as tool_calls deltas with finish_reason tool_calls", async () => {
    const stream = await client.chat.completions.create(
      withExtensions({ model: "qwen-tools", messages, tools, stream: true as const }, { reasoning_format: "separate" }),
    );
    const { calls, content, reasoning, finish } = await collect(stream);

    expect(finish).toBe("tool_calls");
    expect(content).toBe("");
    expect(reasoning).toBe("The user wants weather for two cities; call the tool twice.");
    expect(calls.map((c) => c.name)).toEqual(["get_weather", "get_weather"]);
    expect(calls.map((c) => JSON.parse(c.arguments))).toEqual([
      { city: "Paris", unit: "celsius" },
      { city: "Tokyo", unit: "celsius" },
    ]);
    expect(new Set(calls.map((c) => c.id)).size).toBe(2);
    expect(calls.every((c) => c.id?.startsWith("call_"))).toBe(true);
  });

  it("returns the Hermes tool calls in message.tool_calls when not streaming", async () => {
    const completion = await client.chat.completions.create({ model: "qwen-tools", messages, tools, tool_choice: "auto", parallel_tool_calls: true });
    const message = completion.choices[0]?.message;

    expect(completion.choices[0]?.finish_reason).toBe("tool_calls");
    expect(message?.content).toBeNull();
    expect(message?.tool_calls?.map((c) => c.type === "function" && JSON.parse(c.function.arguments))).toEqual([
      { city: "Paris", unit: "celsius" },
      { city: "Tokyo", unit: "celsius" },
    ]);
  });

  it("turns Harmony commentary to=functions.NAME into a tool call, and analysis into reasoning", async () => {
    const stream = await client.chat.completions.create(
      withExtensions({ model: "gpt-oss-tools", messages, tools, stream: true as const }, { reasoning_format: "separate" }),
    );
    const { calls, content, reasoning, finish } = await collect(stream);

    expect(finish).toBe("tool_calls");
    expect(reasoning).toBe("Need the weather; call the tool.");
    expect(content).toBe("");
    expect(calls).toEqual([{ id: expect.stringMatching(/^call_/), name: "get_weather", arguments: '{"city":"Oslo"}' }]);

    const whole = await client.chat.completions.create({ model: "gpt-oss-tools", messages, tools });
    const call = whole.choices[0]?.message.tool_calls?.[0];
    expect(call?.type === "function" && call.function.name).toBe("get_weather");
  });

  it("gives a Harmony final channel as content, with no markup and, by default, no reasoning", async () => {
    const completion = await client.chat.completions.create({ model: "gpt-oss-chat", messages: [{ role: "user", content: "hi" }] });

    expect(completion.choices[0]?.message.content).toBe("Hello from Harmony!");
    expect(completion.choices[0]?.finish_reason).toBe("stop");
  });

  it("accepts tool results and assistant tool_calls in the conversation", async () => {
    const completion = await client.chat.completions.create({
      model: "gpt-oss-chat",
      tools,
      messages: [
        { role: "user", content: "Weather in Oslo?" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}' } }] },
        { role: "tool", tool_call_id: "call_1", content: '{"temp": 3}' },
      ],
    });

    expect(completion.choices[0]?.message.content).toBe("Hello from Harmony!");
  });

  it("rejects an invalid tools definition with a 400 naming it", async () => {
    await expect(
      client.chat.completions.create({
        model: "qwen-tools",
        messages,
        tools: [{ type: "function", function: { name: "has spaces" } }],
      }),
    ).rejects.toMatchObject({ status: 400, param: "tools[0].function.name" });
  });
  it("returns malformed tool-call JSON from the model as content, never a 500", async () => {
    const completion = await client.chat.completions.create({ model: "broken-tools", messages, tools });

    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(completion.choices[0]?.message.tool_calls ?? []).toEqual([]);
    expect(completion.choices[0]?.message.content).toContain("{name: get_weather");
  });
});

describe("--model-format", () => {
  it("overrides the format a worker announced for a model", async () => {
    const coordinator = await startTestCoordinator({ modelFormat: new Map([["mislabelled", "harmony"]]) });
    const worker = await startSimWorker(coordinator, { models: ["mislabelled"], script: harmonyAnswer, format: "think", tokensPerSecond: 2_000 });
    try {
      const completion = await openaiClient(coordinator).chat.completions.create({ model: "mislabelled", messages });
      expect(completion.choices[0]?.message.content).toBe("Hello from Harmony!");
    } finally {
      await worker.stop();
      await coordinator.close();
    }
  });
});
