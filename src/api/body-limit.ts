// Refuses request bodies over the size limit. A body that declares its length is judged by the header alone, read
// from Node's request when there is one: Hono's bodyLimit asks for `req.raw.body` first, which makes
// @hono/node-server build a whole web Request and stream for every call (a tenth of a short completion's CPU).
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { incomingHeader } from "./incoming-header.js";

export interface BodyLimitOptions {
  maxBytes: number;
  onTooLarge: (c: Context) => Response;
}

export function limitBodySize(options: BodyLimitOptions): MiddlewareHandler {
  // Chunked bodies (no declared length) are counted while read, by Hono's middleware.
  const counting = bodyLimit({ maxSize: options.maxBytes, onError: options.onTooLarge });
  return async (c, next) => {
    const method = c.req.method;
    if (method === "GET" || method === "HEAD" || method === "OPTIONS") return next();
    const length = declaredLength(c);
    if (length === undefined) return counting(c, next);
    return length > options.maxBytes ? options.onTooLarge(c) : next();
  };
}

/** The body's length from Content-Length, when the request has one and is not chunked. */
function declaredLength(c: Context): number | undefined {
  const length = incomingHeader(c, "content-length");
  if (length === undefined || incomingHeader(c, "transfer-encoding") !== undefined) return undefined;
  const bytes = Number(length);
  return Number.isSafeInteger(bytes) && bytes >= 0 ? bytes : undefined;
}
