// The Responses API end to end: the official openai SDK and the Vercel AI SDK against a real coordinator and real
// simulator workers (one of them behind a wire tap, to see what the worker is asked).
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, streamText, tool } from "ai";
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ResponseStreamEvent } from "../src/api/responses-stream.js";
import type { RunningCoordinator } from "../src/coordinator.js";
import { SIMULATED_LOGPROB, simulatedReply } from "../src/worker/engines/simulator.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { startWireTap, type WireTap } from "./support/wire-tap.js";

const question = "What is a coordinator?";
const expected = simulatedReply([{ role: "user", content: question }]);

const toolScript =
  "<think>Need the weather.</think>" +
  '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n' +
  '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo"}}\n</tool_call>';

const weatherTool: OpenAI.Responses.FunctionTool = {
  type: "function",
  name: "get_weather",
  description: "Current weather",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  strict: false,
};

// The lifecycle events carry the response object as it is on the wire: `output_text` is added by the SDK.
type OnTheWire<E> = E extends { response: OpenAI.Responses.Response }
  ? Omit<E, "response"> & { response: Omit<OpenAI.Responses.Response, "output_text"> }
  : E;

/** Reads a whole stream of events from the SDK. */
async function events(stream: AsyncIterable<OpenAI.Responses.ResponseStreamEvent>) {
  const seen: OpenAI.Responses.ResponseStreamEvent[] = [];
  for await (const event of stream) seen.push(event);
  return seen;
}

async function clusterIdle(coordinator: RunningCoordinator): Promise<boolean> {
  const state = (await (await fetch(`${coordinator.url}/v1/cluster`)).json()) as {
    tasks: { live: number };
    workers: Array<{ inflight: string[]; cancelling: string[] }>;
  };
  return state.tasks.live === 0 && state.workers.every((w) => w.inflight.length === 0 && w.cancelling.length === 0);
}

