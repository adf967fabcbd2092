// The one path from an HTTP request to a task's reply, for every API dialect: parse the body, admit the task, then
// relay its output as a stream or collect it into one body. A dialect only says how its requests and replies look.
import type { HttpBindings } from "@hono/node-server";
import type { Context } from "hono";
import { flatLineLogger, type Logger } from "../log.js";
import { ReplyTooLargeError } from "../master/errors.js";
import type { Master } from "../master/master.js";
import type { Task, TaskEvent, TaskRequest } from "../master/task.js";
import type { CoordinatorMetrics } from "../metrics/metrics.js";
import { createParser } from "../parser/index.js";
import type { ModelInfo } from "../worker-protocol/index.js";
import type { ReasoningMode, RequestLimits } from "./chat-request.js";
import { checkCapabilities } from "./capabilities.js";
import { type Delta, type ReasoningField, ReplyShaper } from "./chat-response.js";
import { InvalidRequestError } from "./errors.js";
import { relayStream, type StreamEncoder } from "./relay.js";
import { REQUEST_ID_HEADER } from "./request-context.js";
import { ChatRequestReport } from "./request-log.js";
import { SseStream } from "./sse.js";

export interface TaskRouteOptions {
  reasoning: ReasoningMode;
  /** Which delta/message field carries reasoning in `separate` mode (chat completions). */
  reasoningField: ReasoningField;
  keepaliveMs: number;
  limits: RequestLimits;
  /** A streaming client holding this much unread output for this long is cancelled. */
  slowClientMs: number;
  slowClientBytes: number;
  /** Most bytes of model output held for a non-streamed reply; past it the task fails with reply_too_large. */
  maxReplyBytes: number;
  /** Per-model parser format from configuration (`--model-format`), over what the worker announced. */
  modelFormats: ReadonlyMap<string, string>;
  /** Origins allowed by CORS; empty: CORS is off (and no middleware adds response headers). */
  corsOrigins: readonly string[];
  log: Logger;
  /** Prompt tokens and stream counts go here; none are kept when absent. */
  metrics?: CoordinatorMetrics | undefined;
}

export type FinishedEvent = Extract<TaskEvent, { type: "finished" }>;

/** A whole (non-streamed) reply being collected: deltas in, the dialect's JSON body out. */
export interface WholeReply {
  add(deltas: readonly Delta[]): void;
  body(event: FinishedEvent, shaper: ReplyShaper): unknown;
}

/** One API dialect: how its requests become tasks, and how a task's output and errors go back in its shape. */
export interface Dialect<Request> {
  /** Validates a parsed JSON body; throws InvalidRequestError naming the first bad field. */
  parse(json: unknown, limits: RequestLimits): Request;
  model(request: Request): string;
  streams(request: Request): boolean;
  /** Refusals (or adjustments) that need what the model's workers announced (its context length), before queueing. */
  check(request: Request, model: ModelInfo | undefined): void;
  /** Chat completions' field names (in capability refusals) renamed into this dialect's, where they differ. */
  paramNames?: Readonly<Record<string, string>>;
  toTask(request: Request): TaskRequest;
  reasoningMode(request: Request, fallback: ReasoningMode): ReasoningMode;
  /** The request's own session key (for the session routing policy), when the dialect has one; X-Session-Id wins. */
  sessionKey?(request: Request): string | undefined;
  /** How long the model may stay loaded once idle after this request (Ollama's keep_alive), when the dialect says. */
  keepAliveMs?(request: Request): number | undefined;
  /** An error (ours or the task's) as this dialect's HTTP response. */
  errorResponse(error: unknown): Response;
  /** What to send during silent periods of a stream (fixed, or made for the request); an SSE comment when absent. */
  keepaliveFrame?: string | ((request: Request) => string);
  /** The stream's media type when it is not SSE (Ollama's NDJSON). */
  streamContentType?: string;
  /** The encoder for one streamed reply. */
  streamEncoder(request: Request, options: TaskRouteOptions): StreamEncoder;
  /** The collector for one whole reply. */
  wholeReply(request: Request, options: TaskRouteOptions): WholeReply;
}

/** The header a client may name its session by, for every route (the session routing policy keys on it). */
export const SESSION_HEADER = "X-Session-Id";

/** The request's X-Session-Id, if it has a usable one (at most 1024 characters). */
export function sessionKeyOf(c: Context): string | undefined {
  const key = c.req.header(SESSION_HEADER);
  return key !== undefined && key.length > 0 && key.length <= 1024 ? key : undefined;
}

/** The request's body as JSON; an empty or unparseable body is an InvalidRequestError. */
export async function readJson(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === "") throw new InvalidRequestError("The request body is empty; send a JSON object.");
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidRequestError("We could not parse the JSON body of your request. Send valid JSON.");
  }
}

/** The request's JSON body as `parse` validates it, or why it is refused. */
export async function parseBody<Request>(
  c: Context,
  parse: (json: unknown, limits: RequestLimits) => Request,
  limits: RequestLimits,
): Promise<{ ok: true; request: Request } | { ok: false; error: unknown }> {
  try {
    return { ok: true, request: parse(await readJson(c), limits) };
  } catch (error) {
    return { ok: false, error };
  }
}

