// What heads share about workers and worker addresses in the `coordinator-worker-health` bucket (docs/scaling.md
// §2, §7): a worker's ejection, under its name, and an address's wrong-token ban. The value says when each ends.
import { z } from "zod";
import { encodeKey } from "./shared-map.js";

/** The JetStream key-value bucket of ejections and bans. */
export const WORKER_HEALTH_BUCKET = "coordinator-worker-health";
/**
 * The bucket's max age. A record holds its own end (`until`); this only collects records nobody deleted (a head that
 * wrote one and died), long after any ejection (5 min at most by default) or ban (1 min) is over.
 */
export const HEALTH_RECORD_MAX_AGE_MS = 60 * 60_000;

const until = z.number().int().nonnegative();
/** The head that wrote the record (HeadSelf.id). */
const by = z.string().min(1).max(64);

/** A worker, by name (its connection ids are per head), is out of rotation on every head until `until` (ms epoch). */
export const EjectionRecord = z.object({
  v: z.literal(1),
  kind: z.literal("eject"),
  worker: z.string().min(1).max(256),
  until,
  /** Ejections in a row: how long the next one lasts. */
  ejections: z.number().int().positive().max(1_000_000),
  by,
});
export type EjectionRecord = z.infer<typeof EjectionRecord>;

/** An address (as addressKey counts it) whose worker connections every head turns away until `until` (ms epoch). */
export const BanRecord = z.object({
  v: z.literal(1),
  kind: z.literal("ban"),
  address: z.string().min(1).max(64),
  until,
  failures: z.number().int().positive(),
  by,
});
export type BanRecord = z.infer<typeof BanRecord>;

/** One value of the bucket, version 1. NATS is a trust boundary: every value read is parsed with this. */
export const HealthRecord = z.discriminatedUnion("kind", [EjectionRecord, BanRecord]);
export type HealthRecord = z.infer<typeof HealthRecord>;

export function ejectionKey(worker: string): string {
  return `eject.${encodeKey(worker)}`;
}

export function banKey(address: string): string {
  return `ban.${encodeKey(address)}`;
}
