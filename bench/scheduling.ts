// Scheduling: short completions at a high request rate (added time to first token), and the master's own
// decision cost as workers and queued tasks grow (in-process, no network).
import { Master } from "../src/master/master.js";
import type { WorkerEntry } from "../src/master/registry.js";
import { silentLogger } from "../src/log.js";
import { PROTOCOL_VERSION } from "../src/worker-protocol/index.js";
import { percentile, sleep, streamChat } from "./client.js";
import { routingPolicyRows } from "./routing-policies.js";
import { firstStamp, nowMicros } from "./stamped-engine.js";
import { type PathName, startPath } from "./paths.js";
import type { Row } from "./report.js";

export interface SchedulingOptions {
  ratePerSecond: number;
  /** Seconds at the full rate before measuring. */
  warmupSeconds: number;
  seconds: number;
  paths: PathName[];
}

const body = { model: "simulator", messages: [{ role: "user", content: "Short." }], max_tokens: 4 };

export async function schedulingScenario(options: SchedulingOptions): Promise<Row[]> {
  const engine = { kind: "stamped" as const, options: { tokensPerSecond: 0, tokens: 4, prefillMs: 0 } };
  const out = new Map<PathName, { p50: number; p99: number; dispatchP50: number; dispatchP99: number; rate: number; errors: number }>();
  for (const name of options.paths.filter((p) => p !== "portkey")) {
    const path = await startPath(name, { engine, workers: 4, maxConcurrency: 256 });
    try {
      const run = async (rate: number, seconds: number) => {
        const ttft: number[] = [];
        const dispatch: number[] = [];
        const pending: Array<Promise<{ status: number; done: boolean }>> = [];
        const started = performance.now();
        const total = Math.round(rate * seconds);
        for (let i = 0; i < total; i++) {
          const due = (i / rate) * 1000 - (performance.now() - started);
          if (due > 2) await sleep(due);
          const sent = performance.now();
          const sentMicros = nowMicros();
          let first = true;
          const onFrame = (frame: string) => {
            // The engine stamps its tokens when it produces them: the first stamp is when the engine started.
            const stamp = first ? firstStamp(frame) : undefined;
            if (stamp === undefined) return;
            first = false;
            dispatch.push((stamp - sentMicros) / 1000);
          };
          pending.push(streamChat({ url: path.url, body, onFrame, onFirstData: () => ttft.push(performance.now() - sent) }).result);
        }
        const results = await Promise.all(pending);
        const elapsed = (performance.now() - started) / 1000;
        const errors = results.filter((r) => r.status !== 200 || !r.done).length;
        return {
          p50: percentile(ttft, 50),
          p99: percentile(ttft, 99),
          dispatchP50: percentile(dispatch, 50),
          dispatchP99: percentile(dispatch, 99),
          rate: (total - errors) / elapsed,
          errors,
        };
      };
      // Warm-up at the measured rate: the JIT settles and the client's connection pool grows to what the rate
      // needs (a pool growing by hundreds of connections at once is a burst, not the steady rate measured here).
      await run(Math.min(200, options.ratePerSecond), 1);
      await run(options.ratePerSecond, options.warmupSeconds);
      out.set(name, await run(options.ratePerSecond, options.seconds));
    } finally {
      await path.stop();
    }
  }
  const c = out.get("coordinator");
  const d = out.get("direct");
  const scenario = `scheduling ${options.ratePerSecond}/s`;
  return [
    { scenario, metric: "sustained requests/s (4-token completions)", unit: "req/s", coordinator: c?.rate, direct: d?.rate, ratio: c && d ? `${(c.rate / d.rate).toFixed(2)}x direct` : undefined },
    {
      scenario,
      metric: "dispatch: request sent → engine starts, p50",
      unit: "ms",
      coordinator: c?.dispatchP50,
      direct: d?.dispatchP50,
      ratio: c && d ? `+${(c.dispatchP50 - d.dispatchP50).toFixed(2)} ms` : undefined,
    },
    {
      scenario,
      metric: "dispatch: request sent → engine starts, p99",
      unit: "ms",
      coordinator: c?.dispatchP99,
      direct: d?.dispatchP99,
      ratio: c && d ? `+${(c.dispatchP99 - d.dispatchP99).toFixed(2)} ms` : undefined,
      target: "added p99 ≤1 ms (scheduling overhead)",
      met: c !== undefined && d !== undefined && c.dispatchP99 - d.dispatchP99 <= 1,
    },
    { scenario, metric: "time to first token p50", unit: "ms", coordinator: c?.p50, direct: d?.p50, ratio: c && d ? `+${(c.p50 - d.p50).toFixed(2)} ms` : undefined },
    {
      scenario,
      metric: "time to first token p99",
      unit: "ms",
      coordinator: c?.p99,
      direct: d?.p99,
      ratio: c && d ? `+${(c.p99 - d.p99).toFixed(2)} ms` : undefined,
    },
    { scenario, metric: "errors", unit: "count", coordinator: c?.errors, direct: d?.errors },
  ];
}

