// Client API keys: when any exists, guarded routes need `Authorization: Bearer <key>` (OpenAI's scheme) or
// `x-api-key: <key>` (Anthropic's); refusals come in the route's dialect. Which keys exist is the key ring's.
import type { Context, MiddlewareHandler } from "hono";
import { InvalidRequestError, ServiceUnavailableError } from "./errors.js";
import type { KeyRing } from "./key-ring.js";
import { routeErrorResponse } from "./route-errors.js";

/** The key a request presents, if any. */
function presentedKey(c: Context): string | undefined {
  const header = c.req.header("authorization") ?? "";
  const bearer = /^Bearer\s+(.+)$/i.exec(header.trim())?.[1];
  return bearer ?? c.req.header("x-api-key")?.trim();
}

/**
 * Until a head with --nats has read the keys every head shares, it cannot tell whether it is open: answering as if
 * it were would open an API the cluster meant to close (docs/scaling.md §7).
 */
function keysUnavailable(c: Context): Response {
  const message = "This coordinator has not read the API keys shared through NATS yet; try again shortly.";
  return routeErrorResponse(c, new ServiceUnavailableError(message, "keys_unavailable"));
}

/**
 * Admin routes (placements, model pulls, keys): only admin keys pass once any key exists. With client keys but no
 * admin key, admin actions are off (403): a client key never places models. With no key at all the coordinator is
 * open. Runs after apiKeyGuard, which has refused missing and unknown keys.
 */
export function adminKeyGuard(keys: KeyRing): MiddlewareHandler {
  return async (c, next) => {
    if (!keys.ready) return keysUnavailable(c);
    if (keys.open) return next();
    const key = presentedKey(c);
    if (key !== undefined && keys.kindOf(key) === "admin") return next();
    // Two codes, so that a client (the dashboard) asks for an admin key only when one could work.
    if (!keys.hasAdmin) {
      const message = "Admin actions are off: this coordinator has client API keys but no admin key (start it with --admin-key).";
      return routeErrorResponse(c, new InvalidRequestError(message, null, "admin_disabled", 403));
    }
    const message = "This route needs an admin key (--admin-key); client API keys may call the inference routes only.";
    return routeErrorResponse(c, new InvalidRequestError(message, null, "admin_key_required", 403));
  };
}

/** Checks the bearer key against every client and admin key; open when there is no key at all (checked per request). */
export function apiKeyGuard(keys: KeyRing): MiddlewareHandler {
  return async (c, next) => {
    if (!keys.ready) return keysUnavailable(c);
    if (keys.open) return next();
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
    if (keys.kindOf(key) === undefined) {
      return routeErrorResponse(c, new InvalidRequestError("Incorrect API key provided.", null, "invalid_api_key", 401));
    }
    return next();
  };
}
