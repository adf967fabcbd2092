// Which head runs the placement planner (docs/scaling.md §6): the holder of key `planner` in the bucket
// `coordinator-leader`, whose max age is the lease. A head takes the key with `create` (which fails while another
// holds it), renews it with `update` at its own last revision, and leads only until its own deadline: the time it
// sent its last successful renewal plus the lease, less a margin, so it always stops before anyone else can start.
// The revision its winning `create` returned is its epoch: workers refuse model commands of a lower one.
import { z } from "zod";
import type { Logger } from "../log.js";
import type { NatsLink } from "./nats-link.js";
import { SharedBucket } from "./shared-bucket.js";
import { SharedConflict } from "./shared-map.js";

export const LEADER_BUCKET = "coordinator-leader";
const KEY = "planner";

/** The lease's value: who holds it. */
export const LeaseValue = z.object({
  v: z.literal(1),
  headId: z.string().min(1).max(64),
  name: z.string().min(1).max(128),
  url: z.string().max(2048),
  /** When the holder wrote it, by its own clock (informational). */
  at: z.number().int().nonnegative(),
});
export type LeaseValue = z.infer<typeof LeaseValue>;

/** Who plans, as this head knows it. */
export interface PlannerLease {
  /** Whether this head may plan now. */
  readonly leading: boolean;
  /** This head's fencing epoch while it leads; undefined for a head on its own (nobody else could plan). */
  readonly epoch: number | undefined;
  /** The head that holds the lease, as last heard of (this one included); undefined while nobody is known to. */
  holder(): LeaseValue | undefined;
  /** Hears this head starting or stopping to lead. */
  onChange(listener: () => void): () => void;
  start(self: Omit<LeaseValue, "v" | "at">): void;
  /** Lets go of the lease (deleted at once, so another head takes over without waiting for it to age out). */
  close(): Promise<void>;
}

/** A head without NATS: the only planner there is. */
export class LoneLease implements PlannerLease {
  readonly leading = true;
  readonly epoch = undefined;
  private self: LeaseValue | undefined;

  holder(): LeaseValue | undefined {
    return this.self;
  }

  onChange(): () => void {
    return () => {};
  }

  start(self: Omit<LeaseValue, "v" | "at">): void {
    this.self = { v: 1, ...self, at: Date.now() };
  }

  async close(): Promise<void> {}
}

export interface LeaseTiming {
  /** The bucket's max age: how long a lease not renewed lasts (default 10 s). */
  leaseMs: number;
  /** How often the holder renews it, and others look for a free lease (default: 3/10 of the lease). */
  renewMs?: number;
}

export class NatsLease implements PlannerLease {
  private readonly bucket: SharedBucket<LeaseValue>;
  private readonly listeners = new Set<() => void>();
  private readonly renewMs: number;
  /** Stop leading this long before the lease could age out on the server (clock rates, the renewal's own trip). */
  private readonly marginMs: number;
  private self: Omit<LeaseValue, "v" | "at"> | undefined;
  /** While leading: the revision of the last write, and when this head must stop without a newer one. */
  private held: { revision: number; epoch: number; deadline: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private busy: Promise<void> = Promise.resolve();
  private closed = false;
  /** A free lease is tried after a random pause, so heads that saw it go at once do not all try together. */
  private notBefore = 0;

  constructor(
    link: NatsLink,
    private readonly timing: LeaseTiming,
    private readonly log: Logger,
  ) {
    this.renewMs = timing.renewMs ?? Math.max(100, Math.round(timing.leaseMs * 0.3));
    this.marginMs = Math.min(1_000, Math.round(timing.leaseMs * 0.1));
    this.bucket = new SharedBucket(link, { name: LEADER_BUCKET, what: "the planner lease", schema: LeaseValue, maxAgeMs: timing.leaseMs }, log);
    // A holder that lets go deletes the key: the others try at once (after their random pause).
    this.bucket.onChange((key, entry) => {
      if (key !== KEY || entry || this.held) return;
      this.notBefore = Date.now() + Math.random() * Math.min(1_000, this.renewMs);
      this.schedule(Math.max(0, this.notBefore - Date.now()));
    });
  }

  get leading(): boolean {
    return this.held !== undefined && Date.now() < this.held.deadline;
  }

  get epoch(): number | undefined {
    return this.leading ? this.held?.epoch : undefined;
  }

  holder(): LeaseValue | undefined {
    return this.bucket.get(KEY)?.value;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(self: Omit<LeaseValue, "v" | "at">): void {
    this.self = self;
    this.schedule(0);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.deadlineTimer);
    await this.busy;
    const held = this.held;
    this.lose("this head is stopping");
    if (held && this.bucket.writable) {
      await this.bucket.delete(KEY, held.revision).catch((error: unknown) => this.log.warn({ err: error }, "could not give the planner lease back; it ages out"));
    }
    await this.bucket.close();
    this.listeners.clear();
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.busy = this.busy.then(() => this.step()).finally(() => this.schedule(this.renewMs));
    }, delayMs);
  }

  /** One round: renew the lease held, or take a free one. */
  private async step(): Promise<void> {
    if (this.closed || !this.self || !this.bucket.ready || !this.bucket.writable) return;
    const value: LeaseValue = { v: 1, ...this.self, at: Date.now() };
    const sentAt = Date.now();
    if (this.held) {
      try {
        const revision = await this.bucket.update(KEY, value, this.held.revision);
        this.held = { ...this.held, revision, deadline: sentAt + this.timing.leaseMs - this.marginMs };
        this.armDeadline();
      } catch (error) {
        if (error instanceof SharedConflict) this.lose("another head took the planner lease");
        // Otherwise NATS is away: lead on until the deadline, which then ends it.
      }
      return;
    }
    // Someone holds it (as far as this head heard within the lease), or it went a moment ago: wait.
    if (this.bucket.get(KEY) || Date.now() < this.notBefore) return;
    try {
      const revision = await this.bucket.create(KEY, value);
      this.held = { revision, epoch: revision, deadline: sentAt + this.timing.leaseMs - this.marginMs };
      this.armDeadline();
      this.log.info({ epoch: revision }, "this head now runs the placement planner");
      this.changed();
    } catch (error) {
      if (!(error instanceof SharedConflict)) return;
      // Held by another head whose value this head has not heard (or not yet forgotten on the server): try later.
    }
  }

  private armDeadline(): void {
    clearTimeout(this.deadlineTimer);
    const held = this.held;
    if (!held) return;
    this.deadlineTimer = setTimeout(() => {
      if (this.held === held) this.lose("could not renew the planner lease in time");
    }, Math.max(0, held.deadline - Date.now()));
  }

  private lose(why: string): void {
    if (!this.held) return;
    this.held = undefined;
    clearTimeout(this.deadlineTimer);
    this.log.warn({ why }, "this head no longer runs the placement planner");
    this.changed();
  }

  private changed(): void {
    for (const listener of [...this.listeners]) listener();
  }
}