describe("POST /v1/responses", () => {
  let coordinator: RunningCoordinator;
  let client: OpenAI;
  let tap: WireTap;
  const workers: Record<string, TestWorker> = {};

  beforeAll(async () => {
    coordinator = await startTestCoordinator();
    client = openaiClient(coordinator);
    tap = await startWireTap(coordinator.workerUrl);
    workers.simulator = await startSimWorker(coordinator, { tokensPerSecond: 2_000 });
    workers.tools = await startSimWorker({ workerUrl: tap.url }, { models: ["qwen-tools"], script: toolScript, format: "hermes", tokensPerSecond: 2_000 });
    workers.slow = await startSimWorker(coordinator, { models: ["slow"], tokensPerSecond: 50, replyTokens: 2_000 });
    workers.failing = await startSimWorker(coordinator, { models: ["failing"], failAfterTokens: 5 });
  });

  afterAll(async () => {
    for (const worker of Object.values(workers)) await worker.stop();
    await tap.close();
    await coordinator.close();
  });

  it("sends only events the SDK's types describe", () => {
    // Checked by the compiler: every event the encoder can send is one of the SDK's stream events.
    const conforms = (event: ResponseStreamEvent): OnTheWire<OpenAI.Responses.ResponseStreamEvent> => event;
    expect(conforms).toBeTypeOf("function");
  });

  it("answers with a response object whose output_text is the model's answer, reasoning hidden by default", async () => {
    const response = await client.responses.create({ model: "simulator", input: question });

    expect(response).toMatchObject({ object: "response", status: "completed", model: "simulator", error: null, incomplete_details: null });
    expect(response.id).toMatch(/^resp_/);
    expect(response.output_text).toBe(expected.answer);
    expect(response.output.map((item) => item.type)).toEqual(["message"]);
    expect(response.output[0]).toMatchObject({ role: "assistant", status: "completed", content: [{ type: "output_text", annotations: [] }] });
    expect(response.usage).toMatchObject({ input_tokens_details: { cached_tokens: 0 } });
    // The hidden reasoning still counts, as OpenAI counts it: part of the output, less than all of it.
    const reasoningTokens = response.usage?.output_tokens_details.reasoning_tokens ?? 0;
    expect(reasoningTokens).toBeGreaterThan(0);
    expect(reasoningTokens).toBeLessThan(response.usage?.output_tokens ?? 0);
    expect(response.usage?.total_tokens).toBe((response.usage?.input_tokens ?? 0) + (response.usage?.output_tokens ?? 0));
    expect(response.usage?.output_tokens).toBeGreaterThan(0);
  });

  it("shows the reasoning as a reasoning item (reasoning_text content) when the request asks for reasoning", async () => {
    const response = await client.responses.create({ model: "simulator", input: question, reasoning: { effort: "low" } });

    expect(response.output.map((item) => item.type)).toEqual(["reasoning", "message"]);
    expect(response.output[0]).toMatchObject({ type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: expected.reasoning }] });
    expect(response.output_text).toBe(expected.answer);
  });

  it("gives the whole reasoning as the summary when the request asks for one (what Codex and the AI SDK show)", async () => {
    const response = await client.responses.create({
      model: "simulator",
      instructions: "Be brief.",
      input: [{ role: "user", content: [{ type: "input_text", text: question }] }],
      reasoning: { effort: "low", summary: "auto" },
    });

    expect(response.output.map((item) => item.type)).toEqual(["reasoning", "message"]);
    expect(response.output[0]).toMatchObject({ type: "reasoning", summary: [{ type: "summary_text", text: expected.reasoning }], content: [] });
    expect(response.output_text).toBe(expected.answer);
    expect(response.reasoning).toEqual({ effort: "low", summary: "auto" });
    expect(response.instructions).toBe("Be brief.");
  });

  it("streams a requested summary with the reasoning_summary events, in OpenAI's order", async () => {
    const seen = await events(await client.responses.create({ model: "simulator", input: question, reasoning: { summary: "detailed" }, stream: true }));

    const types = seen.map((e) => e.type).filter((type, i, all) => !(type.endsWith(".delta") && all[i - 1] === type));
    expect(types.slice(0, 8)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.reasoning_summary_part.added",
      "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.done",
      "response.reasoning_summary_part.done",
      "response.output_item.done",
    ]);
    const summary = seen.map((e) => (e.type === "response.reasoning_summary_text.delta" ? e.delta : "")).join("");
    expect(summary).toBe(expected.reasoning);
    const done = seen.find((e) => e.type === "response.reasoning_summary_text.done");
    expect(done?.type === "response.reasoning_summary_text.done" && done.text).toBe(expected.reasoning);
  });

  it("streams the events in OpenAI's order, numbered from 0, ending with response.completed and its usage", async () => {
    const seen = await events(await client.responses.create({ model: "simulator", input: question, reasoning: {}, stream: true }));

    expect(seen.map((e) => e.sequence_number)).toEqual(seen.map((_e, i) => i));
    // Consecutive deltas of one kind may come as one or several events: compare with runs collapsed.
    const types = seen.map((e) => e.type).filter((type, i, all) => !(type.endsWith(".delta") && all[i - 1] === type));
    expect(types).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.reasoning_text.delta",
      "response.reasoning_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    const text = seen.map((e) => (e.type === "response.output_text.delta" ? e.delta : "")).join("");
    const reasoning = seen.map((e) => (e.type === "response.reasoning_text.delta" ? e.delta : "")).join("");
    expect({ text, reasoning }).toEqual({ text: expected.answer, reasoning: expected.reasoning });
    const created = seen[0];
    const completed = seen.at(-1);
    expect(created?.type === "response.created" && created.response).toMatchObject({ status: "in_progress", output: [] });
    if (completed?.type !== "response.completed") throw new Error("the stream did not end with response.completed");
    expect(completed.response.id).toBe(created?.type === "response.created" && created.response.id);
    expect(completed.response.status).toBe("completed");
    expect(completed.response.usage?.output_tokens).toBeGreaterThan(0);
    expect(completed.response.output.map((item) => item.type)).toEqual(["reasoning", "message"]);
  });

  it("builds the same response through the SDK's responses.stream() helper", async () => {
    const stream = client.responses.stream({ model: "simulator", input: question });
    const deltas: string[] = [];
    stream.on("response.output_text.delta", (event) => deltas.push(event.delta));
    const response = await stream.finalResponse();

    expect(response.output_text).toBe(expected.answer);
    expect(deltas.join("")).toBe(expected.answer);
    expect(response.status).toBe("completed");
  });

  it("ends a reply cut at max_output_tokens as incomplete, streamed or not", async () => {
    const whole = await client.responses.create({ model: "simulator", input: question, max_output_tokens: 30, reasoning: {} });
    const streamed = await events(await client.responses.create({ model: "simulator", input: question, max_output_tokens: 30, stream: true }));

    expect(whole).toMatchObject({ status: "incomplete", incomplete_details: { reason: "max_output_tokens" } });
    expect(whole.usage?.output_tokens).toBe(30);
    expect(whole.output.at(-1)).toMatchObject({ status: "incomplete" });
    expect(streamed.at(-1)).toMatchObject({ type: "response.incomplete", response: { status: "incomplete", incomplete_details: { reason: "max_output_tokens" } } });
  });

  it("returns function calls as function_call items, and feeds their outputs back to the worker as tool messages", async () => {
    const first = await client.responses.create({ model: "qwen-tools", input: "Weather in Paris and Tokyo?", tools: [weatherTool], tool_choice: "auto" });
    const calls = first.output.filter((item): item is OpenAI.Responses.ResponseFunctionToolCall => item.type === "function_call");

    expect(calls.map((call) => [call.name, JSON.parse(call.arguments)])).toEqual([
      ["get_weather", { city: "Paris" }],
      ["get_weather", { city: "Tokyo" }],
    ]);
    expect(calls.every((call) => call.call_id.startsWith("call_") && call.status === "completed")).toBe(true);

    await client.responses.create({
      model: "qwen-tools",
      tools: [weatherTool],
      input: [
        { role: "user", content: "Weather in Paris and Tokyo?" },
        ...calls,
        { type: "function_call_output", call_id: calls[0]?.call_id ?? "", output: "18C, sunny" },
        { type: "function_call_output", call_id: calls[1]?.call_id ?? "", output: "22C, rain" },
      ],
    });

    const assigned = tap.messages.filter((t) => t.message.type === "TaskAssigned").map((t) => (t.message.type === "TaskAssigned" ? t.message : undefined));
    expect(assigned[0]?.tools).toEqual([{ type: "function", function: { name: "get_weather", description: "Current weather", parameters: weatherTool.parameters, strict: false } }]);
    expect(assigned[0]?.toolChoice).toBe("auto");
    expect(assigned.at(-1)?.messages).toEqual([
      { role: "user", content: "Weather in Paris and Tokyo?" },
      {
        role: "assistant",
        content: "",
        toolCalls: calls.map((call) => ({ id: call.call_id, type: "function", function: { name: "get_weather", arguments: call.arguments } })),
      },
      { role: "tool", content: "18C, sunny", toolCallId: calls[0]?.call_id },
      { role: "tool", content: "22C, rain", toolCallId: calls[1]?.call_id },
    ]);
  });

  it("streams a function call's arguments and closes its item with the whole call", async () => {
    const seen = await events(await client.responses.create({ model: "qwen-tools", input: "Weather?", tools: [weatherTool], stream: true }));

    const added = seen.filter((e) => e.type === "response.output_item.added").map((e) => e.type === "response.output_item.added" && e.item.type);
    const done = seen.filter((e) => e.type === "response.function_call_arguments.done");
    expect(added).toEqual(["function_call", "function_call"]);
    expect(done.map((e) => e.type === "response.function_call_arguments.done" && [e.name, JSON.parse(e.arguments)])).toEqual([
      ["get_weather", { city: "Paris" }],
      ["get_weather", { city: "Tokyo" }],
    ]);
    const args = seen.map((e) => (e.type === "response.function_call_arguments.delta" && e.output_index === 0 ? e.delta : "")).join("");
    expect(JSON.parse(args)).toEqual({ city: "Paris" });
  });

  it("ends a stream whose worker fails with response.failed, in OpenAI's error shape", async () => {
    const seen = await events(await client.responses.create({ model: "failing", input: question, stream: true }));

    expect(seen.at(-1)).toMatchObject({ type: "response.failed", response: { status: "failed", error: { code: "server_error" } } });
    const last = seen.at(-1);
    expect(last?.type === "response.failed" && last.response.error?.message).toBeTruthy();
  });

  it("cancels the worker's task when the client aborts mid-stream", async () => {
    const controller = new AbortController();
    const stream = await client.responses.create({ model: "slow", input: question, stream: true }, { signal: controller.signal });
    let deltas = 0;
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") deltas += 1;
      if (deltas === 3) controller.abort();
    }

    const log = workers.slow?.log;
    if (!log) throw new Error("no slow worker");
    const taskId = log.started.at(-1) as string;
    await log.until(() => log.aborted.has(taskId), "the engine to see the abort");
    expect(log.produced.get(taskId)).toBe(log.aborted.get(taskId));
    expect(log.aborted.get(taskId)).toBeLessThan(2_000);
    expect(log.ended).not.toContain(taskId);
    await eventually(() => clusterIdle(coordinator), "the cluster to be idle");
  });

  it("refuses what needs stored state, hosted tools, images the model cannot see, and too long a reply, with a 400 naming the parameter", async () => {
    const refusals: Array<[Promise<unknown>, string]> = [
      [client.responses.create({ model: "simulator", input: question, previous_response_id: "resp_123" }), "previous_response_id"],
      [client.responses.create({ model: "simulator", input: question, tools: [{ type: "custom", name: "apply_patch" }] }), "tools[0].type"],
      [
        client.responses.create({
          model: "simulator",
          input: [{ role: "user", content: [{ type: "input_image", image_url: "https://example.com/a.png", detail: "auto" }] }],
        }),
        "input",
      ],
      [client.responses.create({ model: "simulator", input: question, text: { format: { type: "xml" } as never } }), "text.format.type"],
      [client.responses.create({ model: "simulator", input: question, max_output_tokens: 1_000_000 }), "max_output_tokens"],
    ];
    for (const [request, param] of refusals) {
      await expect(request).rejects.toMatchObject({ status: 400, param, type: "invalid_request_error" });
    }
  });

  it("answers in JSON for text.format json_object and json_schema (structured output the simulator honours)", async () => {
    const schema = { type: "object", properties: { city: { type: "string" }, days: { type: "integer", minimum: 2 } }, required: ["city", "days"], additionalProperties: false };
    const object = await client.responses.create({ model: "simulator", input: question, text: { format: { type: "json_object" } } });
    const structured = await client.responses.create({
      model: "simulator",
      input: question,
      text: { format: { type: "json_schema", name: "trip", schema, strict: true } },
    });

    expect(JSON.parse(object.output_text)).toEqual({ answer: expected.answer });
    expect(JSON.parse(structured.output_text)).toEqual({ city: "text", days: 2 });
  });

  it("returns the output text's logprobs when included, streamed with each delta and in the whole response", async () => {
    const body = { model: "simulator", input: question, include: ["message.output_text.logprobs" as const], top_logprobs: 1 };
    const whole = await client.responses.create(body);
    const seen = await events(await client.responses.create({ ...body, stream: true }));

    const part = whole.output.find((item) => item.type === "message")?.content[0];
    const entries = part?.type === "output_text" ? (part.logprobs ?? []) : [];
    expect(entries.map((e) => e.token).join("")).toBe(whole.output_text);
    expect(entries.every((e) => e.logprob === SIMULATED_LOGPROB && e.top_logprobs.length === 1)).toBe(true);
    const streamed = seen.flatMap((e) => (e.type === "response.output_text.delta" ? e.logprobs ?? [] : []));
    expect(streamed.map((e) => e.token).join("")).toBe(expected.answer);
    const done = seen.find((e) => e.type === "response.output_text.done");
    expect(done?.type === "response.output_text.done" && done.logprobs?.length).toBe(streamed.length);
  });

  it("takes a request shaped as Codex sends it: namespaced tools opened, hosted tools not offered, unknown fields ignored", async () => {
    // The shape Codex 0.171 sends, field for field (its texts shortened), as captured from a real run.
    const fn = (name: string) => ({ type: "function", name, description: name, strict: false, parameters: { type: "object", properties: {}, additionalProperties: false } });
    const body = {
      model: "qwen-tools",
      stream: true,
      instructions: "You are Codex.",
      input: [
        { type: "message", role: "developer", content: [{ type: "input_text", text: "<permissions>read-only</permissions>" }] },
        { type: "message", role: "user", content: [{ type: "input_text", text: "Weather in Paris and Tokyo?" }] },
      ],
      tools: [
        fn("exec_command"),
        { type: "namespace", name: "multi_agent_v1", description: "Sub-agents", tools: [fn("spawn_agent"), fn("close_agent")] },
        { type: "web_search", external_web_access: false },
        { ...fn("get_weather"), parameters: weatherTool.parameters },
      ],
      tool_choice: "auto",
      parallel_tool_calls: true,
      reasoning: { summary: "auto" },
      store: false,
      include: ["reasoning.encrypted_content"],
      prompt_cache_key: "01a2-session",
      client_metadata: { turn_id: "t1" },
    };
    const response = await fetch(`${coordinator.url}/v1/responses`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const text = await response.text();
    const assigned = tap.messages.flatMap((t) => (t.message.type === "TaskAssigned" ? [t.message] : []));
    const task = assigned.at(-1);

    expect(response.status, text).toBe(200);
    expect(text).toContain("event: response.completed");
    expect(text).toContain("event: response.function_call_arguments.done");
    expect(task?.tools?.map((tool) => (tool as { function: { name: string } }).function.name)).toEqual(["exec_command", "spawn_agent", "close_agent", "get_weather"]);
    const completed = text.split("\n\n").find((frame) => frame.startsWith("event: response.completed"));
    const echoed = (JSON.parse(completed?.split("\ndata: ")[1] ?? "{}") as { response: { tools: Array<{ name: string }> } }).response.tools;
    expect(echoed.map((tool) => tool.name)).toEqual(["exec_command", "spawn_agent", "close_agent", "get_weather"]);
  });

  it("answers an unknown model with 404 and a bad body with 400, in OpenAI's error shape", async () => {
    const unknown = await client.responses.create({ model: "no-such-model", input: question }).catch((error: unknown) => error);
    const missing = await fetch(`${coordinator.url}/v1/responses`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: "simulator" }),
    });
    const broken = await fetch(`${coordinator.url}/v1/responses`, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{" });

    expect(unknown).toMatchObject({ status: 404, code: "model_not_found", param: "model" });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toEqual({
      error: { message: "Missing required parameter: 'input'.", type: "invalid_request_error", param: "input", code: null },
    });
    expect(broken.status).toBe(400);
    expect(await broken.json()).toMatchObject({ error: { type: "invalid_request_error" } });
  });

  describe("through the Vercel AI SDK's OpenAI provider", () => {
    const paths: string[] = [];
    const provider = () =>
      createOpenAI({
        baseURL: `${coordinator.url}/v1`,
        apiKey: "unused",
        fetch: (input, init) => {
          paths.push(new URL(input instanceof Request ? input.url : String(input)).pathname);
          return fetch(input, init);
        },
      });

    it("generates text through /v1/responses (the provider's default model)", async () => {
      paths.length = 0;
      const result = await generateText({ model: provider()("simulator"), prompt: question });

      expect(result.text).toBe(expected.answer);
      expect(result.finishReason).toBe("stop");
      expect(result.usage.outputTokens).toBeGreaterThan(0);
      expect(paths).toEqual(["/v1/responses"]);
    });

    it("streams text", async () => {
      paths.length = 0;
      const result = streamText({ model: provider()("simulator"), prompt: question });
      let text = "";
      for await (const delta of result.textStream) text += delta;

      expect(text).toBe(expected.answer);
      expect(await result.finishReason).toBe("stop");
      expect(paths).toEqual(["/v1/responses"]);
    });

    it("shows the model's reasoning when asked for a reasoning summary", async () => {
      const result = streamText({ model: provider()("simulator"), prompt: question, providerOptions: { openai: { forceReasoning: true, reasoningSummary: "auto" } } });
      let text = "";
      for await (const delta of result.textStream) text += delta;

      expect(text).toBe(expected.answer);
      expect(await result.reasoningText).toBe(expected.reasoning);
    });

    it("returns tool calls made with tool()", async () => {
      const result = await generateText({
        model: provider()("qwen-tools"),
        prompt: "Weather in Paris and Tokyo?",
        tools: {
          get_weather: tool({
            description: "Current weather",
            inputSchema: jsonSchema<{ city: string }>({ type: "object", properties: { city: { type: "string" } }, required: ["city"] }),
          }),
        },
      });

      expect(result.finishReason).toBe("tool-calls");
      expect(result.toolCalls.map((call) => [call.toolName, call.input])).toEqual([
        ["get_weather", { city: "Paris" }],
        ["get_weather", { city: "Tokyo" }],
      ]);
    });
  });
});
