// A fake OpenAI-compatible upstream (a real node:http server on port 0) that records every request body and streams
// the chat completion chunks a test scripts for each model.
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type UpstreamReply = (res: ServerResponse, body: Record<string, unknown>) => void;

export interface RecordingUpstream {
  /** The upstream's OpenAI base URL, with its `/v1`. */
  baseUrl: string;
  /** The body of every `POST` (`/v1/chat/completions`, or `/v1/completions` for a raw prompt), in order. */
  readonly requests: Array<Record<string, unknown>>;
  /** The path of each of those requests. */
  readonly paths: string[];
  /** What the upstream answers for `model` (the default reply is an empty stream). */
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

export async function startRecordingUpstream(models: string[] = []): Promise<RecordingUpstream> {
  const requests: Array<Record<string, unknown>> = [];
  const paths: string[] = [];
  const replies = new Map<string, UpstreamReply>();
  const server = createServer(async (req, res) => {
    let raw = "";
    for await (const piece of req) raw += String(piece);
    if (req.url === "/v1/models") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: models.map((id) => ({ id, object: "model" })) }));
      return;
    }
    const body = JSON.parse(raw) as Record<string, unknown>;
    requests.push(body);
    paths.push(req.url ?? "");
    const reply = replies.get(String(body.model)) ?? ((response) => streamChunks(response, []));
    reply(res, body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    requests,
    paths,
    reply: (model, reply) => replies.set(model, reply),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
}
