// The Node HTTP server around the app, with deadlines for slow senders: a request's headers, and the whole request
// with its body, must arrive in time. Responses are not limited: a stream may last as long as its generation.
import type { Server } from "node:http";
import { createAdaptorServer } from "@hono/node-server";
import type { Hono } from "hono";

export interface HttpServerOptions {
  /** From the first byte of a request to the end of its headers (Node's `headersTimeout`; then 408). */
  headersTimeoutMs: number;
  /** From the first byte of a request to the end of its body (Node's `requestTimeout`; then 408). */
  requestTimeoutMs: number;
}

export function createHttpServer(app: Hono, options: HttpServerOptions): Server {
  return createAdaptorServer({
    fetch: app.fetch,
    serverOptions: {
      headersTimeout: options.headersTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      // Node compares both deadlines only on this timer (every 30 s by default), which would let a slow sender
      // keep its socket for up to 30 s past its deadline.
      connectionsCheckingInterval: Math.min(1_000, Math.max(25, Math.floor(options.headersTimeoutMs / 4))),
    },
  }) as Server;
}
