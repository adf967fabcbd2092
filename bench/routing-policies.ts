// The routing policies' own cost (in-process): µs per decision with 1,000 workers, and for cache-aware, with a
// prefix tree of 100,000 cached prompts shaped like chat traffic, and the tree's memory per cached prompt.
import v8 from "node:v8";
import vm from "node:vm";
import { HashRing } from "../src/master/routing/hash-ring.js";
import { createPolicy, type Candidates, type PolicyName, type RoutableWorker, type RoutedTask, type RoutingPolicy } from "../src/master/routing/index.js";
import { percentile } from "./client.js";
import { seeded, words } from "./made-up-text.js";
import type { Row } from "./report.js";

const SCENARIO = "routing policies (in-process)";
const SLOTS = 8;

/**
 * Chat traffic: 64 system prompts of 1.5–4 k characters (a few popular, most rare), and conversations that each
 * start from one and grow a turn at a time (a user message of 80–600 characters, a reply of 200–1,500): turn k's
 * prompt is the system prompt and the first k turns, so a conversation's prompts share their prefixes.
 */
export class ChatTraffic {
  private readonly systems: string[];

  constructor() {
    const random = seeded(11);
    this.systems = Array.from({ length: 64 }, (_, i) => `system ${i}: ${words(random, 1_500, 4_000)}\n`);
  }

  /** The prompt of conversation `id` at `turn` (1-based); `branch` gives an earlier turn another reply. */
  prompt(id: number, turn: number, branch = 0): string {
    const random = seeded(id + 1);
    // Zipf-like: the first system prompts serve most conversations.
    let text = this.systems[Math.floor(random() ** 3 * this.systems.length)] as string;
    for (let k = 1; k <= turn; k++) {
      const reply = branch > 0 && k === turn ? seeded(branch) : random;
      if (k > 1) text += `assistant: ${words(reply, 200, 1_500)}\n`;
      text += `user: ${words(random, 80, 600)}\n`;
    }
    return text;
  }
}

class BenchWorker implements RoutableWorker {
  constructor(
    readonly id: string,
    readonly busy: number,
  ) {}

  get name(): string {
    return this.id;
  }

  get load(): number {
    return this.busy / SLOTS;
  }

  get hasCapacity(): boolean {
    return this.busy < SLOTS;
  }
}

/** 1,000 workers with random (fixed) loads; the least-loaded one found once, as the registry keeps it in O(1). */
export class BenchCandidates implements Candidates<BenchWorker> {
  private readonly byId = new Map<string, BenchWorker>();
  private readonly least: BenchWorker | undefined;

  constructor(count: number) {
    const random = seeded(3);
    for (let i = 0; i < count; i++) this.byId.set(`worker-${i}`, new BenchWorker(`worker-${i}`, Math.floor(random() * SLOTS)));
    for (const w of this.byId.values()) if (w.hasCapacity && (!this.least || w.load < this.least.load)) this.least = w;
  }

  leastLoaded(): BenchWorker | undefined {
    return this.least;
  }

  all(): Iterable<BenchWorker> {
    return this.byId.values();
  }

  get(id: string): BenchWorker | undefined {
    return this.byId.get(id);
  }

  get size(): number {
    return this.byId.size;
  }
}

const collectGarbage = (() => {
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as () => void;
})();

/** The heap and the typed arrays' buffers (the prefix tree keeps its edges in typed arrays, outside the heap). */
function memoryUsed(): number {
  collectGarbage();
  collectGarbage();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}

interface Timings {
  pick: number[];
  both: number[];
}

/** Times `pick`, then `pick` and `assigned` together, for each task `next` gives. */
function timeDecisions(policy: RoutingPolicy, candidates: BenchCandidates, decisions: number, next: (i: number) => RoutedTask): Timings {
  const timings: Timings = { pick: [], both: [] };
  for (let i = 0; i < decisions; i++) {
    const task = next(i);
    const started = process.hrtime.bigint();
    const decision = policy.pick(task, candidates);
    const picked = process.hrtime.bigint();
    if (decision) policy.assigned(task, decision.worker.id);
    const done = process.hrtime.bigint();
    timings.pick.push(Number(picked - started) / 1000);
    timings.both.push(Number(done - started) / 1000);
  }
  return timings;
}

function timingRows(label: string, timings: Timings, target?: number): Row[] {
  const rows: Row[] = [];
  for (const [what, values] of [["pick", timings.pick], ["pick + assigned", timings.both]] as const) {
    rows.push({ scenario: SCENARIO, metric: `${label}: µs per ${what}, p50`, unit: "µs", coordinator: percentile(values, 50) });
    const p99 = percentile(values, 99);
    const row: Row = { scenario: SCENARIO, metric: `${label}: µs per ${what}, p99`, unit: "µs", coordinator: p99 };
    if (target !== undefined && what === "pick") Object.assign(row, { target: `p99 ≤${target} µs`, met: p99 <= target });
    rows.push(row);
  }
  return rows;
}

