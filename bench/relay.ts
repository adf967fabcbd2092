// Relay throughput: one long stream from a simulator producing as fast as it can, through each path.
import { simulatedReply, simulatorTokens } from "../src/worker/engines/simulator.js";
import { streamChat } from "./client.js";
import { type BenchPath, type PathName, startPath } from "./paths.js";
import type { Row } from "./report.js";

export interface RelayOptions {
  replyTokens: number;
  /** Whole streams per path before measuring. */
  warmups: number;
  repeats: number;
  paths: PathName[];
}

const messages = [{ role: "user" as const, content: "Benchmark the relay." }];

/** Tokens one reply holds (thinking included), as the simulator splits it. */
function replyTokenCount(replyTokens: number): number {
  const { reasoning, answer } = simulatedReply(messages, replyTokens);
  return simulatorTokens(`<think>${reasoning}</think>`).length + simulatorTokens(answer).length;
}

async function oneStream(path: BenchPath, maxTokens?: number): Promise<{ seconds: number; ok: boolean }> {
  const started = performance.now();
  const body = { model: "simulator", messages, ...(maxTokens ? { max_tokens: maxTokens } : {}) };
  const result = await streamChat({ url: path.url, headers: path.headers, body }).result;
  return { seconds: (performance.now() - started) / 1000, ok: result.status === 200 && result.done };
}

export async function relayScenario(options: RelayOptions): Promise<Row[]> {
  const tokens = replyTokenCount(options.replyTokens);
  const engine = { kind: "sim" as const, options: { tokensPerSecond: 0, prefillMs: 0, replyTokens: options.replyTokens } };
  const paths: BenchPath[] = [];
  for (const name of options.paths) paths.push(await startPath(name, { engine }));
  const rates = new Map<PathName, number[]>();
  const cpu = new Map<PathName, number>();
  const errors = new Map<PathName, number>();
  try {
    // Warm-up: whole streams, several, until the JIT has settled in every process (a cold Portkey takes ~6x longer
    // than a warm one, the coordinator ~4x); measuring earlier compares compilers, not relays.
    for (let i = 0; i < options.warmups; i++) for (const path of paths) await oneStream(path);
    for (let i = 0; i < options.repeats; i++) {
      // Interleaved, so background load hits every path alike.
      for (const path of paths) {
        const before = path.middle().cpuSeconds;
        const run = await oneStream(path);
        if (!run.ok) errors.set(path.name, (errors.get(path.name) ?? 0) + 1);
        cpu.set(path.name, (cpu.get(path.name) ?? 0) + path.middle().cpuSeconds - before);
        rates.set(path.name, [...(rates.get(path.name) ?? []), tokens / run.seconds]);
      }
    }
  } finally {
    for (const path of paths) await path.stop();
  }
  const median = (name: PathName) => {
    const values = [...(rates.get(name) ?? [])].sort((a, b) => a - b);
    return values.length ? (values[Math.floor(values.length / 2)] as number) : undefined;
  };
  const cpuPerMillion = (name: PathName) => (cpu.has(name) ? ((cpu.get(name) as number) / (tokens * options.repeats)) * 1e6 : undefined);
  const [c, d, p] = [median("coordinator"), median("direct"), median("portkey")];
  const rows: Row[] = [
    {
      scenario: "relay",
      metric: `throughput, one ${tokens}-token stream (median of ${options.repeats})`,
      unit: "tokens/s",
      coordinator: c,
      direct: d,
      portkey: p,
      ratio: c && d ? `${(c / d).toFixed(2)}x direct` : undefined,
      target: "≥0.90x direct",
      met: c !== undefined && d !== undefined && c / d >= 0.9,
    },
    {
      scenario: "relay",
      metric: "CPU of the middle process per million tokens",
      unit: "cpu s/Mtok",
      coordinator: cpuPerMillion("coordinator"),
      direct: cpuPerMillion("direct"),
      portkey: cpuPerMillion("portkey"),
      ratio: "direct = the baseline server itself (engine included)",
    },
    {
      scenario: "relay",
      metric: "streams that did not end with [DONE]",
      unit: "count",
      coordinator: errors.get("coordinator") ?? 0,
      direct: errors.get("direct") ?? 0,
      portkey: options.paths.includes("portkey") ? (errors.get("portkey") ?? 0) : undefined,
    },
  ];
  if (c && p) rows.push({ scenario: "peer", metric: `relay throughput vs Portkey, ${tokens}-token stream`, unit: "ratio", coordinator: c / p, ratio: `${(c / p).toFixed(2)}x portkey`, target: "≥3x portkey", met: c / p >= 3 });
  return rows;
}
