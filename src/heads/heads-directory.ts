// The heads directory over NATS: this head's entry in the `coordinator-heads` bucket, written at start and every
// 5 s, and every other head's, read through a watch; entries age out 15 s after they were last received.
import { type KV, type KvWatchEntry, Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../log.js";
import { HEAD_ENTRY_MAX_AGE_MS, HEAD_REFRESH_MS, HEADS_BUCKET, HeadEntry } from "./head-entry.js";
import { type Heads, type HeadSelf, type HeadView, type NatsState, selfView } from "./heads.js";
import { NatsLink } from "./nats-link.js";

type Watch = Awaited<ReturnType<KV["watch"]>>;

/** How long a JetStream request may take before this head gives up on it (and tries again at the next refresh). */
const REQUEST_TIMEOUT_MS = 2_000;

interface KnownHead {
  entry: HeadEntry;
  /** By this head's clock: the entry is gone HEAD_ENTRY_MAX_AGE_MS later (nats-server 2.9 says nothing then). */
  receivedAt: number;
}

export class HeadsDirectory implements Heads {
  private readonly link: NatsLink;
  private readonly others = new Map<string, KnownHead>();
  private readonly listeners = new Set<() => void>();
  private url = "";
  private connection: NatsConnection | undefined;
  /** The bucket while this head's watch on it runs; unset when it must be opened (again). */
  private bucket: KV | undefined;
  private watch: Watch | undefined;
  private watching: Promise<void> = Promise.resolve();
  private refresh: NodeJS.Timeout | undefined;
  /** Opening the bucket and writing the entry, one at a time. */
  private syncing: Promise<void> = Promise.resolve();
  private closed = false;
  private lastFailure = "";

  constructor(
    servers: readonly string[],
    private readonly self: HeadSelf,
    private readonly log: Logger,
  ) {
    const connected = (connection: NatsConnection) => {
      // After a reconnect the server may have restarted, lost its store or dropped the watch's consumer: open the
      // bucket and the watch afresh, and say at once that this head is here.
      this.connection = connection;
      this.bucket = undefined;
      this.sync();
    };
    this.link = new NatsLink(servers, connected, log);
  }

  get nats(): NatsState {
    return this.link.connected ? "connected" : "disconnected";
  }

  start(url: string): void {
    this.url = url;
    this.link.start();
    this.refresh = setInterval(() => this.sync(), HEAD_REFRESH_MS);
  }

  list(now = Date.now()): HeadView[] {
    this.expire(now);
    const others: HeadView[] = [];
    for (const known of this.others.values()) others.push(otherView(known));
    others.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    return [selfView(this.self, this.url, this.nats, now), ...others];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.refresh);
    await this.syncing;
    await this.stopWatch();
    // Gone at once for the others, instead of after the entry's max age.
    if (this.bucket && this.link.connected) {
      await this.bucket.delete(this.self.id).catch((error: unknown) => this.log.warn({ err: error }, "could not delete this head's entry; it ages out"));
    }
    await this.link.close();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Forgets the heads unheard of for the entries' max age (expiry makes no watch event on nats-server 2.9). */
  private expire(now = Date.now()): void {
    let gone = false;
    for (const [id, known] of this.others) {
      if (now - known.receivedAt <= HEAD_ENTRY_MAX_AGE_MS) continue;
      this.others.delete(id);
      gone = true;
    }
    if (gone) this.changed();
  }

  private changed(): void {
    for (const listener of [...this.listeners]) listener();
  }

  private sync(): void {
    this.expire();
    this.syncing = this.syncing.then(() => this.syncOnce());
  }

  private async syncOnce(): Promise<void> {
    const connection = this.connection;
    if (this.closed || !connection || !this.link.connected) return;
    try {
      this.bucket ??= await this.open(connection);
      await this.bucket.put(this.self.id, JSON.stringify(this.entry()));
      this.lastFailure = "";
    } catch (error) {
      // Tried again at the next refresh, with the bucket opened anew.
      this.bucket = undefined;
      const message = error instanceof Error ? error.message : String(error);
      if (message !== this.lastFailure) this.log.warn({ err: error }, "could not write this head's entry to NATS; trying again");
      this.lastFailure = message;
    }
  }

  private async open(connection: NatsConnection): Promise<KV> {
    // Created if missing, else opened (every head asks for the same bucket). History 1: only the latest entry counts.
    const bucket = await new Kvm(connection).create(HEADS_BUCKET, { ttl: HEAD_ENTRY_MAX_AGE_MS, history: 1, timeout: REQUEST_TIMEOUT_MS });
    await this.stopWatch();
    // The watch delivers every current entry first, then each change.
    const watch = await bucket.watch();
    this.watch = watch;
    this.watching = this.follow(watch, bucket);
    return bucket;
  }

  private async follow(watch: Watch, bucket: KV): Promise<void> {
    try {
      for await (const entry of watch) this.apply(entry);
    } catch (error) {
      this.log.warn({ err: error }, "the watch on the heads bucket failed");
    }
    // Ended by itself (not replaced nor stopped): open the bucket again at the next refresh.
    if (this.watch === watch && this.bucket === bucket) this.bucket = undefined;
  }

  private async stopWatch(): Promise<void> {
    const watch = this.watch;
    this.watch = undefined;
    watch?.stop();
    await this.watching;
  }

  private apply(change: KvWatchEntry): void {
    if (change.key === this.self.id) return;
    if (change.operation !== "PUT") {
      if (this.others.delete(change.key)) this.changed();
      return;
    }
    const entry = parseEntry(change.string());
    if (!entry.success || entry.data.id !== change.key) {
      this.log.warn({ key: change.key, issue: entry.success ? "id differs from key" : entry.error.issues[0]?.message }, "ignoring a heads entry that does not parse");
      return;
    }
    const before = this.others.get(change.key)?.entry.url;
    this.others.set(change.key, { entry: entry.data, receivedAt: Date.now() });
    if (before !== entry.data.url) this.changed();
  }

  private entry(): HeadEntry {
    const { id, name, startedAt } = this.self;
    return { v: 1, id, name, url: this.url, startedAt, inflight: this.self.inflight(), workers: this.self.workers(), at: Date.now() };
  }
}

function parseEntry(text: string): ReturnType<typeof HeadEntry.safeParse> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  return HeadEntry.safeParse(value);
}

function otherView({ entry, receivedAt }: KnownHead): HeadView {
  return {
    id: entry.id,
    name: entry.name,
    url: entry.url,
    self: false,
    nats: null,
    inflight: entry.inflight,
    workers: entry.workers,
    startedAt: new Date(entry.startedAt).toISOString(),
    lastSeenAt: new Date(receivedAt).toISOString(),
  };
}
