// Per-request context: the request id (the client's X-Request-Id, else a new one, echoed in the response), a
// logger that stamps it on every line, and the request count by route, model and status.
import { randomUUID } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import type { Logger } from "../log.js";
import type { CoordinatorMetrics } from "../metrics/metrics.js";

declare module "hono" {
  interface ContextVariableMap {
    requestId: string;
    log: Logger;
    /** The model a request asked for, once known (a label for the request count). */
    model: string;
    /** Set when the route logs its own completion line (the chat route), so no access line is added. */
    requestLogged: boolean;
  }
}

export const REQUEST_ID_HEADER = "X-Request-Id";

/** A client's id is used as is only when it is short and plain: it lands in logs and headers. */
const acceptableId = /^[A-Za-z0-9._:-]{1,128}$/;

export interface RequestContextOptions {
  log: Logger;
  metrics?: CoordinatorMetrics | undefined;
}

export function requestContext(options: RequestContextOptions): MiddlewareHandler {
  return async (c, next) => {
    const startedAt = Date.now();
    const given = c.req.header(REQUEST_ID_HEADER);
    const requestId = given && acceptableId.test(given) ? given : randomUUID();
    const log = options.log.child({ requestId });
    c.set("requestId", requestId);
    c.set("log", log);
    await next();
    c.res.headers.set(REQUEST_ID_HEADER, requestId);
    const route = routeLabel(c);
    const status = c.res.status;
    options.metrics?.httpRequest(route, c.get("model"), status);
    if (!c.get("requestLogged")) {
      log.debug({ method: c.req.method, route, status, durationMs: Date.now() - startedAt }, "request");
    }
  };
}

/** The request's id; a fresh one when the request-context middleware did not run (a handler mounted alone). */
export function requestIdOf(c: Context): string {
  return (c.get("requestId") as string | undefined) ?? randomUUID();
}

/** The request's logger (with its request id); `fallback` when the middleware did not run. */
export function requestLogOf(c: Context, fallback: Logger): Logger {
  return (c.get("log") as Logger | undefined) ?? fallback;
}

/** The route pattern that answered (`/v1/models/:id`), not the path, so the label set stays bounded. */
function routeLabel(c: Context): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const route = routes[i];
    if (route && route.method !== "ALL") return route.path;
  }
  return "unmatched";
}
