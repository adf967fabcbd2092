// How the models a worker serves are used, over all its heads: the tasks of each running now, and since when each has
// been idle. Heartbeat `models` carries it, so that a planner never judges idle a model another head's task is using.
import type { ModelUsage } from "../worker-protocol/index.js";

/** Heartbeat `models` holds at most this many entries. */
const MAX_REPORTED_MODELS = 256;

export class ModelUse {
  /** When each served model last became idle: its last task ended, or it was loaded. */
  private readonly idleSince = new Map<string, number>();

  constructor(
    /** Tasks of the model running on the worker now, whichever head assigned them. */
    readonly running: (model: string) => number,
  ) {}

  /** The model is served from now on: idle since now until a task of it runs. */
  loaded(model: string, at = Date.now()): void {
    this.idleSince.set(model, at);
  }

  /** A task of the model ended (finished, failed or stopped). */
  ended(model: string, at = Date.now()): void {
    if (this.idleSince.has(model)) this.idleSince.set(model, at);
  }

  /** The model is no longer served. */
  forget(model: string): void {
    this.idleSince.delete(model);
  }

  /** Heartbeat `models`: each served model's running tasks, and how long it has been idle (0 while one runs). */
  report(now = Date.now()): ModelUsage[] {
    return [...this.idleSince].slice(0, MAX_REPORTED_MODELS).map(([id, since]) => {
      const running = this.running(id);
      return { id, running, idleMs: running > 0 ? 0 : Math.max(0, Math.round(now - since)) };
    });
  }
}
