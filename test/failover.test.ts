// A worker lost before producing anything: the task moves to another worker unseen; lost mid-output: a clean error.
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { simulatedReply } from "../src/worker/engines/simulator.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { postSse } from "./support/sse.js";

const messages = [{ role: "user" as const, content: "Who answers me?" }];

describe("failover when a worker is lost", () => {
  let coordinator: RunningCoordinator | undefined;
  const workers: TestWorker[] = [];

  afterEach(async () => {
    for (const worker of workers.splice(0)) await worker.stop();
    await coordinator?.close();
  });

  it("re-dispatches a task whose worker disconnects during prefill; the client sees a normal answer", async () => {
    coordinator = await startTestCoordinator();
    const first = await startSimWorker(coordinator, { name: "first", prefillMs: 5_000, maxConcurrency: 1 });
    workers.push(first);
    const pending = openaiClient(coordinator).chat.completions.create({ model: "simulator", messages, stream: true });
    await first.log.until(() => first.log.started.length === 1, "the first worker to take the task");
    const second = await startSimWorker(coordinator, { name: "second" });
    workers.push(second);

    await first.stop();

    let content = "";
    for await (const chunk of await pending) content += chunk.choices[0]?.delta.content ?? "";
    expect(content).toBe(simulatedReply(messages).answer);
    expect(second.log.ended).toHaveLength(1);
  });

  it("waits in the queue for a worker to come back when the only one is lost during prefill", async () => {
    coordinator = await startTestCoordinator();
    const only = await startSimWorker(coordinator, { name: "only", prefillMs: 5_000 });
    workers.push(only);
    const pending = openaiClient(coordinator).chat.completions.create({ model: "simulator", messages });
    await only.log.until(() => only.log.started.length === 1, "the worker to take the task");

    await only.stop();
    await eventually(() => coordinator!.master.snapshot().models.length === 0, "the model to have no worker");
    const back = await startSimWorker(coordinator, { name: "only" });
    workers.push(back);

    expect((await pending).choices[0]?.message.content).toBe(simulatedReply(messages).answer);
  });

  it("gives up after --max-attempts workers were lost for one task", async () => {
    coordinator = await startTestCoordinator({ maxAttempts: 2 });
    for (const name of ["w1", "w2"]) {
      const worker = await startSimWorker(coordinator, { name, prefillMs: 5_000, maxConcurrency: 1 });
      workers.push(worker);
    }
    const response = fetch(`${coordinator.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "simulator", messages }),
    });
    for (const worker of [...workers]) {
      await worker.log.until(() => worker.log.started.length === 1, `${worker.runtime.workerId} to take the task`);
      await worker.stop();
    }

    const answer = await response;
    expect(answer.status).toBe(502);
    expect(((await answer.json()) as { error: { code: string } }).error.code).toBe("worker_lost");
  });

  it("ends a stream whose worker is lost mid-output with an error event and [DONE]", async () => {
    coordinator = await startTestCoordinator();
    const worker = await startSimWorker(coordinator, { tokensPerSecond: 40, replyTokens: 1_000 });
    const spare = await startSimWorker(coordinator, { name: "spare" });
    workers.push(spare);
    const url = `${coordinator.url}/v1/chat/completions`;

    const raw = postSse(url, { model: "simulator", messages, stream: true, reasoning_format: "raw" });
    await worker.log.until(() => [...worker.log.produced.values()].some((n) => n > 5), "tokens to flow");
    await worker.stop();
    const result = await raw;

    const last = result.data.at(-1) as { error?: { code: string; type: string } };
    expect(last.error).toMatchObject({ code: "worker_lost", type: "server_error" });
    expect(result.done).toBe(true);
    expect(spare.log.started).toHaveLength(0);
  });

  it("answers a non-streaming request whose worker is lost mid-output with 502 worker_lost", async () => {
    coordinator = await startTestCoordinator();
    const worker = await startSimWorker(coordinator, { tokensPerSecond: 40, replyTokens: 1_000 });

    const response = fetch(`${coordinator.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "simulator", messages }),
    });
    await worker.log.until(() => [...worker.log.produced.values()].some((n) => n > 5), "tokens to flow");
    await worker.stop();

    const answer = await response;
    expect(answer.status).toBe(502);
    expect(((await answer.json()) as { error: { code: string } }).error.code).toBe("worker_lost");
  });
  it("answers 503 no_worker_available (not 404) for a model whose workers all left moments ago", async () => {
    coordinator = await startTestCoordinator({ queueTimeoutMs: 300 });
    const worker = await startSimWorker(coordinator);
    await worker.stop();

    const response = await fetch(`${coordinator.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "simulator", messages }),
    });

    expect(response.status).toBe(503);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("no_worker_available");
  });
});
