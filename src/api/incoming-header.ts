// Reads a request header from Node's request when there is one: asking Hono's request for a header makes
// @hono/node-server build a whole web Request for the call.
import type { HttpBindings } from "@hono/node-server";
import type { Context } from "hono";

export function incomingHeader(c: Context, name: "content-length" | "content-type" | "transfer-encoding"): string | undefined {
  const incoming = (c.env as Partial<HttpBindings> | undefined)?.incoming;
  return incoming ? incoming.headers[name] : c.req.header(name);
}
