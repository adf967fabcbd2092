// Which dialect's error shape a route answers in, for answers made before a route's own handler runs (auth, body
// checks, unknown routes): Anthropic's under /v1/messages, Ollama's under /api, OpenAI's everywhere else.
import type { Context } from "hono";
import { anthropicErrorResponse } from "./anthropic-errors.js";
import { describeError, errorResponse } from "./errors.js";

export function isAnthropicPath(path: string): boolean {
  return path === "/v1/messages" || path.startsWith("/v1/messages/");
}

export function isOllamaPath(path: string): boolean {
  return path === "/api" || path.startsWith("/api/");
}

/** `error` in Ollama's shape, `{"error": "message"}`, with its status (and headers such as Retry-After). */
export function ollamaErrorResponse(error: unknown): Response {
  const { status, message, headers } = describeError(error);
  return Response.json({ error: message }, { status, headers });
}

/** `error` as the response of the route `c` asked for. */
export function routeErrorResponse(c: Context, error: unknown): Response {
  if (isAnthropicPath(c.req.path)) return anthropicErrorResponse(error);
  return isOllamaPath(c.req.path) ? ollamaErrorResponse(error) : errorResponse(error);
}
