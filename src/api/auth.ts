// Client API keys: when any are configured, guarded routes need `Authorization: Bearer <key>` (OpenAI's scheme) or
// `x-api-key: <key>` (Anthropic's); refusals come in the route's dialect.
import { createHash, timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { InvalidRequestError } from "./errors.js";
import { routeErrorResponse } from "./route-errors.js";

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** The key a request presents, if any. */
function presentedKey(c: Context): string | undefined {
  const header = c.req.header("authorization") ?? "";
  const bearer = /^Bearer\s+(.+)$/i.exec(header.trim())?.[1];
  return bearer ?? c.req.header("x-api-key")?.trim();
}

/** Whether `key` is one of `digests`, compared in constant time against each. */
function isOneOf(key: string, digests: readonly Buffer[]): boolean {
  const given = digest(key);
  let ok = false;
  for (const known of digests) ok = timingSafeEqual(given, known) || ok;
  return ok;
}

/**
 * Admin routes (placements, model pulls): only admin keys pass once any is configured. With client keys but no admin
 * key, admin actions are off (403): a client key never places models. With no key at all the coordinator is open.
 */
export function adminKeyGuard(adminKeys: readonly string[], clientKeysConfigured: boolean): MiddlewareHandler {
  const digests = adminKeys.map(digest);
  return async (c, next) => {
    if (digests.length === 0 && !clientKeysConfigured) return next();
    const key = presentedKey(c);
    if (digests.length > 0 && key !== undefined && isOneOf(key, digests)) return next();
    // Two codes, so that a client (the dashboard) asks for an admin key only when one could work.
    if (digests.length === 0) {
      const message = "Admin actions are off: this coordinator has client API keys but no admin key (start it with --admin-key).";
      return routeErrorResponse(c, new InvalidRequestError(message, null, "admin_disabled", 403));
    }
    const message = "This route needs an admin key (--admin-key); client API keys may call the inference routes only.";
    return routeErrorResponse(c, new InvalidRequestError(message, null, "admin_key_required", 403));
  };
}

/** Checks the bearer key against every configured key in constant time; open when no keys are configured. */
export function apiKeyGuard(keys: readonly string[]): MiddlewareHandler {
  const digests = keys.map(digest);
  return async (c, next) => {
    if (digests.length === 0) return next();
    const key = presentedKey(c);
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
    if (!isOneOf(key, digests)) {
      return routeErrorResponse(c, new InvalidRequestError("Incorrect API key provided.", null, "invalid_api_key", 401));
    }
    return next();
  };
}
