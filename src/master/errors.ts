// The errors the master raises, as typed values; the API maps each to a status and an OpenAI error body in one place.

export abstract class CoordinatorError extends Error {
  abstract readonly kind: string;
}

export class ModelNotFoundError extends CoordinatorError {
  readonly kind = "model_not_found";
  constructor(readonly model: string) {
    super(`The model '${model}' does not exist or is not served by any connected worker.`);
  }
}

export class QueueFullError extends CoordinatorError {
  readonly kind = "queue_full";
  constructor(
    readonly model: string,
    readonly retryAfterSeconds: number,
  ) {
    super(`Too many requests are waiting for model '${model}'. Please retry after ${retryAfterSeconds} s.`);
  }
}

export class QueueTimeoutError extends CoordinatorError {
  readonly kind = "queue_timeout";
  constructor(
    readonly model: string,
    waitedMs: number,
    readonly anyWorkerServes: boolean,
  ) {
    super(
      anyWorkerServes
        ? `No worker serving '${model}' had capacity within ${Math.round(waitedMs / 1000)} s.`
        : `No worker serving '${model}' is connected.`,
    );
  }
}

/** The worker running the task went away or failed before the task could finish. */
export class WorkerLostError extends CoordinatorError {
  readonly kind = "worker_lost";
  constructor(message = "The worker running this request disconnected.") {
    super(message);
  }
}

/** Engine error codes that say the request itself was at fault (the client sees a 400), not the worker. */
const clientEngineCodes = new Set(["context_length_exceeded", "invalid_request"]);

/** The worker's engine reported a failure. */
export class EngineError extends CoordinatorError {
  readonly kind = "engine_error";
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }

  /** Whether the client's request caused it (so it says nothing about the worker's health). */
  get isClientError(): boolean {
    return this.code !== undefined && clientEngineCodes.has(this.code);
  }
}

/** The worker running the task stopped making progress (it heartbeats, but the task is silent). */
export class WorkerStalledError extends CoordinatorError {
  readonly kind = "worker_stalled";
  constructor(silentMs: number) {
    super(`The worker running this request made no progress for ${Math.round(silentMs / 1000)} s; the coordinator gave up on it.`);
  }
}

/** A non-streamed reply grew past the coordinator's limit (`--max-reply-bytes`). */
export class ReplyTooLargeError extends CoordinatorError {
  readonly kind = "reply_too_large";
  constructor(limit: number, advice = "Ask for a streamed reply (stream: true) or a lower max_tokens.") {
    super(`The reply grew past ${limit} bytes, the most the coordinator holds for a non-streamed reply. ${advice}`);
  }
}

/** The coordinator already holds as many requests as it may (`--max-streams`). */
export class OverloadedError extends CoordinatorError {
  readonly kind = "overloaded";
  readonly retryAfterSeconds = 1;
  constructor(limit: number) {
    super(`The coordinator is at its limit of ${limit} requests in flight. Please retry shortly.`);
  }
}

/** The coordinator is shutting down or draining and takes no new work. */
export class UnavailableError extends CoordinatorError {
  readonly kind = "unavailable";
}

/** A worker broke the protocol; its connection is closed with a protocol error. */
export class ProtocolViolation extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A model the request needs could not be loaded: no worker has the memory, or the worker's load failed. */
export class ModelLoadFailedError extends CoordinatorError {
  readonly kind = "model_load_failed";
  constructor(
    readonly model: string,
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** An admin action cannot be carried out as asked (no such placement, not enough memory, an unknown worker). */
export class PlacementError extends CoordinatorError {
  readonly kind = "placement_error";
  constructor(
    message: string,
    readonly status: 400 | 404 | 409,
  ) {
    super(message);
  }
}

/**
 * A placement change cannot be decided now: no head is known to run the planner (a handover, or NATS is away), or
 * the one that does could not be reached (docs/scaling.md §6).
 */
export class PlannerUnavailableError extends CoordinatorError {
  readonly kind = "planner_unavailable";
}
