// POST /v1/chat/completions: admits the request as a task, then answers as one JSON body or as an SSE stream.
import type { HttpBindings } from "@hono/node-server";
import type { Context } from "hono";
import { nanoid } from "nanoid";
import { flatLineLogger, type Logger } from "../log.js";
import { ReplyTooLargeError } from "../master/errors.js";
import type { Master } from "../master/master.js";
import type { Task, TaskEvent } from "../master/task.js";
import { createParser } from "../parser/index.js";
import type { CoordinatorMetrics } from "../metrics/metrics.js";
import type { ModelInfo } from "../worker-protocol/index.js";
import {
  type ChatCompletionRequest,
  parseChatRequest,
  type ReasoningMode,
  reasoningModeOf,
  type RequestLimits,
  toTaskRequest,
} from "./chat-request.js";
import {
  ChunkSerializer,
  type Delta,
  finishReasonOf,
  reasoningKeys,
  type ReasoningField,
  ReplyCollector,
  ReplyShaper,
  usageBody,
} from "./chat-response.js";
import { errorResponse, InvalidRequestError, mapError } from "./errors.js";
import { REQUEST_ID_HEADER } from "./request-context.js";
import { ChatRequestReport } from "./request-log.js";
import { relayStream, type StreamEncoder } from "./relay.js";
import { dataFrames, SseStream } from "./sse.js";

const DONE_FRAME = "data: [DONE]\n\n";

export interface ChatCompletionsOptions {
  reasoning: ReasoningMode;
  /** Which delta/message field carries reasoning in `separate` mode. */
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

async function readJson(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === "") throw new InvalidRequestError("The request body is empty; send a JSON object.");
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidRequestError("We could not parse the JSON body of your request. Send valid JSON.");
  }
}

export function chatCompletionsHandler(master: Master, options: ChatCompletionsOptions) {
  const lineLog = flatLineLogger(options.log);
  return async (c: Context): Promise<Response> => {
    const report = new ChatRequestReport(c, master, options.log, lineLog, options.metrics);
    let request: ChatCompletionRequest;
    try {
      request = parseChatRequest(await readJson(c), options.limits);
    } catch (error) {
      return report.rejected(errorResponse(error));
    }
    report.parsed(request.model, request.stream === true);
    const signal = c.req.raw.signal;
    let task: Task;
    try {
      checkMaxTokens(request, master.registry.modelInfo(request.model));
      task = master.submit(toTaskRequest(request), signal);
    } catch (error) {
      return report.rejected(errorResponse(error));
    }
    report.admitted(task);
    const mode = reasoningModeOf(request, options.reasoning);
    const format = options.modelFormats.get(request.model) ?? master.registry.modelInfo(request.model)?.format;
    // Raw mode still goes through the "raw" parser, which keeps surrogate pairs whole across deltas.
    const parser = createParser(mode === "raw" ? "raw" : format, {
      onWarning: (warning) => report.log.warn({ task: task.id, code: warning.code }, warning.message),
    });
    const shaper = new ReplyShaper(mode, parser);
    const reply = { id: `chatcmpl-${nanoid(24)}`, created: Math.floor(Date.now() / 1000), model: request.model };
    if (request.stream) {
      // A client that stops reading has its connection dropped directly (quieter than erroring the body).
      // On Node the stream writes straight to the response (no web stream in the per-token path).
      const outgoing = (c.env as Partial<HttpBindings> | undefined)?.outgoing;
      // What middleware has put on the response so far (CORS) and the request id go out with the stream's headers.
      // Reading c.res makes Hono build a Response now and copy it into the returned one: only when CORS is on.
      const headers: Record<string, string> = {};
      if (options.corsOrigins.length > 0) c.res.headers.forEach((value, name) => (headers[name] = value));
      headers[REQUEST_ID_HEADER] = report.requestId;
      return streamReply(master, task, shaper, reply, request, { signal, outgoing, headers }, options, report);
    }
    return wholeReply(master, task, shaper, reply, options, report);
  };
}

/** A reply cannot outgrow the model's context: refuse such a limit before queueing, in OpenAI's words. */
function checkMaxTokens(request: ChatCompletionRequest, model: ModelInfo | undefined): void {
  const param = request.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
  const maxTokens = request[param];
  if (model === undefined || maxTokens == null || maxTokens <= model.contextLength) return;
  throw new InvalidRequestError(
    `${param} is too large: ${maxTokens}. The model '${model.id}' holds at most ${model.contextLength} tokens ` +
      `(prompt and completion), whereas you provided ${maxTokens}.`,
    param,
  );
}

