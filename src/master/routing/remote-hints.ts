// What the other heads say workers hold, read from the `coordinator-cache` bucket: per model, an index from each
// block hash to the workers whose summaries hold it, kept current through the bucket's changes (an entry that is
// replaced, deleted or ages out takes its hashes with it).
import type { Logger } from "../../log.js";
import type { SharedEntry, SharedMap } from "../../heads/shared-map.js";
import { parseHash } from "./block-hashes.js";
import type { RemoteCacheHints } from "./cache-aware.js";
import { type CacheSummary, summaryKey } from "./cache-summary.js";

/** One summary as applied to the index. */
interface Applied {
  model: string;
  worker: string;
  hashes: number[];
}

export class RemoteHints implements RemoteCacheHints {
  /** Per model, each block hash's holders: a worker's name once per head whose summary holds the hash. */
  private readonly models = new Map<string, Map<number, string[]>>();
  /** What each key applied, to take back when it changes. */
  private readonly applied = new Map<string, Applied>();
  private readonly stopListening: () => void;

  constructor(
    map: SharedMap<CacheSummary>,
    private readonly self: string,
    readonly blockChars: number,
    private readonly log: Logger,
  ) {
    for (const entry of map.entries()) this.heard(entry.key, entry);
    this.stopListening = map.onChange((key, entry) => this.heard(key, entry));
  }

  has(model: string): boolean {
    return this.models.has(model);
  }

  holders(model: string, hash: number): readonly string[] | undefined {
    return this.models.get(model)?.get(hash);
  }

  /** Summaries applied, and the hashes they hold (for tests and stats). */
  stats(): { summaries: number; hashes: number } {
    let hashes = 0;
    for (const applied of this.applied.values()) hashes += applied.hashes.length;
    return { summaries: this.applied.size, hashes };
  }

  close(): void {
    this.stopListening();
    this.applied.clear();
    this.models.clear();
  }

  private heard(key: string, entry: SharedEntry<CacheSummary> | undefined): void {
    this.forget(key);
    if (!entry) return;
    const { model, worker, head, block, hashes } = entry.value;
    // This head's own summaries: it knows what it routed already.
    if (head === this.self) return;
    if (key !== summaryKey(model, worker, head)) {
      this.log.warn({ key }, "ignoring a cache summary whose model, worker or head is not its key's");
      return;
    }
    if (block !== this.blockChars) {
      this.log.warn({ key, block, expected: this.blockChars }, "ignoring a cache summary of another block size");
      return;
    }
    const unique = new Set<number>();
    for (const text of hashes) {
      const hash = parseHash(text);
      if (hash !== undefined) unique.add(hash);
    }
    const parsed = [...unique];
    this.applied.set(key, { model, worker, hashes: parsed });
    if (parsed.length === 0) return;
    let index = this.models.get(model);
    if (!index) {
      index = new Map();
      this.models.set(model, index);
    }
    for (const hash of parsed) {
      const holders = index.get(hash);
      if (holders) holders.push(worker);
      else index.set(hash, [worker]);
    }
  }

  private forget(key: string): void {
    const applied = this.applied.get(key);
    if (!applied) return;
    this.applied.delete(key);
    const index = this.models.get(applied.model);
    if (!index) return;
    for (const hash of applied.hashes) {
      const holders = index.get(hash);
      if (!holders) continue;
      const at = holders.indexOf(applied.worker);
      if (at < 0) continue;
      // Order among holders means nothing: the last one takes the removed one's place.
      holders[at] = holders[holders.length - 1] as string;
      holders.pop();
      if (holders.length === 0) index.delete(hash);
    }
    if (index.size === 0) this.models.delete(applied.model);
  }
}
