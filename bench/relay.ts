// Relay throughput: one long stream from a simulator producing as fast as it can, through each path; through the
// coordinator also in each API dialect (the same stream, so an encoder that costs more than the relay shows).
import { simulatedReply, simulatorTokens } from "../src/worker/engines/simulator.js";
import { DIALECTS, type DialectName, streamChat } from "./client.js";
import { type BenchPath, type PathName, startPath } from "./paths.js";
import type { Row } from "./report.js";

export interface RelayOptions {
  replyTokens: number;
  /** Whole streams per path before measuring. */
  warmups: number;
  repeats: number;
  paths: PathName[];
  /** Dialects besides chat completions to stream through the coordinator too. */
  dialects: Exclude<DialectName, "chat">[];
}

/** What the relay measures: a path, or the coordinator through another dialect. */
type Leg = { path: BenchPath; dialect: DialectName; key: string };

/** The request body for `dialect` (messages needs max_tokens; the simulator's context is made big enough). */
function bodyFor(dialect: DialectName): object {
  if (dialect === "messages") return { model: "simulator", messages, max_tokens: 100_000_000 };
  if (dialect === "responses") return { model: "simulator", input: messages };
  return { model: "simulator", messages };
}

const messages = [{ role: "user" as const, content: "Benchmark the relay." }];

/** Tokens one reply holds (thinking included), as the simulator splits it. */
function replyTokenCount(replyTokens: number): number {
  const { reasoning, answer } = simulatedReply(messages, replyTokens);
  return simulatorTokens(`<think>${reasoning}</think>`).length + simulatorTokens(answer).length;
}

async function oneStream(path: BenchPath, dialect: DialectName = "chat"): Promise<{ seconds: number; ok: boolean; bytes: number }> {
  const started = performance.now();
  const result = await streamChat({ url: path.url, headers: path.headers, body: bodyFor(dialect), dialect }).result;
  return { seconds: (performance.now() - started) / 1000, ok: result.status === 200 && result.done, bytes: result.bytes };
}

export async function relayScenario(options: RelayOptions): Promise<Row[]> {
  const tokens = replyTokenCount(options.replyTokens);
  const engine = { kind: "sim" as const, options: { tokensPerSecond: 0, prefillMs: 0, replyTokens: options.replyTokens, contextLength: 100_000_000 } };
  const paths: BenchPath[] = [];
  for (const name of options.paths) paths.push(await startPath(name, { engine }));
  const legs: Leg[] = paths.map((path) => ({ path, dialect: "chat", key: path.name }));
  const coordinator = paths.find((path) => path.name === "coordinator");
  if (coordinator) for (const dialect of options.dialects) legs.push({ path: coordinator, dialect, key: `coordinator/${dialect}` });
  const rates = new Map<string, number[]>();
  const cpu = new Map<string, number>();
  const errors = new Map<string, number>();
  const bytes = new Map<string, number>();
  try {
    // Warm-up: whole streams, several, until the JIT has settled in every process (a cold Portkey takes ~6x longer
    // than a warm one, the coordinator ~4x); measuring earlier compares compilers, not relays.
    for (let i = 0; i < options.warmups; i++) for (const leg of legs) await oneStream(leg.path, leg.dialect);
    for (let i = 0; i < options.repeats; i++) {
      // Interleaved, so background load hits every path alike.
      for (const leg of legs) {
        const before = leg.path.middle().cpuSeconds;
        const run = await oneStream(leg.path, leg.dialect);
        if (!run.ok) errors.set(leg.key, (errors.get(leg.key) ?? 0) + 1);
        bytes.set(leg.key, run.bytes);
        cpu.set(leg.key, (cpu.get(leg.key) ?? 0) + leg.path.middle().cpuSeconds - before);
        rates.set(leg.key, [...(rates.get(leg.key) ?? []), tokens / run.seconds]);
      }
    }
  } finally {
    for (const path of paths) await path.stop();
  }
  const median = (key: string) => {
    const values = [...(rates.get(key) ?? [])].sort((a, b) => a - b);
    return values.length ? (values[Math.floor(values.length / 2)] as number) : undefined;
  };
  const cpuPerMillion = (key: string) => (cpu.has(key) ? ((cpu.get(key) as number) / (tokens * options.repeats)) * 1e6 : undefined);
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
  for (const dialect of coordinator ? options.dialects : []) {
    const key = `coordinator/${dialect}`;
    const rate = median(key);
    const [route, chatCpu, cpuHere] = [DIALECTS[dialect].route, cpuPerMillion("coordinator"), cpuPerMillion(key)];
    const [chatBytes, bytesHere] = [bytes.get("coordinator"), bytes.get(key)];
    // No target: a dialect's stream may carry more than chat completions' (Responses repeats the whole text at its
    // end, four times, as OpenAI's protocol has it); the bytes row says how much, the CPU row what encoding costs.
    rows.push(
      {
        scenario: "relay",
        metric: `throughput via ${route}, the same ${tokens}-token stream`,
        unit: "tokens/s",
        coordinator: rate,
        direct: d,
        ratio: rate && c ? `${(rate / c).toFixed(2)}x chat completions` : undefined,
      },
      {
        scenario: "relay",
        metric: `CPU per million tokens via ${route}`,
        unit: "cpu s/Mtok",
        coordinator: cpuHere,
        ratio: cpuHere !== undefined && chatCpu ? `${(cpuHere / chatCpu).toFixed(2)}x chat completions` : undefined,
      },
      {
        scenario: "relay",
        metric: `characters sent per token via ${route}`,
        unit: "chars/token",
        coordinator: bytesHere !== undefined ? bytesHere / tokens : undefined,
        ratio: bytesHere !== undefined && chatBytes ? `${(bytesHere / chatBytes).toFixed(2)}x chat completions` : undefined,
      },
      { scenario: "relay", metric: `streams via ${route} that did not end complete`, unit: "count", coordinator: errors.get(key) ?? 0 },
    );
  }
  if (c && p) rows.push({ scenario: "peer", metric: `relay throughput vs Portkey, ${tokens}-token stream`, unit: "ratio", coordinator: c / p, ratio: `${(c / p).toFixed(2)}x portkey`, target: "≥3x portkey", met: c / p >= 3 });
  return rows;
}
