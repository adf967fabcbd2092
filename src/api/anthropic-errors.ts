// Errors in Anthropic's shape, `{"type":"error","error":{"type","message"}}`, built from the one error description.
import { describeError, type ErrorDescription } from "./errors.js";

export interface AnthropicErrorBody {
  type: "error";
  error: { type: string; message: string };
}

/** Anthropic's error type for a status (its documented names); our status is kept, so retries behave the same. */
function anthropicType(described: ErrorDescription): string {
  if (described.code === "overloaded") return "overloaded_error";
  switch (described.status) {
    case 400:
    case 405:
    case 415:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 504:
      return "timeout_error";
    default:
      return "api_error";
  }
}

/** The body of `error` in Anthropic's shape (also the data of a stream's `event: error`). */
export function anthropicErrorBody(error: unknown): { status: number; body: AnthropicErrorBody; headers?: Record<string, string> } {
  const described = describeError(error);
  const mapped: { status: number; body: AnthropicErrorBody; headers?: Record<string, string> } = {
    status: described.status,
    body: { type: "error", error: { type: anthropicType(described), message: described.message } },
  };
  if (described.headers) mapped.headers = described.headers;
  return mapped;
}

export function anthropicErrorResponse(error: unknown): Response {
  const mapped = anthropicErrorBody(error);
  return Response.json(mapped.body, { status: mapped.status, headers: mapped.headers });
}
