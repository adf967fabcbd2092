// The one path from an HTTP request to embedding vectors, for every dialect (OpenAI's /v1/embeddings, Ollama's
// /api/embed and /api/embeddings): parse, admit one task for the whole batch (scheduled as any chat task: same
// queues, limits, cancellation and metrics), collect its vectors, and write the dialect's JSON piece by piece.
import type { Context } from "hono";
import { flatLineLogger } from "../log.js";
import { EngineError, ModelNotFoundError, ReplyTooLargeError } from "../master/errors.js";
import type { Master } from "../master/master.js";
import type { Task, TaskRequest } from "../master/task.js";
import type { EmbedSpec } from "../worker-protocol/index.js";
import type { RequestLimits } from "./chat-request.js";
import { checkCapabilities } from "./capabilities.js";
import { InvalidRequestError } from "./errors.js";
import { ChatRequestReport } from "./request-log.js";
import { nextEvent, parseBody, type TaskRouteOptions } from "./task-route.js";

/** What a finished embedding task gives its dialect to shape. */
export interface Embeddings {
  /** One vector per input, in input order. */
  vectors: Float32Array[];
  promptTokens: number;
  task: Task;
}

/** One embeddings dialect: its request, and its answer as JSON text in pieces (a big batch is never one string). */
export interface EmbeddingDialect<Request> {
  /** Validates a parsed JSON body; throws InvalidRequestError naming the first bad field. */
  parse(json: unknown, limits: RequestLimits): Request;
  model(request: Request): string;
  /** The inputs and options; undefined when there is nothing to embed (the answer is then made without a task). */
  toEmbed(request: Request): EmbedSpec | undefined;
  /** The field holding the inputs, in this dialect's words (for errors about an input). */
  inputParam: string;
  /** Capability refusals' field names, renamed into this dialect's. */
  paramNames?: Readonly<Record<string, string>>;
  errorResponse(error: unknown): Response;
  body(request: Request, embeddings: Embeddings | undefined): Iterable<string>;
  /** How long the model may stay loaded once idle after this request (Ollama's keep_alive), when the dialect says. */
  keepAliveMs?(request: Request): number | undefined;
}

const POWERS_OF_TEN = Array.from({ length: 23 }, (_, k) => 10 ** k);

/**
 * A vector as a JSON array, each value with at most the 9 significant digits that identify a float32. Each value is
 * rounded to the double nearest its 9-digit decimal (an integer over an exact power of ten), so JSON.stringify, which
 * writes a double's shortest form, writes that decimal: 5 times as fast as toPrecision per value.
 */
export function floatsJson(values: Float32Array): string {
  const rounded = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) {
    const value = values[i] as number;
    const magnitude = Math.abs(value);
    const k = magnitude === 0 ? 0 : 8 - Math.floor(Math.log10(magnitude));
    const scale = POWERS_OF_TEN[k];
    rounded[i] = scale === undefined ? Number(value.toPrecision(9)) : Math.round(value * scale) / scale;
  }
  return JSON.stringify(rounded);
}

/** A JSON body written as it is pulled (with the client's backpressure), in pieces of about 64 KiB. */
function piecewiseJson(pieces: Iterable<string>): Response {
  const iterator = pieces[Symbol.iterator]();
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      let chunk = "";
      while (chunk.length < 65_536) {
        const next = iterator.next();
        if (next.done) {
          if (chunk) controller.enqueue(encoder.encode(chunk));
          controller.close();
          return;
        }
        chunk += next.value;
      }
      controller.enqueue(encoder.encode(chunk));
    },
    cancel() {
      iterator.return?.();
    },
  });
  return new Response(body, { headers: { "content-type": "application/json" } });
}

/** The Hono handler of an embeddings route in `dialect`. */
export function embeddingRoute<Request>(master: Master, dialect: EmbeddingDialect<Request>, options: TaskRouteOptions) {
  const lineLog = flatLineLogger(options.log);
  /** An engine's refusal of an input names the dialect's input field, not chat's messages. */
  const errorResponse = (error: unknown): Response =>
    dialect.errorResponse(error instanceof EngineError && error.isClientError ? new InvalidRequestError(error.message, dialect.inputParam, error.code ?? null) : error);
  return async (c: Context): Promise<Response> => {
    const report = new ChatRequestReport(c, master, options.log, lineLog, options.metrics);
    const parsed = await parseBody(c, dialect.parse, options.limits);
    if (!parsed.ok) return report.rejected(errorResponse(parsed.error));
    const request = parsed.request;
    const model = dialect.model(request);
    report.parsed(model, false);
    const embed = dialect.toEmbed(request);
    let task: Task;
    try {
      if (embed === undefined) {
        // Nothing to embed: an answer at once, for a model that exists.
        if (!master.knowsModel(model)) throw new ModelNotFoundError(model);
        return piecewiseJson(dialect.body(request, undefined));
      }
      const taskRequest: TaskRequest = { model, messages: [], params: {}, embed };
      checkCapabilities(taskRequest, master.capabilitiesOf(model), dialect.paramNames);
      task = master.submit(taskRequest, c.req.raw.signal, { ...report.origin, keepAliveMs: dialect.keepAliveMs?.(request) });
    } catch (error) {
      return report.rejected(errorResponse(error));
    }
    report.admitted(task);
    const vectors: Float32Array[] = new Array(embed.inputs.length);
    let held = 0;
    for (;;) {
      const event = await nextEvent(task);
      if (event.type === "embedding") {
        // After a failover the new worker starts from input 0 again: its vectors replace the lost one's.
        held += event.values.byteLength - (vectors[event.index]?.byteLength ?? 0);
        vectors[event.index] = event.values;
        if (held > options.maxReplyBytes) {
          report.log.warn({ task: task.id, limit: options.maxReplyBytes }, "embeddings too large; giving up on them");
          const error = new ReplyTooLargeError(options.maxReplyBytes, "Send fewer inputs per request.");
          master.fail(task, error); // a no-op when the task has finished meanwhile: the answer is refused all the same
          const response = errorResponse(error);
          report.ended({ type: "failed", error }, response.status);
          return response;
        }
        continue;
      }
      if (event.type === "chunk") continue; // generation output: never for an embedding task (the master sees to it)
      if (event.type !== "finished") {
        const response = event.type === "failed" ? errorResponse(event.error) : new Response(null, { status: 499 });
        report.ended(event, response.status);
        return response;
      }
      report.ended(event, 200);
      return piecewiseJson(dialect.body(request, { vectors, promptTokens: event.usage.promptTokens, task }));
    }
  };
}
