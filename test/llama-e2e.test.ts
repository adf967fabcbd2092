// Real inference end to end: the openai SDK → a coordinator → a llama worker process → llama.cpp running the scripted
// test model; and an openai-engine worker in front of a second coordinator. No mocks: a wire tap between a worker
// process and its coordinator shows what the worker reports (chunks, cancellations, acknowledgements).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import { getLlama } from "node-llama-cpp";
import { Ollama } from "ollama";
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestModel, SCRIPTED_REPLY } from "../scripts/make-test-model.js";
import type { RunningCoordinator } from "../src/coordinator.js";
import { eventually, openaiClient, startTestCoordinator, TEST_TOKEN } from "./support/cluster.js";
import { type CliProcess, spawnCli } from "./support/processes.js";
import { startWireTap, type Tapped, type WireTap } from "./support/wire-tap.js";

const messages = [{ role: "user" as const, content: "hi there" }];
/** How the scripted model's chat template renders `messages` (see src/worker/engines/gguf/scripted-model.ts). */
const RENDERED_PROMPT = "<s><|user|>\nhi there\n<|assistant|>\n";
const REASONING = " The user says hello.";
const ANSWER = "Hello! How can I help?";
/** A worker process joins in ~6 s here; under a loaded test run it can take several times that. */
const JOIN_MS = 60_000;
const STARTUP_MS = 2 * JOIN_MS + 10_000;

let dir: string;
let scriptedPath: string;
let endlessPath: string;
/** The variant whose second choices close JSON strings and objects: under a grammar it ends within a few tokens. */
let closesJsonPath: string;
/** Usage as the model's own tokenizer counts it, computed in this process, apart from the worker. */
let expectedUsage: {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
  completion_tokens_details: { reasoning_tokens: unknown };
};
/**
 * The same, for the same chat served again by a worker whose sequence holds it: all of the prompt but its last token
 * is read from the prompt cache (the last is evaluated anew for the reply's first token).
 */
let warmUsage: typeof expectedUsage;

/** Everything a describe block started; `stopAll` stops the processes, then the taps, then the coordinators. */
const running: { processes: CliProcess[]; taps: WireTap[]; coordinators: RunningCoordinator[] } = {
  processes: [],
  taps: [],
  coordinators: [],
};

async function stopAll(): Promise<void> {
  await Promise.all(running.processes.splice(0).map((p) => p.kill()));
  await Promise.all(running.taps.splice(0).map((t) => t.close()));
  await Promise.all(running.coordinators.splice(0).map((c) => c.close()));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "llama-e2e-"));
  scriptedPath = (await makeTestModel(join(dir, "scripted.gguf"))).path;
  endlessPath = (await makeTestModel(join(dir, "endless.gguf"), { endless: true })).path;
  closesJsonPath = (await makeTestModel(join(dir, "closes-json.gguf"), { closesJson: true })).path;
  const llama = await getLlama({ gpu: false, build: "never", skipDownload: true });
  try {
    const model = await llama.loadModel({ modelPath: scriptedPath, vocabOnly: true });
    const prompt = model.tokenize(RENDERED_PROMPT, true).length;
    const completion = model.tokenize(SCRIPTED_REPLY).length;
    expectedUsage = {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
      prompt_tokens_details: { cached_tokens: 0 },
      // The parser's estimate from each chunk's token count: exact per token from a llama worker, rougher behind an
      // upstream that does not say how many tokens a chunk holds. Some, and fewer than the whole reply.
      completion_tokens_details: { reasoning_tokens: expect.toSatisfy((n: number) => n > 0 && n < completion) },
    };
    warmUsage = { ...expectedUsage, prompt_tokens_details: { cached_tokens: prompt - 1 } };
  } finally {
    await llama.dispose();
  }
}, STARTUP_MS);

