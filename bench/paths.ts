// The paths a benchmark compares, each started fresh: through the coordinator (coordinator and workers in their
// own processes), direct to a baseline server, and through the Portkey gateway in front of that baseline server.
import { Host, portkeyHeaders, type ProcessStats, startPortkey, statsOf } from "./processes.js";
import type { EngineSpec } from "./host.js";

export type PathName = "coordinator" | "direct" | "portkey";

export interface BenchPath {
  name: PathName;
  /** Base URL the client calls (…/v1/chat/completions is appended). */
  url: string;
  headers: Record<string, string>;
  /** The process in the middle (coordinator or gateway), or the baseline server for the direct path. */
  middle(): ProcessStats;
  middlePid: number;
  /** The process running the engine (workers or the baseline server): it reports cancellations. */
  engineHost: Host;
  gc(): Promise<void>;
  stop(): Promise<void>;
}

export interface PathSetup {
  engine: EngineSpec;
  workers?: number;
  maxConcurrency?: number;
  coordinatorOverrides?: Record<string, unknown>;
}

let portkeyPort = 18787;

export async function startPath(name: PathName, setup: PathSetup): Promise<BenchPath> {
  if (name === "coordinator") {
    // BENCH_CPU_PROF=DIR writes a V8 CPU profile of the coordinator process into DIR (for `--cpu-prof` guided work).
    const profile = process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
    const coordinator = Host.start(["--expose-gc", ...profile, ...(process.env.BENCH_TRACE_GC ? ["--trace-gc"] : [])]);
    const { url, workerUrl } = await coordinator.run<{ url: string; workerUrl: string }>({
      cmd: "coordinator",
      overrides: { keepaliveMs: 15_000, ...setup.coordinatorOverrides },
    });
    const workers = Host.start();
    await workers.run({ cmd: "workers", join: workerUrl, count: setup.workers ?? 1, maxConcurrency: setup.maxConcurrency ?? 8, engine: setup.engine });
    return {
      name,
      url,
      headers: {},
      middle: () => coordinator.stats(),
      middlePid: coordinator.pid,
      engineHost: workers,
      gc: async () => void (await coordinator.run({ cmd: "gc" })),
      stop: async () => {
        await workers.stop();
        await coordinator.stop();
      },
    };
  }
  const baseline = Host.start(["--expose-gc"]);
  const { url } = await baseline.run<{ url: string }>({ cmd: "baseline", engine: setup.engine });
  if (name === "direct") {
    return {
      name,
      url,
      headers: {},
      middle: () => baseline.stats(),
      middlePid: baseline.pid,
      engineHost: baseline,
      gc: async () => void (await baseline.run({ cmd: "gc" })),
      stop: () => baseline.stop(),
    };
  }
  const gateway = await startPortkey(portkeyPort++);
  return {
    name,
    url: `${gateway.url}`,
    headers: portkeyHeaders(`${url}/v1`),
    middle: () => statsOf(gateway.pid),
    middlePid: gateway.pid,
    engineHost: baseline,
    gc: async () => {},
    stop: async () => {
      await gateway.stop();
      await baseline.stop();
    },
  };
}
