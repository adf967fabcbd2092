// A SharedMap kept in a JetStream key-value bucket that every head watches (docs/scaling.md §2): each head reads the
// bucket's snapshot, then each change; after every reconnect it opens the bucket and its watch afresh and replaces
// what it held with the new snapshot. Values are JSON checked with the bucket's zod schema (NATS is a trust boundary).
import { type KV, type KvWatchEntry, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { z } from "zod";
import type { Logger } from "../log.js";
import type { NatsLink } from "./nats-link.js";
import { LocalMap, SharedConflict, type SharedEntry, type SharedListener, type SharedMap, SharedUnavailable, tell } from "./shared-map.js";

type Watch = Awaited<ReturnType<KV["watch"]>>;

/** How long a JetStream request may take before this head gives up on it. */
const REQUEST_TIMEOUT_MS = 2_000;
/**
 * The watch's snapshot ends with the entry that has nothing pending after it; a bucket emptied between the status read
 * and the watch's start delivers none, so the snapshot is taken as read after this long without it.
 */
const SNAPSHOT_GRACE_MS = 5_000;

export interface BucketSpec<T> {
  /** The bucket's name (`coordinator-…`). */
  name: string;
  /** What it holds, for logs. */
  what: string;
  schema: z.ZodType<T>;
  /**
   * The bucket's max age: an entry not written again for this long is gone. nats-server 2.9 says nothing when one ages
   * out, so readers also forget an entry this long after they received it (never earlier than the server does).
   */
  maxAgeMs?: number;
}

interface Held<T> extends SharedEntry<T> {
  /** By this head's clock. */
  receivedAt: number;
}

/** State every head shares: in `spec`'s bucket through NATS when there is a link, else in this process alone. */
export function sharedMap<T>(link: NatsLink | undefined, spec: BucketSpec<T>, log: Logger): SharedMap<T> {
  return link ? new SharedBucket(link, spec, log) : new LocalMap<T>();
}

/** Whether a JetStream write failed because the key was not at the revision the writer expected. */
function isConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  // StreamWrongLastSequence, StreamWrongLastSequenceUnknown.
  return code === 10071 || code === 10164;
}

export class SharedBucket<T> implements SharedMap<T> {
  private readonly held = new Map<string, Held<T>>();
  /** The newest revision heard of per key, deletes included: an older write arriving late is not applied. */
  private readonly seen = new Map<string, number>();
  private readonly listeners = new Set<SharedListener<T>>();
  private readonly stopListening: () => void;
  private bucket: KV | undefined;
  private watch: Watch | undefined;
  private watching: Promise<void> = Promise.resolve();
  /** Opening the bucket and its watch, one at a time; writes wait for it. */
  private opening: Promise<void> = Promise.resolve();
  /** The snapshot being read after a (re)open, until its last entry. */
  private snapshot: Map<string, Held<T> | undefined> | undefined;
  private snapshotTimer: NodeJS.Timeout | undefined;
  /** Keys this head wrote while a snapshot was being read (the snapshot may predate them). */
  private writtenMeanwhile = new Set<string>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private everRead = false;
  private closed = false;

  constructor(
    private readonly link: NatsLink,
    private readonly spec: BucketSpec<T>,
    private readonly log: Logger,
  ) {
    this.stopListening = link.onConnected((connection) => this.reopen(connection));
    if (spec.maxAgeMs !== undefined) this.sweepTimer = setInterval(() => this.expire(), Math.max(250, spec.maxAgeMs / 5));
  }

  get ready(): boolean {
    return this.everRead;
  }

  get writable(): boolean {
    return this.link.connected && !this.closed;
  }

  get(key: string): SharedEntry<T> | undefined {
    const entry = this.held.get(key);
    return entry && !this.isExpired(entry, Date.now()) ? entry : undefined;
  }

  entries(): SharedEntry<T>[] {
    const now = Date.now();
    return [...this.held.values()].filter((entry) => !this.isExpired(entry, now));
  }

  /** When this head received the key's entry, by its own clock. */
  receivedAt(key: string): number | undefined {
    return this.held.get(key)?.receivedAt;
  }

  onChange(listener: SharedListener<T>): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  create(key: string, value: T): Promise<number> {
    return this.write(key, value, (bucket, data) => bucket.create(key, data));
  }

  update(key: string, value: T, revision: number): Promise<number> {
    return this.write(key, value, (bucket, data) => bucket.update(key, data, revision));
  }

  put(key: string, value: T): Promise<number> {
    return this.write(key, value, (bucket, data) => bucket.put(key, data, { timeout: REQUEST_TIMEOUT_MS }));
  }

