// A request for a model no worker has loaded (docs/benchmarks.md, "Cold start"): time to its first token, split into
// queueing, the model's load and generation, against the same request once the model is loaded. A coordinator and
// a worker in this process; the worker's engine offers the model in its library (the llama engine on the CPU with a
// scripted test model, or the simulator with a made-up load time).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { makeTestModel } from "../scripts/make-test-model.js";
import { serveDefaults } from "../src/config.js";
import { startCoordinator } from "../src/coordinator.js";
import { silentLogger } from "../src/log.js";
import type { Engine } from "../src/worker/engines/engine.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { percentile } from "./client.js";
import type { Row } from "./report.js";

export interface ColdStartOptions {
  /** Names the rows, e.g. "llama 8×256, 8 MiB". */
  label: string;
  /** An engine whose library offers `model` (and nothing loaded). */
  engine: () => Promise<Engine>;
  model: string;
  /** Cold starts measured (the model is unloaded between them). */
  rounds: number;
}

interface Round {
  /** Client-side: request sent to first content. */
  coldTtftMs: number;
  /** Admission to LoadModel, and the model loaded to the task's assignment (the master's own work). */
  queueingMs: number;
  /** LoadModel sent to the worker's "loaded". */
  loadMs: number;
  /** Assignment to the first token (prefill and first token). */
  generationMs: number;
  /** The same request with the model loaded. */
  warmTtftMs: number;
}

const WORKER_TOKEN = "bench-cold-start-token";

export async function coldStartScenario(options: ColdStartOptions): Promise<Row[]> {
  const coordinator = await startCoordinator(serveDefaults({ host: "127.0.0.1", port: 0, workerToken: WORKER_TOKEN, modelIdleMs: 3_600_000, reasoning: "separate" }), silentLogger);
  const engine = await options.engine();
  const runtime = new WorkerRuntime(engine, await engine.start(), { join: coordinator.workerUrl, token: WORKER_TOKEN, name: "cold", maxConcurrency: 1, reconnect: false, log: silentLogger });
  const client = new OpenAI({ baseURL: `${coordinator.url}/v1`, apiKey: "unused", maxRetries: 0 });
  const marks = new Map<string, number>();
  const unobserve = coordinator.master.observers.add({
    modelPlacement: (notice) => marks.set(notice.kind, performance.now()),
    taskAssigned: () => marks.set("assigned", performance.now()),
    taskFirstToken: () => marks.set("first", performance.now()),
  });
  try {
    await runtime.start();
    const rounds: Round[] = [];
    for (let round = 0; round < options.rounds; round++) {
      marks.clear();
      const sent = performance.now();
      const cold = await firstContent(client, options.model, round);
      // The cold request's marks, before the warm one overwrites them.
      const coldMarks = new Map(marks);
      const at = (kind: string) => coldMarks.get(kind) ?? Number.NaN;
      const warmSent = performance.now();
      const warm = await firstContent(client, options.model, round);
      rounds.push({
        coldTtftMs: cold - sent,
        queueingMs: at("load_started") - sent + (at("assigned") - at("loaded")),
        loadMs: at("loaded") - at("load_started"),
        generationMs: at("first") - at("assigned"),
        warmTtftMs: warm - warmSent,
      });
      await unload(coordinator.url, options.model);
    }
    return rows(options.label, rounds);
  } finally {
    unobserve();
    await runtime.stop();
    await engine.close();
    await coordinator.close();
  }
}

/** The llama engine on the CPU with a models dir holding one scripted test model (`layers` × `width`). */
export async function llamaColdStart(rounds: number, layers: number, width: number): Promise<Row[]> {
  const dir = await mkdtemp(join(tmpdir(), "bench-cold-start-"));
  try {
    const model = await makeTestModel(join(dir, "cold.gguf"), { layers, width });
    const { LlamaEngine } = await import("../src/worker/engines/llama.js");
    const label = `llama ${layers}×${width}, ${(model.bytes / 2 ** 20).toFixed(0)} MiB, CPU`;
    return await coldStartScenario({ label, model: "cold", rounds, engine: async () => new LlamaEngine({ modelPaths: [], modelsDir: dir, gpu: "cpu", maxConcurrency: 1 }) });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Sends one streamed request and resolves with when its first content arrived (performance.now()). */
async function firstContent(client: OpenAI, model: string, round: number): Promise<number> {
  const stream = await client.chat.completions.create({ model, stream: true, max_tokens: 8, messages: [{ role: "user", content: `hello ${round}` }] });
  let first = Number.NaN;
  for await (const chunk of stream) {
    if (Number.isNaN(first) && (chunk.choices[0]?.delta.content || (chunk.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content)) {
      first = performance.now();
    }
  }
  return first;
}

async function unload(url: string, model: string): Promise<void> {
  const response = await fetch(`${url}/v1/models/unload`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model, worker: "cold" }) });
  if (!response.ok) throw new Error(`unload failed: ${response.status} ${await response.text()}`);
  // The next round must find it unloaded: wait for the worker's report.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const cluster = (await (await fetch(`${url}/v1/cluster`)).json()) as { workers: Array<{ placement: { models: unknown[] } | null }> };
    if (cluster.workers.every((w) => (w.placement?.models.length ?? 0) === 0)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error("the model was not unloaded within 30 s");
}

function rows(label: string, rounds: Round[]): Row[] {
  const scenario = `cold start (${label})`;
  const p50 = (pick: (r: Round) => number) => percentile(rounds.map(pick), 50);
  const cold = p50((r) => r.coldTtftMs);
  const warm = p50((r) => r.warmTtftMs);
  return [
    { scenario, metric: `time to first token, model not loaded (p50 of ${rounds.length})`, unit: "ms", coordinator: cold },
    { scenario, metric: "  of which queueing (admission to LoadModel, loaded to assignment)", unit: "ms", coordinator: p50((r) => r.queueingMs) },
    { scenario, metric: "  of which the load (LoadModel to loaded)", unit: "ms", coordinator: p50((r) => r.loadMs) },
    { scenario, metric: "  of which generation (assignment to first token)", unit: "ms", coordinator: p50((r) => r.generationMs) },
    { scenario, metric: "time to first token, model loaded (p50)", unit: "ms", coordinator: warm },
    { scenario, metric: "cold ÷ warm", unit: "x", coordinator: cold / warm },
  ];
}
