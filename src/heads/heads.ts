// The heads of a cluster as the API and metrics see them: this head first, then those it knows through NATS.
import { randomBytes } from "node:crypto";

/** This head's link to NATS: `off` without `--nats`; else whether the client is connected now. */
export type NatsState = "off" | "connected" | "disconnected";

/** What this head says about itself; the counts are read each time they are shown or written. */
export interface HeadSelf {
  /** Random per process, so a restarted head never collides with its own stale entry. */
  readonly id: string;
  readonly name: string;
  readonly startedAt: number;
  inflight(): number;
  /** Of those in flight, the ones waiting in a queue. */
  queued(): number;
  workers(): number;
  /** The id of the head that runs the placement planner, as this one knows it. */
  planner(): string | undefined;
}

/** One head in `/v1/cluster`. */
export interface HeadView {
  id: string;
  name: string;
  url: string;
  self: boolean;
  /** This head's NATS state; null for another head (whose own view of NATS this head does not know). */
  nats: NatsState | null;
  inflight: number;
  queued: number;
  workers: number;
  startedAt: string;
  /** When this head last heard of it (now, for itself). */
  lastSeenAt: string;
  /** Whether it runs the placement planner (holds the lease), as this head knows it. */
  planner: boolean;
}

export interface Heads {
  readonly nats: NatsState;
  /** Starts telling the other heads about this one, reachable at `url`; without NATS there is nobody to tell. */
  start(url: string): void;
  /** This head first, then the others it knows, by name. */
  list(): HeadView[];
  /** Calls `listener` when a head joins, leaves or moves (workers that join every head are told); returns how to stop. */
  onChange(listener: () => void): () => void;
  /** Says goodbye (its entry deleted) and lets go of every connection and timer. */
  close(): Promise<void>;
}

export function newHeadId(): string {
  return randomBytes(8).toString("hex");
}

export function selfView(self: HeadSelf, url: string, nats: NatsState, now = Date.now()): HeadView {
  return {
    id: self.id,
    name: self.name,
    url,
    self: true,
    nats,
    inflight: self.inflight(),
    queued: self.queued(),
    workers: self.workers(),
    startedAt: new Date(self.startedAt).toISOString(),
    lastSeenAt: new Date(now).toISOString(),
    planner: self.planner() === self.id,
  };
}

/** A head without `--nats`: the only one it knows is itself. */
export class LoneHead implements Heads {
  readonly nats = "off";
  private url = "";

  constructor(private readonly self: HeadSelf) {}

  start(url: string): void {
    this.url = url;
  }

  list(): HeadView[] {
    return [selfView(this.self, this.url, this.nats)];
  }

  onChange(): () => void {
    return () => {};
  }

  async close(): Promise<void> {}
}
