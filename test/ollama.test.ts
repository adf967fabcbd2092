// Ollama's API on the coordinator's port, through the official `ollama` npm client: chat and generate (streamed and
// not), thinking, tool calls, the model listings, errors in Ollama's shape, keepalive lines and cancellation.
import { Ollama } from "ollama";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { simulatedReply } from "../src/worker/engines/simulator.js";
import { eventually, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { startWireTap, type WireTap } from "./support/wire-tap.js";

const question = "What is a coordinator?";
const expected = simulatedReply([{ role: "user", content: question }]);
const messages = [{ role: "user", content: question }];
const toolScript =
  "<think>Need the weather.</think>" + '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';

describe("Ollama's API", () => {
  let coordinator: RunningCoordinator;
  let ollama: Ollama;
  let tap: WireTap;
  const workers: Record<string, TestWorker> = {};

  beforeAll(async () => {
    coordinator = await startTestCoordinator({ keepaliveMs: 100 });
    ollama = new Ollama({ host: coordinator.url });
    tap = await startWireTap(coordinator.workerUrl);
    workers.simulator = await startSimWorker({ workerUrl: tap.url }, { tokensPerSecond: 2_000 });
    workers.tools = await startSimWorker({ workerUrl: tap.url }, { models: ["qwen-tools"], script: toolScript, format: "hermes", tokensPerSecond: 2_000 });
    workers.slow = await startSimWorker(coordinator, { models: ["slow"], tokensPerSecond: 50, replyTokens: 2_000, prefillMs: 600 });
  });

  afterAll(async () => {
    for (const worker of Object.values(workers)) await worker.stop();
    await tap.close();
    await coordinator.close();
  });

  const lastAssigned = () => tap.messages.flatMap((t) => (t.message.type === "TaskAssigned" ? [t.message] : [])).at(-1);

  it("chats, whole and streamed, with Ollama's counts and durations on the last object", async () => {
    const whole = await ollama.chat({ model: "simulator", messages });
    const stream = await ollama.chat({ model: "simulator", messages, stream: true });
    let streamed = "";
    let last: Awaited<ReturnType<typeof ollama.chat>> | undefined;
    for await (const part of stream) {
      streamed += part.message.content;
      last = part;
    }

    expect(whole.message).toEqual({ role: "assistant", content: expected.answer });
    expect(whole).toMatchObject({ model: "simulator", done: true, done_reason: "stop", load_duration: 0 });
    expect(whole.prompt_eval_count).toBeGreaterThan(0);
    expect(whole.eval_count).toBeGreaterThan(0);
    expect(whole.total_duration).toBeGreaterThanOrEqual(whole.eval_duration);
    expect(streamed).toBe(expected.answer);
    expect(last).toMatchObject({ done: true, done_reason: "stop" });
  });

  it("shows thinking in the thinking field when asked (think: true), and passes options and format on", async () => {
    const thought = await ollama.chat({ model: "simulator", messages, think: true });
    const thoughtTask = lastAssigned();
    await ollama.chat({ model: "simulator", messages, format: "json", options: { temperature: 0.2, top_k: 20, num_predict: 64, seed: 3, stop: ["\n\n"], repeat_penalty: 1.1 } });
    const optionsTask = lastAssigned();

    expect(thought.message).toEqual({ role: "assistant", content: expected.answer, thinking: expected.reasoning });
    expect(thoughtTask?.chatTemplateKwargs).toEqual({ enable_thinking: true });
    expect(optionsTask?.params).toEqual({ temperature: 0.2, topK: 20, maxTokens: 64, seed: 3, stop: ["\n\n"], repetitionPenalty: 1.1 });
    expect(optionsTask?.responseFormat).toEqual({ type: "json_object" });
  });

  it("generates from a prompt, whole and streamed", async () => {
    const whole = await ollama.generate({ model: "simulator", prompt: question, system: "Be brief." });
    const task = lastAssigned();
    let streamed = "";
    for await (const part of await ollama.generate({ model: "simulator", prompt: question, stream: true })) streamed += part.response;

    expect(whole).toMatchObject({ model: "simulator", response: expected.answer, done: true, done_reason: "stop" });
    expect(task?.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: question },
    ]);
    expect(streamed).toBe(expected.answer);
  });

  it("returns tool calls with their arguments as objects, and takes the tool's answer back", async () => {
    const tools = [{ type: "function", function: { name: "get_weather", description: "Weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
    const reply = await ollama.chat({ model: "qwen-tools", messages: [{ role: "user", content: "Weather in Paris?" }], tools });
    await ollama.chat({
      model: "qwen-tools",
      messages: [{ role: "user", content: "Weather in Paris?" }, reply.message, { role: "tool", content: "Sunny, 24 C", tool_name: "get_weather" }],
      tools,
    });
    const followUp = lastAssigned();

    expect(reply.message.tool_calls).toEqual([{ function: { name: "get_weather", arguments: { city: "Paris" } } }]);
    expect(reply.done_reason).toBe("stop");
    expect(followUp?.messages.at(-1)).toEqual({ role: "tool", content: "Sunny, 24 C", name: "get_weather" });
    expect(followUp?.messages[1]?.toolCalls).toEqual([{ id: "call_0", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }]);
  });

  it("lists the served models as Ollama does: tags, show, ps and version", async () => {
    const tags = await ollama.list();
    const shown = await ollama.show({ model: "simulator" });
    const running = await ollama.ps();
    const { version } = await ollama.version();

    expect(tags.models.map((m) => m.name).sort()).toEqual(["qwen-tools", "simulator", "slow"]);
    expect(shown.capabilities).toEqual(["completion", "embedding", "tools"]);
    expect(shown.model_info).toMatchObject({ "general.context_length": 32_768 });
    expect(running.models.map((m) => m.name).sort()).toEqual(["qwen-tools", "simulator", "slow"]);
    expect(version).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it("answers errors in Ollama's shape, which its client shows", async () => {
    const unknown = await ollama.chat({ model: "no-such-model", messages }).catch((error: unknown) => error);
    const raw = await fetch(`${coordinator.url}/api/generate`, { method: "POST", body: JSON.stringify({ model: "simulator", prompt: "x", raw: true }) });
    const option = await fetch(`${coordinator.url}/api/chat`, { method: "POST", body: JSON.stringify({ model: "simulator", messages, options: { mirostat: 2 } }) });
    const context = await fetch(`${coordinator.url}/api/chat`, { method: "POST", body: JSON.stringify({ model: "simulator", messages, options: { num_ctx: 1_000_000 } }) });
    const foreign = await fetch(`${coordinator.url}/api/tags`, { headers: { origin: "https://evil.example" } });

    expect(unknown).toMatchObject({ status_code: 404, message: expect.stringContaining("no-such-model") });
    expect([raw.status, await raw.json()]).toEqual([400, { error: expect.stringContaining("raw") }]);
    expect([option.status, await option.json()]).toEqual([400, { error: expect.stringContaining("mirostat") }]);
    expect([context.status, await context.json()]).toEqual([400, { error: expect.stringContaining("num_ctx") }]);
    expect(foreign.status).toBe(403);
  });

  it("answers GET / as Ollama does for clients, and with the dashboard for browsers", async () => {
    const probe = await fetch(`${coordinator.url}/`);
    const browser = await fetch(`${coordinator.url}/`, { headers: { accept: "text/html,application/xhtml+xml" } });

    expect(await probe.text()).toBe("Ollama is running");
    expect(browser.headers.get("content-type")).toMatch(/^text\/html/);
    await browser.body?.cancel();
  });

  it("keeps a silent stream alive with empty message lines, which the client takes as nothing", async () => {
    const response = await fetch(`${coordinator.url}/api/chat`, { method: "POST", body: JSON.stringify({ model: "slow", messages, options: { num_predict: 3 } }) });
    const lines = (await response.text()).trim().split("\n").map((line) => JSON.parse(line) as { message: { content: string }; done: boolean });

    expect(response.headers.get("content-type")).toMatch(/^application\/x-ndjson/);
    const firstText = lines.findIndex((line) => line.message.content !== "");
    expect(lines.slice(0, firstText).length).toBeGreaterThanOrEqual(3);
    expect(lines.slice(0, firstText).every((line) => line.message.content === "" && !line.done)).toBe(true);
    expect(lines.at(-1)?.done).toBe(true);
  });

  it("cancels the worker's task when the client aborts a stream", async () => {
    const log = workers.slow?.log;
    if (!log) throw new Error("no slow worker");
    const stream = await ollama.chat({ model: "slow", messages, stream: true });
    let parts = 0;
    try {
      for await (const part of stream) {
        if (part.message.content) parts += 1;
        if (parts === 3) stream.abort();
      }
    } catch (error) {
      expect((error as Error).name).toBe("AbortError");
    }

    const taskId = log.started.at(-1) as string;
    await log.until(() => log.aborted.has(taskId), "the engine to see the abort");
    expect(log.ended).not.toContain(taskId);
    await eventually(() => coordinator.master.liveTasks === 0, "no task left");
  });
});