/** The Hono handler of a route that runs one task per request in `dialect`. */
export function taskRoute<Request>(master: Master, dialect: Dialect<Request>, options: TaskRouteOptions) {
  const lineLog = flatLineLogger(options.log);
  return async (c: Context): Promise<Response> => {
    const report = new ChatRequestReport(c, master, options.log, lineLog, options.metrics);
    const parsed = await parseBody(c, dialect.parse, options.limits);
    if (!parsed.ok) return report.rejected(dialect.errorResponse(parsed.error));
    const request = parsed.request;
    const model = dialect.model(request);
    report.parsed(model, dialect.streams(request));
    const signal = c.req.raw.signal;
    let task: Task;
    try {
      dialect.check(request, master.modelInfo(model));
      const taskRequest = dialect.toTask(request);
      checkCapabilities(taskRequest, master.capabilitiesOf(model), dialect.paramNames);
      task = master.submit(taskRequest, signal, {
        ...report.origin,
        sessionKey: sessionKeyOf(c) ?? dialect.sessionKey?.(request) ?? undefined,
        keepAliveMs: dialect.keepAliveMs?.(request),
      });
    } catch (error) {
      return report.rejected(dialect.errorResponse(error));
    }
    report.admitted(task);
    const mode = dialect.reasoningMode(request, options.reasoning);
    const format = options.modelFormats.get(model) ?? master.modelInfo(model)?.format;
    // Raw mode still goes through the "raw" parser, which keeps surrogate pairs whole across deltas.
    const parser = createParser(mode === "raw" ? "raw" : format, {
      onWarning: (warning) => report.log.warn({ task: task.id, code: warning.code }, warning.message),
    });
    const shaper = new ReplyShaper(mode, parser);
    if (!dialect.streams(request)) {
      return wholeReply(master, task, shaper, dialect, dialect.wholeReply(request, options), options, report);
    }
    // A client that stops reading has its connection dropped directly (quieter than erroring the body).
    // On Node the stream writes straight to the response (no web stream in the per-token path).
    const outgoing = (c.env as Partial<HttpBindings> | undefined)?.outgoing;
    // What middleware has put on the response so far (CORS) and the request id go out with the stream's headers.
    // Reading c.res makes Hono build a Response now and copy it into the returned one: only when CORS is on.
    const headers: Record<string, string> = {};
    if (options.corsOrigins.length > 0) c.res.headers.forEach((value, name) => (headers[name] = value));
    headers[REQUEST_ID_HEADER] = report.requestId;
    const { sse, response } = SseStream.open(
      {
        keepaliveMs: options.keepaliveMs,
        ...(dialect.keepaliveFrame !== undefined && {
          keepaliveFrame: typeof dialect.keepaliveFrame === "string" ? dialect.keepaliveFrame : dialect.keepaliveFrame(request),
        }),
        ...(dialect.streamContentType !== undefined && { contentType: dialect.streamContentType }),
        slowClientMs: options.slowClientMs,
        slowClientBytes: options.slowClientBytes,
        observer: options.metrics?.sse,
        onStall: () => {
          report.log.warn({ task: task.id }, "client stopped reading; cancelling its stream");
          master.cancel(task, "client stopped reading");
        },
      },
      signal,
      outgoing,
      headers,
    );
    relayStream(master, task, shaper, sse, dialect.streamEncoder(request, options), report);
    return response;
  };
}

/**
 * Waits for the task to end, collecting its reply; a client that leaves cancels the task through the signal. A
 * reply that outgrows `maxReplyBytes` is given up on rather than held without bound.
 */
async function wholeReply<Request>(
  master: Master,
  task: Task,
  shaper: ReplyShaper,
  dialect: Dialect<Request>,
  collector: WholeReply,
  options: TaskRouteOptions,
  report: ChatRequestReport,
): Promise<Response> {
  const deltas: Delta[] = [];
  let held = 0;
  for (;;) {
    const event = await nextEvent(task);
    if (event.type === "chunk") {
      held += event.bytes;
      if (held > options.maxReplyBytes) {
        report.log.warn({ task: task.id, limit: options.maxReplyBytes }, "non-streamed reply too large; giving up on it");
        master.fail(task, new ReplyTooLargeError(options.maxReplyBytes));
        continue; // the failure is the next event
      }
      if (event.logprobs) shaper.pushWithLogprobs(event.text, event.logprobs, deltas);
      else shaper.push(event.text, deltas, event.tokens);
      master.reasoning(task, shaper.inReasoning);
      collector.add(deltas);
      deltas.length = 0;
      continue;
    }
    if (event.type === "embedding") continue; // only embedding tasks have them (the master sees to it)
    if (event.type !== "finished") {
      const response = event.type === "failed" ? dialect.errorResponse(event.error) : new Response(null, { status: 499 });
      report.ended(event, response.status);
      return response;
    }
    report.ended(event, 200);
    shaper.finish(deltas);
    collector.add(deltas);
    return Response.json(collector.body(event, shaper));
  }
}

export async function nextEvent(task: Task): Promise<TaskEvent> {
  for (;;) {
    const event = task.events.pull();
    if (event) return event;
    if (task.events.done) throw new Error(`task ${task.id} ended without a final event`);
    await task.events.ready();
  }
}
