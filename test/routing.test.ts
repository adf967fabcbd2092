// Routing: least-loaded workers with free slots, a bounded FIFO queue per model, and the errors when it is full.
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";

const messages = [{ role: "user" as const, content: "Hello" }];

async function queueDepth(coordinator: RunningCoordinator, model = "simulator"): Promise<number> {
  const state = (await (await fetch(`${coordinator.url}/v1/cluster`)).json()) as { models: Array<{ id: string; queueDepth: number }> };
  return state.models.find((m) => m.id === model)?.queueDepth ?? 0;
}

function post(coordinator: RunningCoordinator, body: unknown): Promise<Response> {
  return fetch(`${coordinator.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

describe("routing and queueing", () => {
  let coordinator: RunningCoordinator | undefined;
  const workers: TestWorker[] = [];

  afterEach(async () => {
    for (const worker of workers.splice(0)) await worker.stop();
    await coordinator?.close();
  });

  it("runs two requests in parallel on two workers of concurrency 1 and queues the third until one is free", async () => {
    coordinator = await startTestCoordinator();
    const a = await startSimWorker(coordinator, { name: "a", maxConcurrency: 1, prefillMs: 600 });
    const b = await startSimWorker(coordinator, { name: "b", maxConcurrency: 1, prefillMs: 600 });
    workers.push(a, b);
    const client = openaiClient(coordinator);

    const requests = [1, 2, 3].map(() => client.chat.completions.create({ model: "simulator", messages }));
    await eventually(() => a.log.started.length === 1 && b.log.started.length === 1, "both workers to take one task");
    await eventually(async () => (await queueDepth(coordinator!)) === 1, "the third request to wait in the queue");
    expect(a.log.started.length + b.log.started.length).toBe(2);

    const completions = await Promise.all(requests);
    expect(completions.every((c) => c.choices[0]?.finish_reason === "stop")).toBe(true);
    expect(a.log.started.length + b.log.started.length).toBe(3);
    expect(await queueDepth(coordinator)).toBe(0);
  });

  it("prefers the least-loaded worker", async () => {
    coordinator = await startTestCoordinator();
    const big = await startSimWorker(coordinator, { name: "big", maxConcurrency: 4, prefillMs: 400 });
    const small = await startSimWorker(coordinator, { name: "small", maxConcurrency: 1, prefillMs: 400 });
    workers.push(big, small);
    const client = openaiClient(coordinator);

    const requests = [1, 2, 3, 4].map(() => client.chat.completions.create({ model: "simulator", messages }));
    await Promise.all(requests);

    // Loads go 0/4 vs 0/1 (big has more room), then 1/4 vs 0/1 (small is idle), then 1/4 vs 1/1 twice.
    expect(big.log.started).toHaveLength(3);
    expect(small.log.started).toHaveLength(1);
  });

  it("answers 429 with Retry-After when the model's queue is full", async () => {
    coordinator = await startTestCoordinator({ queueMax: 1 });
    const worker = await startSimWorker(coordinator, { maxConcurrency: 1, prefillMs: 800 });
    workers.push(worker);
    const body = { model: "simulator", messages };

    const running = post(coordinator, body);
    await eventually(() => worker.log.started.length === 1, "the first request to run");
    const waiting = post(coordinator, body);
    await eventually(async () => (await queueDepth(coordinator!)) === 1, "the second request to queue");
    const refused = await post(coordinator, body);

    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await refused.json()).toEqual({
      error: { message: expect.stringContaining("simulator"), type: "rate_limit_error", param: null, code: "queue_full" },
    });
    expect((await running).status).toBe(200);
    expect((await waiting).status).toBe(200);
  });

  it("answers 503 when a request waited longer than the queue timeout", async () => {
    coordinator = await startTestCoordinator({ queueTimeoutMs: 200 });
    const worker = await startSimWorker(coordinator, { maxConcurrency: 1, prefillMs: 1_000 });
    workers.push(worker);

    const running = post(coordinator, { model: "simulator", messages });
    await eventually(() => worker.log.started.length === 1, "the first request to run");
    const timedOut = await post(coordinator, { model: "simulator", messages });

    expect(timedOut.status).toBe(503);
    expect(((await timedOut.json()) as { error: { code: string } }).error.code).toBe("queue_timeout");
    expect((await running).status).toBe(200);
  });

  it("ends a streaming request that times out in the queue with an error event and [DONE]", async () => {
    coordinator = await startTestCoordinator({ queueTimeoutMs: 200 });
    const worker = await startSimWorker(coordinator, { maxConcurrency: 1, prefillMs: 1_000 });
    workers.push(worker);

    const running = post(coordinator, { model: "simulator", messages });
    await eventually(() => worker.log.started.length === 1, "the first request to run");
    const stream = await post(coordinator, { model: "simulator", messages, stream: true });
    const text = await stream.text();

    expect(text).toContain('"code":"queue_timeout"');
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    await running;
  });

  it("answers 404 model_not_found for a model no worker serves", async () => {
    coordinator = await startTestCoordinator();
    workers.push(await startSimWorker(coordinator));

    await expect(openaiClient(coordinator).chat.completions.create({ model: "gpt-nothing", messages })).rejects.toMatchObject({
      status: 404,
      code: "model_not_found",
      param: "model",
    });
  });
});
