// A worker joined to several coordinator heads (`--join a,b`): each head assigns to it through its own connection, the
// worker's slots are one pool for all of them (it refuses what it has no room for), and a head that dies takes only
// its own tasks with it.
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { silentLogger } from "../src/log.js";
import type { SimulatorEngine } from "../src/worker/engines/simulator.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { eventually, openaiClient, startTestCoordinator, TEST_TOKEN } from "./support/cluster.js";
import { CountingSimulator } from "./support/counting-simulator.js";
import { type CliProcess, spawnCli } from "./support/processes.js";

async function joinWorker(join: string, engine: SimulatorEngine, maxConcurrency: number, name = "shared-worker"): Promise<WorkerRuntime> {
  const runtime = new WorkerRuntime(engine, await engine.start(), {
    join,
    token: TEST_TOKEN,
    name,
    maxConcurrency,
    reconnect: true,
    log: silentLogger,
  });
  await runtime.start();
  return runtime;
}

describe("a worker joined to several heads", () => {
  const coordinators: RunningCoordinator[] = [];
  let head: CliProcess | undefined;
  let runtime: WorkerRuntime | undefined;
  const runtimes: WorkerRuntime[] = [];

  afterEach(async () => {
    await runtime?.stop();
    for (const other of runtimes.splice(0)) await other.stop();
    await head?.kill("SIGKILL");
    for (const coordinator of coordinators.splice(0)) await coordinator.close();
    runtime = head = undefined;
  });

  it("serves requests sent to either head, never running more than its slots however the heads race", async () => {
    // Given two heads and one worker of 2 slots joined to both
    for (let i = 0; i < 2; i++) coordinators.push(await startTestCoordinator({ queueTimeoutMs: 60_000 }));
    const [a, b] = coordinators as [RunningCoordinator, RunningCoordinator];
    const engine = new CountingSimulator({ tokensPerSecond: 400 });
    runtime = await joinWorker(`${a.workerUrl},${b.workerUrl}`, engine, 2);
    expect(a.master.snapshot().workers.map((w) => w.name)).toEqual(["shared-worker"]);
    expect(b.master.snapshot().workers.map((w) => w.name)).toEqual(["shared-worker"]);

    // When 24 requests arrive at once, half through each head
    const replies = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        openaiClient(i % 2 === 0 ? a : b).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: `request ${i}` }], max_tokens: 12 }),
      ),
    );

    // Then every one is answered, and the worker never ran more than 2 at once: both heads believed it had room, and
    // it refused what it had none for
    expect(replies.every((r) => r.choices[0]?.finish_reason === "length")).toBe(true);
    expect(engine.mostAtOnce).toBeLessThanOrEqual(2);
    const refusals = async (c: RunningCoordinator) => {
      const text = await (await fetch(`${c.url}/metrics`)).text();
      return Number(text.match(/coordinator_task_refusals_total\{worker="shared-worker",reason="no_slot"\} (\d+)/)?.[1] ?? 0);
    };
    expect((await refusals(a)) + (await refusals(b))).toBeGreaterThan(0);
    await eventually(() => coordinators.every((c) => c.master.liveTasks === 0), "no task left on either head");
  }, 60_000);

  it("never books a slot twice: two heads at a high rate on three workers, with clients leaving mid-stream (soak)", async () => {
    // Given two heads, and three workers of 1, 2 and 3 slots joined to both, whose engines take a while to stop
    for (let i = 0; i < 2; i++) coordinators.push(await startTestCoordinator({ queueTimeoutMs: 60_000, cancelAckMs: 50 }));
    const [a, b] = coordinators as [RunningCoordinator, RunningCoordinator];
    const engines = [1, 2, 3].map(() => new CountingSimulator({ tokensPerSecond: 500, replyTokens: 40, stopMs: 30 }));
    for (const [i, engine] of engines.entries()) runtimes.push(await joinWorker(`${a.workerUrl},${b.workerUrl}`, engine, i + 1, `soak-${i + 1}`));

    // When 240 requests arrive in waves through both heads, and every fifth client leaves after its first chunk
    let left = 0;
    const one = async (i: number) => {
      const stream = await openaiClient(i % 2 === 0 ? a : b).chat.completions.create({
        model: "simulator",
        messages: [{ role: "user", content: `soak ${i}` }],
        max_tokens: 30,
        stream: true,
      });
      let chunks = 0;
      for await (const _ of stream) {
        chunks += 1;
        // Leaving as the SDK says to: break out of the loop, which aborts the request (aborting alone can leave the
        // SDK's iterator waiting on its closed body for ever).
        if (i % 5 === 0 && chunks === 2) {
          left += 1;
          break;
        }
      }
      return chunks;
    };
    for (let wave = 0; wave < 6; wave++) {
      const chunks = await Promise.all(Array.from({ length: 40 }, (_, i) => one(wave * 40 + i)));
      expect(chunks.every((n) => n >= 2)).toBe(true);
    }

    // Then no worker ever ran more than its slots, all of them worked, and nothing is left on either head
    expect(left).toBe(48);
    expect(engines.map((engine) => engine.mostAtOnce <= engines.indexOf(engine) + 1)).toEqual([true, true, true]);
    expect(engines.every((engine) => engine.mostAtOnce > 0)).toBe(true);
    // (the clients that left reached the workers: their generations were stopped, not run to the end)
    expect(engines.reduce((sum, engine) => sum + engine.aborted.size, 0)).toBeGreaterThan(0);
    await eventually(() => coordinators.every((c) => c.master.liveTasks === 0), "no task left on either head");
    await eventually(() => engines.every((engine) => engine.running === 0), "every engine idle");
  }, 120_000);

  it("stops only the killed head's task, and keeps serving through the other", async () => {
    // Given a head in its own process, one in this one, and a worker joined to both
    head = spawnCli(["--host", "127.0.0.1", "--port", "0", "--worker-token", TEST_TOKEN, "--log-level", "warn"]);
    const [, api] = await head.waitFor(/API:\s+(http:\/\/\S+)\/v1/);
    const [, join] = await head.waitFor(/--join (ws:\/\/\S+) --token/);
    coordinators.push(await startTestCoordinator());
    const survivor = coordinators[0] as RunningCoordinator;
    const engine = new CountingSimulator({ tokensPerSecond: 40, replyTokens: 400 });
    runtime = await joinWorker(`${join},${survivor.workerUrl}`, engine, 4);

    // And a long stream through each head, both flowing
    const doomed = new OpenAI({ baseURL: `${api}/v1`, apiKey: "unused", maxRetries: 0, timeout: 20_000 });
    const doomedStream = await doomed.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "a" }], max_tokens: 400, stream: true });
    const doomedChunks = doomedStream[Symbol.asyncIterator]();
    await doomedChunks.next();
    const kept = await openaiClient(survivor).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "b" }], max_tokens: 60, stream: true });
    const keptChunks = kept[Symbol.asyncIterator]();
    await keptChunks.next();
    await eventually(() => engine.running === 2, "both streams to run on the worker");

    // When the first head is killed
    await head.kill("SIGKILL");

    // Then its client's stream ends with an error, not a hang; the worker stops that head's task only
    const drained = (async () => {
      for (;;) if ((await doomedChunks.next()).done) return "ended";
    })();
    await expect(drained).rejects.toThrow();
    await eventually(() => engine.aborted.size === 1 && engine.running === 1, "the worker to stop the dead head's task only");
    // And the other head's stream runs to its end, and new requests through it are served
    let tokens = 1;
    for (;;) {
      const next = await keptChunks.next();
      if (next.done) break;
      tokens += 1;
    }
    expect(tokens).toBeGreaterThan(10);
    const after = await openaiClient(survivor).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "c" }], max_tokens: 4 });
    expect(after.choices[0]?.finish_reason).toBe("length");
  }, 60_000);
});
