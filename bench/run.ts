// `npm run bench`: every scenario through the coordinator and its baseline side by side; a table and a JSON file.
// Flags: --quick (a fast pass), --only NAME[,NAME] (relay, concurrency, idle, nonreading, scheduling, scheduler,
// cancellation, parsers, embeddings, llama-prefix, multiturn, cold-start, replicas, heads, peer), --no-peer (skip the Portkey gateway). nonreading: streams whose clients stop reading
// while a full-speed worker keeps producing; the middle's RSS growth and a normal client's time meanwhile.
import { parseArgs } from "node:util";
import { cancellationScenario } from "./cancellation.js";
import { concurrencyScenario, idleMemoryScenario } from "./concurrency.js";
import { embeddingsScenario } from "./embeddings.js";
import { llamaColdStart } from "./cold-start.js";
import { llamaPrefixScenario } from "./llama-prefix.js";
import { headsScenario } from "./heads.js";
import { replicasScenario } from "./replicas.js";
import { MULTITURN, multiturnScenario } from "./multiturn.js";
import { benchParsers } from "./parsers.js";
import type { PathName } from "./paths.js";
import { nonReadingScenario } from "./nonreading.js";
import { relayScenario } from "./relay.js";
import { printTable, type Row, writeResults } from "./report.js";
import { schedulerMicroScenario, schedulingScenario } from "./scheduling.js";

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    "no-peer": { type: "boolean", default: false },
  },
});
const quick = args.quick === true;
const only = args.only ? new Set(args.only.split(",")) : undefined;
// "peer" is the relay and concurrency scenarios with the Portkey gateway among their paths.
const wanted = (name: string) => !only || only.has(name) || (only.has("peer") && (name === "relay" || name === "concurrency"));
const paths: PathName[] = args["no-peer"] ? ["coordinator", "direct"] : ["coordinator", "direct", "portkey"];

const scenarios: Array<[string, () => Promise<Row[]> | Row[]]> = [
  [
    "relay",
    // 50k tokens (~25 ms at these rates: a stream's fixed costs weigh in) and 500k (the sustained rate).
    async () => [
      ...(await relayScenario({ replyTokens: quick ? 20_000 : 50_000, warmups: quick ? 4 : 8, repeats: quick ? 3 : 7, paths, dialects: ["messages", "responses"] })),
      ...(quick ? [] : await relayScenario({ replyTokens: 500_000, warmups: 3, repeats: 5, paths, dialects: ["messages", "responses"] })),
    ],
  ],
  [
    "concurrency",
    () =>
      concurrencyScenario({
        sweep: quick ? [10, 100] : [10, 100, 1_000],
        peerSweep: quick ? [100] : [100, 1_000],
        seconds: quick ? 3 : 8,
        tokensPerSecond: 30,
        paths,
      }),
  ],
  ["idle", () => idleMemoryScenario(quick ? 1_000 : 5_000, paths)],
  [
    "nonreading",
    () =>
      nonReadingScenario({
        variants: [
          {
            label: "tokens",
            engine: { kind: "sim", options: { tokensPerSecond: 0, prefillMs: 0, replyTokens: 50_000_000 } },
            streamCounts: quick ? [20] : [20, 100],
            warmupTokens: 200_000,
            probeTokens: 16,
            probeLabel: "16 tokens",
          },
          {
            label: "64KiB",
            engine: { kind: "bulk", options: { pieceBytes: 64 * 1024, pieces: 1_000_000_000 } },
            streamCounts: quick ? [4] : [4, 20],
            warmupTokens: 32,
            probeTokens: 1,
            probeLabel: "one 64 KiB piece",
          },
        ],
        seconds: quick ? 5 : 10,
        paths,
      }),
  ],
  ["scheduling", () => schedulingScenario({ ratePerSecond: quick ? 300 : 1_000, warmupSeconds: quick ? 1 : 3, seconds: quick ? 2 : 5, paths })],
  ["scheduler", () => schedulerMicroScenario(quick)],
  ["cancellation", () => cancellationScenario(quick ? 10 : 40, paths)],
  ["embeddings", () => embeddingsScenario({ inputs: quick ? 256 : 1024, dimensions: 768, repeats: quick ? 3 : 7, parallel: 32 })],
  // The llama engine's prompt cache (node-llama-cpp on the CPU, in this process): a ~3,000-token system prompt.
  ["llama-prefix", () => llamaPrefixScenario({ conversations: quick ? 2 : 5, turns: quick ? 2 : 4, systemChars: 3_000, layers: 8, width: 256 })],
  ["multiturn", () => multiturnScenario(quick ? MULTITURN.quick : MULTITURN.full)],
  // A request for a model no worker has loaded: the llama engine loads it from its models dir (CPU, in this process).
  ["cold-start", () => llamaColdStart(quick ? 3 : 7, 8, 256)],
  // A burst for a model one worker has loaded and others offer, with and without replicas on demand (simulator).
  ["replicas", () => replicasScenario({ workers: 3, burst: quick ? 12 : 24, loadMs: 300 })],
  // Two coordinator heads sharing four workers vs one head, and a head killed under its client (docs/scaling.md).
  ["heads", () => headsScenario({ streams: quick ? 200 : 1_000, seconds: quick ? 3 : 8, tokensPerSecond: 30, kills: quick ? 3 : 5 })],
  [
    "parsers",
    () =>
      benchParsers(quick ? 256 * 1024 : 1024 * 1024).flatMap((r) => [
        { scenario: `parser ${r.format}`, metric: "throughput, 4-character chunks", unit: "MB/s", coordinator: r.megabytesPerSecond },
        {
          scenario: `parser ${r.format}`,
          metric: "cost per chunk",
          unit: "µs",
          coordinator: r.microsecondsPerChunk,
          target: "a few µs per chunk",
          met: r.microsecondsPerChunk < 5,
        },
      ]),
  ],
];

const rows: Row[] = [];
const started = Date.now();
for (const [name, run] of scenarios) {
  if (!wanted(name)) continue;
  const at = Date.now();
  process.stderr.write(`bench: ${name}…\n`);
  try {
    rows.push(...(await run()));
  } catch (error) {
    rows.push({ scenario: name, metric: `FAILED: ${error instanceof Error ? error.message : String(error)}`, unit: "" });
  }
  process.stderr.write(`bench: ${name} took ${((Date.now() - at) / 1000).toFixed(1)} s\n`);
}
printTable(rows);
const file = writeResults(rows, { ...args, seconds: (Date.now() - started) / 1000 });
console.log(`\nresults: ${file}`);
process.exit(0);
