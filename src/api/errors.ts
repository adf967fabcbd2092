// Errors as clients see them: one description (status, type, code, param) per error value, and OpenAI's body built from it.
import {
  CoordinatorError,
  EngineError,
  ModelLoadFailedError,
  ModelNotFoundError,
  OverloadedError,
  PlacementError,
  PlannerUnavailableError,
  QueueFullError,
  QueueTimeoutError,
  ReplyTooLargeError,
  UnavailableError,
  WorkerLostError,
  WorkerStalledError,
} from "../master/errors.js";
import { SharedUnavailable } from "../heads/shared-map.js";

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** The client sent something we cannot accept; `param` names the offending field. */
export class InvalidRequestError extends Error {
  constructor(
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly status: 400 | 401 | 403 | 404 | 405 | 409 | 413 | 415 = 400,
  ) {
    super(message);
  }
}

/** The route cannot be served now, for a reason that passes (shared state not read yet): 503 with `code`. */
export class ServiceUnavailableError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/**
 * An error as every dialect needs it: its HTTP status, a type (OpenAI's names: `invalid_request_error`,
 * `authentication_error`, `rate_limit_error`, `server_error`), a code, the parameter at fault and headers. Each
 * dialect builds its own body from it (OpenAI's below).
 */
export interface ErrorDescription {
  status: number;
  type: string;
  message: string;
  param: string | null;
  code: string | null;
  headers?: Record<string, string>;
}

export interface MappedError {
  status: number;
  body: OpenAIErrorBody;
  headers?: Record<string, string>;
}

function described(message: string, type: string, param: string | null, code: string | null) {
  return { message, type, param, code };
}

/** An error in OpenAI's shape, `{"error":{"message","type","param","code"}}`, with its status. */
export function mapError(error: unknown): MappedError {
  const { status, headers, ...fields } = describeError(error);
  const mapped: MappedError = { status, body: { error: fields } };
  if (headers) mapped.headers = headers;
  return mapped;
}

/** What a client is told about `error`, in no dialect's shape. */
export function describeError(error: unknown): ErrorDescription {
  if (error instanceof InvalidRequestError) {
    const type = error.status === 401 ? "authentication_error" : error.status === 403 ? "permission_error" : "invalid_request_error";
    return { status: error.status, ...described(error.message, type, error.param, error.code) };
  }
  if (error instanceof ServiceUnavailableError) {
    return { status: 503, ...described(error.message, "server_error", null, error.code) };
  }
  if (error instanceof SharedUnavailable) {
    // A write to state every head shares, while NATS is away: nothing was written; the same request works once it returns.
    return { status: 503, ...described(`${error.message}; try again once it is back.`, "server_error", null, "nats_unavailable") };
  }
  if (error instanceof ModelNotFoundError) {
    return { status: 404, ...described(error.message, "invalid_request_error", "model", "model_not_found") };
  }
  if (error instanceof QueueFullError) {
    return {
      status: 429,
      ...described(error.message, "rate_limit_error", null, "queue_full"),
      headers: { "Retry-After": String(error.retryAfterSeconds) },
    };
  }
  if (error instanceof OverloadedError) {
    return {
      status: 429,
      ...described(error.message, "rate_limit_error", null, "overloaded"),
      headers: { "Retry-After": String(error.retryAfterSeconds) },
    };
  }
  if (error instanceof QueueTimeoutError) {
    const code = error.anyWorkerServes ? "queue_timeout" : "no_worker_available";
    return { status: 503, ...described(error.message, "server_error", null, code) };
  }
  if (error instanceof UnavailableError) {
    return { status: 503, ...described(error.message, "server_error", null, "service_unavailable") };
  }
  if (error instanceof WorkerLostError) {
    return { status: 502, ...described(error.message, "server_error", null, "worker_lost") };
  }
  if (error instanceof WorkerStalledError) {
    return { status: 504, ...described(error.message, "server_error", null, "worker_stalled") };
  }
  if (error instanceof ReplyTooLargeError) {
    return { status: 502, ...described(error.message, "server_error", null, "reply_too_large") };
  }
  if (error instanceof EngineError) {
    if (error.isClientError) {
      return { status: 400, ...described(error.message, "invalid_request_error", "messages", error.code ?? null) };
    }
    return { status: 502, ...described(error.message, "server_error", null, error.code ?? "engine_error") };
  }
  if (error instanceof ModelLoadFailedError) {
    return { status: 503, ...described(error.message, "server_error", "model", "model_load_failed") };
  }
  if (error instanceof PlacementError) {
    const type = error.status === 404 ? "not_found_error" : "invalid_request_error";
    return { status: error.status, ...described(error.message, type, null, error.status === 409 ? "placement_conflict" : "invalid_placement") };
  }
  if (error instanceof PlannerUnavailableError) {
    return { status: 503, ...described(error.message, "server_error", null, "planner_unavailable") };
  }
  if (error instanceof CoordinatorError) {
    return { status: 500, ...described(error.message, "server_error", null, error.kind) };
  }
  // A bug of ours: say so without a stack trace or internal detail.
  return { status: 500, ...described("The coordinator hit an internal error.", "server_error", null, "internal_error") };
}

export function errorResponse(error: unknown): Response {
  const mapped = mapError(error);
  return Response.json(mapped.body, { status: mapped.status, headers: mapped.headers });
}
