// Client API keys: when any are configured, guarded routes need `Authorization: Bearer <key>` (OpenAI's scheme) or
// `x-api-key: <key>` (Anthropic's); refusals come in the route's dialect.
import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { InvalidRequestError } from "./errors.js";
import { routeErrorResponse } from "./route-errors.js";

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** Checks the bearer key against every configured key in constant time; open when no keys are configured. */
export function apiKeyGuard(keys: readonly string[]): MiddlewareHandler {
  const digests = keys.map(digest);
  return async (c, next) => {
    if (digests.length === 0) return next();
    const header = c.req.header("authorization") ?? "";
    const bearer = /^Bearer\s+(.+)$/i.exec(header.trim())?.[1];
    const key = bearer ?? c.req.header("x-api-key")?.trim();
    if (!key) {
      return routeErrorResponse(
        c,
        new InvalidRequestError(
          "You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY' or in the x-api-key header.",
          null,
          "missing_api_key",
          401,
        ),
      );
    }
    const given = digest(key);
    let ok = false;
    for (const key of digests) ok = timingSafeEqual(given, key) || ok;
    if (!ok) {
      return routeErrorResponse(c, new InvalidRequestError("Incorrect API key provided.", null, "invalid_api_key", 401));
    }
    return next();
  };
}
