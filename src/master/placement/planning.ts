// Who plans placement, and where placements are kept, as the master needs to know them (docs/scaling.md §6): a head
// on its own always plans and keeps placements in process; with several heads, the holder of the planner lease plans
// (src/heads/planner-lease.ts) and placements live in a shared bucket every head applies.
import { z } from "zod";
import type { SharedMap } from "../../heads/shared-map.js";
import type { Placement } from "./state.js";

export interface Planning {
  /** Whether this head runs the planner now. */
  readonly leading: boolean;
  /** Its fencing epoch while it leads with other heads about; undefined for a head on its own. */
  readonly epoch: number | undefined;
  /** Hears this head starting or stopping to lead. */
  onChange(listener: () => void): () => void;
  /** Not leading: tells the head that plans that requests here wait for `model` (repeated while they wait). */
  wantLoad(model: string): void;
  /** Not leading: asks the head that plans to unload `model` wherever it is idle (Ollama's keep_alive 0). */
  wantUnloadIdle(model: string): void;
  /** Not leading: tells the head that plans how long `model` on `workerName` may stay idle (Ollama's keep_alive). */
  keepAlive(workerName: string, model: string, keepAliveMs: number): void;
}

/** A head on its own: it plans, and nobody else needs telling. */
export const soloPlanning: Planning = {
  leading: true,
  epoch: undefined,
  onChange: () => () => {},
  wantLoad: () => {},
  wantUnloadIdle: () => {},
  keepAlive: () => {},
};

/** The JetStream bucket of placements; they last until deleted. */
export const PLACEMENTS_BUCKET = "coordinator-placements";

/** A placement as stored for every head (version 1), checked on reading: NATS is a trust boundary. */
export const PlacementValue = z.object({
  v: z.literal(1),
  id: z.string().regex(/^placement-[A-Za-z0-9_-]{1,64}$/),
  model: z.string().min(1).max(256),
  replicas: z.number().int().min(1).max(64),
  worker: z.string().min(1).max(128).optional(),
  contextLength: z.number().int().positive().optional(),
  concurrency: z.number().int().positive().max(4096).optional(),
  createdAt: z.number().int().nonnegative(),
  workers: z.array(z.string().min(1).max(128)).max(64),
});
export type PlacementValue = z.infer<typeof PlacementValue>;

export type PlacementStore = SharedMap<PlacementValue>;

export function placementValue(placement: Placement): PlacementValue {
  const { id, model, replicas, worker, contextLength, concurrency, createdAt, workers } = placement;
  return {
    v: 1,
    id,
    model,
    replicas,
    createdAt,
    workers,
    ...(worker !== undefined && { worker }),
    ...(contextLength !== undefined && { contextLength }),
    ...(concurrency !== undefined && { concurrency }),
  };
}

export function placementOf(value: PlacementValue): Placement {
  const { id, model, replicas, worker, contextLength, concurrency, createdAt, workers } = value;
  return { id, model, replicas, worker, contextLength, concurrency, createdAt, workers };
}
