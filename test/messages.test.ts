// Anthropic's Messages API end to end: the official @anthropic-ai/sdk and a raw SSE reader against a real coordinator
// and real simulator workers (joined through wire taps, to see what reaches them).
import Anthropic from "@anthropic-ai/sdk";
import fc from "fast-check";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { InvalidRequestError } from "../src/api/errors.js";
import { parseMessagesRequest, toTaskRequest } from "../src/api/messages-request.js";
import { toolInput } from "../src/api/chat-response.js";
import type { RunningCoordinator } from "../src/coordinator.js";
import { defaultSimulatorOptions, simulatedReply } from "../src/worker/engines/simulator.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker, withExtensions } from "./support/cluster.js";
import { postSse } from "./support/sse.js";
import { startWireTap, type Tapped, type WireTap } from "./support/wire-tap.js";

const question = "What is the capital of France?";
const messages = [{ role: "user" as const, content: question }];
const expected = simulatedReply(messages);

const hermesScript =
  "<think>Weather for two cities: call the tool twice.</think>" +
  '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n' +
  '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo", "unit": "celsius"}}\n</tool_call>';

const tools: Anthropic.Tool[] = [
  {
    name: "get_weather",
    description: "Current weather",
    input_schema: { type: "object", properties: { city: { type: "string" }, unit: { type: "string" } }, required: ["city"] },
  },
];

function anthropicClient(coordinator: RunningCoordinator, apiKey = "unused"): Anthropic {
  return new Anthropic({ baseURL: coordinator.url, apiKey, maxRetries: 0, timeout: 20_000 });
}

interface NamedEvent {
  event: string;
  data: Record<string, unknown>;
}

/** POSTs a streamed Messages request and reads its `event:`/`data:` frames as they were written. */
async function postEvents(coordinator: RunningCoordinator, body: Record<string, unknown>) {
  const raw = await postSse(`${coordinator.url}/v1/messages`, { stream: true, ...body });
  const events: NamedEvent[] = raw.frames.map((frame) => {
    const match = /^event: (.+)\ndata: (.+)$/.exec(frame);
    if (!match) throw new Error(`not an event frame: ${JSON.stringify(frame)}`);
    return { event: match[1] as string, data: JSON.parse(match[2] as string) as Record<string, unknown> };
  });
  return { ...raw, events };
}

