// Two versions of the cache-aware policy in one process, timed on the same decisions alternately, so that both see
// the same machine (this one drifts by tens of percent within minutes, more than many changes move a decision):
//
//   npx tsx bench/routing-ab.ts DIR_A DIR_B [decisions]
//
// DIR_A and DIR_B are checkouts of the project (e.g. `git worktree add --detach /tmp/a REV`, with node_modules
// linked). Each gets its own tree of the scheduler scenario's 100,000 prompts; the decisions are its traffic.
import path from "node:path";
import { pathToFileURL } from "node:url";
import { percentile } from "./client.js";
import { seeded } from "./made-up-text.js";
import { BenchCandidates, ChatTraffic } from "./routing-policies.js";
import type { RoutedTask, RoutingPolicy } from "../src/master/routing/index.js";

const [dirA, dirB, count] = process.argv.slice(2);
if (!dirA || !dirB) {
  console.error("usage: npx tsx bench/routing-ab.ts DIR_A DIR_B [decisions]");
  process.exit(2);
}
const decisions = Number(count ?? 30_000);
const CONVERSATIONS = 10_000;

async function policyOf(dir: string): Promise<RoutingPolicy> {
  const routing = await import(pathToFileURL(path.resolve(dir, "src/master/routing/index.ts")).href);
  return routing.createPolicy("cache-aware") as RoutingPolicy;
}

const policies = [await policyOf(dirA), await policyOf(dirB)];
const traffic = new ChatTraffic();
const candidates = new BenchCandidates(1_000);
for (let c = 0; c < CONVERSATIONS; c++) {
  for (let turn = 1; turn <= 10; turn++) {
    const task: RoutedTask = { id: `c${c}-${turn}`, model: "m", text: traffic.prompt(c, turn), sessionKey: undefined };
    for (const policy of policies) policy.assigned(task, `worker-${c % 1_000}`);
  }
}
const random = seeded(5);
const timings: number[][] = [[], []];
for (let i = 0; i < decisions; i++) {
  const roll = random();
  const c = Math.floor(random() * CONVERSATIONS);
  const text =
    roll < 0.7 ? traffic.prompt(c, 11) : roll < 0.9 ? traffic.prompt(CONVERSATIONS + i, 1) : traffic.prompt(c, 2 + Math.floor(random() * 8), i + 1);
  const task: RoutedTask = { id: `q${i}`, model: "m", text: structuredClone(text), sessionKey: undefined };
  const side = i % 2;
  const started = process.hrtime.bigint();
  (policies[side] as RoutingPolicy).pick(task, candidates);
  (timings[side] as number[]).push(Number(process.hrtime.bigint() - started) / 1000);
}
for (const [side, dir] of [dirA, dirB].entries()) {
  const values = timings[side] as number[];
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const hit = values.filter((v) => v > 40).length / values.length;
  console.log(
    `${side === 0 ? "A" : "B"} ${dir}: µs per pick p50 ${percentile(values, 50).toFixed(2)}, p90 ${percentile(values, 90).toFixed(2)}, p99 ${percentile(values, 99).toFixed(1)}, mean ${mean.toFixed(2)}; over 40 µs ${(hit * 100).toFixed(2)} %`,
  );
}
