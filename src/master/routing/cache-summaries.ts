// Cache summaries shared by heads (docs/scaling.md §7): this head hashes the prompts it routes with the cache-aware
// policy at block boundaries, keeps per (model, worker name) the most recently used hashes, and writes the sets that
// changed to the `coordinator-cache` bucket at most every 5 s; what the other heads wrote is read by RemoteHints,
// which the cache-aware policy asks. Prompt text never leaves the head. Only made with --nats.
import type { SharedMap } from "../../heads/shared-map.js";
import type { Logger } from "../../log.js";
import type { MasterObserver } from "../observer.js";
import type { WorkerEntry } from "../registry.js";
import { BLOCK_CHARS, blockHashes, renderHash } from "./block-hashes.js";
import { CACHE_PUBLISH_MS, CACHE_SUMMARY_MAX_AGE_MS, type CacheSummary, MAX_BLOCK_HASHES, summaryKey } from "./cache-summary.js";
import type { RoutedTask } from "./policy.js";
import { RecentHashes } from "./recent-hashes.js";
import { RemoteHints } from "./remote-hints.js";

/** A summary used again this long after its last write is written again, though it holds nothing new. */
const REFRESH_MS = CACHE_SUMMARY_MAX_AGE_MS / 2;

export interface CacheSummariesOptions {
  /** This head's id: the last part of its keys. */
  headId: string;
  /** Whether `model`'s tasks are routed by the cache-aware policy: only theirs are summarized. */
  summarizes(model: string): boolean;
  /** Characters per block (default BLOCK_CHARS). */
  blockChars?: number;
  /** Hashes kept per (model, worker) (default MAX_BLOCK_HASHES). */
  maxHashes?: number;
  /** Least time between two writes of the summaries that changed (default CACHE_PUBLISH_MS). */
  publishMs?: number;
}

/** What this head routed to one worker of one model. */
interface Summary {
  readonly key: string;
  readonly model: string;
  readonly worker: string;
  readonly hashes: RecentHashes;
  /** Hashes were added since it was last written, or it was used again when its last write was getting old. */
  changed: boolean;
  /** When it was last written (0: never, so it has no key to delete). */
  writtenAt: number;
}

/** What the summaries need to know of a worker. */
type NamedWorker = Pick<WorkerEntry, "name" | "serves">;

/** A prompt assigned, waiting to be hashed (after the assignment's own work, not in its way). */
interface Assigned {
  model: string;
  worker: string;
  text: string;
}

export class CacheSummaries implements MasterObserver {
  /** What the other heads say workers hold: the cache-aware policy's remote hints. */
  readonly hints: RemoteHints;
  private readonly blockChars: number;
  private readonly maxHashes: number;
  private readonly publishMs: number;
  /** Per model, per worker name. */
  private readonly summaries = new Map<string, Map<string, Summary>>();
  private readonly pending: Assigned[] = [];
  private readonly hashes: number[] = [];
  private hashing: NodeJS.Immediate | undefined;
  private publishTimer: NodeJS.Timeout | undefined;
  private lastPublished = 0;
  /** Writes and deletes, one batch at a time. */
  private writing: Promise<void> = Promise.resolve();
  private lastFailure = "";
  private closed = false;

  constructor(
    private readonly map: SharedMap<CacheSummary>,
    private readonly options: CacheSummariesOptions,
    private readonly log: Logger,
  ) {
    this.blockChars = options.blockChars ?? BLOCK_CHARS;
    this.maxHashes = options.maxHashes ?? MAX_BLOCK_HASHES;
    this.publishMs = options.publishMs ?? CACHE_PUBLISH_MS;
    this.hints = new RemoteHints(map, options.headId, this.blockChars, log);
  }

  taskAssigned(task: RoutedTask, worker: NamedWorker): void {
    if (this.closed || task.text.length < this.blockChars || !this.options.summarizes(task.model)) return;
    this.pending.push({ model: task.model, worker: worker.name, text: task.text });
    this.hashing ??= setImmediate(() => this.hashPending());
  }

  /** The worker left this head: its summaries go (the others' heads keep theirs while it is joined to them). */
  workerLeft(worker: NamedWorker): void {
    this.hashPending();
    for (const [model, workers] of this.summaries) {
      const summary = workers.get(worker.name);
      if (summary) this.drop(model, summary);
    }
  }

