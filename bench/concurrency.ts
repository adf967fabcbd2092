// Concurrency: many streams at a realistic rate, each token stamped by its worker; and idle open streams' memory.
import { latencyRecorder, percentile, rampStreams, sleep, streamChat, type StreamHandle } from "./client.js";
import { type BenchPath, type PathName, startPath } from "./paths.js";
import type { Row } from "./report.js";

export interface ConcurrencyOptions {
  sweep: number[];
  /** Stream sizes also run through Portkey. */
  peerSweep: number[];
  seconds: number;
  tokensPerSecond: number;
  paths: PathName[];
}

interface LoadResult {
  p50: number;
  p99: number;
  samples: number;
  errors: number;
  peakRssBytes: number;
  cores: number;
  /** Every process of the path together (client, middle, engine), in cores: how much of the machine it took. */
  pathCores: number;
}

const WORKERS = 4;
const body = { model: "simulator", messages: [{ role: "user", content: "Benchmark concurrency." }] };

/** Runs `streams` concurrent streams, started evenly over a second; latency counts only once all have started. */
async function load(path: BenchPath, streams: number, options: ConcurrencyOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  let steady = false;
  const record = latencyRecorder(latencies, () => steady);
  const cpuBefore = path.middle().cpuSeconds;
  const engineBefore = path.engineHost.stats().cpuSeconds;
  const clientBefore = process.cpuUsage();
  const started = performance.now();
  let peakRssBytes = 0;
  const sampler = setInterval(() => (peakRssBytes = Math.max(peakRssBytes, path.middle().rssBytes)), 250);
  const handles = await rampStreams(streams, 1_000, () => streamChat({ url: path.url, headers: path.headers, body, onFrame: record }));
  steady = true;
  const results = await Promise.all(handles.map((h) => h.result));
  clearInterval(sampler);
  const wall = (performance.now() - started) / 1000;
  const cores = (path.middle().cpuSeconds - cpuBefore) / wall;
  const client = process.cpuUsage(clientBefore);
  const clientCores = (client.user + client.system) / 1e6 / wall;
  // On the direct path the middle process is the engine's (the baseline server): counted once.
  const engineCores = path.engineHost.pid === path.middlePid ? 0 : (path.engineHost.stats().cpuSeconds - engineBefore) / wall;
  const pathCores = cores + engineCores + clientCores;
  const errors = results.filter((r) => r.status !== 200 || !r.done || r.error).length;
  return { p50: percentile(latencies, 50) / 1000, p99: percentile(latencies, 99) / 1000, samples: latencies.length, errors, peakRssBytes, cores, pathCores };
}

export async function concurrencyScenario(options: ConcurrencyOptions): Promise<Row[]> {
  const rows: Row[] = [];
  const tokens = Math.round(options.tokensPerSecond * options.seconds);
  const engine = { kind: "stamped" as const, options: { tokensPerSecond: options.tokensPerSecond, tokens, prefillMs: 0 } };
  for (const streams of options.sweep) {
    const names = options.paths.filter((name) => name !== "portkey" || options.peerSweep.includes(streams));
    const results = new Map<PathName, LoadResult>();
    for (const name of names) {
      const path = await startPath(name, { engine, workers: WORKERS, maxConcurrency: Math.ceil(streams / WORKERS) + 1 });
      try {
        await load(path, Math.min(streams, 20), { ...options, seconds: 1 }); // warm-up
        results.set(name, await load(path, streams, options));
      } finally {
        await path.stop();
      }
    }
    const c = results.get("coordinator");
    const d = results.get("direct");
    const p = results.get("portkey");
    const scenario = `concurrency ${streams}`;
    const at1000 = streams === 1000;
    const addedP99 = c && d ? c.p99 - d.p99 : undefined;
    rows.push(
      { scenario, metric: `worker→client latency p50 (${options.tokensPerSecond} tok/s each)`, unit: "ms", coordinator: c?.p50, direct: d?.p50, portkey: p?.p50, ratio: c && d ? `+${(c.p50 - d.p50).toFixed(2)} ms` : undefined },
      {
        scenario,
        metric: "worker→client latency p99",
        unit: "ms",
        coordinator: c?.p99,
        direct: d?.p99,
        portkey: p?.p99,
        ratio: addedP99 !== undefined ? `+${addedP99.toFixed(2)} ms` : undefined,
        ...(at1000 ? { target: "added p99 ≤5 ms", met: addedP99 !== undefined && addedP99 <= 5 } : {}),
      },
      { scenario, metric: "middle process peak RSS", unit: "MiB", coordinator: mib(c?.peakRssBytes), direct: mib(d?.peakRssBytes), portkey: mib(p?.peakRssBytes) },
      { scenario, metric: "middle process CPU", unit: "cores", coordinator: c?.cores, direct: d?.cores, portkey: p?.cores },
      {
        scenario,
        metric: "CPU of the whole path: client + middle + engine (machine: 2)",
        unit: "cores",
        coordinator: c?.pathCores,
        direct: d?.pathCores,
        portkey: p?.pathCores,
      },
      {
        scenario,
        metric: `errors (streams) / latency samples ${c?.samples ?? 0}`,
        unit: "count",
        coordinator: c?.errors,
        direct: d?.errors,
        portkey: p?.errors,
        ...(at1000 ? { target: "no errors", met: c?.errors === 0 } : {}),
      },
    );
  }
  return rows;
}

function mib(bytes: number | undefined): number | undefined {
  return bytes === undefined ? undefined : bytes / 1024 / 1024;
}

/** Opens `streams` streams that stay silent (a long prefill) and measures what each costs the middle process. */
export async function idleMemoryScenario(streams: number, paths: PathName[]): Promise<Row[]> {
  const engine = { kind: "stamped" as const, options: { tokensPerSecond: 30, tokens: 10, prefillMs: 600_000 } };
  const perStream = new Map<PathName, number>();
  for (const name of paths.filter((p) => p !== "portkey")) {
    const path = await startPath(name, { engine, workers: WORKERS, maxConcurrency: Math.ceil(streams / WORKERS) + 1 });
    try {
      await sleep(500);
      await path.gc();
      const before = path.middle().rssBytes;
      const handles: StreamHandle[] = [];
      for (let i = 0; i < streams; i++) {
        handles.push(streamChat({ url: path.url, headers: path.headers, body }));
        if (i % 200 === 199) await sleep(20);
      }
      await sleep(Math.max(2_000, streams / 2));
      await path.gc();
      await sleep(200);
      const after = path.middle().rssBytes;
      perStream.set(name, (after - before) / streams);
      for (const handle of handles) handle.abort();
      await Promise.all(handles.map((h) => h.result));
    } finally {
      await path.stop();
    }
  }
  const c = perStream.get("coordinator");
  const d = perStream.get("direct");
  return [
    {
      scenario: `idle ${streams}`,
      metric: "RSS growth per idle open stream (after GC)",
      unit: "KiB",
      coordinator: c === undefined ? undefined : c / 1024,
      direct: d === undefined ? undefined : d / 1024,
      ratio: c && d ? `${(c / d).toFixed(2)}x direct` : undefined,
      ...(streams >= 5000 ? { target: "≤64 KiB", met: c !== undefined && c / 1024 <= 64 } : {}),
    },
  ];
}
