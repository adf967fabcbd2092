// The cache-aware policy: a task goes to the worker believed to hold the longest prefix of its prompt in its KV cache
// (from a prefix tree of the prompts assigned to each worker), unless that worker is much busier than the least-loaded
// one or holds too little of the prompt to matter; when its own tree knows no such worker, what other heads say
// workers hold. See docs/routing.md for the rule and its thresholds.
import { blockHashes } from "./block-hashes.js";
import type { Candidates, Decision, PolicyStats, RoutableWorker, RoutedTask, RoutingPolicy } from "./policy.js";
import { type Holders, PrefixTree } from "./prefix-tree.js";

/** What other heads say workers hold (src/master/routing/remote-hints.ts), as the policy asks it. */
export interface RemoteCacheHints {
  /** Characters per block of the hashes (see block-hashes.ts). */
  readonly blockChars: number;
  /** Whether other heads said what some worker of `model` holds: when not, the policy looks no further. */
  has(model: string): boolean;
  /** The names of the workers of `model` that other heads say hold the prefix of block hash `hash` (may repeat). */
  holders(model: string, hash: number): readonly string[] | undefined;
}

/**
 * A worker holding the prompt is "much busier" than the least-loaded worker when both its load exceeds the
 * least-loaded one's by more than `balanceAbsThreshold` and is more than `balanceRelThreshold` times it (loads are
 * slots taken over slots).
 */
export interface CacheAwareOptions {
  /** Least share of the prompt a worker must hold for the cache to decide (default 0.5); below it, least-loaded. */
  cacheThreshold?: number;
  /** Default 0.25: a quarter of a worker's slots. */
  balanceAbsThreshold?: number;
  /** Default 1.5. */
  balanceRelThreshold?: number;
  /** Bound on the prefix tree's approximate bytes (default 256 MiB); least recently used entries go first. */
  maxBytes?: number;
  /** Bound on the characters any one worker is believed to hold, if any (e.g. its KV cache's size in characters). */
  maxCharsPerWorker?: number;
  /** What other heads say workers hold, when there are other heads (--nats). */
  remote?: RemoteCacheHints;
}

export const CACHE_AWARE_DEFAULTS = {
  cacheThreshold: 0.5,
  balanceAbsThreshold: 0.25,
  balanceRelThreshold: 1.5,
  maxBytes: 256 * 1024 * 1024,
} as const;

/** Holders looked at per decision, at most, beyond the least-loaded worker (which is checked in O(1) at each step). */
const SCAN_BUDGET = 64;

export class CacheAwarePolicy implements RoutingPolicy {
  readonly name = "cache-aware";
  private readonly tree: PrefixTree;
  private readonly cacheThreshold: number;
  private readonly balanceAbsThreshold: number;
  private readonly balanceRelThreshold: number;
  private readonly remote: RemoteCacheHints | undefined;
  /** The block hashes of the prompt being routed (reused: a decision allocates none). */
  private readonly hashes: number[] = [];
  /** What is left of SCAN_BUDGET in the decision being made (by the tree's steps, then afresh by the hints'). */
  private scanLeft = SCAN_BUDGET;

  constructor(options: CacheAwareOptions = {}) {
    this.cacheThreshold = options.cacheThreshold ?? CACHE_AWARE_DEFAULTS.cacheThreshold;
    this.balanceAbsThreshold = options.balanceAbsThreshold ?? CACHE_AWARE_DEFAULTS.balanceAbsThreshold;
    this.balanceRelThreshold = options.balanceRelThreshold ?? CACHE_AWARE_DEFAULTS.balanceRelThreshold;
    this.tree = new PrefixTree({ maxBytes: options.maxBytes ?? CACHE_AWARE_DEFAULTS.maxBytes, maxCharsPerWorker: options.maxCharsPerWorker });
    this.remote = options.remote;
  }

