// JSON routes take JSON only: a body sent as anything else gets a 415. A web page may send a text/plain or form POST
// to any origin without asking first (no CORS preflight); an application/json one needs the preflight, which only
// the configured origins pass.
import type { MiddlewareHandler } from "hono";
import { InvalidRequestError } from "./errors.js";
import { incomingHeader } from "./incoming-header.js";
import { routeErrorResponse } from "./route-errors.js";

/** `application/json` or `application/…+json`, whose charset, if it names one, is UTF-8 (how the body is read). */
export function isJsonMediaType(contentType: string | undefined): boolean {
  const [type = "", ...parameters] = (contentType ?? "").split(";");
  const media = type.trim().toLowerCase();
  if (media !== "application/json" && !/^application\/[a-z0-9!#$&^_.-]+\+json$/.test(media)) return false;
  return parameters.every((parameter) => {
    const [name = "", value = ""] = parameter.split("=");
    return name.trim().toLowerCase() !== "charset" || /^"?utf-?8"?$/i.test(value.trim());
  });
}

/** Answers a request with a body (POST, PUT, PATCH) whose Content-Type is not JSON with a 415 in the route's dialect. */
export function requireJsonBody(): MiddlewareHandler {
  return async (c, next) => {
    const method = c.req.method;
    if (method !== "POST" && method !== "PUT" && method !== "PATCH") return next();
    const contentType = incomingHeader(c, "content-type");
    if (isJsonMediaType(contentType)) return next();
    const given = contentType === undefined ? "no Content-Type" : `Content-Type '${contentType.slice(0, 100)}'`;
    return routeErrorResponse(
      c,
      new InvalidRequestError(
        `The request body must be JSON sent with 'Content-Type: application/json' (got ${given}).`,
        null,
        "unsupported_media_type",
        415,
      ),
    );
  };
}