/** µs per scheduling decision in the master alone: a task ends (its slot goes to the queue's head) and a new one queues. */
export function schedulerDecisionCost(workers: number, queued: number, cycles: number): number {
  const master = new Master({
    queueMaxLength: 1_000_000,
    queueTimeoutMs: 3_600_000,
    heartbeatIntervalMs: 5_000,
    cancelAckTimeoutMs: 10_000,
    maxAttempts: 3,
    maxLiveTasks: 10_000_000,
    modelMemoryMs: 60_000,
    taskWindowBytes: 512 * 1024,
    taskStallMs: 60_000,
    log: silentLogger,
  });
  const entries: WorkerEntry[] = [];
  for (let i = 0; i < workers; i++) {
    const link = { send: () => {}, close: () => {}, isAlive: async () => true };
    const entry = master.registerWorker(
      {
        type: "Hello",
        protocolVersion: PROTOCOL_VERSION,
        token: "x",
        worker: { name: `w${i}`, device: { kind: "cpu", name: "cpu", memoryBytes: 0 }, maxConcurrency: 4, engine: "bench" },
        models: [{ id: "m", contextLength: 1_000 }],
      },
      link,
    );
    entries.push(entry);
  }
  // Every request has a signal of its own, as over HTTP (one shared signal would measure EventTarget's listener list).
  const signal = () => new AbortController().signal;
  const request = { model: "m", messages: [{ role: "user" as const, content: "x" }], params: {} };
  for (let i = 0; i < workers * 4 + queued; i++) master.submit(request, signal());
  let rng = 12345;
  const random = () => ((rng = (rng * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const cycle = () => {
    const worker = entries[Math.floor(random() * entries.length)] as WorkerEntry;
    const taskId = worker.slots.keys().next().value as string;
    master.workerMessage(worker, { type: "TaskFinished", taskId, finishReason: "stop", usage: { promptTokens: 1, completionTokens: 1 } });
    master.submit(request, signal());
  };
  for (let i = 0; i < Math.min(cycles, 2_000); i++) cycle();
  const started = performance.now();
  for (let i = 0; i < cycles; i++) cycle();
  const micros = ((performance.now() - started) * 1000) / cycles;
  master.close();
  return micros;
}

export function schedulerMicroScenario(quick: boolean): Row[] {
  const cycles = quick ? 5_000 : 20_000;
  const rows: Row[] = [];
  for (const workers of quick ? [10, 1_000] : [10, 100, 1_000, 10_000]) {
    rows.push({ scenario: "scheduler (in-process)", metric: `µs per decision, ${workers} workers, 100 queued`, unit: "µs", coordinator: schedulerDecisionCost(workers, 100, cycles) });
  }
  for (const queued of quick ? [10_000] : [1_000, 10_000]) {
    rows.push({ scenario: "scheduler (in-process)", metric: `µs per decision, 100 workers, ${queued} queued`, unit: "µs", coordinator: schedulerDecisionCost(100, queued, cycles) });
  }
  rows.push(...routingPolicyRows(quick));
  return rows;
}
