// Embeddings through a real coordinator and simulator workers: OpenAI's /v1/embeddings with the official openai SDK
// (both encodings) and the Vercel AI SDK's embedMany, Ollama's /api/embed and /api/embeddings with the official
// ollama client; the capability refusals, truncation, scheduling and cancellation like any task, and failover.
import { createOpenAI } from "@ai-sdk/openai";
import { embedMany } from "ai";
import { Ollama } from "ollama";
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { SIMULATED_EMBEDDING_DIMENSIONS, simulatedEmbedding } from "../src/worker/engines/simulated-embedding.js";
import { CAPABILITIES, encodeEmbedding } from "../src/worker-protocol/index.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { HandWorker } from "./support/hand-worker.js";

/** The simulator's vector for `input`, as the numbers a client decodes (float32 values). */
const expected = (input: string | number[], dimensions?: number) => Array.from(simulatedEmbedding(input, dimensions));
/** Received floats as float32, for exact comparison with the simulator's float32 vectors. */
const asFloat32 = (values: readonly number[]) => values.map((value) => Math.fround(value));

async function post(coordinator: RunningCoordinator, path: string, body: unknown) {
  const response = await fetch(`${coordinator.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe("embeddings", () => {
  let coordinator: RunningCoordinator;
  let client: OpenAI;
  let ollama: Ollama;
  const workers: TestWorker[] = [];

  beforeAll(async () => {
    coordinator = await startTestCoordinator();
    client = openaiClient(coordinator);
    ollama = new Ollama({ host: coordinator.url });
    workers.push(await startSimWorker(coordinator, { tokensPerSecond: 0 }));
    workers.push(await startSimWorker(coordinator, { models: ["chat-only"], capabilities: null }));
    workers.push(await startSimWorker(coordinator, { models: ["embed-only"], capabilities: [CAPABILITIES.embeddings] }));
    workers.push(await startSimWorker(coordinator, { models: ["short"], contextLength: 4 }));
  });

  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await coordinator.close();
  });

  describe("POST /v1/embeddings through the openai SDK", () => {
    it("embeds a batch in order, as base64 (the SDK's default) and as floats, with usage", async () => {
      const input = ["The quick brown fox", "jumps over the lazy dog", "the quick dog"];
      const base64 = await client.embeddings.create({ model: "simulator", input });
      const floats = await client.embeddings.create({ model: "simulator", input, encoding_format: "float" });

      for (const answer of [base64, floats]) {
        expect(answer).toMatchObject({ object: "list", model: "simulator" });
        expect(answer.data.map((item) => item.index)).toEqual([0, 1, 2]);
        expect(answer.data.map((item) => asFloat32(item.embedding))).toEqual(input.map((text) => expected(text)));
        expect(answer.usage).toEqual({ prompt_tokens: 4 + 5 + 3, total_tokens: 12 });
      }
      const [fox, , dog] = floats.data.map((item) => item.embedding);
      const norm = Math.hypot(...(fox ?? []));
      expect(norm).toBeCloseTo(1, 5);
      expect(fox).toHaveLength(SIMULATED_EMBEDDING_DIMENSIONS);
      expect(dog).not.toEqual(fox);
    });

    it("takes one string, token arrays, and dimensions", async () => {
      const one = await client.embeddings.create({ model: "simulator", input: "hello", encoding_format: "float" });
      const tokens = await client.embeddings.create({ model: "simulator", input: [[1, 2, 3], [4]], encoding_format: "float" });
      const short = await client.embeddings.create({ model: "simulator", input: "hello", dimensions: 8, encoding_format: "float" });

      expect(asFloat32(one.data[0]?.embedding ?? [])).toEqual(expected("hello"));
      expect(tokens.data.map((item) => asFloat32(item.embedding))).toEqual([expected([1, 2, 3]), expected([4])]);
      expect(tokens.usage.prompt_tokens).toBe(4);
      expect(asFloat32(short.data[0]?.embedding ?? [])).toEqual(expected("hello", 8));
    });

    it("answers base64 that decodes to the very float32 vector", async () => {
      const response = await post(coordinator, "/v1/embeddings", { model: "simulator", input: "hello", encoding_format: "base64" });

      expect(response.status).toBe(200);
      expect((response.body.data as Array<{ embedding: string }>)[0]?.embedding).toBe(encodeEmbedding(simulatedEmbedding("hello")));
    });

    it("refuses, naming the field, what it cannot take", async () => {
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ model: "simulator", input: "" }, "input"],
        [{ model: "simulator", input: ["a", ""] }, "input[1]"],
        [{ model: "simulator", input: Array.from({ length: 2049 }, () => "x") }, "input"],
        [{ model: "simulator", input: "a", encoding_format: "int8" }, "encoding_format"],
        [{ model: "simulator", input: "a", truncate_prompt_tokens: 5 }, "truncate_prompt_tokens"],
        [{ model: "simulator" }, "input"],
        [{ model: "chat-only", input: "a" }, "model"],
        [{ model: "embed-only", input: "a", dimensions: 8 }, "dimensions"],
        [{ model: "short", input: "one two three four five" }, "input"],
      ];
      for (const [body, param] of cases) {
        const response = await post(coordinator, "/v1/embeddings", body);
        expect(response.status, JSON.stringify(body).slice(0, 80)).toBe(400);
        expect(response.body).toMatchObject({ error: { type: "invalid_request_error", param } });
      }
      const unknown = await post(coordinator, "/v1/embeddings", { model: "nope", input: "a" });
      expect(unknown.status).toBe(404);
      const tooLong = await post(coordinator, "/v1/embeddings", { model: "short", input: "one two three four five" });
      expect(tooLong.body).toMatchObject({ error: { code: "context_length_exceeded" } });
    });

    it("refuses text generation from a model that only embeds", async () => {
      const response = await post(coordinator, "/v1/chat/completions", { model: "embed-only", messages: [{ role: "user", content: "hi" }] });

      expect(response.status).toBe(400);
      expect(response.body).toMatchObject({ error: { param: "model" } });
      expect(JSON.stringify(response.body)).toContain("only computes embeddings");
    });

    it("lists the capability in /v1/models", async () => {
      const models = await client.models.list();
      const capabilities = (id: string) => (models.data.find((m) => m.id === id) as unknown as { capabilities: string[] }).capabilities;

      expect(capabilities("simulator")).toEqual(expect.arrayContaining(["chat", "embeddings", "embedding_dimensions"]));
      expect(capabilities("embed-only")).toEqual(["embeddings"]);
      expect(capabilities("chat-only")).toEqual(["chat", "tools"]);
    });
  });

  it("works with the Vercel AI SDK's embedMany", async () => {
    const provider = createOpenAI({ baseURL: `${coordinator.url}/v1`, apiKey: "unused" });
    const values = ["sunny day at the beach", "rainy night in the city"];
    const result = await embedMany({ model: provider.embedding("simulator"), values, maxRetries: 0 });

    expect(result.embeddings.map(asFloat32)).toEqual(values.map((value) => expected(value)));
    expect(result.usage.tokens).toBe(10);
  });

  describe("Ollama's /api/embed and /api/embeddings through the ollama client", () => {
    it("embeds a batch, and one prompt with the older route", async () => {
      const batch = await ollama.embed({ model: "simulator", input: ["why is the sky blue", "why is grass green"] });
      const one = await ollama.embeddings({ model: "simulator", prompt: "why is the sky blue" });

      expect(batch.model).toBe("simulator");
      expect(batch.embeddings.map(asFloat32)).toEqual([expected("why is the sky blue"), expected("why is grass green")]);
      expect(batch.prompt_eval_count).toBe(9);
      expect(batch.total_duration).toBeGreaterThan(0);
      expect(asFloat32(one.embedding)).toEqual(expected("why is the sky blue"));
    });

    it("truncates a long input unless told not to, as Ollama does", async () => {
      const input = "one two three four five six";
      const cut = await ollama.embed({ model: "short", input });

      expect(asFloat32(cut.embeddings[0] ?? [])).toEqual(expected("one two three four"));
      expect(cut.prompt_eval_count).toBe(4);
      await expect(ollama.embed({ model: "short", input, truncate: false })).rejects.toMatchObject({ status_code: 400 });
      const refused = await post(coordinator, "/api/embed", { model: "short", input, truncate: false });
      expect(refused.body).toEqual({ error: expect.stringContaining("at most 4") });
    });

    it("answers nothing to embed without a task, and errors in Ollama's shape", async () => {
      expect(await ollama.embed({ model: "simulator", input: [] })).toMatchObject({ embeddings: [] });
      expect((await ollama.embeddings({ model: "simulator", prompt: "" })).embedding).toEqual([]);
      await expect(ollama.embed({ model: "nope", input: "a" })).rejects.toMatchObject({ status_code: 404 });
      const chatOnly = await post(coordinator, "/api/embed", { model: "chat-only", input: "a" });
      expect(chatOnly.status).toBe(400);
      expect(chatOnly.body).toEqual({ error: expect.stringContaining("does not support embeddings") });
    });

    it("shows the embedding capability in /api/show, and /api/tags lists what /v1/models lists", async () => {
      expect((await ollama.show({ model: "embed-only" })).capabilities).toEqual(["embedding"]);
      expect((await ollama.show({ model: "simulator" })).capabilities).toEqual(expect.arrayContaining(["completion", "embedding"]));
      const tags = (await ollama.list()).models.map((m) => m.name).sort();
      const models = (await client.models.list()).data.map((m) => m.id).sort();
      expect(tags).toEqual(models);
    });
  });
});

describe("embedding tasks are scheduled like any task", () => {
  let coordinator: RunningCoordinator;
  let client: OpenAI;

  beforeAll(async () => {
    coordinator = await startTestCoordinator();
    client = openaiClient(coordinator);
  });

  afterAll(async () => {
    await coordinator.close();
  });

  it("queue for a busy worker, show in /v1/cluster, and a client that leaves cancels its task on the worker", async () => {
    const worker = await startSimWorker(coordinator, { models: ["slow-embed"], prefillMs: 60_000, maxConcurrency: 1 });
    try {
      const first = new AbortController();
      const second = new AbortController();
      const firstCall = client.embeddings.create({ model: "slow-embed", input: "a" }, { signal: first.signal }).catch((e: unknown) => e);
      await worker.log.until(() => worker.log.started.length === 1, "the first task to start");
      const secondCall = client.embeddings.create({ model: "slow-embed", input: "b" }, { signal: second.signal }).catch((e: unknown) => e);
      await eventually(() => coordinator.master.snapshot().models.some((m) => m.id === "slow-embed" && m.queueDepth === 1), "the second to queue");
      expect(coordinator.master.liveTasks).toBe(2);

      first.abort();
      await worker.log.until(() => worker.log.aborted.size === 1, "the worker to stop the first task");
      await worker.log.until(() => worker.log.started.length === 2, "the second to start on the freed slot");
      second.abort();
      await worker.log.until(() => worker.log.aborted.size === 2, "the worker to stop the second task");
      await Promise.all([firstCall, secondCall]);
      await eventually(() => coordinator.master.liveTasks === 0, "no task left");
    } finally {
      await worker.stop();
    }
  });

  it("a worker lost half way through a batch hands the whole batch to another", async () => {
    const capabilities = [CAPABILITIES.embeddings];
    const { worker: lost } = await HandWorker.join(coordinator.workerUrl, { capabilities });
    const model = lost.model;
    const call = client.embeddings.create({ model, input: ["a", "b", "c"], encoding_format: "float" });
    const first = await lost.take("TaskAssigned");
    lost.send({ type: "TaskEmbedding", taskId: first.taskId, index: 0, embedding: encodeEmbedding([1, 0]), tokens: 1 });
    const { worker: next } = await HandWorker.join(coordinator.workerUrl, { capabilities, model });
    lost.terminate();
    const again = await next.take("TaskAssigned");
    expect(again.taskId).toBe(first.taskId);
    for (const [index, vector] of [[0, 1], [1, 0], [0.6, 0.8]].entries()) {
      next.send({ type: "TaskEmbedding", taskId: again.taskId, index, embedding: encodeEmbedding(vector), tokens: 1 });
    }
    next.send({ type: "TaskFinished", taskId: again.taskId, finishReason: "stop", usage: { promptTokens: 3, completionTokens: 0 } });

    const answer = await call;
    expect(answer.data.map((item) => asFloat32(item.embedding))).toEqual([[0, 1], [1, 0], asFloat32([0.6, 0.8])]);
    await next.close();
  });

  it("a worker that breaks the rules for embeddings gets a protocol error; its task goes to another worker", async () => {
    const capabilities = [CAPABILITIES.embeddings];
    const bad: Array<[string, (taskId: unknown) => object[]]> = [
      ["bad_sequence", (taskId) => [{ type: "TaskEmbedding", taskId, index: 1, embedding: encodeEmbedding([1]), tokens: 1 }]],
      ["bad_embedding", (taskId) => [{ type: "TaskEmbedding", taskId, index: 0, embedding: "AAAA", tokens: 1 }]],
      ["bad_embedding", (taskId) => [{ type: "TaskEmbedding", taskId, index: 0, embedding: encodeEmbedding([Number.NaN]), tokens: 1 }]],
      [
        "bad_embedding",
        (taskId) => [
          { type: "TaskEmbedding", taskId, index: 0, embedding: encodeEmbedding([1, 0]), tokens: 1 },
          { type: "TaskEmbedding", taskId, index: 1, embedding: encodeEmbedding([1]), tokens: 1 },
        ],
      ],
      ["unexpected_chunk", (taskId) => [{ type: "TokenChunk", taskId, seq: 0, text: "hi" }]],
      ["missing_embeddings", (taskId) => [{ type: "TaskFinished", taskId, finishReason: "stop", usage: { promptTokens: 1, completionTokens: 0 } }]],
    ];
    for (const [code, messages] of bad) {
      const { worker } = await HandWorker.join(coordinator.workerUrl, { capabilities });
      const call = post(coordinator, "/v1/embeddings", { model: worker.model, input: ["a", "b"], encoding_format: "float" });
      const task = await worker.take("TaskAssigned");
      for (const message of messages(task.taskId)) worker.send(message);
      const closed = await worker.closed;

      expect(worker.protocolError, code).toBe(code);
      expect(closed.code).toBeGreaterThanOrEqual(4000);
      const { worker: good } = await HandWorker.join(coordinator.workerUrl, { capabilities, model: worker.model });
      const again = await good.take("TaskAssigned");
      expect(again.taskId).toBe(task.taskId);
      for (const index of [0, 1]) good.send({ type: "TaskEmbedding", taskId: again.taskId, index, embedding: encodeEmbedding([1, 0]), tokens: 1 });
      good.send({ type: "TaskFinished", taskId: again.taskId, finishReason: "stop", usage: { promptTokens: 2, completionTokens: 0 } });
      const answer = await call;
      expect(answer.status).toBe(200);
      expect((answer.body.data as unknown[]).length).toBe(2);
      await good.close();
    }
    expect(coordinator.master.liveTasks).toBe(0);
  });

  it("a batch whose vectors outgrow --max-reply-bytes fails with reply_too_large", async () => {
    const small = await startTestCoordinator({ maxReplyBytes: 4096 });
    const worker = await startSimWorker(small, {});
    try {
      const response = await post(small, "/v1/embeddings", { model: "simulator", input: Array.from({ length: 20 }, (_, i) => `text ${i}`), dimensions: 64 });

      expect(response.status).toBe(502);
      expect(response.body).toMatchObject({ error: { code: "reply_too_large" } });
      expect(JSON.stringify(response.body)).toContain("fewer inputs");
      await eventually(() => small.master.liveTasks === 0, "the task to end");
    } finally {
      await worker.stop();
      await small.close();
    }
  });
});