  /**
   * Walks the prompt's path once and looks at its steps from the deepest up (each step's holders include the deeper
   * ones'): the first step holding at least `cacheThreshold` of the prompt where the least-loaded holder with a free
   * slot is not much busier than the least-loaded worker wins ("cache_hit"). Otherwise the least-loaded worker:
   * "balance" when some holder of enough of the prompt was free but much busier, "cache_miss" when none was; but
   * before those, other heads' hints (see pickRemote).
   */
  pick<W extends RoutableWorker>(task: RoutedTask, candidates: Candidates<W>): Decision<W> | undefined {
    const least = candidates.leastLoaded();
    if (least === undefined) return undefined;
    const enough = this.cacheThreshold * task.text.length;
    const path = this.tree.walk(task.text, Math.ceil(enough));
    this.scanLeft = SCAN_BUDGET;
    let busier = false;
    for (let step = path.length - 1; step >= 0 && (path.depths[step] as number) >= enough; step--) {
      const sole = path.sole[step];
      let best: W | undefined;
      if (sole !== undefined) {
        // One holder (most deep steps): known without reading the step's node.
        if (sole === least.id) return { worker: least, reason: "cache_hit" };
        const worker = this.scanLeft-- > 0 ? candidates.get(sole) : undefined;
        if (worker?.hasCapacity) best = worker;
      } else {
        const holders = path.holders[step] as Holders;
        if (holders.holds(least.id)) return { worker: least, reason: "cache_hit" };
        best = this.leastLoadedHolder(holders.holderIds(), candidates, least);
      }
      if (best === undefined) continue;
      if (!this.muchBusier(best, least)) return { worker: best, reason: "cache_hit" };
      busier = true;
    }
    if (this.remote?.has(task.model)) {
      const decision = this.pickRemote(task, candidates, least, this.remote);
      if (decision) return decision;
    }
    return { worker: least, reason: busier ? "balance" : "cache_miss" };
  }

  /** The worker now holds the task's prompt (it will have evaluated it by the time another task could reuse it). */
  assigned(task: RoutedTask, workerId: string): void {
    this.tree.insert(task.text, workerId);
  }

  released(): void {}

  workerRemoved(workerId: string): void {
    this.tree.removeWorker(workerId);
  }

  /** For each worker holding some prefix of `text`, the length of the longest one. */
  matchLengths(text: string): Map<string, number> {
    return this.tree.matchLengths(text);
  }

  /** Entries: (prompt, worker) pairs remembered whole. */
  stats(): PolicyStats {
    const { prompts, bytes } = this.tree.stats();
    return { entries: prompts, bytes };
  }

  /**
   * The same rule over other heads' hints: the prompt's block hashes from the deepest block some worker holds up,
   * while the block holds at least `cacheThreshold` of the prompt; the least-loaded holder with a free slot wins
   * ("cache_hit_remote") unless it is much busier than the least-loaded worker. "balance" when only much busier
   * holders were found, undefined when none was. Blocks are hashed only up to the first that nobody holds: a worker
   * holding a prefix's hash holds its shorter prefixes' (a summary keeps the shallow blocks of a prompt longest).
   */
  private pickRemote<W extends RoutableWorker>(task: RoutedTask, candidates: Candidates<W>, least: W, remote: RemoteCacheHints): Decision<W> | undefined {
    const hashes = this.hashes;
    const count = blockHashes(task.text, remote.blockChars, hashes, (hash) => remote.holders(task.model, hash) !== undefined);
    const enough = this.cacheThreshold * task.text.length;
    let named: Map<string, W> | undefined;
    this.scanLeft = SCAN_BUDGET;
    let busier = false;
    for (let block = count - 1; block >= 0 && (block + 1) * remote.blockChars >= enough; block--) {
      const holders = remote.holders(task.model, hashes[block] as number);
      if (holders === undefined) continue;
      named ??= byName(candidates);
      const best = this.leastLoadedHolder(holders, named, least);
      if (best === undefined) continue;
      if (!this.muchBusier(best, least)) return { worker: best, reason: "cache_hit_remote" };
      busier = true;
    }
    return busier ? { worker: least, reason: "balance" } : undefined;
  }

  /**
   * The least-loaded worker with a free slot among `ids` (looked up in `workers`), looking at no more than what is left
   * of the decision's SCAN_BUDGET: `least` itself as soon as it is found; and once one is as idle as `least`, no
   * further (none can be less loaded, so the choice is the one a full look would make).
   */
  private leastLoadedHolder<W extends RoutableWorker>(ids: Iterable<string>, workers: { get(id: string): W | undefined }, least: W): W | undefined {
    let best: W | undefined;
    for (const id of ids) {
      if (this.scanLeft-- <= 0) break;
      const worker = workers.get(id);
      if (worker === least) return least;
      if (worker?.hasCapacity && (best === undefined || worker.load < best.load)) {
        best = worker;
        if (worker.load <= least.load) break;
      }
    }
    return best;
  }

  private muchBusier(worker: RoutableWorker, least: RoutableWorker): boolean {
    return worker.load - least.load > this.balanceAbsThreshold && worker.load > this.balanceRelThreshold * least.load;
  }
}

/** The candidates by name (hints name workers: a worker's id is per connection, its name the same on every head). */
function byName<W extends RoutableWorker>(candidates: Candidates<W>): Map<string, W> {
  const named = new Map<string, W>();
  for (const worker of candidates.all()) named.set(worker.name, worker);
  return named;
}
