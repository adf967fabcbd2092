// The seam between what heads share and where it is kept (docs/scaling.md §2): a map of keys to validated values,
// each write at a revision. Without --nats it lives in this process (LocalMap: one head, today's behaviour); with
// --nats it is a JetStream key-value bucket every head watches (SharedBucket). Code that shares state (keys,
// placements, ejections, the planner lease) sees only this interface.

/** One key's current value, and the revision of the write that set it (revisions only grow, across the whole map). */
export interface SharedEntry<T> {
  readonly key: string;
  readonly value: T;
  readonly revision: number;
}

/** Hears each change: the key's new entry, or undefined once it is gone (deleted, aged out, absent from a new snapshot). */
export type SharedListener<T> = (key: string, entry: SharedEntry<T> | undefined) => void;

export interface SharedMap<T> {
  /**
   * Whether the map holds the shared state: always for a local map; over NATS, once the first snapshot has been read
   * (and from then on, through outages: the last state read stays in force).
   */
  readonly ready: boolean;
  /** Whether a write may succeed now (false while NATS is away). */
  readonly writable: boolean;
  get(key: string): SharedEntry<T> | undefined;
  entries(): SharedEntry<T>[];
  onChange(listener: SharedListener<T>): () => void;
  /** Writes a key that does not exist; SharedConflict if it does. Resolves to the write's revision. */
  create(key: string, value: T): Promise<number>;
  /** Writes a key still at `revision`; SharedConflict if another write came since. */
  update(key: string, value: T, revision: number): Promise<number>;
  /** Writes a key whatever it holds. */
  put(key: string, value: T): Promise<number>;
  /** Deletes a key (at `revision` when given: SharedConflict if another write came since). */
  delete(key: string, revision?: number): Promise<void>;
  close(): Promise<void>;
}

/** A create of a key that exists, or a write at a revision that is no longer the key's. */
export class SharedConflict extends Error {
  constructor(readonly key: string) {
    super(`the shared key '${key}' changed meanwhile`);
    this.name = "SharedConflict";
  }
}

/** The shared store cannot be written now (NATS is away); the last state read stays in force. */
export class SharedUnavailable extends Error {
  constructor(what: string) {
    super(`${what}: NATS is not reachable now`);
    this.name = "SharedUnavailable";
  }
}

/** Calls every listener; one that throws is not allowed to stop the others, nor the write that caused the change. */
export function tell<T>(listeners: ReadonlySet<SharedListener<T>>, key: string, entry: SharedEntry<T> | undefined): void {
  for (const listener of [...listeners]) listener(key, entry);
}

/** A shared map for a head on its own: every write applies at once, in this process. */
export class LocalMap<T> implements SharedMap<T> {
  readonly ready = true;
  readonly writable = true;
  private readonly map = new Map<string, SharedEntry<T>>();
  private readonly listeners = new Set<SharedListener<T>>();
  private revision = 0;

  get(key: string): SharedEntry<T> | undefined {
    return this.map.get(key);
  }

  entries(): SharedEntry<T>[] {
    return [...this.map.values()];
  }

  onChange(listener: SharedListener<T>): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async create(key: string, value: T): Promise<number> {
    if (this.map.has(key)) throw new SharedConflict(key);
    return this.set(key, value);
  }

  async update(key: string, value: T, revision: number): Promise<number> {
    if (this.map.get(key)?.revision !== revision) throw new SharedConflict(key);
    return this.set(key, value);
  }

  async put(key: string, value: T): Promise<number> {
    return this.set(key, value);
  }

  async delete(key: string, revision?: number): Promise<void> {
    const entry = this.map.get(key);
    if (revision !== undefined && entry?.revision !== revision) throw new SharedConflict(key);
    this.revision++;
    if (!entry) return;
    this.map.delete(key);
    tell(this.listeners, key, undefined);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private set(key: string, value: T): number {
    const entry = { key, value, revision: ++this.revision };
    this.map.set(key, entry);
    tell(this.listeners, key, entry);
    return entry.revision;
  }
}

/**
 * A text (a model id, a worker name) as a key: KV keys allow only letters, digits and `-/_=.`, so anything else is
 * base64url without padding. The value repeats the text in clear.
 */
export function encodeKey(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}
