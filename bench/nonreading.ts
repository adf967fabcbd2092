// Slow readers: streams whose clients read the response head and then nothing more while the worker produces as
// fast as it can. What the middle process holds for them, and whether a normal client is still served meanwhile.
import { readFileSync } from "node:fs";
import { serveDefaults } from "../src/config.js";
import { openUnreadStream, sleep, streamChat, type UnreadStream } from "./client.js";
import type { EngineSpec } from "./host.js";
import { type BenchPath, type PathName, startPath } from "./paths.js";
import type { Row } from "./report.js";

export interface NonReadingVariant {
  /** Names the rows: "tokens" or "64 KiB pieces". */
  label: string;
  engine: EngineSpec;
  streamCounts: number[];
  /** `max_tokens` of the warm-up stream, read to the end before measuring. */
  warmupTokens: number;
  /** `max_tokens` of the normal client's stream, and how the row describes it. */
  probeTokens: number;
  probeLabel: string;
}

export interface NonReadingOptions {
  variants: NonReadingVariant[];
  /** How long the unread streams stay open while RSS is sampled. */
  seconds: number;
  paths: PathName[];
}

interface HoldResult {
  peakGrowthBytes: number;
  /** RSS growth per second over the second half of the window: about 0 once what the streams may hold is full. */
  lateGrowthBytesPerSecond: number;
  /** Seconds into the window when the growth reached the cap, if it did (sampling stopped there). */
  cappedAtSeconds: number | undefined;
  /** The normal client's stream to `[DONE]`, alone before the unread streams opened and while they were open. */
  probeAloneMs: number | undefined;
  probeMs: number | undefined;
  /** Output the kernel held at the end of the window, unsent by the server and unread by the clients (not in RSS). */
  kernelBytes: number;
  /** Unread streams the server closed before the end of the window. */
  dropped: number;
}

const MIB = 1024 * 1024;
/** Past this much growth the window ends early: unbounded buffering would otherwise take the machine's memory. */
const CAP_BYTES = 2048 * MIB;
/** What a middle process may grow by whatever it holds per stream: heap left by relaying at full speed, GC lag. */
const MARGIN_BYTES = 64 * MIB;
const SAMPLE_MS = 100;
const PROBE_TIMEOUT_MS = 15_000;
const messages = [{ role: "user" as const, content: "Benchmark slow readers." }];

