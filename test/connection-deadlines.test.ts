// Slow senders lose their connection: headers and whole requests have deadlines (408). What the server sends back
// has none: streams, long silent replies, the cluster feed and worker connections outlive the request deadline.
import { afterEach, describe, expect, it } from "vitest";
import { rawDefaults, ServeConfig, serveDefaults, serveOptions } from "../src/config.js";
import type { RunningCoordinator } from "../src/coordinator.js";
import { openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { connectRaw } from "./support/raw-http.js";
import { postSse } from "./support/sse.js";

const HEADERS_TIMEOUT_MS = 300;
const REQUEST_TIMEOUT_MS = 600;
/** Far below Node's own defaults (60 s for headers, 300 s for a request), far above our deadlines plus the check interval. */
const DROPPED_WITHIN_MS = 5_000;

describe("request deadlines", () => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;

  afterEach(async () => {
    await worker?.stop();
    await coordinator?.close();
    worker = undefined;
    coordinator = undefined;
  });

  it("default to 10 s for headers and 30 s for a whole request", () => {
    expect(serveDefaults()).toMatchObject({ headersTimeoutMs: 10_000, requestTimeoutMs: 30_000 });
  });

  it("refuse a configuration whose request deadline comes before its headers deadline", () => {
    const parsed = ServeConfig.safeParse({ ...rawDefaults(serveOptions), headersTimeoutMs: "5000", requestTimeoutMs: "1000" });
    expect(parsed.error?.issues[0]?.path).toEqual(["requestTimeoutMs"]);
  });

  it("drop a connection whose headers do not arrive within --headers-timeout-ms, though bytes keep dripping", async () => {
    coordinator = await startTestCoordinator({ headersTimeoutMs: HEADERS_TIMEOUT_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS });
    const client = await connectRaw(coordinator.url);
    const startedAt = Date.now();

    client.socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
    client.drip("a", 50);

    const closedAt = await client.closed;
    expect(client.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(closedAt - startedAt).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
    expect(closedAt - startedAt).toBeLessThan(DROPPED_WITHIN_MS);
  });

  it.each([
    { body: "stalls", dripMs: undefined },
    { body: "drips", dripMs: 50 },
  ])("drop a request whose body $body, within --request-timeout-ms", async ({ dripMs }) => {
    coordinator = await startTestCoordinator({ headersTimeoutMs: HEADERS_TIMEOUT_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS });
    const client = await connectRaw(coordinator.url);
    const startedAt = Date.now();

    client.socket.write(
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n" +
        '{"model":"simulator","messages":[{"role":"user","content":"',
    );
    if (dripMs !== undefined) client.drip("a", dripMs);

    const closedAt = await client.closed;
    expect(client.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(closedAt - startedAt).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50);
    expect(closedAt - startedAt).toBeLessThan(DROPPED_WITHIN_MS);
  });

  it("do not cut a chat stream, a long silent reply, the cluster feed or a worker connection that outlast them", async () => {
    coordinator = await startTestCoordinator({ headersTimeoutMs: HEADERS_TIMEOUT_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS });
    worker = await startSimWorker(coordinator, { name: "long-lived", prefillMs: 1_500, tokensPerSecond: 20 });
    const url = coordinator.url;
    const messages = [{ role: "user" as const, content: "take your time" }];
    const startedAt = Date.now();
    const lasted = () => Date.now() - startedAt;

    const stream = postSse(`${url}/v1/chat/completions`, { model: "simulator", messages, stream: true }).then((raw) => ({ raw, ms: lasted() }));
    const silent = openaiClient(coordinator)
      .chat.completions.create({ model: "simulator", messages })
      .then((reply) => ({ reply, ms: lasted() }));
    const feed = (async () => {
      const response = await fetch(`${url}/v1/cluster/events`);
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      let events = 0;
      while (events < 4) {
        const { done, value } = await reader.read();
        if (done) throw new Error("the cluster feed ended");
        events += new TextDecoder().decode(value).split("\n\n").filter((frame) => frame.startsWith("data:")).length;
      }
      await reader.cancel();
      return lasted();
    })();

    const [streamed, answered, fed] = await Promise.all([stream, silent, feed]);
    expect(streamed.raw.done).toBe(true);
    expect(streamed.ms).toBeGreaterThan(4 * REQUEST_TIMEOUT_MS);
    expect(answered.reply.choices[0]?.finish_reason).toBe("stop");
    expect(answered.ms).toBeGreaterThan(2 * REQUEST_TIMEOUT_MS);
    expect(fed).toBeGreaterThan(4 * REQUEST_TIMEOUT_MS);
    expect(coordinator.master.snapshot().workers.map((w) => w.id)).toEqual([worker.id]);
  });
});
