// Which events would stay in one head and which would be shared with the others (docs/scaling.md): every event type
// of the one reducer has a scope, and the compiler checks that none is missing.
import type { ClusterEvent } from "./events.js";

/**
 * - local: this head's own tasks and worker connections (per token, per connection): never leave the process;
 * - observed: what a worker reports about itself, which it sends to every head alike: each applies its own copy;
 * - shared: decisions every head must apply the same (placements, ejections): written to the shared store;
 * - leader: the planner's decisions, made only by the head that holds the planner lease.
 */
export type EventScope = "local" | "observed" | "shared" | "leader";

export const EVENT_SCOPE: Readonly<Record<ClusterEvent["type"], EventScope>> = {
  TaskAdmitted: "local",
  TaskQueued: "local",
  TaskAssigned: "local",
  TaskProgressed: "local",
  TaskChunk: "local",
  TaskEmbedded: "local",
  TaskConsumed: "local",
  TaskReasoning: "local",
  SlotReleased: "local",
  TaskRefused: "local",
  TaskStopping: "local",
  StopSettled: "local",
  TaskFinishedOn: "local",
  TaskEnded: "local",
  WorkerRegistered: "local",
  WorkerRemoved: "local",
  WorkerDraining: "observed",
  WorkerReported: "observed",
  WorkerHealth: "local",
  WorkerEjectionShared: "shared",
  WorkerJoined: "observed",
  WorkerLeft: "local",
  LibraryReported: "observed",
  StatusReported: "observed",
  PullReported: "observed",
  PullStarted: "local",
  ModelUsed: "local",
  LoadStarted: "leader",
  UnloadStarted: "leader",
  Pinned: "leader",
  PlacementCreated: "shared",
  PlacementDeleted: "shared",
};
