// The Node HTTP server around the app, with deadlines for slow senders: a request's headers, and the whole request
// with its body, must arrive in time. Responses are not limited: a stream may last as long as its generation.
// Sockets that have not sent a request yet count against a cap of pending connections.
import type { IncomingMessage, Server } from "node:http";
import type { Socket } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import type { Hono } from "hono";
import type { PendingConnections } from "../pending-connections.js";

export interface HttpServerOptions {
  /** From the first byte of a request to the end of its headers (Node's `headersTimeout`; then 408). */
  headersTimeoutMs: number;
  /** From the first byte of a request to the end of its body (Node's `requestTimeout`; then 408). */
  requestTimeoutMs: number;
  /** Holds each socket from its connection until its first request's headers (or an upgrade) arrive. */
  pending: PendingConnections<Socket>;
}

export function createHttpServer(app: Hono, options: HttpServerOptions): Server {
  const server = createAdaptorServer({
    fetch: app.fetch,
    serverOptions: {
      headersTimeout: options.headersTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      // Node compares both deadlines only on this timer (every 30 s by default), which would let a slow sender
      // keep its socket for up to 30 s past its deadline.
      connectionsCheckingInterval: Math.min(1_000, Math.max(25, Math.floor(options.headersTimeoutMs / 4))),
    },
  }) as Server;
  const { pending } = options;
  server.on("connection", (socket: Socket) => {
    pending.add(socket);
    socket.once("close", () => pending.release(socket));
  });
  // Later requests on a kept-alive socket are not counted again: their headers still have their deadline.
  const arrived = (request: IncomingMessage) => pending.release(request.socket);
  server.on("request", arrived);
  server.on("upgrade", arrived);
  return server;
}
