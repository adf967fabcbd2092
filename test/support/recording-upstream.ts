// A fake OpenAI-compatible upstream (a real node:http server on port 0) that records every request body and streams
// the chat completion chunks a test scripts for each model; `POST /embeddings` answers deterministic vectors.
// `GET /models` lists the models it was started with, as a test changes them.
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type UpstreamReply = (res: ServerResponse, body: Record<string, unknown>) => void;

/** A model as `GET /v1/models` lists it: its id, or the whole entry (e.g. with a `context_length`). */
export type ListedModel = string | { id: string; [field: string]: unknown };

export interface RecordingUpstream {
  /** The upstream's OpenAI base URL, with its `/v1`. */
  baseUrl: string;
  /** What `GET /v1/models` lists; a test changes it in place (a model pulled, one removed). */
  readonly models: ListedModel[];
  /** Makes `GET /v1/models` answer this error status (an upstream that cannot list now); undefined lists again. */
  failModelList(status: number | undefined): void;
  /** The body of every `POST` (`/v1/chat/completions`, `/v1/completions` for a raw prompt, `/v1/embeddings`), in order. */
  readonly requests: Array<Record<string, unknown>>;
  /** The path of each of those requests. */
  readonly paths: string[];
  /** The headers of each of those requests. */
  readonly headers: IncomingHttpHeaders[];
  /** The bodies of the requests whose connection closed before their answer was complete (the client let go). */
  readonly cutOff: Array<Record<string, unknown>>;
  /**
   * What the upstream answers for `model` (by default an empty stream, or for `POST /embeddings` the vectors of
   * embeddingList).
   */
  reply(model: string, reply: UpstreamReply): void;
  close(): Promise<void>;
}

/** A chat completion chunk with one choice. */
export function completionChunk(delta: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { object: "chat.completion.chunk", choices: [{ index: 0, delta, finish_reason: null, ...extra }] };
}

/** Streams `chunks` as server-sent events, then `[DONE]`. */
export function streamChunks(res: ServerResponse, chunks: Array<Record<string, unknown>>): void {
  res.writeHead(200, { "content-type": "text/event-stream" });
  for (const chunk of chunks) res.write(`data: ${JSON.stringify(chunk)}\n\n`);
  res.end("data: [DONE]\n\n");
}

/** Answers `status` with `value` as JSON. */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
}

/** Values of a vector the upstream computes for a model, by default: not unit length. */
export const EMBEDDING_LENGTH = 8;

/**
 * The fake's vector of one input (a text or token ids): `dimensions` values (EMBEDDING_LENGTH by default), none zero,
 * that differ with the input, and not of unit length (so a test sees the engine normalise them).
 */
export function embeddingOf(input: unknown, dimensions = EMBEDDING_LENGTH): number[] {
  const codes = typeof input === "string" ? [...input].map((char) => char.codePointAt(0) ?? 0) : (input as number[]);
  const seed = codes.reduce((sum, code, i) => sum + code * (i + 1), codes.length);
  return Array.from({ length: dimensions }, (_, k) => ((seed + k * 7) % 11) - 5.5);
}

/** The tokens the fake counts for an input: a token array's length, a text's characters / 4 rounded up. */
export function tokensOf(input: unknown): number {
  return typeof input === "string" ? Math.ceil(input.length / 4) : (input as unknown[]).length;
}

/** OpenAI's embedding list for an embeddings request body: one vector per input, in input order, and the usage. */
export function embeddingList(body: Record<string, unknown>) {
  const inputs = Array.isArray(body.input) && body.input.some((item) => typeof item !== "number") ? body.input : [body.input];
  const dimensions = typeof body.dimensions === "number" ? body.dimensions : undefined;
  const promptTokens = inputs.reduce((sum: number, input) => sum + tokensOf(input), 0);
  return {
    object: "list",
    data: inputs.map((input, index) => ({ object: "embedding", index, embedding: embeddingOf(input, dimensions) })),
    model: body.model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  };
}

export async function startRecordingUpstream(listed: ListedModel[] = []): Promise<RecordingUpstream> {
  const models = [...listed];
  let modelListStatus: number | undefined;
  const requests: Array<Record<string, unknown>> = [];
  const paths: string[] = [];
  const headers: IncomingHttpHeaders[] = [];
  const cutOff: Array<Record<string, unknown>> = [];
  const replies = new Map<string, UpstreamReply>();
  const server = createServer(async (req, res) => {
    let raw = "";
    for await (const piece of req) raw += String(piece);
    if (req.url === "/v1/models") {
      if (modelListStatus !== undefined) return sendJson(res, modelListStatus, { error: { message: "cannot list models now" } });
      sendJson(res, 200, { object: "list", data: models.map((model) => (typeof model === "string" ? { id: model, object: "model" } : { object: "model", ...model })) });
      return;
    }
    const body = JSON.parse(raw) as Record<string, unknown>;
    requests.push(body);
    paths.push(req.url ?? "");
    headers.push(req.headers);
    res.once("close", () => {
      if (!res.writableFinished) cutOff.push(body);
    });
    const fallback: UpstreamReply = req.url === "/v1/embeddings" ? (response) => sendJson(response, 200, embeddingList(body)) : (response) => streamChunks(response, []);
    const reply = replies.get(String(body.model)) ?? fallback;
    reply(res, body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    models,
    failModelList: (status) => {
      modelListStatus = status;
    },
    requests,
    paths,
    headers,
    cutOff,
    reply: (model, reply) => replies.set(model, reply),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
}
