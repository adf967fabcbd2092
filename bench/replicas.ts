// Replicas on demand (docs/placement.md, "Replicas"): a burst of requests for a model that one worker has loaded and
// others offer, drained with --max-replicas 1 and with more. A coordinator and simulator workers in this process.
import OpenAI from "openai";
import { serveDefaults } from "../src/config.js";
import { startCoordinator } from "../src/coordinator.js";
import { silentLogger } from "../src/log.js";
import { defaultSimulatorOptions, SimulatorEngine } from "../src/worker/engines/simulator.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { percentile } from "./client.js";
import type { Row } from "./report.js";

export interface ReplicasOptions {
  workers: number;
  /** Requests sent at once. */
  burst: number;
  /** The model's load time on a worker. */
  loadMs: number;
}

const WORKER_TOKEN = "bench-replicas-token";
const SLOTS = 2;

interface Drain {
  seconds: number;
  latencies: number[];
  /** Workers that served at least one request. */
  serving: number;
}

async function drain(maxReplicas: number, options: ReplicasOptions): Promise<Drain> {
  const coordinator = await startCoordinator(
    serveDefaults({ host: "127.0.0.1", port: 0, workerToken: WORKER_TOKEN, maxReplicas, replicaAfterMs: 500, queueTimeoutMs: 600_000 }),
    silentLogger,
  );
  const served = new Set<string>();
  const runtimes: WorkerRuntime[] = [];
  try {
    for (let i = 0; i < options.workers; i++) {
      const name = `replica-${i}`;
      const engine = new SimulatorEngine([], {
        ...defaultSimulatorOptions,
        prefillMs: 50,
        tokensPerSecond: 50,
        replyTokens: 50,
        library: [{ id: "popular", sizeBytes: 2 ** 30, loadMs: options.loadMs }],
        memoryBytes: 8 * 2 ** 30 - i, // the first is roomiest: it takes the first load
        hooks: { onStart: () => served.add(name) },
      });
      const runtime = new WorkerRuntime(engine, await engine.start(), { join: coordinator.workerUrl, token: WORKER_TOKEN, name, maxConcurrency: SLOTS, reconnect: false, log: silentLogger });
      await runtime.start();
      runtimes.push(runtime);
    }
    const client = new OpenAI({ baseURL: `${coordinator.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 600_000 });
    const ask = async (i: number) => {
      const sent = performance.now();
      await client.chat.completions.create({ model: "popular", messages: [{ role: "user", content: `request ${i}` }] });
      return performance.now() - sent;
    };
    await ask(-1); // the first instance is loaded before the burst
    served.clear();
    const started = performance.now();
    const latencies = await Promise.all(Array.from({ length: options.burst }, (_, i) => ask(i)));
    return { seconds: (performance.now() - started) / 1000, latencies, serving: served.size };
  } finally {
    for (const runtime of runtimes) await runtime.stop();
    await coordinator.close();
  }
}

export async function replicasScenario(options: ReplicasOptions): Promise<Row[]> {
  const scenario = `replicas (${options.burst} requests, ${options.workers} workers × ${SLOTS} slots, load ${options.loadMs} ms)`;
  const rows: Row[] = [];
  const results: Array<[number, Drain]> = [];
  for (const max of [1, options.workers]) results.push([max, await drain(max, options)]);
  for (const [max, result] of results) {
    const label = `--max-replicas ${max}`;
    rows.push(
      { scenario, metric: `${label}: burst drained in`, unit: "s", coordinator: result.seconds },
      { scenario, metric: `${label}: request latency p50`, unit: "ms", coordinator: percentile(result.latencies, 50) },
      { scenario, metric: `${label}: request latency p99`, unit: "ms", coordinator: percentile(result.latencies, 99) },
      { scenario, metric: `${label}: workers that served`, unit: "workers", coordinator: result.serving },
    );
  }
  const [one, many] = [results[0]?.[1], results[1]?.[1]];
  if (one && many) rows.push({ scenario, metric: `drain time, 1 ÷ ${options.workers} replicas`, unit: "x", coordinator: one.seconds / many.seconds });
  return rows;
}
