// What one head writes about itself in the `coordinator-heads` bucket: the value's schema and its lifetimes.
import { z } from "zod";

/** The JetStream key-value bucket of heads (docs/scaling.md §2). */
export const HEADS_BUCKET = "coordinator-heads";
/**
 * The bucket's max age: an entry not refreshed for this long is gone. nats-server 2.9 honours only a bucket-wide
 * age (per-key TTLs came with 2.11) and says nothing when an entry ages out, so readers also forget an entry this
 * long after they received it.
 */
export const HEAD_ENTRY_MAX_AGE_MS = 15_000;
/** How often a head rewrites its entry: three times within the max age, so one lost write forgets nobody. */
export const HEAD_REFRESH_MS = 5_000;

/** One head's entry, version 1. NATS is a trust boundary: every value read is parsed with this. */
export const HeadEntry = z.object({
  v: z.literal(1),
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  name: z.string().min(1).max(128),
  url: z.string().max(2048),
  /** When the head started, ms since the epoch. */
  startedAt: z.number().int().nonnegative(),
  /** Its tasks in flight (queued or running). */
  inflight: z.number().int().nonnegative(),
  /** Of those, the ones waiting in a queue (absent from heads of an earlier release). */
  queued: z.number().int().nonnegative().optional(),
  /** Workers connected to it. */
  workers: z.number().int().nonnegative(),
  /** When it wrote this entry, by its own clock. */
  at: z.number().int().nonnegative(),
});
export type HeadEntry = z.infer<typeof HeadEntry>;