interface ReplyIdentity {
  id: string;
  created: number;
  model: string;
}

/**
 * Waits for the task to end, collecting its text; a client that leaves cancels the task through the signal. A
 * reply that outgrows `maxReplyBytes` is given up on rather than held without bound.
 */
async function wholeReply(
  master: Master,
  task: Task,
  shaper: ReplyShaper,
  reply: ReplyIdentity,
  options: ChatCompletionsOptions,
  report: ChatRequestReport,
): Promise<Response> {
  const collector = new ReplyCollector();
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
      shaper.push(event.text, deltas);
      task.thinking = shaper.inReasoning;
      collector.add(deltas);
      deltas.length = 0;
      continue;
    }
    if (event.type !== "finished") {
      const response = event.type === "failed" ? errorResponse(event.error) : new Response(null, { status: 499 });
      report.ended(event, response.status);
      return response;
    }
    report.ended(event, 200);
    shaper.finish(deltas);
    collector.add(deltas);
    const calledTools = collector.toolCalls.length > 0;
    // As OpenAI does: a reply that only calls tools has null content.
    const content = calledTools && collector.content === "" ? null : collector.content;
    const message: Record<string, unknown> = { role: "assistant", content, refusal: null };
    if (collector.reasoning) for (const key of reasoningKeys(options.reasoningField)) message[key] = collector.reasoning;
    if (collector.toolCalls.length > 0) message.tool_calls = collector.toolCalls.filter(Boolean);
    return Response.json({
      id: reply.id,
      object: "chat.completion",
      created: reply.created,
      model: reply.model,
      choices: [{ index: 0, message, logprobs: null, finish_reason: finishReasonOf(event.finishReason, shaper) }],
      usage: usageBody(event.usage),
    });
  }
}

/** Streams the reply as SSE: deltas as they come, keepalive comments while silent, `[DONE]` at the end. */
function streamReply(
  master: Master,
  task: Task,
  shaper: ReplyShaper,
  reply: ReplyIdentity,
  request: ChatCompletionRequest,
  client: { signal: AbortSignal; outgoing: HttpBindings["outgoing"] | undefined; headers: Record<string, string> },
  options: ChatCompletionsOptions,
  report: ChatRequestReport,
): Response {
  const { sse, response } = SseStream.open(
    {
      keepaliveMs: options.keepaliveMs,
      slowClientMs: options.slowClientMs,
      slowClientBytes: options.slowClientBytes,
      observer: options.metrics?.sse,
      onStall: () => {
        report.log.warn({ task: task.id }, "client stopped reading; cancelling its stream");
        master.cancel(task, "client stopped reading");
      },
    },
    client.signal,
    client.outgoing,
    client.headers,
  );
  const includeUsage = request.stream_options?.include_usage === true;
  const serializer = new ChunkSerializer(reply.id, reply.created, reply.model, includeUsage, options.reasoningField);
  relayStream(master, task, shaper, sse, chatCompletionChunks(serializer, reply, includeUsage), report);
  return response;
}

/** OpenAI's chat completion chunks as SSE `data:` frames, ending with `data: [DONE]`. */
function chatCompletionChunks(serializer: ChunkSerializer, reply: ReplyIdentity, includeUsage: boolean): StreamEncoder {
  return {
    deltas: (deltas) => dataFrames(serializer.deltas(deltas)),
    finished: (deltas, event, shaper) => {
      const chunks = serializer.deltas(deltas);
      chunks.push(serializer.finish(finishReasonOf(event.finishReason, shaper)));
      if (includeUsage) chunks.push(serializer.usage(event.usage, reply.id, reply.created, reply.model));
      return dataFrames(chunks) + DONE_FRAME;
    },
    failed: (deltas, error) => dataFrames([...serializer.deltas(deltas), JSON.stringify(mapError(error).body)]) + DONE_FRAME,
  };
}

async function nextEvent(task: Task): Promise<TaskEvent> {
  for (;;) {
    const event = task.events.pull();
    if (event) return event;
    if (task.events.done) throw new Error(`task ${task.id} ended without a final event`);
    await task.events.ready();
  }
}
