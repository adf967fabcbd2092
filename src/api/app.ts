// The HTTP application: every route, and OpenAI-shaped answers for unknown routes and unexpected errors.
import { Hono } from "hono";
import type { Logger } from "../log.js";
import type { Master } from "../master/master.js";
import { chatCompletionsHandler, type ChatCompletionsOptions } from "./chat-completions.js";
import { clusterRoutes } from "./cluster.js";
import { errorResponse, InvalidRequestError } from "./errors.js";
import { healthRoutes } from "./health.js";
import { modelsRoutes } from "./models.js";

export interface ApiOptions extends ChatCompletionsOptions {
  log: Logger;
}

export function createApp(master: Master, options: ApiOptions): Hono {
  const app = new Hono();
  app.route("/", healthRoutes(master));
  app.post("/v1/chat/completions", chatCompletionsHandler(master, options));
  app.route("/v1/models", modelsRoutes(master));
  app.route("/v1/cluster", clusterRoutes(master));
  app.notFound((c) =>
    errorResponse(new InvalidRequestError(`Unknown route: ${c.req.method} ${c.req.path}`, null, "not_found", 404)),
  );
  app.onError((error, c) => {
    options.log.error({ err: error, path: c.req.path }, "unhandled error in a route");
    return errorResponse(error);
  });
  return app;
}