  async delete(key: string, revision?: number): Promise<void> {
    await this.write(key, undefined, async (bucket) => {
      await bucket.delete(key, revision === undefined ? {} : { previousSeq: revision });
      return undefined;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopListening();
    clearInterval(this.sweepTimer);
    clearTimeout(this.snapshotTimer);
    await this.opening;
    await this.stopWatch();
    this.listeners.clear();
  }

  /**
   * A write through the bucket once it is open; SharedConflict when the key was not as the write expected,
   * SharedUnavailable when NATS is away or the write failed otherwise. The change applies here at once (the watch
   * brings it too, and is then ignored by its revision).
   */
  private async write(key: string, value: T | undefined, run: (bucket: KV, data: string) => Promise<number | undefined>): Promise<number> {
    if (this.writable) await this.opening;
    const bucket = this.bucket;
    if (!bucket || !this.writable) throw new SharedUnavailable(`could not write ${this.spec.what}`);
    let revision: number | undefined;
    try {
      revision = await run(bucket, value === undefined ? "" : JSON.stringify(value));
    } catch (error) {
      if (isConflict(error)) throw new SharedConflict(key);
      this.log.warn({ err: error, bucket: this.spec.name, key }, `could not write ${this.spec.what}`);
      throw new SharedUnavailable(`could not write ${this.spec.what}`);
    }
    if (this.snapshot) this.writtenMeanwhile.add(key);
    if (revision !== undefined && value !== undefined) this.applyLive(key, { key, value, revision, receivedAt: Date.now() }, revision);
    else if (value === undefined) this.forgetDeleted(key);
    return revision ?? 0;
  }

  private reopen(connection: NatsConnection): void {
    // The server may have restarted, lost its store or dropped the watch's consumer: open the bucket and the watch
    // afresh, and read the state anew.
    this.opening = this.opening.then(() => this.open(connection));
  }

  private async open(connection: NatsConnection): Promise<void> {
    if (this.closed) return;
    try {
      const options = { history: 1, timeout: REQUEST_TIMEOUT_MS, ...(this.spec.maxAgeMs !== undefined && { ttl: this.spec.maxAgeMs }) };
      // Created if missing, else opened (every head asks for the same bucket).
      const bucket = await new Kvm(connection).create(this.spec.name, options);
      const empty = (await bucket.status()).values === 0;
      await this.stopWatch();
      if (this.closed) return;
      this.bucket = bucket;
      this.snapshot = new Map();
      // The watch delivers every key's current entry first (deletes included), then each change.
      const watch = await bucket.watch();
      this.watch = watch;
      this.watching = this.follow(watch, bucket);
      if (empty) this.endSnapshot();
      else this.snapshotTimer = setTimeout(() => this.endSnapshot(), SNAPSHOT_GRACE_MS);
    } catch (error) {
      this.bucket = undefined;
      this.log.warn({ err: error, bucket: this.spec.name }, `could not open ${this.spec.what} in NATS; trying again at the next connection`);
      // A failed open on a live connection (a JetStream hiccup) is retried after a pause, so as not to spin.
      if (this.link.current === connection) setTimeout(() => this.link.current === connection && this.reopen(connection), 1_000).unref();
    }
  }

  private async follow(watch: Watch, bucket: KV): Promise<void> {
    try {
      for await (const change of watch) this.hear(change);
    } catch (error) {
      this.log.warn({ err: error, bucket: this.spec.name }, `the watch on ${this.spec.what} failed`);
    }
    // Ended by itself (neither replaced nor stopped): open it again while connected.
    if (this.watch === watch && this.bucket === bucket && !this.closed) {
      this.bucket = undefined;
      const connection = this.link.current;
      if (connection) this.reopen(connection);
    }
  }

  private async stopWatch(): Promise<void> {
    const watch = this.watch;
    this.watch = undefined;
    watch?.stop();
    await this.watching;
  }

  private hear(change: KvWatchEntry): void {
    const entry = change.operation === "PUT" ? this.parse(change) : undefined;
    if (this.snapshot) {
      this.snapshot.set(change.key, entry);
      this.seen.set(change.key, change.revision);
      if (change.delta === 0) this.endSnapshot();
      return;
    }
    this.applyLive(change.key, entry, change.revision);
  }

  private parse(change: KvWatchEntry): Held<T> | undefined {
    let value: unknown;
    try {
      value = JSON.parse(change.string());
    } catch {
      value = undefined;
    }
    const parsed = this.spec.schema.safeParse(value);
    if (!parsed.success) {
      this.log.warn({ bucket: this.spec.name, key: change.key, issue: parsed.error.issues[0]?.message }, `ignoring a value in ${this.spec.what} that does not parse`);
      return undefined;
    }
    return { key: change.key, value: parsed.data, revision: change.revision, receivedAt: Date.now() };
  }

  /** A change after the snapshot: applied unless a newer write of the key was heard of already. */
  private applyLive(key: string, entry: Held<T> | undefined, revision: number): void {
    if (revision <= (this.seen.get(key) ?? 0)) return;
    this.seen.set(key, revision);
    if (entry) {
      this.held.set(key, entry);
      tell(this.listeners, key, entry);
    } else if (this.held.delete(key)) {
      tell(this.listeners, key, undefined);
    }
  }

  /** This head deleted the key; its revision comes with the watch. */
  private forgetDeleted(key: string): void {
    if (this.held.delete(key)) tell(this.listeners, key, undefined);
  }

  /** The snapshot is read: it replaces what this head held (a key absent from it is gone). */
  private endSnapshot(): void {
    clearTimeout(this.snapshotTimer);
    this.snapshotTimer = undefined;
    const snapshot = this.snapshot;
    if (!snapshot) return;
    this.snapshot = undefined;
    this.everRead = true;
    const written = this.writtenMeanwhile;
    this.writtenMeanwhile = new Set();
    for (const key of [...this.held.keys()]) {
      // Absent from the snapshot: gone, unless this head wrote it while the snapshot was read.
      if (snapshot.get(key) !== undefined || written.has(key)) continue;
      this.held.delete(key);
      tell(this.listeners, key, undefined);
    }
    for (const [key, entry] of snapshot) {
      if (!entry || (this.held.get(key)?.revision ?? 0) >= entry.revision) continue;
      this.held.set(key, entry);
      tell(this.listeners, key, entry);
    }
  }

  private isExpired(entry: Held<T>, now: number): boolean {
    return this.spec.maxAgeMs !== undefined && now - entry.receivedAt > this.spec.maxAgeMs;
  }

  /** Forgets the entries aged out (no watch event says so on nats-server 2.9). */
  private expire(now = Date.now()): void {
    for (const [key, entry] of [...this.held]) {
      if (!this.isExpired(entry, now)) continue;
      this.held.delete(key);
      tell(this.listeners, key, undefined);
    }
  }
}