async function postJson(coordinator: RunningCoordinator, body: string, path = "/v1/messages") {
  const response = await fetch(`${coordinator.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body });
  return { status: response.status, body: (await response.json()) as unknown };
}

/** The error a request fails with (settled at once, so no rejection is left unhandled while others run). */
function failure(request: Promise<unknown>): Promise<unknown> {
  return request.then(
    () => {
      throw new Error("expected the request to fail");
    },
    (error: unknown) => error,
  );
}

const assignedTo = (tap: WireTap) =>
  tap.messages.flatMap((t: Tapped) => (t.from === "master" && t.message.type === "TaskAssigned" ? [t.message] : []));

describe("POST /v1/messages with simulator workers", () => {
  let coordinator: RunningCoordinator;
  let client: Anthropic;
  const taps: WireTap[] = [];
  const workers: TestWorker[] = [];
  let simTap: WireTap;
  let toolTap: WireTap;

  beforeAll(async () => {
    coordinator = await startTestCoordinator();
    client = anthropicClient(coordinator);
    simTap = await startWireTap(coordinator.workerUrl);
    toolTap = await startWireTap(coordinator.workerUrl);
    taps.push(simTap, toolTap);
    workers.push(
      await startSimWorker({ workerUrl: simTap.url }, { tokensPerSecond: 2_000 }),
      await startSimWorker({ workerUrl: toolTap.url }, { models: ["qwen-tools"], script: hermesScript, format: "hermes", tokensPerSecond: 2_000 }),
    );
  });

  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    for (const tap of taps) await tap.close();
    await coordinator.close();
  });

  it("answers messages.create with a message object: one text block, end_turn, usage", async () => {
    const message = await client.messages.create({ model: "simulator", max_tokens: 256, messages });

    expect(message).toMatchObject({
      type: "message",
      role: "assistant",
      model: "simulator",
      content: [{ type: "text", text: expected.answer }],
      stop_reason: "end_turn",
      stop_sequence: null,
    });
    expect(message.id).toMatch(/^msg_/);
    expect(message.usage.input_tokens).toBeGreaterThan(0);
    expect(message.usage.output_tokens).toBeGreaterThan(0);
  });

  it("streams through messages.create({stream: true}) and messages.stream().finalMessage()", async () => {
    const stream = await client.messages.create({ model: "simulator", max_tokens: 256, messages, stream: true });
    let text = "";
    let stopReason: string | null = null;
    for await (const event of stream) {
      if (event.type === "content_block_delta" && event.delta.type === "text_delta") text += event.delta.text;
      if (event.type === "message_delta") stopReason = event.delta.stop_reason;
    }
    const final = await client.messages.stream({ model: "simulator", max_tokens: 256, messages }).finalMessage();

    expect(text).toBe(expected.answer);
    expect(stopReason).toBe("end_turn");
    expect(final.content).toEqual([{ type: "text", text: expected.answer }]);
    expect(final.stop_reason).toBe("end_turn");
    expect(final.usage.input_tokens).toBeGreaterThan(0);
  });

  it("writes the documented event order: message_start, one block's start/deltas/stop, message_delta, message_stop", async () => {
    const whole = await client.messages.create({ model: "simulator", max_tokens: 256, messages });
    const raw = await postEvents(coordinator, { model: "simulator", max_tokens: 256, messages });
    const names = raw.events.map((e) => e.event);

    expect(raw.status).toBe(200);
    expect(raw.headers.get("content-type")).toContain("text/event-stream");
    expect(names[0]).toBe("message_start");
    expect(names.slice(1, 2)).toEqual(["content_block_start"]);
    expect(names.slice(-3)).toEqual(["content_block_stop", "message_delta", "message_stop"]);
    expect(new Set(names.slice(2, -3))).toEqual(new Set(["content_block_delta"]));
    for (const { event, data } of raw.events) expect(data.type).toBe(event);
    expect(raw.events[0]?.data.message).toEqual({
      id: expect.stringMatching(/^msg_/),
      type: "message",
      role: "assistant",
      model: "simulator",
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 0, output_tokens: 0 },
    });
    expect(raw.events[1]?.data).toEqual({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } });
    const deltas = raw.events.filter((e) => e.event === "content_block_delta").map((e) => e.data);
    expect(deltas.every((d) => d.index === 0)).toBe(true);
    expect(deltas.map((d) => (d.delta as { text: string }).text).join("")).toBe(expected.answer);
    expect(raw.events.at(-3)?.data).toEqual({ type: "content_block_stop", index: 0 });
    // Input tokens are known only at the end: message_delta carries them with the output tokens.
    expect(raw.events.at(-2)?.data).toEqual({
      type: "message_delta",
      delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: { input_tokens: whole.usage.input_tokens, output_tokens: whole.usage.output_tokens, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
    });
  });

  it("gives thinking blocks when thinking is enabled, tells the template so, and hides them when disabled", async () => {
    const body = { model: "simulator", max_tokens: 256, messages };
    const thinking = await client.messages.create({ ...body, thinking: { type: "enabled", budget_tokens: 1024 } });
    const enabledTask = assignedTo(simTap).at(-1);
    const raw = await postEvents(coordinator, { ...body, thinking: { type: "enabled", budget_tokens: 1024 } });
    const disabled = await client.messages.create({ ...body, thinking: { type: "disabled" } });
    const disabledTask = assignedTo(simTap).at(-1);

    expect(thinking.content).toEqual([
      { type: "thinking", thinking: expected.reasoning, signature: "" },
      { type: "text", text: expected.answer },
    ]);
    expect(enabledTask?.chatTemplateKwargs).toEqual({ enable_thinking: true });
    const blocks = raw.events.filter((e) => e.event === "content_block_start").map((e) => [e.data.index, (e.data.content_block as { type: string }).type]);
    expect(blocks).toEqual([
      [0, "thinking"],
      [1, "text"],
    ]);
    // The thinking block ends with its (empty) signature, then its stop, before the text block opens.
    const firstStop = raw.events.findIndex((e) => e.event === "content_block_stop");
    expect(raw.events[firstStop - 1]?.data).toEqual({ type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: "" } });
    expect(disabled.content).toEqual([{ type: "text", text: expected.answer }]);
    expect(disabledTask?.chatTemplateKwargs).toEqual({ enable_thinking: false });
  });

  it("maps system, stop_sequences, temperature and max_tokens onto the task, and ends with max_tokens at the limit", async () => {
    // This SDK's types no longer list the sampling parameters (newer Claude models refuse them); the API takes them.
    const body = {
      model: "simulator",
      max_tokens: 3,
      system: [{ type: "text" as const, text: "Be brief.", cache_control: { type: "ephemeral" as const } }],
      messages: [{ role: "user" as const, content: [{ type: "text" as const, text: question }] }],
      stop_sequences: ["\n\nHuman:"],
      metadata: { user_id: "someone" },
    };
    const message = await client.messages.create(withExtensions(body, { temperature: 0.5, top_p: 0.9 }));
    const task = assignedTo(simTap).at(-1);

    expect(message.stop_reason).toBe("max_tokens");
    expect(message.usage.output_tokens).toBe(3);
    expect(task?.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: question },
    ]);
    expect(task?.params).toEqual({ maxTokens: 3, temperature: 0.5, topP: 0.9, stop: ["\n\nHuman:"] });
  });

  it("ends with stop_reason stop_sequence naming the earliest matched stop sequence, whole and streamed", async () => {
    // The simulator's answer holds "simulated" before "canned"; the list's order does not decide, the text does.
    const body = { model: "simulator", max_tokens: 256, messages, stop_sequences: ["no such words", "canned", "simulated"] };
    const before = expected.answer.slice(0, expected.answer.indexOf("simulated"));

    const whole = await client.messages.create(body);
    const stream = await client.messages.create({ ...body, stream: true });
    let deltaStop: { stop_reason: string | null; stop_sequence: string | null } | undefined;
    let text = "";
    for await (const event of stream) {
      if (event.type === "content_block_delta" && event.delta.type === "text_delta") text += event.delta.text;
      if (event.type === "message_delta") deltaStop = { stop_reason: event.delta.stop_reason, stop_sequence: event.delta.stop_sequence };
    }
    const final = await client.messages.stream(body).finalMessage();
    const finished = simTap.messages.flatMap((t: Tapped) => (t.from === "worker" && t.message.type === "TaskFinished" ? [t.message] : [])).at(-1);

    expect(whole).toMatchObject({ content: [{ type: "text", text: before }], stop_reason: "stop_sequence", stop_sequence: "simulated" });
    expect(text).toBe(before);
    expect(deltaStop).toEqual({ stop_reason: "stop_sequence", stop_sequence: "simulated" });
    expect(final).toMatchObject({ content: [{ type: "text", text: before }], stop_reason: "stop_sequence", stop_sequence: "simulated" });
    expect(finished).toMatchObject({ finishReason: "stop", stopSequence: "simulated" });
  });

  it("keeps end_turn and a null stop_sequence when the stop sequences do not occur", async () => {
    const message = await client.messages.create({ model: "simulator", max_tokens: 256, messages, stop_sequences: ["no such words"] });

    expect(message).toMatchObject({ content: [{ type: "text", text: expected.answer }], stop_reason: "end_turn", stop_sequence: null });
  });

  it("leaves chat completions' finish_reason at stop when a stop string matched", async () => {
    const completion = await openaiClient(coordinator).chat.completions.create({ model: "simulator", messages, stop: ["canned"] });

    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(completion.choices[0]?.message.content).toBe(expected.answer.slice(0, expected.answer.indexOf("canned")));
  });

  it("caps a max_tokens larger than the model's context at the context length, as Claude Code sends one sized for Claude", async () => {
    const message = await client.messages.create({ model: "simulator", max_tokens: 1_000_000, messages });
    const task = assignedTo(simTap).at(-1);

    expect(message.stop_reason).toBe("end_turn");
    expect(task?.params.maxTokens).toBe(defaultSimulatorOptions.contextLength);
  });

  it("round-trips tool use: tool_use blocks with parsed input and stop_reason tool_use; tool_result reaches the worker as a tool message", async () => {
    const ask = { model: "qwen-tools", max_tokens: 512, tools, tool_choice: { type: "any" as const }, messages: [{ role: "user" as const, content: "Weather in Paris and Tokyo?" }] };
    const whole = await client.messages.create(ask);
    const streamed = await client.messages.stream(ask).finalMessage();
    const firstTask = assignedTo(toolTap).at(-1);

    for (const message of [whole, streamed]) {
      expect(message.stop_reason).toBe("tool_use");
      expect(message.content).toEqual([
        { type: "tool_use", id: expect.stringMatching(/^call_/), name: "get_weather", input: { city: "Paris" } },
        { type: "tool_use", id: expect.stringMatching(/^call_/), name: "get_weather", input: { city: "Tokyo", unit: "celsius" } },
      ]);
    }
    expect(firstTask?.tools).toEqual([{ type: "function", function: { name: "get_weather", description: "Current weather", parameters: tools[0]?.input_schema } }]);
    expect(firstTask?.toolChoice).toBe("required");

    const [paris, tokyo] = streamed.content.flatMap((block) => (block.type === "tool_use" ? [block] : []));
    await client.messages.create({
      ...ask,
      tool_choice: { type: "auto" },
      messages: [
        ...ask.messages,
        { role: "assistant", content: streamed.content },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: paris?.id ?? "", content: "18 degrees" },
            { type: "tool_result", tool_use_id: tokyo?.id ?? "", content: [{ type: "text", text: "unavailable" }], is_error: true },
            { type: "text", text: "Summarise." },
          ],
        },
      ],
    });
    const secondTask = assignedTo(toolTap).at(-1);

    expect(secondTask?.messages.slice(1)).toEqual([
      {
        role: "assistant",
        content: "",
        toolCalls: [
          { id: paris?.id, type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
          { id: tokyo?.id, type: "function", function: { name: "get_weather", arguments: '{"city":"Tokyo","unit":"celsius"}' } },
        ],
      },
      { role: "tool", content: "18 degrees", toolCallId: paris?.id, name: "get_weather" },
      { role: "tool", content: "Error: unavailable", toolCallId: tokyo?.id, name: "get_weather" },
      { role: "user", content: "Summarise." },
    ]);
    expect(secondTask?.toolChoice).toBe("auto");
  });

  it("drops thinking blocks of earlier assistant turns from the prompt", async () => {
    await client.messages.create({
      model: "simulator",
      max_tokens: 64,
      messages: [
        { role: "user", content: "Hi" },
        { role: "assistant", content: [{ type: "thinking", thinking: "old thoughts", signature: "sig" }, { type: "redacted_thinking", data: "xyz" }, { type: "text", text: "Hello." }] },
        { role: "user", content: question },
      ],
    });

    expect(assignedTo(simTap).at(-1)?.messages).toEqual([
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello." },
      { role: "user", content: question },
    ]);
  });

  it("counts tokens with an estimate, and answers 404 not_found_error for an unknown model", async () => {
    const counted = await client.messages.countTokens({ model: "simulator", system: "Be brief.", messages, tools });
    const longer = await client.messages.countTokens({ model: "simulator", messages: [{ role: "user", content: question.repeat(10) }] });

    expect(Number.isInteger(counted.input_tokens)).toBe(true);
    expect(counted.input_tokens).toBeGreaterThan(0);
    expect(longer.input_tokens).toBeGreaterThan(counted.input_tokens - 60);
    await expect(client.messages.countTokens({ model: "no-such-model", messages })).rejects.toMatchObject({
      status: 404,
      error: { type: "error", error: { type: "not_found_error" } },
    });
  });

  it("counts requests under their route in /metrics", async () => {
    await client.messages.create({ model: "simulator", max_tokens: 16, messages });
    await client.messages.countTokens({ model: "simulator", messages });
    const text = await (await fetch(`${coordinator.url}/metrics`)).text();

    const requests = text.split("\n").filter((line) => line.startsWith("coordinator_http_requests_total{"));
    expect(requests.some((line) => /route="\/v1\/messages"/.test(line) && /model="simulator"/.test(line) && /status="200"/.test(line))).toBe(true);
    expect(requests.some((line) => /route="\/v1\/messages\/count_tokens"/.test(line) && /status="200"/.test(line))).toBe(true);
  });

  it("passes top_k on to the worker (the model's workers announce sampling)", async () => {
    await client.messages.create(withExtensions({ model: "simulator", max_tokens: 16, messages }, { top_k: 5 }));

    expect(assignedTo(simTap).at(-1)?.params.topK).toBe(5);
  });

  it("takes a request shaped as Claude Code sends it (system turns mid-conversation, adaptive thinking, effort, context editing)", async () => {
    // The shape Claude Code 2.1 sends, field for field (its texts shortened), as captured from a real run.
    const body = {
      model: "simulator",
      max_tokens: 32_000,
      stream: true,
      system: [
        { type: "text", text: "x-billing-header: cc_version=2.1;" },
        { type: "text", text: "You are an agent.", cache_control: { type: "ephemeral" } },
      ],
      messages: [
        { role: "user", content: [{ type: "text", text: "<system-reminder>context</system-reminder>" }, { type: "text", text: question, cache_control: { type: "ephemeral" } }] },
        { role: "system", content: "Available agent types: claude" },
      ],
      tools: [{ name: "Bash", description: "Runs a command", input_schema: { type: "object", properties: { command: { type: "string" } } } }],
      metadata: { user_id: JSON.stringify({ device_id: "d", session_id: "s" }) },
      thinking: { type: "adaptive" },
      output_config: { effort: "high" },
      context_management: { edits: [{ type: "clear_thinking_20251015", keep: "all" }] },
    };
    const response = await fetch(`${coordinator.url}/v1/messages?beta=true`, {
      method: "POST",
      headers: { "content-type": "application/json", "anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219,mid-conversation-system-2026-04-07" },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    const task = assignedTo(simTap).at(-1);

    expect(response.status, text).toBe(200);
    expect(text).toContain("event: message_stop");
    expect(task?.messages.map((m) => m.role)).toEqual(["system", "user", "system"]);
    expect(task?.messages[2]?.content).toBe("Available agent types: claude");
    expect(task?.reasoningEffort).toBe("high");
    expect(task?.tools).toHaveLength(1);
  });

  it("takes structured output (output_config.format) and refuses context edits it does not make", async () => {
    const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] };
    const structured = await client.messages.create(
      withExtensions({ model: "simulator", max_tokens: 64, messages }, { output_config: { format: { type: "json_schema", schema } } }),
    );
    const edits = await postJson(
      coordinator,
      JSON.stringify({ model: "simulator", max_tokens: 16, messages, context_management: { edits: [{ type: "clear_tool_uses_20250919" }] } }),
    );

    expect(assignedTo(simTap).at(-1)?.responseFormat).toEqual({ type: "json_schema", schema });
    expect(JSON.parse(structured.content.map((block) => (block.type === "text" ? block.text : "")).join(""))).toEqual({ ok: true });
    expect(edits).toMatchObject({ status: 400, body: { error: { type: "invalid_request_error", message: expect.stringContaining("context_management.edits.0.type") } } });
  });

  it("answers errors in Anthropic's shape, naming the field", async () => {
    const missing = await postJson(coordinator, JSON.stringify({ model: "simulator", messages }));
    const invalid = await postJson(coordinator, "{not json");
    const image = await failure(client.messages.create({
      model: "simulator",
      max_tokens: 16,
      messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } }] }],
    }));
    const serverTool = await failure(
      client.messages.create({ model: "simulator", max_tokens: 16, messages, tools: [{ type: "web_search_20250305", name: "web_search" }] }),
    );
    const unknown = await failure(client.messages.create({ model: "no-such-model", max_tokens: 16, messages }));

    expect(missing).toEqual({ status: 400, body: { type: "error", error: { type: "invalid_request_error", message: "max_tokens: Field required" } } });
    expect(invalid).toMatchObject({ status: 400, body: { type: "error", error: { type: "invalid_request_error" } } });
    const invalidRequest = (field: string) => ({
      status: 400,
      error: { type: "error", error: { type: "invalid_request_error", message: expect.stringContaining(field) } },
    });
    // Images are taken, and refused before queueing for a model whose workers do not announce vision.
    expect(image).toMatchObject(invalidRequest("does not support images"));
    expect(serverTool).toMatchObject(invalidRequest("tools.0.type: server tools ('web_search_20250305')"));
    expect(unknown).toMatchObject({ status: 404, error: { type: "error", error: { type: "not_found_error" } } });
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
  });
});

describe("Anthropic streams over time", () => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;

  afterEach(async () => {
    await worker?.stop();
    await coordinator?.close();
    worker = undefined;
    coordinator = undefined;
  });

  it("sends ping events during a silent prefill, after message_start; the SDK is unaffected", async () => {
    coordinator = await startTestCoordinator({ keepaliveMs: 100 });
    worker = await startSimWorker(coordinator, { prefillMs: 1_000 });

    const raw = await postEvents(coordinator, { model: "simulator", max_tokens: 256, messages });
    const final = await anthropicClient(coordinator).messages.stream({ model: "simulator", max_tokens: 256, messages }).finalMessage();

    const firstBlock = raw.events.findIndex((e) => e.event === "content_block_start");
    expect(raw.events[0]?.event).toBe("message_start");
    expect(raw.events.slice(1, firstBlock).every((e) => e.event === "ping")).toBe(true);
    expect(firstBlock).toBeGreaterThanOrEqual(4);
    expect(raw.frames.find((f) => f.startsWith("event: ping"))).toBe('event: ping\ndata: {"type":"ping"}');
    expect(raw.events.at(-1)?.event).toBe("message_stop");
    expect(final.content).toEqual([{ type: "text", text: expected.answer }]);
  });

  it("cancels the worker's task when the SDK stream is aborted mid-way", async () => {
    coordinator = await startTestCoordinator();
    worker = await startSimWorker(coordinator, { tokensPerSecond: 50, replyTokens: 2_000 });
    const running = worker;

    const stream = anthropicClient(coordinator).messages.stream({ model: "simulator", max_tokens: 4_000, messages });
    let texts = 0;
    stream.on("text", () => {
      texts += 1;
      if (texts === 3) stream.abort();
    });
    await expect(stream.done()).rejects.toBeInstanceOf(Anthropic.APIUserAbortError);

    const taskId = running.log.started[0] as string;
    await running.log.until(() => running.log.aborted.has(taskId), "the engine to see the abort");
    expect(running.log.ended).not.toContain(taskId);
    await eventually(() => coordinator?.master.liveTasks === 0, "no task left on the coordinator");
  });

  it("sends event: error in Anthropic's shape when the worker fails mid-stream", async () => {
    coordinator = await startTestCoordinator();
    worker = await startSimWorker(coordinator, { failAfterTokens: 40 });

    const raw = await postEvents(coordinator, { model: "simulator", max_tokens: 256, messages });
    const streamed = await failure(anthropicClient(coordinator).messages.stream({ model: "simulator", max_tokens: 256, messages }).finalMessage());

    expect(raw.events[0]?.event).toBe("message_start");
    expect(raw.events.at(-1)).toEqual({ event: "error", data: { type: "error", error: { type: "api_error", message: expect.any(String) } } });
    expect(raw.events.some((e) => e.event === "message_stop")).toBe(false);
    expect(streamed).toMatchObject({ error: { type: "error", error: { type: "api_error" } } });
  });

  it("refuses a wrong x-api-key with 401 authentication_error, and serves the right one", async () => {
    coordinator = await startTestCoordinator({ apiKey: ["sk-right-key-0123456789"] });
    worker = await startSimWorker(coordinator);

    const wrong = await failure(anthropicClient(coordinator, "sk-wrong-key").messages.create({ model: "simulator", max_tokens: 64, messages }));
    const right = await anthropicClient(coordinator, "sk-right-key-0123456789").messages.create({ model: "simulator", max_tokens: 64, messages });

    expect(wrong).toMatchObject({ status: 401, error: { type: "error", error: { type: "authentication_error" } } });
    expect(right.content).toEqual([{ type: "text", text: expected.answer }]);
  });
});

describe("tool input of a whole reply", () => {
  it("parses a JSON object, makes empty arguments {}, and keeps anything else as text under _raw_arguments", () => {
    expect(toolInput('{"city":"Oslo"}')).toEqual({ city: "Oslo" });
    expect(toolInput("")).toEqual({});
    expect(toolInput("{city: Oslo}")).toEqual({ _raw_arguments: "{city: Oslo}" });
    expect(toolInput('["Oslo"]')).toEqual({ _raw_arguments: '["Oslo"]' });
  });
});

describe("Messages request validation (property)", () => {
  const limits = { maxMessages: 1_000, maxPromptChars: 1_000_000 };
  /** Parses and translates `body`; anything thrown but an InvalidRequestError fails the property. */
  function accepts(body: unknown): boolean {
    try {
      toTaskRequest(parseMessagesRequest(body, limits));
      return true;
    } catch (error) {
      if (error instanceof InvalidRequestError) return false;
      throw error;
    }
  }

  it("never throws anything but InvalidRequestError, whatever JSON it gets", () => {
    const block = fc.record(
      {
        type: fc.constantFrom("text", "tool_use", "tool_result", "thinking", "image", "other"),
        text: fc.jsonValue(),
        id: fc.jsonValue(),
        name: fc.jsonValue(),
        input: fc.jsonValue(),
        tool_use_id: fc.jsonValue(),
        content: fc.oneof(fc.string(), fc.jsonValue()),
      },
      { requiredKeys: ["type"] },
    );
    const message = fc.record({ role: fc.oneof(fc.constantFrom("user", "assistant"), fc.jsonValue()), content: fc.oneof(fc.string(), fc.array(block), fc.jsonValue()) });
    fc.assert(fc.property(fc.jsonValue(), (value) => void accepts(value)), { numRuns: 300 });
    fc.assert(
      fc.property(
        fc.record(
          {
            model: fc.oneof(fc.constant("m"), fc.jsonValue()),
            max_tokens: fc.oneof(fc.constant(16), fc.jsonValue()),
            messages: fc.oneof(fc.array(message, { minLength: 1 }), fc.jsonValue()),
            system: fc.jsonValue(),
            tools: fc.jsonValue(),
            tool_choice: fc.jsonValue(),
            thinking: fc.jsonValue(),
          },
          { requiredKeys: ["model", "max_tokens", "messages"] },
        ),
        (value) => void accepts(value),
      ),
      { numRuns: 500 },
    );
  });
});