afterAll(async () => {
  await stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function coordinator(overrides: Parameters<typeof startTestCoordinator>[0] = {}): Promise<RunningCoordinator> {
  const started = await startTestCoordinator(overrides);
  running.coordinators.push(started);
  return started;
}

/** Starts `coordinator worker` as a child process, joined to `target` through a wire tap; resolves once it joined. */
async function workerProcess(target: RunningCoordinator, args: string[]): Promise<{ process: CliProcess; tap: WireTap }> {
  const tap = await startWireTap(target.workerUrl);
  running.taps.push(tap);
  const process = spawnCli(["worker", "--join", tap.url, "--token", TEST_TOKEN, ...args]);
  running.processes.push(process);
  // Settle on whichever comes first: the join, the wait's timeout, or the process exiting (e.g. a startup error).
  const joined = process.waitFor(/joined the coordinator/, JOIN_MS).then(() => undefined, (error: Error) => error);
  const outcome = await Promise.race([joined, process.exited]);
  if (outcome instanceof Error) throw outcome;
  if (outcome) throw new Error(`the worker exited (${outcome.code ?? outcome.signal}) before joining:\n${process.output()}`);
  return { process, tap };
}

function llamaWorker(target: RunningCoordinator, name: string, maxConcurrency: number, extra: string[] = []) {
  return workerProcess(target, [
    ...["--engine", "llama", "--gpu", "cpu", "--name", name, "--max-concurrency", String(maxConcurrency), ...extra],
    ...["--model", scriptedPath, "--model", endlessPath, "--model", closesJsonPath],
  ]);
}

/** Adds the coordinator's extension fields (e.g. `reasoning_format`) to an SDK request body. */
function withExtensions<T extends object>(body: T, extensions: Record<string, unknown>): T {
  return { ...body, ...extensions };
}

interface StreamedReply {
  content: string;
  reasoning: string;
  finishReason: string | null | undefined;
  usage: OpenAI.CompletionUsage | null | undefined;
}

/** Streams a greedy completion with the reasoning separated, collecting what the client sees. */
async function streamChat(client: OpenAI, model: string, extensions: Record<string, unknown> = {}): Promise<StreamedReply> {
  const body = { model, messages, stream: true as const, temperature: 0, stream_options: { include_usage: true } };
  const stream = await client.chat.completions.create(withExtensions(body, { reasoning_format: "separate", ...extensions }));
  const reply: StreamedReply = { content: "", reasoning: "", finishReason: undefined, usage: undefined };
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    reply.content += choice?.delta.content ?? "";
    reply.reasoning += (choice?.delta as { reasoning_content?: string } | undefined)?.reasoning_content ?? "";
    reply.finishReason ??= choice?.finish_reason;
    if (chunk.usage) reply.usage = chunk.usage;
  }
  return reply;
}

/** Streams from the endless model and hangs up, as a client that goes away, after `chunks` answer chunks. */
async function hangUpAfter(client: OpenAI, chunks: number): Promise<void> {
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    { model: "endless", messages, stream: true, temperature: 0 },
    { signal: controller.signal },
  );
  let seen = 0;
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta.content) seen++;
    if (seen === chunks) {
      controller.abort();
      break;
    }
  }
}

const isTask = (taskId: string | undefined, type: Tapped["message"]["type"]) => (t: Tapped) =>
  t.message.type === type && "taskId" in t.message && t.message.taskId === taskId;

/** Tokens the worker streamed for a task, among the tapped messages from `from` up to (not including) `to`. */
function streamedTokens(tap: WireTap, taskId: string | undefined, from = 0, to = tap.messages.length): number {
  let tokens = 0;
  for (const t of tap.messages.slice(from, to)) {
    if (t.message.type === "TokenChunk" && t.message.taskId === taskId) tokens += t.message.tokens ?? 1;
  }
  return tokens;
}

const isAssigned = (model: string) => (t: Tapped) => t.from === "master" && t.message.type === "TaskAssigned" && t.message.model === model;
/** The id of the task last assigned through `tap` for `model`. */
function lastTaskId(tap: WireTap, model: string): string | undefined {
  const assigned = tap.messages.findLast(isAssigned(model));
  return assigned?.message.type === "TaskAssigned" ? assigned.message.taskId : undefined;
}

