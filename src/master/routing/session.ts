// The session policy: tasks with the same session key go to the same worker (whose cache holds the conversation),
// found by consistent hashing so that a worker joining or leaving moves few sessions. A task without a key, or whose
// worker is full, goes to the least-loaded worker.
import { HashRing } from "./hash-ring.js";
import { Membership } from "./membership.js";
import type { Candidates, Decision, PolicyStats, RoutableWorker, RoutedTask, RoutingPolicy } from "./policy.js";

export interface SessionOptions {
  /** Points per worker on the hash ring (default 128): more spread sessions more evenly, at more memory. */
  virtualNodes?: number;
}

export class SessionPolicy implements RoutingPolicy {
  readonly name = "session";
  private readonly ring: HashRing;
  private readonly members = new Membership();

  constructor(options: SessionOptions = {}) {
    this.ring = new HashRing(options.virtualNodes ?? 128);
  }

  pick<W extends RoutableWorker>(task: RoutedTask, candidates: Candidates<W>): Decision<W> | undefined {
    const least = candidates.leastLoaded();
    if (least === undefined) return undefined;
    if (!task.sessionKey) return { worker: least, reason: "no_session" };
    const owner = this.owner(task.sessionKey, candidates);
    if (owner?.hasCapacity) return { worker: owner, reason: "session" };
    return { worker: least, reason: "session_overflow" };
  }

  /** The worker the ring gives `key` to, among `candidates`. */
  owner<W extends RoutableWorker>(key: string, candidates: Candidates<W>): W | undefined {
    this.sync(candidates);
    const id = this.ring.lookup(key);
    const worker = id === undefined ? undefined : candidates.get(id);
    if (id === undefined || worker !== undefined) return worker;
    // Its owner left without a workerRemoved: bring the ring in step and ask again.
    this.members.markStale();
    this.sync(candidates);
    const again = this.ring.lookup(key);
    return again === undefined ? undefined : candidates.get(again);
  }

  assigned(): void {}
  released(): void {}

  workerRemoved(workerId: string): void {
    if (this.members.remove(workerId)) this.ring.remove([workerId]);
  }

  /** Entries: points on the ring (the policy remembers no sessions: the ring decides). */
  stats(): PolicyStats {
    return { entries: this.ring.size, bytes: this.ring.bytes };
  }

  private sync(candidates: Candidates): void {
    const change = this.members.sync(candidates);
    if (!change) return;
    this.ring.remove(change.removed);
    this.ring.add(change.added);
  }
}
