// Graceful shutdown: SIGTERM lets in-flight streams finish within the grace period, then cancels the rest and exits 0.
import { afterEach, describe, expect, it } from "vitest";
import { startChildWorker } from "./support/child-workers.js";
import { eventually, startSimWorker, startTestCoordinator, TEST_TOKEN } from "./support/cluster.js";
import { type CliProcess, spawnCli } from "./support/processes.js";
import { postSse } from "./support/sse.js";

const messages = [{ role: "user" as const, content: "Tell me a story." }];
const children: CliProcess[] = [];

async function startCoordinatorProcess(graceMs: number) {
  const coordinator = spawnCli(
    ["--host", "127.0.0.1", "--port", "0", "--log-format", "json", "--shutdown-grace-ms", String(graceMs)],
    { COORDINATOR_WORKER_TOKEN: TEST_TOKEN },
  );
  children.push(coordinator);
  const [, api] = await coordinator.waitFor(/API:\s+(http:\/\/\S+)\/v1/);
  const [, join] = await coordinator.waitFor(/--join (ws:\/\/\S+)/);
  return { coordinator, api: api as string, join: join as string };
}

async function inflight(api: string): Promise<number> {
  const state = (await (await fetch(`${api}/v1/cluster`)).json()) as { workers: Array<{ inflight: string[] }> };
  return state.workers.reduce((sum, w) => sum + w.inflight.length, 0);
}

describe("graceful shutdown", () => {
  afterEach(async () => {
    await Promise.all(children.splice(0).map((c) => c.kill("SIGKILL")));
  });

  it("on SIGTERM refuses new requests, lets in-flight streams finish, closes workers with going-away, exits 0", async () => {
    const { coordinator, api, join } = await startCoordinatorProcess(15_000);
    const worker = await startChildWorker({ workerUrl: join }, { name: "w", tokensPerSecond: 25, replyTokens: 30 });
    children.push(worker);
    const streams = [1, 2, 3].map(() => postSse(`${api}/v1/chat/completions`, { model: "simulator", messages, stream: true }));
    await eventually(async () => (await inflight(api)) === 3, "three streams in flight");

    coordinator.child.kill("SIGTERM");
    await coordinator.waitFor(/shutting down/);
    const refused = await fetch(`${api}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "simulator", messages }),
    });

    expect(refused.status).toBe(503);
    for (const stream of await Promise.all(streams)) {
      expect(stream.done).toBe(true);
      expect(JSON.stringify(stream.data)).not.toContain('"error"');
    }
    expect(await coordinator.exited).toEqual({ code: 0, signal: null });
    await worker.waitFor(/"code":1001/);
  });

  it("cancels what is still running when the grace period ends: error event, [DONE], TaskCancelled to the worker", async () => {
    const { coordinator, api, join } = await startCoordinatorProcess(500);
    const worker = await startChildWorker({ workerUrl: join }, { name: "w", tokensPerSecond: 20, replyTokens: 5_000 });
    children.push(worker);
    const stream = postSse(`${api}/v1/chat/completions`, { model: "simulator", messages, stream: true });
    await eventually(async () => (await inflight(api)) === 1, "the stream to be in flight");

    coordinator.child.kill("SIGTERM");

    const result = await stream;
    expect(JSON.stringify(result.data.at(-1))).toContain("service_unavailable");
    expect(result.done).toBe(true);
    expect(await coordinator.exited).toEqual({ code: 0, signal: null });
    await worker.waitFor(/"task stopped"/);
  });

  it("a worker given SIGTERM drains: no new tasks, its running task completes, it exits 0", async () => {
    const coordinator = await startTestCoordinator();
    try {
      const draining = await startChildWorker(coordinator, { name: "draining", tokensPerSecond: 25, replyTokens: 30 });
      children.push(draining);
      const running = postSse(`${coordinator.url}/v1/chat/completions`, { model: "simulator", messages, stream: true });
      await eventually(() => coordinator.master.snapshot().workers[0]?.inflight.length === 1, "the task to run");
      const other = await startSimWorker(coordinator, { name: "other" });

      draining.child.kill("SIGTERM");
      await eventually(() => coordinator.master.snapshot().workers.find((w) => w.name === "draining")?.state === "draining", "the worker to drain");
      const next = await postSse(`${coordinator.url}/v1/chat/completions`, { model: "simulator", messages, stream: true });

      expect(next.done).toBe(true);
      expect(other.log.started).toHaveLength(1);
      const finished = await running;
      expect(finished.done).toBe(true);
      expect(JSON.stringify(finished.data)).not.toContain('"error"');
      expect((await draining.exited).code).toBe(0);
      await other.stop();
    } finally {
      await coordinator.close();
    }
  });
});