describe("a llama worker process serving the scripted model", () => {
  let head: RunningCoordinator;
  let client: OpenAI;
  let solo: { process: CliProcess; tap: WireTap };

  beforeAll(async () => {
    // Frequent heartbeats: they carry the worker's prompt cache.
    head = await coordinator({ heartbeatMs: 200 });
    client = openaiClient(head);
    solo = await llamaWorker(head, "solo", 1, ["--embeddings"]);
  }, STARTUP_MS);

  afterAll(stopAll);

  it("streams exactly the scripted answer, the reasoning in reasoning_content, with usage as the model tokenizes, the same every run", async () => {
    const runs = [await streamChat(client, "scripted"), await streamChat(client, "scripted"), await streamChat(client, "scripted")];
    const raw = await client.chat.completions.create(withExtensions({ model: "scripted", messages, temperature: 0 }, { reasoning_format: "raw" }));

    // The first run evaluates the whole prompt; the next ones find it in the worker's prompt cache.
    runs.forEach((run, i) => {
      expect(run).toEqual({ content: ANSWER, reasoning: REASONING, finishReason: "stop", usage: i === 0 ? expectedUsage : warmUsage });
    });
    expect(raw.choices[0]?.message.content).toBe(SCRIPTED_REPLY);
    // Raw mode parses no reasoning out of the reply, so it counts none.
    expect(raw.usage).toMatchObject({ ...warmUsage, completion_tokens_details: { reasoning_tokens: 0 } });
  });

  it("honours structured output, forced tool calls, logprobs and top_k through the coordinator (request options, issue 13)", async () => {
    const schema = { type: "object", properties: { city: { type: "string" }, days: { type: "integer" } }, required: ["city", "days"], additionalProperties: false };
    const structured = await client.chat.completions.create({
      model: "closes-json",
      messages,
      max_tokens: 200,
      seed: 3,
      response_format: { type: "json_schema", json_schema: { name: "trip", schema, strict: true } },
    });
    const parsed = JSON.parse(structured.choices[0]?.message.content ?? "") as Record<string, unknown>;
    expect(Object.keys(parsed).sort()).toEqual(["city", "days"]);
    expect(typeof parsed.city === "string" && Number.isInteger(parsed.days)).toBe(true);

    const tools: OpenAI.Chat.ChatCompletionTool[] = [
      { type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } },
    ];
    const forced = await client.chat.completions.create({ model: "closes-json", messages, max_tokens: 200, tools, tool_choice: "required", parallel_tool_calls: false });
    expect(forced.choices[0]?.finish_reason).toBe("tool_calls");
    const call = forced.choices[0]?.message.tool_calls?.[0];
    expect(call?.type === "function" && call.function.name).toBe("get_weather");
    expect(call?.type === "function" && typeof (JSON.parse(call.function.arguments) as { city?: unknown }).city).toBe("string");

    const withLogprobs = await client.chat.completions.create(
      withExtensions({ model: "scripted", messages, temperature: 0, logprobs: true, top_logprobs: 2 }, { top_k: 1 }),
    );
    const entries = withLogprobs.choices[0]?.logprobs?.content ?? [];
    expect(withLogprobs.choices[0]?.message.content).toBe(ANSWER);
    // The logprobs are the model's own tokens: the first keeps the space the parser drops after the reasoning.
    expect(entries.map((entry) => entry.token).join("").trimStart()).toBe(ANSWER);
    for (const entry of entries) {
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(entry.top_logprobs.length).toBeGreaterThan(0);
    }
  });

  it("continues a raw prompt through /v1/completions with no chat template (raw_prompt)", async () => {
    const completion = await client.completions.create({ model: "scripted", prompt: "hi there", max_tokens: 64, temperature: 0 });

    expect(completion.object).toBe("text_completion");
    expect(completion.choices[0]?.text.length).toBeGreaterThan(0);
    // The prompt is the text as given (and the beginning-of-sequence token), not the chat template's rendering.
    expect(completion.usage?.prompt_tokens).toBeLessThan(expectedUsage.prompt_tokens);
  });

  it("answers through the Responses API the same: the reasoning as a reasoning item, the answer as output_text, usage as the model tokenizes", async () => {
    const body = { model: "scripted", input: messages, temperature: 0, reasoning: {} };
    const whole = await client.responses.create(body);
    const streamed = await client.responses.stream(body).finalResponse();

    for (const response of [whole, streamed]) {
      expect(response.status).toBe("completed");
      expect(response.output.map((item) => item.type)).toEqual(["reasoning", "message"]);
      expect(response.output[0]).toMatchObject({ content: [{ type: "reasoning_text", text: REASONING }] });
      expect(response.output_text).toBe(ANSWER);
      expect(response.usage).toMatchObject({
        input_tokens: expectedUsage.prompt_tokens,
        output_tokens: expectedUsage.completion_tokens,
        total_tokens: expectedUsage.total_tokens,
      });
    }
  });

  it("announces in its Hello what the llama engine honours for each model (docs/llama-options.md)", () => {
    const hello = solo.tap.messages.find((t) => t.from === "worker" && t.message.type === "Hello")?.message;

    expect(hello?.type === "Hello" && hello.models.map((m) => [m.id, m.capabilities])).toEqual(
      ["scripted", "endless", "closes-json"].map((id) => [
        id,
        ["chat", "tools", "tool_choice_required", "sampling", "logit_bias", "json_object", "json_schema", "logprobs", "raw_prompt", "embeddings"],
      ]),
    );
  });

  it("embeds through /v1/embeddings (--embeddings): unit vectors, the same in both encodings and every time", async () => {
    const input = ["hi there", "hello"];
    const floats = await client.embeddings.create({ model: "scripted", input, encoding_format: "float" });
    const base64 = await client.embeddings.create({ model: "scripted", input });

    expect(floats.data).toHaveLength(2);
    const [first, second] = floats.data.map((item) => item.embedding);
    expect(first?.length).toBeGreaterThan(0);
    expect(second).toHaveLength(first?.length ?? -1);
    expect(Math.hypot(...(first ?? []))).toBeCloseTo(1, 4);
    expect(base64.data.map((item) => item.embedding.map((v) => Math.fround(v)))).toEqual(floats.data.map((item) => item.embedding.map((v) => Math.fround(v))));
    expect(floats.usage.prompt_tokens).toBeGreaterThan(0);
  });

  it("answers the official ollama client: chat whole and streamed, with the reasoning in thinking", async () => {
    const ollama = new Ollama({ host: head.url });
    const whole = await ollama.chat({ model: "scripted", messages, think: true, options: { temperature: 0 } });
    let streamed = "";
    let thinking = "";
    for await (const part of await ollama.chat({ model: "scripted", messages, think: true, stream: true, options: { temperature: 0 } })) {
      streamed += part.message.content;
      thinking += part.message.thinking ?? "";
    }

    expect(whole.message.content).toBe(ANSWER);
    expect(whole.message.thinking).toBe(REASONING);
    expect(whole.prompt_eval_count).toBe(expectedUsage.prompt_tokens);
    expect(streamed).toBe(ANSWER);
    expect(thinking).toBe(REASONING);
  });

  it("reports the model's context length and refuses a max_tokens beyond it", async () => {
    const listed = await client.models.retrieve("scripted");
    const tooLong = client.chat.completions.create({ model: "scripted", messages, max_tokens: 2049 });

    expect(listed).toMatchObject({ id: "scripted", context_length: 2048 });
    await expect(tooLong).rejects.toMatchObject({ status: 400, param: "max_tokens" });
  });

  it("cancels the worker's task when the client hangs up, and the freed slot serves the next task", async () => {
    await hangUpAfter(client, 5);
    const taskId = lastTaskId(solo.tap, "endless");
    const ack = await solo.tap.waitFor(isTask(taskId, "TaskCancelAck"), "the worker's TaskCancelAck");
    const next = await streamChat(client, "scripted");

    expect(solo.tap.messages.find(isTask(taskId, "TaskCancelled"))?.message).toMatchObject({ reason: "client disconnected" });
    // The acknowledgement accounts for every token the worker streamed, and none came after it.
    const ackIndex = solo.tap.messages.indexOf(ack);
    expect(ack.message).toMatchObject({ completionTokens: streamedTokens(solo.tap, taskId, 0, ackIndex) });
    expect(streamedTokens(solo.tap, taskId, ackIndex)).toBe(0);
    // One slot: the next task was assigned only once the worker acknowledged, and ran to the scripted end.
    expect(solo.tap.messages.findLastIndex(isAssigned("scripted"))).toBeGreaterThan(ackIndex);
    expect(next).toEqual({ content: ANSWER, reasoning: REASONING, finishReason: "stop", usage: warmUsage });
    await eventually(() => head.master.liveTasks === 0, "no task left on the coordinator");
  });

  it("reports its prompt cache in heartbeats: per model, the sequences holding tokens and their tokens", async () => {
    await streamChat(client, "scripted");
    const from = solo.tap.messages.length;
    const beat = await solo.tap.waitFor(
      (t) => t.from === "worker" && t.message.type === "Heartbeat" && solo.tap.messages.indexOf(t) >= from,
      "a heartbeat after the task",
    );

    // One sequence each (--max-concurrency 1); scripted's holds the chat and the whole reply (it ended by itself).
    expect(beat.message.type === "Heartbeat" && beat.message.cache?.find((cache) => cache.model === "scripted")).toEqual({
      model: "scripted",
      sequences: 1,
      tokens: expectedUsage.total_tokens,
    });
  });

  it("answers the Anthropic Messages API with a thinking block and a text block, and usage as the model tokenizes", async () => {
    const anthropic = new Anthropic({ baseURL: head.url, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
    const request = withExtensions(
      { model: "scripted", max_tokens: 256, messages, thinking: { type: "enabled" as const, budget_tokens: 1024 } },
      { temperature: 0 },
    );
    const whole = await anthropic.messages.create(request);
    const streamed = await anthropic.messages.stream(request).finalMessage();

    for (const message of [whole, streamed]) {
      expect(message).toMatchObject({
        content: [
          { type: "thinking", thinking: REASONING, signature: "" },
          { type: "text", text: ANSWER },
        ],
        stop_reason: "end_turn",
        // Anthropic's count: input_tokens are those evaluated anew, the rest were read from the prompt cache.
        usage: {
          input_tokens: 1,
          cache_read_input_tokens: warmUsage.prompt_tokens_details.cached_tokens,
          output_tokens: expectedUsage.completion_tokens,
        },
      });
    }
  });
});

describe("an openai worker in front of a second coordinator with a llama worker", () => {
  let upstream: RunningCoordinator;
  let outer: RunningCoordinator;
  let pair: { process: CliProcess; tap: WireTap };

  beforeAll(async () => {
    // Like llama-server by default, the upstream separates reasoning (into reasoning_content) rather than hiding it.
    upstream = await coordinator({ reasoning: "separate" });
    outer = await coordinator();
    pair = await llamaWorker(upstream, "pair", 2);
    await workerProcess(outer, ["--engine", "openai", "--upstream", `${upstream.url}/v1`, "--name", "front"]);
  }, STARTUP_MS);

  afterAll(stopAll);

  it("runs two requests at once on the llama worker with --max-concurrency 2, both to the scripted end", async () => {
    const from = pair.tap.messages.length;
    const both = await Promise.all([streamChat(openaiClient(upstream), "scripted"), streamChat(openaiClient(upstream), "scripted")]);

    for (const reply of both) expect(reply).toEqual({ content: ANSWER, reasoning: REASONING, finishReason: "stop", usage: expectedUsage });
    // Both were assigned before either finished: they ran side by side, not one after the other.
    const seen = pair.tap.messages.slice(from);
    const firstFinish = seen.findIndex((t) => t.message.type === "TaskFinished");
    expect(seen.slice(0, firstFinish).filter(isAssigned("scripted"))).toHaveLength(2);
  });

  it("serves completions through the outer coordinator, with the upstream's models, context length and usage", async () => {
    const client = openaiClient(outer);
    const listed = await client.models.retrieve("scripted");
    const reply = await streamChat(client, "scripted");
    const whole = await client.chat.completions.create(withExtensions({ model: "scripted", messages, temperature: 0 }, { reasoning_format: "separate" }));

    expect(listed).toMatchObject({ id: "scripted", context_length: 2048 });
    // The llama worker behind ran this prompt before (above): the upstream's cached tokens come through the outer one.
    const cached = { ...expectedUsage, prompt_tokens_details: { cached_tokens: expectedUsage.prompt_tokens - 1 } };
    expect(reply).toEqual({ content: ANSWER, reasoning: REASONING, finishReason: "stop", usage: cached });
    expect(whole.choices[0]?.message).toMatchObject({ content: ANSWER, reasoning_content: REASONING });
    await expect(client.chat.completions.create({ model: "scripted", messages, max_tokens: 4096 })).rejects.toMatchObject({
      status: 400,
      param: "max_tokens",
    });
  });

  it("stops llama.cpp within a few decode steps of TaskCancelled, counted by a task decoding beside it", async () => {
    const client = openaiClient(upstream);
    // The clock: a second task on the same context, one token per decode step while the cancelled one runs or not.
    const from = pair.tap.messages.length;
    const clock = client.chat.completions.create({ model: "endless", messages, temperature: 0, max_tokens: 400 });
    await pair.tap.waitFor((t) => isAssigned("endless")(t) && pair.tap.messages.indexOf(t) >= from, "the clock task to start");
    const clockId = lastTaskId(pair.tap, "endless");
    await hangUpAfter(client, 5);
    const taskId = lastTaskId(pair.tap, "endless");
    const ack = await pair.tap.waitFor(isTask(taskId, "TaskCancelAck"), "the worker's TaskCancelAck");
    const clocked = await clock;

    // The worker streams each token as it decodes it and streams nothing once told to stop, so its last chunk marks
    // when TaskCancelled reached it; the clock's tokens after that and before the acknowledgement are decode steps.
    const lastChunk = pair.tap.messages.findLastIndex(isTask(taskId, "TokenChunk"));
    const ackIndex = pair.tap.messages.indexOf(ack);
    expect(taskId).not.toBe(clockId);
    expect(pair.tap.messages.findIndex(isTask(clockId, "TaskFinished"))).toBeGreaterThan(ackIndex); // the clock still ran
    expect(streamedTokens(pair.tap, clockId, lastChunk, ackIndex)).toBeLessThanOrEqual(3);
    expect(clocked.usage?.completion_tokens).toBe(400);
    await eventually(() => upstream.master.liveTasks === 0, "no task left on the coordinator");
  });

  it("cancels the upstream's task when the client of the outer coordinator hangs up", async () => {
    await hangUpAfter(openaiClient(outer), 5);
    const taskId = lastTaskId(pair.tap, "endless");
    const cancelled = await pair.tap.waitFor(isTask(taskId, "TaskCancelled"), "the upstream coordinator to cancel its task");
    await pair.tap.waitFor(isTask(taskId, "TaskCancelAck"), "the llama worker's TaskCancelAck");

    expect(cancelled.message).toMatchObject({ reason: "client disconnected" });
    await eventually(() => upstream.master.liveTasks === 0 && outer.master.liveTasks === 0, "no task left on either coordinator");
  });
});

describe("a llama worker started with --no-prompt-cache", () => {
  let head: RunningCoordinator;
  let plain: { process: CliProcess; tap: WireTap };

  beforeAll(async () => {
    head = await coordinator({ heartbeatMs: 200 });
    plain = await workerProcess(head, ["--engine", "llama", "--gpu", "cpu", "--name", "plain", "--model", scriptedPath, "--no-prompt-cache"]);
  }, STARTUP_MS);

  afterAll(stopAll);

  it("evaluates every prompt whole, and its heartbeats report no cache", async () => {
    const client = openaiClient(head);
    const runs = [await streamChat(client, "scripted"), await streamChat(client, "scripted")];
    const from = plain.tap.messages.length;
    const beat = await plain.tap.waitFor(
      (t) => t.from === "worker" && t.message.type === "Heartbeat" && plain.tap.messages.indexOf(t) >= from,
      "a heartbeat from the worker",
    );

    for (const run of runs) expect(run).toEqual({ content: ANSWER, reasoning: REASONING, finishReason: "stop", usage: expectedUsage });
    expect(beat.message).not.toHaveProperty("cache");
  });
});
