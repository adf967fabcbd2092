// Worker ejections and wrong-token bans shared by every head (docs/scaling.md §2, §7), over a SharedMap: a local map
// without --nats (one head: what it records applies to itself only), the `coordinator-worker-health` bucket with it.
// Writes go out in the background, one at a time, so neither a task's failure nor a Hello waits on NATS.
import type { Logger } from "../log.js";
import type { SharedEjection } from "../master/cluster/events.js";
import type { EjectionsSource } from "../master/master.js";
import type { SharedBans } from "../master/worker-admission.js";
import { banKey, type EjectionRecord, ejectionKey, type HealthRecord } from "./health-record.js";
import { SharedConflict, type SharedEntry, type SharedMap } from "./shared-map.js";

/** How often this head deletes the records it wrote that have ended. */
const SWEEP_MS = 5_000;
/** Records held at once beyond which this head keeps new bans to itself (a spray of addresses fills no memory). */
const MAX_RECORDS = 10_000;

export class SharedHealth implements EjectionsSource, SharedBans {
  private readonly listeners = new Set<(ejection: SharedEjection) => void>();
  private readonly stopListening: () => void;
  private readonly sweepTimer: NodeJS.Timeout;
  /** Writing, one write at a time: a delete never overtakes the ejection it ends. */
  private writing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly map: SharedMap<HealthRecord>,
    /** This head's id (HeadSelf.id): the records it wrote say so. */
    private readonly headId: string,
    private readonly log: Logger,
  ) {
    this.stopListening = map.onChange((key, entry) => this.heard(key, entry));
    this.sweepTimer = setInterval(() => this.sweep(Date.now()), SWEEP_MS);
    this.sweepTimer.unref();
  }

  current(name: string, now: number): SharedEjection | undefined {
    const record = this.ejection(ejectionKey(name), this.map.get(ejectionKey(name)));
    return record && record.until > now ? { name: record.worker, until: record.until, ejections: record.ejections } : undefined;
  }

  ejected({ name, until, ejections }: SharedEjection): void {
    const record: HealthRecord = { v: 1, kind: "eject", worker: name, until, ejections, by: this.headId };
    this.write(`could not share the ejection of worker '${name}'`, () => this.map.put(ejectionKey(name), record));
  }

  recovered(name: string): void {
    const key = ejectionKey(name);
    // At the revision seen now: a newer ejection written meanwhile stays.
    const revision = this.map.get(key)?.revision;
    if (revision === undefined) return;
    this.write(`could not delete the ejection of worker '${name}'`, () => this.map.delete(key, revision));
  }

  onEjection(listener: (ejection: SharedEjection) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  isBanned(address: string, now: number): boolean {
    const value = this.map.get(banKey(address))?.value;
    return value?.kind === "ban" && value.address === address && value.until > now;
  }

  banned(address: string, until: number, failures: number): void {
    if (this.map.entries().length >= MAX_RECORDS) return;
    const record: HealthRecord = { v: 1, kind: "ban", address, until, failures, by: this.headId };
    this.write(`could not share the ban of address ${address}`, () => this.map.put(banKey(address), record));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    this.stopListening();
    this.listeners.clear();
    await this.writing;
    await this.map.close();
  }

  /** An ejection record, if the entry is one and is filed under its worker's key (another is not believed). */
  private ejection(key: string, entry: SharedEntry<HealthRecord> | undefined): EjectionRecord | undefined {
    const value = entry?.value;
    return value?.kind === "eject" && ejectionKey(value.worker) === key ? value : undefined;
  }

  private heard(key: string, entry: SharedEntry<HealthRecord> | undefined): void {
    // A deleted ejection lifts nothing: each head's own probation ends it there.
    const record = this.ejection(key, entry);
    if (!record) return;
    const ejection = { name: record.worker, until: record.until, ejections: record.ejections };
    for (const listener of [...this.listeners]) listener(ejection);
  }

  /** Runs a write after those before it; a failure is logged (the record's own end, or the bucket's age, covers it). */
  private write(failure: string, run: () => Promise<unknown>): void {
    if (this.closed) return;
    this.writing = this.writing.then(async () => {
      try {
        await run();
      } catch (error) {
        if (error instanceof SharedConflict) return;
        this.log.warn({ err: error }, failure);
      }
    });
  }

  /** Deletes the records this head wrote that have ended, at their revision (one rewritten since stays). */
  private sweep(now: number): void {
    if (!this.map.writable) return;
    for (const { key, value, revision } of this.map.entries()) {
      if (value.by !== this.headId || value.until > now) continue;
      this.write(`could not delete the ended record ${key}`, () => this.map.delete(key, revision));
    }
  }
}
