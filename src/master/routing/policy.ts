// The routing seam: which worker serving a model takes a task is a policy's choice, made per model. The master asks
// its model's policy for a worker whenever a task could start (on admission, and whenever a slot frees up), and tells
// it what happened (assignments, releases, workers leaving), so that a policy may keep its own state (a prefix tree
// of what each worker has cached, a hash ring of sessions). Policies see workers through RoutableWorker only.

/** What a policy may know of a worker. The registry's WorkerEntry is one. */
export interface RoutableWorker {
  /** Its connection's id, this head's own. */
  readonly id: string;
  /** Its name: the same on every head (what heads say of a worker goes by it). */
  readonly name: string;
  /** Slots taken over slots announced (0 idle, 1 full; more while it holds tasks being cancelled). */
  readonly load: number;
  /** Whether it may take one more task now. */
  readonly hasCapacity: boolean;
}

/** What a policy sees of a task. */
export interface RoutedTask {
  readonly id: string;
  readonly model: string;
  /**
   * The prompt as routing compares prompts (see routingText): a later turn of a conversation starts with the text
   * of the turn before it. Empty for tasks whose prompt caches nothing (embeddings).
   */
  readonly text: string;
  /** A client-supplied session key (OpenAI's prompt_cache_key, the user field, an X-Session-Id header), if any. */
  readonly sessionKey: string | undefined;
}

/** The workers serving one model, as a policy may look at them. */
export interface Candidates<W extends RoutableWorker = RoutableWorker> {
  /** The least-loaded worker with a free slot (ties: the most free slots), in O(1); undefined when none has one. */
  leastLoaded(): W | undefined;
  /** Every worker serving the model, with a free slot or not. */
  all(): Iterable<W>;
  get(workerId: string): W | undefined;
  readonly size: number;
}

/** A policy's choice, with why (for metrics: routing decisions by policy and reason). */
export interface Decision<W extends RoutableWorker = RoutableWorker> {
  worker: W;
  /** A short, fixed word per kind of decision (e.g. "least_loaded", "cache_hit", "balance", "session"). */
  reason: string;
}

/** What a policy holds, for /v1/cluster and /metrics. */
export interface PolicyStats {
  /** Prompts (or sessions) the policy remembers. */
  entries: number;
  /** Approximate bytes it holds for them. */
  bytes: number;
}

export interface RoutingPolicy {
  /** Its name as configured: "least-loaded", "power-of-two", "session", "cache-aware". */
  readonly name: string;
  /**
   * A worker with a free slot (`hasCapacity`) among `candidates` for `task`, or undefined when none has one. Called
   * for every task admitted and every time a slot frees while tasks wait: it must be cheap (see npm run bench's
   * scheduler scenario).
   */
  pick<W extends RoutableWorker>(task: RoutedTask, candidates: Candidates<W>): Decision<W> | undefined;
  /** `task` was assigned to the worker (as the policy picked, or otherwise). */
  assigned(task: RoutedTask, workerId: string): void;
  /** `task` ended on the worker (finished, failed or cancelled), or was taken back from it. */
  released(task: RoutedTask, workerId: string): void;
  /** The worker left, or no longer serves the model: forget what it held. */
  workerRemoved(workerId: string): void;
  stats(): PolicyStats;
}

export const POLICY_NAMES = ["least-loaded", "power-of-two", "session", "cache-aware"] as const;
export type PolicyName = (typeof POLICY_NAMES)[number];
