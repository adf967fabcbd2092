// What one head writes in the `coordinator-cache` bucket about one worker of one model: the block hashes of the
// prompts it routed there (docs/scaling.md §7, "Cache summaries"). The value's schema, its key and its lifetimes.
import { z } from "zod";
import { encodeKey } from "../../heads/shared-map.js";
import { parseHash } from "./block-hashes.js";

/** The JetStream key-value bucket of cache summaries (docs/scaling.md §2). */
export const CACHE_BUCKET = "coordinator-cache";
/**
 * The bucket's max age: a summary not written again for this long is gone (its head routed nothing new to that
 * worker meanwhile, or is gone itself). Readers also forget it this long after they received it.
 */
export const CACHE_SUMMARY_MAX_AGE_MS = 60_000;
/** How often, at most, a head writes the summaries that changed. */
export const CACHE_PUBLISH_MS = 5_000;
/** Block hashes a head keeps, and writes, per (model, worker): the least recently used go first. */
export const MAX_BLOCK_HASHES = 4_096;

/** A block hash as written: base 36, below 2^53 (see block-hashes.ts). */
const BlockHash = z.string().refine((text) => parseHash(text) !== undefined, "not a block hash");

/** One head's summary of one worker, version 1. NATS is a trust boundary: every value read is parsed with this. */
export const CacheSummary = z.object({
  v: z.literal(1),
  model: z.string().min(1).max(256),
  /** The worker's name: its identity across heads (connection ids are per head). */
  worker: z.string().min(1).max(128),
  /** The id of the head that wrote it. */
  head: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  /** Characters per block: hashes of another block size mean nothing to a reader, which ignores them. */
  block: z.number().int().positive(),
  hashes: z.array(BlockHash).max(MAX_BLOCK_HASHES),
});
export type CacheSummary = z.infer<typeof CacheSummary>;

/** `MODEL.WORKER.HEADID`, model and worker encoded as KV keys allow. */
export function summaryKey(model: string, worker: string, head: string): string {
  return `${encodeKey(model)}.${encodeKey(worker)}.${head}`;
}
