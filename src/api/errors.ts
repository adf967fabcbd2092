// OpenAI-shaped errors: one mapping from our error values to an HTTP status and an `{"error":{…}}` body.
import {
  CoordinatorError,
  EngineError,
  ModelNotFoundError,
  OverloadedError,
  QueueFullError,
  QueueTimeoutError,
  ReplyTooLargeError,
  UnavailableError,
  WorkerLostError,
  WorkerStalledError,
} from "../master/errors.js";

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** The client sent something we cannot accept; `param` names the offending field. */
export class InvalidRequestError extends Error {
  constructor(
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly status: 400 | 401 | 404 | 405 | 413 | 415 = 400,
  ) {
    super(message);
  }
}

export interface MappedError {
  status: number;
  body: OpenAIErrorBody;
  headers?: Record<string, string>;
}

function body(message: string, type: string, param: string | null, code: string | null): OpenAIErrorBody {
  return { error: { message, type, param, code } };
}

export function mapError(error: unknown): MappedError {
  if (error instanceof InvalidRequestError) {
    const type = error.status === 401 ? "authentication_error" : "invalid_request_error";
    return { status: error.status, body: body(error.message, type, error.param, error.code) };
  }
  if (error instanceof ModelNotFoundError) {
    return { status: 404, body: body(error.message, "invalid_request_error", "model", "model_not_found") };
  }
  if (error instanceof QueueFullError) {
    return {
      status: 429,
      body: body(error.message, "rate_limit_error", null, "queue_full"),
      headers: { "Retry-After": String(error.retryAfterSeconds) },
    };
  }
  if (error instanceof OverloadedError) {
    return {
      status: 429,
      body: body(error.message, "rate_limit_error", null, "overloaded"),
      headers: { "Retry-After": String(error.retryAfterSeconds) },
    };
  }
  if (error instanceof QueueTimeoutError) {
    const code = error.anyWorkerServes ? "queue_timeout" : "no_worker_available";
    return { status: 503, body: body(error.message, "server_error", null, code) };
  }
  if (error instanceof UnavailableError) {
    return { status: 503, body: body(error.message, "server_error", null, "service_unavailable") };
  }
  if (error instanceof WorkerLostError) {
    return { status: 502, body: body(error.message, "server_error", null, "worker_lost") };
  }
  if (error instanceof WorkerStalledError) {
    return { status: 504, body: body(error.message, "server_error", null, "worker_stalled") };
  }
  if (error instanceof ReplyTooLargeError) {
    return { status: 502, body: body(error.message, "server_error", null, "reply_too_large") };
  }
  if (error instanceof EngineError) {
    if (error.isClientError) {
      return { status: 400, body: body(error.message, "invalid_request_error", "messages", error.code ?? null) };
    }
    return { status: 502, body: body(error.message, "server_error", null, error.code ?? "engine_error") };
  }
  if (error instanceof CoordinatorError) {
    return { status: 500, body: body(error.message, "server_error", null, error.kind) };
  }
  // A bug of ours: say so without a stack trace or internal detail.
  return { status: 500, body: body("The coordinator hit an internal error.", "server_error", null, "internal_error") };
}

export function errorResponse(error: unknown): Response {
  const mapped = mapError(error);
  return Response.json(mapped.body, { status: mapped.status, headers: mapped.headers });
}
