// Which dialect's error shape a route answers in, for answers made before a route's own handler runs (auth, body
// checks, unknown routes): Anthropic's under /v1/messages, OpenAI's everywhere else.
import type { Context } from "hono";
import { anthropicErrorResponse } from "./anthropic-errors.js";
import { errorResponse } from "./errors.js";

export function isAnthropicPath(path: string): boolean {
  return path === "/v1/messages" || path.startsWith("/v1/messages/");
}

/** `error` as the response of the route `c` asked for. */
export function routeErrorResponse(c: Context, error: unknown): Response {
  return isAnthropicPath(c.req.path) ? anthropicErrorResponse(error) : errorResponse(error);
}
