// Several heads (docs/scaling.md): the same streams through one coordinator process, or spread over two with the
// workers joined to both (`--join a,b`); and, with two heads, how long after one is killed (-9) a client of it that
// turns to the other is served again. Heads and workers each run in their own process (bench/host.ts).
import type { EngineSpec } from "./host.js";
import { latencyRecorder, percentile, rampStreams, sleep, streamChat } from "./client.js";
import { Host } from "./processes.js";
import type { Row } from "./report.js";

export interface HeadsOptions {
  streams: number;
  seconds: number;
  tokensPerSecond: number;
  /** Head kills timed in the failover part. */
  kills: number;
}

const WORKERS = 4;
const body = { model: "simulator", messages: [{ role: "user", content: "Benchmark heads." }] };

interface Cluster {
  heads: Host[];
  urls: string[];
  workers: Host;
  stop(): Promise<void>;
}

/** `count` heads, and workers (one process) joined to all of them. */
async function startCluster(count: number, engine: Extract<EngineSpec, { kind: "stamped" }>, maxConcurrency: number): Promise<Cluster> {
  const heads: Host[] = [];
  const urls: string[] = [];
  const joins: string[] = [];
  for (let i = 0; i < count; i++) {
    const head = Host.start();
    const { url, workerUrl } = await head.run<{ url: string; workerUrl: string }>({ cmd: "coordinator", overrides: { keepaliveMs: 15_000 } });
    heads.push(head);
    urls.push(url);
    joins.push(workerUrl);
  }
  const workers = Host.start();
  await workers.run({ cmd: "workers", join: joins.join(","), count: WORKERS, maxConcurrency, engine });
  return {
    heads,
    urls,
    workers,
    stop: async () => {
      await workers.stop();
      for (const head of heads) await head.stop();
    },
  };
}

interface Load {
  p50: number;
  p99: number;
  errors: number;
  /** CPU of all heads together, and of the busiest one, in cores. */
  headsCores: number;
  busiestCores: number;
}

/** `streams` streams started evenly over a second, spread round robin over the heads; latency once all have started. */
async function load(cluster: Cluster, streams: number): Promise<Load> {
  const latencies: number[] = [];
  let steady = false;
  const record = latencyRecorder(latencies, () => steady);
  const before = cluster.heads.map((head) => head.stats().cpuSeconds);
  const started = performance.now();
  const handles = await rampStreams(streams, 1_000, (i) => streamChat({ url: cluster.urls[i % cluster.urls.length] as string, body, onFrame: record }));
  steady = true;
  const results = await Promise.all(handles.map((handle) => handle.result));
  const wall = (performance.now() - started) / 1000;
  const cores = cluster.heads.map((head, i) => (head.stats().cpuSeconds - (before[i] as number)) / wall);
  return {
    p50: percentile(latencies, 50) / 1000,
    p99: percentile(latencies, 99) / 1000,
    errors: results.filter((r) => r.status !== 200 || !r.done || r.error).length,
    headsCores: cores.reduce((sum, c) => sum + c, 0),
    busiestCores: Math.max(...cores),
  };
}

/**
 * Kills the first of two heads while its client keeps asking: ms from the kill until the client finds it gone, and
 * until its next reply, through the other.
 */
async function failover(): Promise<{ noticed: number; served: number }> {
  const engine = { kind: "stamped" as const, options: { tokensPerSecond: 1_000, tokens: 4, prefillMs: 0 } };
  const cluster = await startCluster(2, engine, 8);
  try {
    const ask = async (url: string) => (await streamChat({ url, body }).result).status === 200;
    for (let i = 0; i < 5; i++) await ask(cluster.urls[0] as string);
    cluster.heads[0]?.child.kill("SIGKILL");
    const killed = performance.now();
    // The client finds its head gone (refused or reset at once after -9) and turns to the other, as a proxy in front
    // of the heads or a client with two base URLs does.
    while (await ask(cluster.urls[0] as string)) await sleep(1);
    const noticed = performance.now() - killed;
    while (!(await ask(cluster.urls[1] as string))) await sleep(1);
    return { noticed, served: performance.now() - killed };
  } finally {
    await cluster.stop();
  }
}

export async function headsScenario(options: HeadsOptions): Promise<Row[]> {
  const engine = { kind: "stamped" as const, options: { tokensPerSecond: options.tokensPerSecond, tokens: Math.round(options.tokensPerSecond * options.seconds), prefillMs: 0 } };
  const results: Load[] = [];
  for (const count of [1, 2]) {
    const cluster = await startCluster(count, engine, Math.ceil(options.streams / WORKERS) + 1);
    try {
      await load(cluster, Math.min(options.streams, 20)); // warm-up
      results.push(await load(cluster, options.streams));
    } finally {
      await cluster.stop();
    }
  }
  const [one, two] = results as [Load, Load];
  const scenario = `heads (${options.streams} streams, ${options.tokensPerSecond} tok/s each)`;
  const failovers: Array<{ noticed: number; served: number }> = [];
  for (let i = 0; i < options.kills; i++) failovers.push(await failover());
  const served = failovers.map((f) => f.served);
  const rows: Row[] = [];
  for (const [label, result] of [["one head", one], ["two heads", two]] as const) {
    rows.push(
      { scenario, metric: `${label}: worker→client latency p50`, unit: "ms", coordinator: result.p50 },
      { scenario, metric: `${label}: worker→client latency p99`, unit: "ms", coordinator: result.p99 },
      { scenario, metric: `${label}: CPU of the heads together / of the busiest`, unit: "cores", coordinator: result.headsCores, ratio: `busiest ${result.busiestCores.toFixed(2)}` },
      { scenario, metric: `${label}: errors (streams)`, unit: "count", coordinator: result.errors },
    );
  }
  rows.push(
    { scenario, metric: "latency p99, one head ÷ two heads", unit: "x", coordinator: one.p99 / two.p99 },
    { scenario: `heads failover (${options.kills} kills)`, metric: "head killed (-9) → its client finds it gone, median", unit: "ms", coordinator: percentile(failovers.map((f) => f.noticed), 50) },
    { scenario: `heads failover (${options.kills} kills)`, metric: "head killed (-9) → its client's next reply through the other, median", unit: "ms", coordinator: percentile(served, 50) },
    { scenario: `heads failover (${options.kills} kills)`, metric: "… the slowest", unit: "ms", coordinator: Math.max(...served) },
  );
  return rows;
}
