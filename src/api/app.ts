// The HTTP application: every route, and answers in the route's dialect for unknown routes and unexpected errors.
import { type Context, Hono } from "hono";
import { cors } from "hono/cors";
import type { Heads } from "../heads/heads.js";
import type { LeaderAsk } from "../heads/leader-channel.js";
import type { Logger } from "../log.js";
import type { Master } from "../master/master.js";
import type { ClusterActivity } from "../metrics/activity.js";
import type { CoordinatorMetrics } from "../metrics/metrics.js";
import { adminKeyGuard, apiKeyGuard } from "./auth.js";
import { placementRoutes, pullHandler, pullsHandler, unloadHandler } from "./placements.js";
import { limitBodySize } from "./body-limit.js";
import { chatCompletionsHandler } from "./chat-completions.js";
import type { TaskRouteOptions } from "./task-route.js";
import { clusterRoutes } from "./cluster.js";
import { completionsHandler } from "./completions.js";
import { embeddingsHandler } from "./embeddings.js";
import { clusterEventsHandler } from "./cluster-events.js";
import { dashboardRoutes } from "./dashboard-route.js";
import { InvalidRequestError } from "./errors.js";
import { healthRoutes } from "./health.js";
import { requireJsonBody } from "./json-body.js";
import type { KeyRing } from "./key-ring.js";
import { keyRoutes } from "./keys.js";
import { countTokensHandler, messagesHandler } from "./messages.js";
import { metricsHandler } from "./metrics-route.js";
import { modelsRoutes } from "./models.js";
import { ollamaProbe, ollamaRoutes } from "./ollama.js";
import { requestContext, requestLogOf } from "./request-context.js";
import { responsesHandler } from "./responses.js";
import { routeErrorResponse } from "./route-errors.js";

export interface ApiOptions extends TaskRouteOptions {
  log: Logger;
  /** Client and admin keys, from flags, files and run time; none at all: the API is open. See adminKeyGuard. */
  keys: KeyRing;
  maxBodyBytes: number;
  metrics: CoordinatorMetrics;
  /** Live tasks and token rates for the dashboard's feed. */
  activity: ClusterActivity;
  /** Aborted when the coordinator closes (long-lived feeds end then). */
  closing: AbortSignal;
  /** How often the dashboard's live feed sends a view of the cluster. */
  feedIntervalMs: number;
  /** This head and the others it knows (through NATS, with --nats). */
  heads: Heads;
  /** With other heads: asks the one that runs the planner (placement changes sent here are forwarded to it). */
  leader?: LeaderAsk;
}

/**
 * Refuses a request that a web page of another origin made (its Origin is neither this host nor a configured CORS
 * origin), with 403: what keeps pages from using a route that takes bodies of any Content-Type.
 */
function refuseForeignOrigins(corsOrigins: readonly string[]) {
  return async (c: Context, next: () => Promise<void>) => {
    const origin = c.req.header("origin");
    if (origin === undefined || corsOrigins.includes("*") || corsOrigins.includes(origin)) return next();
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    if (host !== undefined && host === c.req.header("host")) return next();
    return routeErrorResponse(c, new InvalidRequestError(`Requests from the origin '${origin.slice(0, 200)}' are not allowed.`, null, "forbidden_origin", 403));
  };
}

function methodNotAllowed(c: Context, allow: string): Response {
  const response = routeErrorResponse(
    c,
    new InvalidRequestError(`Method ${c.req.method} is not allowed on ${c.req.path}; it takes ${allow}.`, null, "method_not_allowed", 405),
  );
  response.headers.set("Allow", allow);
  return response;
}

