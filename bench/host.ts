// A bench child process: runs one part (a coordinator, simulator workers, a baseline server) so the parent can
// measure its CPU and memory apart, and reports engine events (cancellations) over IPC with their times.
import { serveDefaults } from "../src/config.js";
import { startCoordinator } from "../src/coordinator.js";
import { pino } from "pino";
import { createLogger, type Logger, type LogLevel, silentLogger } from "../src/log.js";
import type { Engine } from "../src/worker/engines/engine.js";
import { defaultSimulatorOptions, SimulatorEngine, type SimulatorOptions } from "../src/worker/engines/simulator.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { startBaselineServer } from "./baseline-server.js";
import { BulkEngine, type BulkOptions } from "./bulk-engine.js";
import { BulkWorker } from "./bulk-worker.js";
import { nowMicros, StampedEngine, type StampedOptions } from "./stamped-engine.js";

export const BENCH_TOKEN = "bench-token-0123456789";

export type EngineSpec =
  | { kind: "sim"; options: Partial<SimulatorOptions> }
  | { kind: "stamped"; options: StampedOptions }
  | { kind: "bulk"; options: BulkOptions };

export type HostCommand =
  | { cmd: "coordinator"; overrides?: Record<string, unknown> }
  | { cmd: "workers"; join: string; count: number; maxConcurrency: number; engine: EngineSpec }
  | { cmd: "baseline"; engine: EngineSpec }
  | { cmd: "gc" };

/**
 * The coordinator logs as it does by default (info, one JSON line per request) into /dev/null, written
 * synchronously as to a pipe or file: the cost of the request log is part of what users run. BENCH_LOG=silent
 * turns it off.
 */
function coordinatorLog(): Logger {
  const level = (process.env.BENCH_LOG ?? "info") as LogLevel;
  if (level === "silent") return silentLogger;
  return createLogger(level, "coordinator", { format: "json", destination: pino.destination({ dest: "/dev/null", sync: true }) });
}

function engineOf(spec: EngineSpec): Engine {
  if (spec.kind === "stamped") return new StampedEngine(spec.options);
  if (spec.kind === "bulk") return new BulkEngine(spec.options);
  return new SimulatorEngine([], {
    ...defaultSimulatorOptions,
    ...spec.options,
    hooks: { onAbort: (taskId) => process.send?.({ event: "aborted", taskId, at: nowMicros() }) },
  });
}

async function run(command: HostCommand): Promise<Record<string, unknown>> {
  switch (command.cmd) {
    case "coordinator": {
      const config = serveDefaults({ host: "127.0.0.1", port: 0, workerToken: BENCH_TOKEN, ...command.overrides });
      const coordinator = await startCoordinator(config, coordinatorLog());
      return { url: coordinator.url, workerUrl: coordinator.workerUrl };
    }
    case "workers": {
      if (command.engine.kind === "bulk") {
        // Bulk output goes through a worker of its own (bench/bulk-worker.ts says why), one piece per frame.
        for (let i = 0; i < command.count; i++) {
          await BulkWorker.start({ ...command.engine.options, join: command.join, token: BENCH_TOKEN, name: `bench-${i}`, maxConcurrency: command.maxConcurrency });
        }
        return {};
      }
      const engine = engineOf(command.engine);
      const description = await engine.start();
      for (let i = 0; i < command.count; i++) {
        const runtime = new WorkerRuntime(engine, description, {
          join: command.join,
          token: BENCH_TOKEN,
          name: `bench-${i}`,
          maxConcurrency: command.maxConcurrency,
          reconnect: false,
          log: silentLogger,
        });
        await runtime.start();
      }
      return {};
    }
    case "gc":
      globalThis.gc?.();
      return {};
    case "baseline": {
      const { url } = await startBaselineServer(engineOf(command.engine));
      return { url };
    }
  }
}

process.on("message", (command: HostCommand & { id: number }) => {
  run(command).then(
    (result) => process.send?.({ reply: command.id, ok: true, ...result }),
    (error: unknown) => process.send?.({ reply: command.id, ok: false, error: String(error) }),
  );
});
process.on("disconnect", () => process.exit(0));
// Exit through process.exit so that --cpu-prof (BENCH_CPU_PROF) gets to write its profile.
process.on("SIGTERM", () => process.exit(0));
