// Ollama's requests with nothing to generate: `/api/generate` with an empty prompt (or `/api/chat` with no
// messages) loads the model and answers once it is loaded ("done_reason": "load"); with `keep_alive: 0` it unloads
// the model instead ("unload"). `ollama run` preloads this way, `ollama stop` unloads.
import type { Context, Next } from "hono";
import type { Master } from "../master/master.js";
import { ModelLoadFailedError, ModelNotFoundError } from "../master/errors.js";
import { keepAliveMs } from "./keep-alive.js";
import { ollamaErrorResponse } from "./route-errors.js";

/** How often a preload looks whether its model is served yet. */
const POLL_MS = 25;

interface Loose {
  model?: unknown;
  prompt?: unknown;
  messages?: unknown;
  images?: unknown;
  keep_alive?: unknown;
}

/**
 * The body of a request with nothing to generate (a load, or an unload with keep_alive 0) to `path`, or undefined
 * for any other body (which the route itself parses).
 */
export function nothingToGenerate(path: string, json: unknown): (Loose & { model: string }) | undefined {
  const body = typeof json === "object" && json !== null && !Array.isArray(json) ? (json as Loose) : undefined;
  return isEmptyRequest(path, body) && typeof body?.model === "string" ? { ...body, model: body.model } : undefined;
}

/** Middleware before the generate and chat routes: answers the requests with nothing to generate, passes the rest on. */
export function ollamaPreload(master: Master, waitMs: number) {
  return async (c: Context, next: Next) => {
    const body = nothingToGenerate(c.req.path, await c.req.json().catch(() => undefined));
    if (!body) return next();
    const model = body.model;
    try {
      const keepAlive = keepAliveMs(body.keep_alive);
      if (!master.knowsModel(model)) throw new ModelNotFoundError(model);
      if (keepAlive === 0) {
        master.placer.unloadIdle(model);
        return c.json(done(c.req.path, model, "unload"));
      }
      await loaded(master, model, waitMs, c.req.raw.signal);
      return c.json(done(c.req.path, model, "load"));
    } catch (error) {
      return ollamaErrorResponse(error);
    }
  };
}

function isEmptyRequest(path: string, body: Loose | undefined): boolean {
  if (body === undefined) return false;
  if (path.endsWith("/generate")) return body.prompt === "" || (body.prompt === undefined && body.images === undefined);
  return Array.isArray(body.messages) && body.messages.length === 0;
}

/** Resolves once some worker serves `model` (loading it if need be); rejects if the load fails or never starts within `waitMs`. */
async function loaded(master: Master, model: string, waitMs: number, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + waitMs;
  let loading = false;
  while (!master.placer.preload(model)) {
    loading ||= master.placer.isLoading(model);
    // The load was started and is gone without the model being served: it failed (the placer logged why).
    if (loading && !master.placer.isLoading(model) && !master.isServed(model)) {
      throw new ModelLoadFailedError(model, `Loading '${model}' failed on its worker.`);
    }
    // While it loads, the load's own deadline (--model-load-timeout-ms) bounds the wait; waiting for room, this one.
    if (!master.placer.isLoading(model) && Date.now() > deadline) {
      throw new ModelLoadFailedError(model, `'${model}' could not be loaded within ${Math.round(waitMs / 1000)} s.`);
    }
    signal.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function done(path: string, model: string, reason: "load" | "unload") {
  const head = { model, created_at: new Date().toISOString() };
  return path.endsWith("/generate")
    ? { ...head, response: "", done: true, done_reason: reason }
    : { ...head, message: { role: "assistant", content: "" }, done: true, done_reason: reason };
}