export function createApp(master: Master, options: ApiOptions): Hono {
  const app = new Hono();
  app.use("*", requestContext({ log: options.log, metrics: options.metrics }));
  if (options.corsOrigins.length > 0) {
    const origins = [...options.corsOrigins];
    const allowed = cors({ origin: origins.includes("*") ? "*" : origins, maxAge: 600, exposeHeaders: ["X-Request-Id", "Retry-After"] });
    app.use("/v1/*", allowed);
    // Ollama's routes take the configured origins too (and refuse other pages, below).
    app.use("/api/*", allowed);
  }
  const guard = apiKeyGuard(options.keys);
  const adminGuard = adminKeyGuard(options.keys);
  app.use("/v1/*", guard);
  app.use("/api/*", guard);
  app.use("/metrics", guard);
  app.use("/v1/placements", adminGuard);
  app.use("/v1/placements/*", adminGuard);
  app.use("/v1/models/unload", adminGuard);
  app.use("/v1/models/pull", adminGuard);
  app.use("/v1/models/pulls", adminGuard);
  app.use("/v1/keys", adminGuard);
  app.use("/v1/keys/*", adminGuard);
  // Ollama's clients (and its docs' curl examples) send JSON without saying so: /api takes any Content-Type, and, as
  // Ollama does, refuses requests from web pages of other origins instead (the reason /v1 insists on JSON).
  app.use("/api/*", refuseForeignOrigins(options.corsOrigins));
  const bodyLimit = limitBodySize({
    maxBytes: options.maxBodyBytes,
    onTooLarge: (c) => {
      const response = routeErrorResponse(
        c,
        new InvalidRequestError(`The request body is larger than ${options.maxBodyBytes} bytes.`, null, "request_too_large", 413),
      );
      // The rest of the body is never read, and @hono/node-server drops a kept-alive connection it cannot drain
      // within 500 ms: a client still sending (fetch, the openai SDK) then sees "other side closed" instead of
      // this 413. Closing the connection with the answer lets the 413 through.
      response.headers.set("Connection", "close");
      return response;
    },
  });
  app.use("/api/*", bodyLimit);
  // Every /v1 route with a body takes JSON.
  app.use("/v1/*", requireJsonBody());
  app.use("/v1/*", bodyLimit);
  app.route("/", healthRoutes(master, options.heads, options.keys));
  app.post("/v1/chat/completions", chatCompletionsHandler(master, options));
  app.post("/v1/messages", messagesHandler(master, options));
  app.post("/v1/messages/count_tokens", countTokensHandler(master, options.limits));
  app.post("/v1/responses", responsesHandler(master, options));
  app.post("/v1/completions", completionsHandler(master, options));
  app.post("/v1/embeddings", embeddingsHandler(master, options));
  app.route("/api", ollamaRoutes(master, options));
  app.post("/v1/models/unload", unloadHandler(master, options.leader));
  app.post("/v1/models/pull", pullHandler(master));
  app.get("/v1/models/pulls", pullsHandler(master));
  app.route("/v1/models", modelsRoutes(master));
  app.route("/v1/placements", placementRoutes(master, options.leader));
  app.route("/v1/keys", keyRoutes(options.keys));
  app.get("/v1/cluster/events", clusterEventsHandler(options.activity, { ...options, intervalMs: options.feedIntervalMs }));
  app.route("/v1/cluster", clusterRoutes(master, options.heads));
  app.get("/metrics", metricsHandler(options.metrics));
  // A known route asked with another method: 405 with the methods it takes (after the routes, so they match first).
  for (const [path, allow] of [
    ["/v1/chat/completions", "POST"],
    ["/v1/messages", "POST"],
    ["/v1/messages/count_tokens", "POST"],
    ["/v1/responses", "POST"],
    ["/v1/completions", "POST"],
    ["/v1/embeddings", "POST"],
    ["/v1/models", "GET, HEAD"],
    ["/v1/models/unload", "POST"],
    ["/v1/models/pull", "POST"],
    ["/v1/models/pulls", "GET, HEAD"],
    ["/v1/models/:id{.+}", "GET, HEAD"],
    ["/v1/cluster", "GET, HEAD"],
    ["/v1/placements", "GET, HEAD, POST"],
    ["/v1/placements/previews", "GET, HEAD"],
    ["/v1/placements/:id", "DELETE"],
    ["/v1/keys", "GET, HEAD, POST"],
    ["/v1/keys/:id", "DELETE"],
    ["/v1/cluster/events", "GET, HEAD"],
    ["/metrics", "GET, HEAD"],
    ["/api/chat", "POST"],
    ["/api/generate", "POST"],
    ["/api/embed", "POST"],
    ["/api/embeddings", "POST"],
    ["/api/show", "POST"],
    ["/api/tags", "GET, HEAD"],
    ["/api/ps", "GET, HEAD"],
    ["/api/version", "GET, HEAD"],
  ] as const) {
    app.all(path, (c) => methodNotAllowed(c, allow));
  }
  app.get("/", ollamaProbe());
  app.route("/", dashboardRoutes());
  app.notFound((c) =>
    routeErrorResponse(c, new InvalidRequestError(`Unknown route: ${c.req.method} ${c.req.path}`, null, "not_found", 404)),
  );
  app.onError((error, c) => {
    requestLogOf(c, options.log).error({ err: error, path: c.req.path }, "unhandled error in a route");
    return routeErrorResponse(c, error);
  });
  return app;
}
