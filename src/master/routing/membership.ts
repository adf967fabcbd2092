// The ids of the workers serving a model as a policy last saw them, kept in step with its Candidates lazily: a
// policy that keeps per-worker state (a hash ring, an array to sample from) learns who joined and who left.
import type { Candidates } from "./policy.js";

export interface MembershipChange {
  added: string[];
  removed: string[];
}

export class Membership {
  /** The members, in no particular order (dense, for sampling by index). */
  readonly ids: string[] = [];
  private readonly index = new Map<string, number>();
  private stale = true;

  get size(): number {
    return this.ids.length;
  }

  /**
   * Brings the members in line with `candidates` when they may differ: when told so (`markStale`), or when the count
   * differs (a worker leaving is told through `remove`, so a join is what changes the count). O(1) when in step,
   * O(n) when not.
   */
  sync(candidates: Candidates): MembershipChange | undefined {
    if (!this.stale && candidates.size === this.ids.length) return undefined;
    this.stale = false;
    const seen = new Set<string>();
    const added: string[] = [];
    for (const worker of candidates.all()) {
      seen.add(worker.id);
      if (!this.index.has(worker.id)) added.push(worker.id);
    }
    const removed = this.ids.filter((id) => !seen.has(id));
    for (const id of removed) this.remove(id);
    for (const id of added) {
      this.index.set(id, this.ids.length);
      this.ids.push(id);
    }
    return added.length > 0 || removed.length > 0 ? { added, removed } : undefined;
  }

  /** The next `sync` compares in full (a member was found missing from the candidates). */
  markStale(): void {
    this.stale = true;
  }

  /** Drops a member in O(1); whether it was one. */
  remove(id: string): boolean {
    const at = this.index.get(id);
    if (at === undefined) return false;
    const last = this.ids.pop() as string;
    this.index.delete(id);
    if (last !== id) {
      this.ids[at] = last;
      this.index.set(last, at);
    }
    return true;
  }
}