/** Milliseconds from request to `[DONE]` of one normal stream; undefined when it fails or times out. */
async function timeToDone(path: BenchPath, maxTokens: number): Promise<number | undefined> {
  const started = performance.now();
  const handle = streamChat({ url: path.url, headers: path.headers, body: { model: "simulator", messages, max_tokens: maxTokens } });
  const timer = setTimeout(() => handle.abort(), PROBE_TIMEOUT_MS);
  try {
    const result = await handle.result;
    return result.status === 200 && result.done ? performance.now() - started : undefined;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Bytes in the send queues of the server's connections on `port` and the receive queues of their clients, from
 * /proc/net/tcp (loopback IPv4): output written and not yet read, which RSS does not show.
 */
function kernelBacklogBytes(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  let bytes = 0;
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const [, local, remote, state, queues] = line.trim().split(/\s+/);
    if (state !== "01" || !local || !remote || !queues) continue; // 01: established
    const [tx, rx] = queues.split(":").map((hex) => Number.parseInt(hex, 16));
    if (local.endsWith(`:${hexPort}`)) bytes += tx ?? 0;
    if (remote.endsWith(`:${hexPort}`)) bytes += rx ?? 0;
  }
  return bytes;
}

/** Opens `count` unread streams at once; if any fails, closes the others and throws. */
async function openUnread(path: BenchPath, count: number): Promise<UnreadStream[]> {
  const body = { model: "simulator", messages };
  const opened = await Promise.allSettled(Array.from({ length: count }, () => openUnreadStream({ url: path.url, headers: path.headers, body })));
  const streams = opened.flatMap((o) => (o.status === "fulfilled" ? [o.value] : []));
  const failure = opened.find((o) => o.status === "rejected") ?? streams.find((s) => s.status !== 200);
  if (failure) {
    for (const stream of streams) stream.close();
    throw new Error(`an unread stream did not open: ${"reason" in failure ? String(failure.reason) : `HTTP ${failure.status}`}`);
  }
  return streams;
}

/** Holds `count` unread streams open for the window, sampling the middle process's RSS; probes a normal client midway. */
async function hold(path: BenchPath, count: number, variant: NonReadingVariant, seconds: number): Promise<HoldResult> {
  await timeToDone(path, variant.warmupTokens);
  const probeAloneMs = await timeToDone(path, variant.probeTokens);
  await path.gc();
  await sleep(300);
  const before = path.middle().rssBytes;
  const streams = await openUnread(path, count);
  try {
    const started = performance.now();
    const samples: Array<{ seconds: number; rssBytes: number }> = [];
    let probe: Promise<number | undefined> | undefined;
    let cappedAtSeconds: number | undefined;
    for (;;) {
      await sleep(SAMPLE_MS);
      const elapsed = (performance.now() - started) / 1000;
      const rssBytes = path.middle().rssBytes;
      samples.push({ seconds: elapsed, rssBytes });
      if (rssBytes - before >= CAP_BYTES) cappedAtSeconds = elapsed;
      if (elapsed >= seconds || cappedAtSeconds !== undefined) break;
      if (!probe && elapsed >= seconds / 2) probe = timeToDone(path, variant.probeTokens);
    }
    // The probe always runs with the unread streams still open, also when the window ended early.
    const probeMs = await (probe ?? timeToDone(path, variant.probeTokens));
    const kernelBytes = kernelBacklogBytes(Number(new URL(path.url).port));
    const peak = Math.max(...samples.map((sample) => sample.rssBytes));
    return {
      peakGrowthBytes: peak - before,
      lateGrowthBytesPerSecond: lateGrowthRate(samples),
      cappedAtSeconds,
      kernelBytes,
      probeAloneMs,
      probeMs,
      dropped: streams.filter((s) => s.ended).length,
    };
  } finally {
    for (const stream of streams) stream.close();
  }
}

/** Bytes per second between the sample at half the window and the last one. */
function lateGrowthRate(samples: Array<{ seconds: number; rssBytes: number }>): number {
  const last = samples[samples.length - 1];
  const middle = last && samples.find((sample) => sample.seconds >= last.seconds / 2);
  if (!last || !middle || last.seconds <= middle.seconds) return Number.NaN;
  return (last.rssBytes - middle.rssBytes) / (last.seconds - middle.seconds);
}

export async function nonReadingScenario(options: NonReadingOptions): Promise<Row[]> {
  const { slowClientBytes } = serveDefaults();
  const rows: Row[] = [];
  for (const variant of options.variants) {
    for (const count of variant.streamCounts) {
      const results = new Map<PathName, HoldResult>();
      for (const name of options.paths.filter((p) => p !== "portkey")) {
        // One worker with a slot for every unread stream, the probe and the warm-up.
        const path = await startPath(name, { engine: variant.engine, workers: 1, maxConcurrency: count + 2 });
        try {
          results.set(name, await hold(path, count, variant, options.seconds));
        } finally {
          await path.stop();
        }
      }
      rows.push(...rowsOf(`nonreading ${variant.label} ${count}`, count, variant, options.seconds, slowClientBytes, results));
    }
  }
  return rows;
}

function rowsOf(scenario: string, count: number, variant: NonReadingVariant, seconds: number, slowClientBytes: number, results: Map<PathName, HoldResult>): Row[] {
  const c = results.get("coordinator");
  const d = results.get("direct");
  const mib = (bytes: number | undefined) => (bytes === undefined ? undefined : bytes / MIB);
  const limit = count * slowClientBytes + MARGIN_BYTES;
  const capped = [...results].filter(([, r]) => r.cappedAtSeconds !== undefined).map(([name, r]) => `${name} hit ${CAP_BYTES / MIB} MiB at ${r.cappedAtSeconds?.toFixed(1)} s`);
  const ms = (value: number | undefined) => (value === undefined ? "failed" : `${value.toFixed(1)} ms`);
  return [
    {
      scenario,
      metric: `peak RSS growth of the middle, ${count} streams unread for ${seconds} s`,
      unit: "MiB",
      coordinator: mib(c?.peakGrowthBytes),
      direct: mib(d?.peakGrowthBytes),
      ratio: capped.length > 0 ? `stopped early: ${capped.join(", ")}` : undefined,
      target: `≤ ${count} × ${mib(slowClientBytes)} MiB slow-client-bytes + ${MARGIN_BYTES / MIB} MiB`,
      met: c !== undefined && c.peakGrowthBytes <= limit,
    },
    {
      scenario,
      metric: "RSS growth per unread stream",
      unit: "MiB",
      coordinator: mib(c && c.peakGrowthBytes / count),
      direct: mib(d && d.peakGrowthBytes / count),
      ratio: `closed by the server: ${c?.dropped ?? "-"} / ${d?.dropped ?? "-"} of ${count}`,
    },
    {
      scenario,
      metric: "RSS growth rate over the second half of the window",
      unit: "MiB/s",
      coordinator: mib(c?.lateGrowthBytesPerSecond),
      direct: mib(d?.lateGrowthBytesPerSecond),
      ratio: "about 0 once what the streams may hold is full",
    },
    {
      scenario,
      metric: "unread output in kernel socket buffers at the end (not in RSS)",
      unit: "MiB",
      coordinator: mib(c?.kernelBytes),
      direct: mib(d?.kernelBytes),
    },
    {
      scenario,
      metric: `normal stream to [DONE] meanwhile (${variant.probeLabel})`,
      unit: "ms",
      coordinator: c?.probeMs,
      direct: d?.probeMs,
      ratio: `alone: ${ms(c?.probeAloneMs)} / ${ms(d?.probeAloneMs)}`,
      target: "served",
      met: c?.probeMs !== undefined,
    },
  ];
}
