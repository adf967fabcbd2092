// The master places models on a real llama worker: scripted test GGUF files in its models dir under --memory-limit
// (room for one model), loaded on demand, evicted when idle, pinned by a placement, never evicted with work in
// flight; a load that fails, and a client leaving during a load. Real node-llama-cpp on the CPU.
import { copyFile, mkdtemp, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeTestModel } from "../scripts/make-test-model.js";
import type { RunningCoordinator } from "../src/coordinator.js";
import { silentLogger } from "../src/log.js";
import { LlamaEngine } from "../src/worker/engines/llama.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { eventually, openaiClient, startTestCoordinator, TEST_TOKEN } from "./support/cluster.js";

const ANSWER = "Hello! How can I help?";

let dir: string;
/** Room for one of the models, not two. */
let memoryLimit: number;
let coordinator: RunningCoordinator | undefined;
let engine: LlamaEngine | undefined;
let runtime: WorkerRuntime | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "llama-placement-"));
  const alpha = await makeTestModel(join(dir, "models", "alpha.gguf"));
  await copyFile(alpha.path, join(dir, "models", "beta.gguf"));
  await makeTestModel(join(dir, "models", "looper.gguf"), { endless: true });
  const probe = new LlamaEngine({ modelPaths: [], modelsDir: join(dir, "models"), gpu: "cpu", maxConcurrency: 1 });
  await probe.start();
  const estimates = probe.library.list().map((m) => m.memoryBytes);
  await probe.close();
  memoryLimit = Math.floor(Math.max(...estimates) * 1.5);
  expect(Math.min(...estimates) * 2).toBeGreaterThan(memoryLimit);
});

afterEach(async () => {
  await runtime?.stop();
  await engine?.close();
  await coordinator?.close();
  runtime = engine = coordinator = undefined;
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function start(libraryScanMs = 10_000): Promise<{ coordinator: RunningCoordinator; engine: LlamaEngine; workerId: string }> {
  coordinator = await startTestCoordinator();
  engine = new LlamaEngine({ modelPaths: [], modelsDir: join(dir, "models"), memoryLimitBytes: memoryLimit, gpu: "cpu", maxConcurrency: 2 });
  runtime = new WorkerRuntime(engine, await engine.start(), { join: coordinator.workerUrl, token: TEST_TOKEN, name: "llama", maxConcurrency: 2, reconnect: false, libraryScanMs, log: silentLogger });
  return { coordinator, engine, workerId: await runtime.start() };
}

function slotState(workerId: string, model: string): string | undefined {
  return coordinator?.master.placer.state.workers.get(workerId)?.slots.get(model)?.state;
}

async function ask(model: string): Promise<string> {
  if (!coordinator) throw new Error("no coordinator");
  const reply = await openaiClient(coordinator).chat.completions.create({ model, messages: [{ role: "user", content: "hi there" }], temperature: 0 });
  return reply.choices[0]?.message.content ?? "";
}

describe("placement on the llama engine", () => {
  it("loads a model on demand and answers; a second model unloads the idle first", async () => {
    const { engine, workerId } = await start();
    expect(await ask("alpha")).toBe(ANSWER);
    expect(slotState(workerId, "alpha")).toBe("loaded");

    expect(await ask("beta")).toBe(ANSWER);
    await eventually(() => slotState(workerId, "alpha") === undefined, "alpha evicted");
    expect(slotState(workerId, "beta")).toBe("loaded");
    const memory = engine.library.memory();
    expect(memory.totalBytes).toBe(memoryLimit);
    expect(memory.freeBytes).toBeLessThan(memoryLimit / 2);
  });

  it("keeps a pinned placement loaded: another model is refused for lack of memory", async () => {
    const { coordinator, workerId } = await start();
    const placed = await fetch(`${coordinator.url}/v1/placements`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "alpha" }) });
    expect(placed.status).toBe(201);
    await eventually(() => slotState(workerId, "alpha") === "loaded", "alpha placed", 30_000);
    await expect(ask("beta")).rejects.toMatchObject({ status: 503, code: "model_load_failed" });
    expect(slotState(workerId, "alpha")).toBe("loaded");
    expect(await ask("alpha")).toBe(ANSWER);
  });

  it("never evicts a model with a task running: the other request waits, then loads", async () => {
    const { coordinator, workerId } = await start();
    const client = openaiClient(coordinator);
    const controller = new AbortController();
    const endless = await client.chat.completions.create({ model: "looper", messages: [{ role: "user", content: "go" }], max_tokens: 2_000, stream: true }, { signal: controller.signal });
    const iterator = endless[Symbol.asyncIterator]();
    await iterator.next(); // it is generating
    const waiting = ask("alpha");
    await eventually(() => coordinator.master.liveTasks === 2, "alpha's request waits");
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(slotState(workerId, "looper")).toBe("loaded");
    expect(slotState(workerId, "alpha")).toBeUndefined();

    controller.abort();
    await iterator.return?.().catch(() => undefined);
    expect(await waiting).toBe(ANSWER);
    expect(slotState(workerId, "looper")).toBeUndefined();
  });

  it("fails the waiting request with a clear error when the load fails, and counts it", async () => {
    // The file is cut after the worker offered it: its load fails.
    const broken = join(dir, "models", "broken-later.gguf");
    await copyFile(join(dir, "models", "alpha.gguf"), broken);
    const { coordinator } = await start(3_600_000);
    await truncate(broken, 4_096);
    try {
      const error = await ask("broken-later").then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ status: 503, code: "model_load_failed" });
      expect(String((error as Error).message)).toContain("broken-later");
      const metrics = await (await fetch(`${coordinator.url}/metrics`)).text();
      expect(metrics).toMatch(/coordinator_model_loads_total\{model="broken-later",worker="llama",outcome="failed"\} 1/);
      expect(coordinator.master.liveTasks).toBe(0);
    } finally {
      await rm(broken, { force: true });
    }
  });

  it("gives the load up when its client leaves during it, and nothing stays loaded", async () => {
    const { coordinator, engine, workerId } = await start();
    const controller = new AbortController();
    const request = openaiClient(coordinator)
      .chat.completions.create({ model: "alpha", messages: [{ role: "user", content: "hi" }], stream: true }, { signal: controller.signal })
      .then(
        async (stream) => {
          for await (const _ of stream) void _;
        },
        () => undefined,
      );
    await eventually(() => slotState(workerId, "alpha") === "loading", "the load started");
    controller.abort();
    await request.catch(() => undefined);
    await eventually(() => slotState(workerId, "alpha") === undefined, "the load was given up", 30_000);
    await eventually(() => engine.library.memory().freeBytes === memoryLimit, "its memory is free again");
    expect(coordinator.master.liveTasks).toBe(0);
  });
});