/** Least-loaded, power-of-two and session with 1,000 workers. */
function simplePolicyRows(decisions: number): Row[] {
  const candidates = new BenchCandidates(1_000);
  const rows: Row[] = [];
  for (const name of ["least-loaded", "power-of-two", "session"] as PolicyName[]) {
    const policy = createPolicy(name);
    const next = (i: number): RoutedTask => ({ id: `t${i}`, model: "m", text: "", sessionKey: `session-${i % 10_000}` });
    timeDecisions(policy, candidates, 2_000, next);
    rows.push(...timingRows(`${name}, 1,000 workers`, timeDecisions(policy, candidates, decisions, next)));
  }
  return rows;
}

/** The session policy's hash ring: built for 1,000 workers on its first decision, then kept in step as workers come and go. */
function ringRows(): Row[] {
  const ids = Array.from({ length: 1_000 }, (_, i) => `worker-${i}`);
  const builds: number[] = [];
  const changes: number[] = [];
  for (let round = 0; round < 5; round++) {
    const ring = new HashRing(128);
    let started = performance.now();
    ring.add(ids);
    builds.push(performance.now() - started);
    for (let i = 0; i < 20; i++) {
      started = performance.now();
      ring.remove([`worker-${i}`]);
      ring.add([`worker-${i}`]);
      changes.push(performance.now() - started);
    }
  }
  return [
    { scenario: SCENARIO, metric: "session: building the ring, 1,000 workers × 128 points, median", unit: "ms", coordinator: percentile(builds, 50) },
    { scenario: SCENARIO, metric: "session: a worker leaving and one joining a ring of 1,000, median", unit: "ms", coordinator: percentile(changes, 50) },
  ];
}

/**
 * Cache-aware with 1,000 workers and a tree of `conversations` × 10 cached prompts, each conversation's on one
 * worker; then decisions for chat traffic: 70% a conversation's next turn, 20% a new conversation, 10% an earlier
 * turn answered anew (a branch).
 */
function cacheAwareRows(conversations: number, decisions: number): Row[] {
  const traffic = new ChatTraffic();
  const candidates = new BenchCandidates(1_000);
  const before = memoryUsed();
  const policy = createPolicy("cache-aware");
  let characters = 0;
  const started = performance.now();
  for (let c = 0; c < conversations; c++) {
    for (let turn = 1; turn <= 10; turn++) {
      const text = traffic.prompt(c, turn);
      characters += text.length;
      policy.assigned({ id: `c${c}-${turn}`, model: "m", text, sessionKey: undefined }, `worker-${c % 1_000}`);
    }
  }
  const buildSeconds = (performance.now() - started) / 1000;
  const { entries, bytes } = policy.stats();
  const measured = memoryUsed() - before;
  const random = seeded(5);
  const next = (i: number): RoutedTask => {
    const roll = random();
    const c = Math.floor(random() * conversations);
    const text =
      roll < 0.7
        ? traffic.prompt(c, 11)
        : roll < 0.9
          ? traffic.prompt(conversations + i, 1)
          : traffic.prompt(c, 2 + Math.floor(random() * 8), i + 1);
    // A flat copy, as a prompt parsed from JSON is: the concatenated one would bill its flattening to the first pick.
    return { id: `q${i}`, model: "m", text: structuredClone(text), sessionKey: undefined };
  };
  timeDecisions(policy, candidates, 1_000, next);
  const label = `cache-aware, 1,000 workers, ${(conversations * 10).toLocaleString("en-US")} cached prompts`;
  const rows = timingRows(label, timeDecisions(policy, candidates, decisions, next), 50);
  const perPrompt = (value: number) => value / entries;
  rows.push(
    { scenario: SCENARIO, metric: "prefix tree: mean cached prompt (characters)", unit: "chars", coordinator: characters / (conversations * 10) },
    { scenario: SCENARIO, metric: "prefix tree: bytes per cached prompt, as stats() reports", unit: "B", coordinator: perPrompt(bytes) },
    { scenario: SCENARIO, metric: "prefix tree: bytes per cached prompt, measured (heap and buffers)", unit: "B", coordinator: perPrompt(measured) },
    { scenario: SCENARIO, metric: "prefix tree: building it, prompts inserted per second", unit: "/s", coordinator: (conversations * 10) / buildSeconds },
  );
  return rows;
}

/**
 * How often this machine takes a running CPU away, and for how long: a busy loop's gaps between two clock reads. A
 * decision of d µs is hit with probability (gaps per second × d / 10⁶), and a hit adds a gap to it: on a virtual
 * machine that interrupts a few thousand times a second, this, not the decision, can set a p99.
 */
function platformRows(): Row[] {
  const gaps: number[] = [];
  const until = process.hrtime.bigint() + 1_000_000_000n;
  let last = process.hrtime.bigint();
  for (let now = last; now < until; now = process.hrtime.bigint()) {
    const gap = Number(now - last) / 1000;
    if (gap > 20) gaps.push(gap);
    last = now;
  }
  return [
    { scenario: SCENARIO, metric: "this machine: a busy CPU's interruptions over 20 µs, per second", unit: "/s", coordinator: gaps.length },
    { scenario: SCENARIO, metric: "this machine: … their median length", unit: "µs", coordinator: percentile(gaps, 50) },
  ];
}

export function routingPolicyRows(quick: boolean): Row[] {
  const decisions = quick ? 5_000 : 20_000;
  return [...platformRows(), ...simplePolicyRows(decisions), ...ringRows(), ...cacheAwareRows(10_000, decisions)];
}
