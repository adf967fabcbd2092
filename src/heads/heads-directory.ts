// The heads directory over NATS: this head's entry in the `coordinator-heads` bucket, written at start, every 5 s and
// after each reconnect, and every other head's, read through the bucket's watch; entries age out 15 s after they were
// last received.
import type { Logger } from "../log.js";
import { HEAD_ENTRY_MAX_AGE_MS, HEAD_REFRESH_MS, HEADS_BUCKET, HeadEntry } from "./head-entry.js";
import { type Heads, type HeadSelf, type HeadView, type NatsState, selfView } from "./heads.js";
import type { NatsLink } from "./nats-link.js";
import { SharedBucket } from "./shared-bucket.js";
import type { SharedEntry } from "./shared-map.js";

export class HeadsDirectory implements Heads {
  private readonly bucket: SharedBucket<HeadEntry>;
  private readonly listeners = new Set<() => void>();
  /** Each other head's URL as last told to listeners (they hear joins, leaves and moves). */
  private readonly urls = new Map<string, string>();
  private readonly stopListening: () => void;
  private url = "";
  private refresh: NodeJS.Timeout | undefined;
  /** Writing this head's entry, one write at a time. */
  private writing: Promise<void> = Promise.resolve();
  private closed = false;
  private lastFailure = "";

  constructor(
    private readonly link: NatsLink,
    private readonly self: HeadSelf,
    private readonly log: Logger,
  ) {
    this.bucket = new SharedBucket(link, { name: HEADS_BUCKET, what: "the heads directory", schema: HeadEntry, maxAgeMs: HEAD_ENTRY_MAX_AGE_MS }, log);
    this.bucket.onChange((key, entry) => this.heard(key, entry));
    // After a reconnect, say at once that this head is here.
    this.stopListening = link.onConnected(() => this.write());
  }

  get nats(): NatsState {
    return this.link.connected ? "connected" : "disconnected";
  }

  start(url: string): void {
    this.url = url;
    this.write();
    this.refresh = setInterval(() => this.write(), HEAD_REFRESH_MS);
  }

  list(now = Date.now()): HeadView[] {
    const others: HeadView[] = [];
    const planner = this.self.planner();
    for (const entry of this.others()) others.push(otherView(entry.value, this.bucket.receivedAt(entry.key) ?? now, entry.key === planner));
    others.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    return [selfView(this.self, this.url, this.nats, now), ...others];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.refresh);
    this.stopListening();
    await this.writing;
    // Gone at once for the others, instead of after the entry's max age.
    if (this.bucket.writable) await this.bucket.delete(this.self.id).catch((error: unknown) => this.log.warn({ err: error }, "could not delete this head's entry; it ages out"));
    await this.bucket.close();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The other heads' entries; one whose id is not its key is not believed. */
  private others(): Array<SharedEntry<HeadEntry>> {
    return this.bucket.entries().filter((entry) => entry.key !== this.self.id && entry.value.id === entry.key);
  }

  private heard(key: string, entry: SharedEntry<HeadEntry> | undefined): void {
    if (key === this.self.id) return;
    if (entry && entry.value.id !== key) {
      this.log.warn({ key }, "ignoring a heads entry whose id is not its key");
      return;
    }
    const url = entry?.value.url;
    if (this.urls.get(key) === url) return;
    if (url === undefined) this.urls.delete(key);
    else this.urls.set(key, url);
    for (const listener of [...this.listeners]) listener();
  }

  private write(): void {
    if (this.closed || !this.url) return;
    this.writing = this.writing.then(() => this.writeOnce());
  }

  private async writeOnce(): Promise<void> {
    if (this.closed || !this.bucket.writable) return;
    try {
      await this.bucket.put(this.self.id, this.entry());
      this.lastFailure = "";
    } catch (error) {
      // Tried again at the next refresh.
      const message = error instanceof Error ? error.message : String(error);
      if (message !== this.lastFailure) this.log.warn({ err: error }, "could not write this head's entry to NATS; trying again");
      this.lastFailure = message;
    }
  }

  private entry(): HeadEntry {
    const { id, name, startedAt } = this.self;
    return { v: 1, id, name, url: this.url, startedAt, inflight: this.self.inflight(), queued: this.self.queued(), workers: this.self.workers(), at: Date.now() };
  }
}

function otherView(entry: HeadEntry, receivedAt: number, planner: boolean): HeadView {
  return {
    id: entry.id,
    name: entry.name,
    url: entry.url,
    self: false,
    nats: null,
    inflight: entry.inflight,
    queued: entry.queued ?? 0,
    workers: entry.workers,
    startedAt: new Date(entry.startedAt).toISOString(),
    lastSeenAt: new Date(receivedAt).toISOString(),
    planner,
  };
}
