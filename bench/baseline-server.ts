// The baseline: an OpenAI-compatible streaming server that runs an engine in its own process, with nothing
// between the engine and the client's socket — what a user gets talking to an inference server directly.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type Engine, textSink } from "../src/worker/engines/engine.js";

interface ChatBody {
  model?: string;
  messages?: Array<{ role: "user"; content: string }>;
  max_tokens?: number;
}

let nextId = 0;

/** Serves POST /v1/chat/completions (streaming only) from `engine`; resolves with the listening server. */
export async function startBaselineServer(engine: Engine, port = 0): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
      res.writeHead(404).end();
      return;
    }
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (part: string) => (raw += part));
    req.on("end", () => void stream(engine, JSON.parse(raw) as ChatBody, res));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function stream(engine: Engine, body: ChatBody, res: import("node:http").ServerResponse): Promise<void> {
  const controller = new AbortController();
  res.on("close", () => controller.abort(new Error("client disconnected")));
  res.writeHead(200, { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache" });
  const id = `chatcmpl-${++nextId}`;
  const created = Math.floor(Date.now() / 1000);
  const model = body.model ?? "simulator";
  const chunk = (delta: object, finish: string | null) =>
    `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
  let first = true;
  try {
    const result = await engine.generate(
      {
        taskId: id,
        model,
        messages: body.messages ?? [],
        params: body.max_tokens ? { maxTokens: body.max_tokens } : {},
      },
      textSink((text) => {
        res.write(chunk(first ? { role: "assistant", content: text } : { content: text }, null));
        first = false;
      }),
      controller.signal,
    );
    res.write(chunk({}, result.finishReason));
    res.end("data: [DONE]\n\n");
  } catch {
    if (!controller.signal.aborted) res.destroy();
  }
}