  /** A model the worker no longer serves takes its summary with it. */
  workerModelsChanged(worker: NamedWorker): void {
    this.hashPending();
    for (const [model, workers] of this.summaries) {
      const summary = workers.get(worker.name);
      if (summary && !worker.serves(model)) this.drop(model, summary);
    }
  }

  /** Stops writing and deletes this head's summaries (best effort: they age out otherwise). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearImmediate(this.hashing);
    clearTimeout(this.publishTimer);
    this.pending.length = 0;
    this.hints.close();
    // A write under way ends first, so that its key is deleted too.
    await this.writing;
    const written = [...this.summaries.values()].flatMap((workers) => [...workers.values()].filter((summary) => summary.writtenAt > 0));
    this.summaries.clear();
    await Promise.all(written.map((summary) => this.deleteKey(summary.key)));
  }

  private hashPending(): void {
    clearImmediate(this.hashing);
    this.hashing = undefined;
    if (this.pending.length === 0) return;
    const now = Date.now();
    for (const { model, worker, text } of this.pending.splice(0)) {
      const count = blockHashes(text, this.blockChars, this.hashes);
      const summary = this.summary(model, worker);
      // Deepest first: the shallow blocks, which more prompts share, are then the most recent and go last.
      for (let block = count - 1; block >= 0; block--) if (summary.hashes.touch(this.hashes[block] as number)) summary.changed = true;
      // A prompt routed again adds nothing, but keeps the summary from ageing out while it is used.
      if (now - summary.writtenAt >= REFRESH_MS) summary.changed = true;
    }
    this.schedulePublish();
  }

  private summary(model: string, worker: string): Summary {
    let workers = this.summaries.get(model);
    if (!workers) {
      workers = new Map();
      this.summaries.set(model, workers);
    }
    let summary = workers.get(worker);
    if (!summary) {
      const key = summaryKey(model, worker, this.options.headId);
      summary = { key, model, worker, hashes: new RecentHashes(this.maxHashes), changed: false, writtenAt: 0 };
      workers.set(worker, summary);
    }
    return summary;
  }

  private drop(model: string, summary: Summary): void {
    const workers = this.summaries.get(model);
    workers?.delete(summary.worker);
    if (workers?.size === 0) this.summaries.delete(model);
    // After the writes under way, one of which may be this summary's first.
    this.writing = this.writing.then(() => (summary.writtenAt > 0 ? this.deleteKey(summary.key) : undefined));
  }

  /** Publishes at once if the last write is old enough, else when it will be. */
  private schedulePublish(): void {
    if (this.closed || this.publishTimer) return;
    const wait = Math.max(0, this.lastPublished + this.publishMs - Date.now());
    this.publishTimer = setTimeout(() => {
      this.publishTimer = undefined;
      this.lastPublished = Date.now();
      this.writing = this.writing.then(() => this.publish());
    }, wait);
    this.publishTimer.unref();
  }

  /** Writes every summary that changed; one that could not be written is tried again at the next turn. */
  private async publish(): Promise<void> {
    const changed: Summary[] = [];
    for (const workers of this.summaries.values()) for (const summary of workers.values()) if (summary.changed) changed.push(summary);
    if (changed.length === 0 || this.closed) return;
    if (!this.map.writable) {
      this.schedulePublish();
      return;
    }
    let failed = false;
    await Promise.all(
      changed.map(async (summary) => {
        summary.changed = false;
        try {
          await this.map.put(summary.key, this.value(summary));
          summary.writtenAt = Date.now();
        } catch (error) {
          summary.changed = true;
          failed = true;
          this.failed(error, "could not write a cache summary to NATS; trying again");
        }
      }),
    );
    if (failed) this.schedulePublish();
    else this.lastFailure = "";
  }

  private value(summary: Summary): CacheSummary {
    const hashes: string[] = [];
    for (const hash of summary.hashes.values()) hashes.push(renderHash(hash));
    return { v: 1, model: summary.model, worker: summary.worker, head: this.options.headId, block: this.blockChars, hashes };
  }

  private async deleteKey(key: string): Promise<void> {
    if (!this.map.writable) return;
    try {
      await this.map.delete(key);
    } catch (error) {
      this.failed(error, "could not delete a cache summary; it ages out");
    }
  }

  /** Logs a failure once, not again while the same one repeats. */
  private failed(error: unknown, message: string): void {
    const text = error instanceof Error ? error.message : String(error);
    if (text !== this.lastFailure) this.log.warn({ err: error }, message);
    this.lastFailure = text;
  }
}
