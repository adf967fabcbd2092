// Test fixtures: a real coordinator on an ephemeral port, real simulator workers over WebSocket, an OpenAI client.
import OpenAI from "openai";
import { serveDefaults, type ServeConfig } from "../../src/config.js";
import { type RunningCoordinator, startCoordinator } from "../../src/coordinator.js";
import { silentLogger } from "../../src/log.js";
import { defaultSimulatorOptions, SimulatorEngine, type SimulatorOptions } from "../../src/worker/engines/simulator.js";
import { WorkerRuntime } from "../../src/worker/runtime.js";

export const TEST_TOKEN = "test-token-0123456789";

export async function startTestCoordinator(overrides: Partial<ServeConfig> = {}): Promise<RunningCoordinator> {
  return startCoordinator(serveDefaults({ host: "127.0.0.1", port: 0, workerToken: TEST_TOKEN, ...overrides }), silentLogger);
}

/** Adds coordinator extensions (e.g. llama.cpp's `reasoning_format`) that the SDK's types do not know. */
export function withExtensions<T extends object>(body: T, extensions: Record<string, unknown>): T {
  return { ...body, ...extensions };
}

export function openaiClient(coordinator: RunningCoordinator): OpenAI {
  return new OpenAI({ baseURL: `${coordinator.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 20_000 });
}

/** What a simulator worker's engine did, as seen from inside the engine. */
export class EngineLog {
  readonly started: string[] = [];
  readonly produced = new Map<string, number>();
  readonly aborted = new Map<string, number>();
  /** Tasks whose generation waited for its client (flow control), with the tokens made when it first did. */
  readonly paused = new Map<string, number>();
  readonly ended: string[] = [];
  private waiters: Array<() => void> = [];

  readonly hooks = {
    onStart: (taskId: string) => this.record(() => this.started.push(taskId)),
    onTokens: (taskId: string, produced: number) => this.record(() => this.produced.set(taskId, produced)),
    onAbort: (taskId: string, produced: number) => this.record(() => this.aborted.set(taskId, produced)),
    onPaused: (taskId: string, produced: number) => this.record(() => !this.paused.has(taskId) && this.paused.set(taskId, produced)),
    onEnd: (taskId: string) => this.record(() => this.ended.push(taskId)),
  };

  /** Resolves when `predicate` holds, re-checked on every engine event; rejects after `timeoutMs`. */
  until(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`timed out waiting for: ${what}`));
      }, timeoutMs);
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      this.waiters.push(check);
    });
  }

  private record(change: () => void): void {
    change();
    for (const waiter of [...this.waiters]) waiter();
  }
}

export interface TestWorker {
  runtime: WorkerRuntime;
  engine: SimulatorEngine;
  log: EngineLog;
  id: string;
  stop(): Promise<void>;
}

export async function startSimWorker(
  coordinator: Pick<RunningCoordinator, "workerUrl">,
  options: Partial<SimulatorOptions> & { name?: string; maxConcurrency?: number; models?: string[]; libraryScanMs?: number } = {},
): Promise<TestWorker> {
  const log = new EngineLog();
  const engine = new SimulatorEngine(options.models ?? [], {
    ...defaultSimulatorOptions,
    prefillMs: 0,
    tokensPerSecond: 200,
    ...options,
    hooks: log.hooks,
  });
  const runtime = new WorkerRuntime(engine, await engine.start(), {
    join: coordinator.workerUrl,
    token: TEST_TOKEN,
    name: options.name ?? `sim-${Math.random().toString(36).slice(2, 8)}`,
    maxConcurrency: options.maxConcurrency ?? 4,
    reconnect: false,
    ...(options.libraryScanMs !== undefined && { libraryScanMs: options.libraryScanMs }),
    log: silentLogger,
  });
  const id = await runtime.start();
  return { runtime, engine, log, id, stop: () => runtime.stop() };
}

/** Polls `predicate` until it holds (for state seen from outside, e.g. the cluster snapshot). */
export async function eventually(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
