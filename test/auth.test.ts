// Who gets in: client API keys on every guarded route, the worker join token, a worker's claim to its own tasks
// only, and CORS off unless an origin is configured.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { CloseCode } from "../src/worker-protocol/index.js";
import { startSimWorker, startTestCoordinator, TEST_TOKEN, type TestWorker } from "./support/cluster.js";
import { connectPeer, hello } from "./support/peer.js";

const FLAG_KEY = "key-one-12345678";
const FILE_KEY = "key-two-abcdefgh";

function clientWith(coordinator: RunningCoordinator, apiKey: string): OpenAI {
  return new OpenAI({ baseURL: `${coordinator.url}/v1`, apiKey, maxRetries: 0, timeout: 20_000 });
}

const chatBody = JSON.stringify({ model: "simulator", messages: [{ role: "user", content: "let me in" }] });

/** Every route behind the API key, with a request that succeeds when the key is right. */
const guardedRoutes: ReadonlyArray<{ method: "GET" | "POST"; path: string; body?: string }> = [
  { method: "POST", path: "/v1/chat/completions", body: chatBody },
  { method: "GET", path: "/v1/models" },
  { method: "GET", path: "/v1/models/simulator" },
  { method: "GET", path: "/v1/cluster" },
  { method: "GET", path: "/v1/cluster/events" },
  { method: "GET", path: "/metrics" },
];

async function expectUnauthorized(response: Response, code: string, what: string): Promise<void> {
  expect(response.status, what).toBe(401);
  const body = (await response.json()) as { error: Record<string, unknown> };
  expect(Object.keys(body.error).sort(), what).toEqual(["code", "message", "param", "type"]);
  expect(body.error, what).toMatchObject({ type: "authentication_error", code, param: null, message: expect.any(String) });
}

describe("client API keys", () => {
  let coordinator: RunningCoordinator;
  let worker: TestWorker;
  let keysDir: string;

  beforeAll(async () => {
    keysDir = await mkdtemp(join(tmpdir(), "coordinator-keys-"));
    const keysFile = join(keysDir, "keys.txt");
    await writeFile(keysFile, `# clients of the coordinator\n\n  ${FILE_KEY}  \r\n`);
    coordinator = await startTestCoordinator({ apiKey: [FLAG_KEY], apiKeysFile: keysFile });
    worker = await startSimWorker(coordinator, { tokensPerSecond: 0 });
  });

  afterAll(async () => {
    await worker.stop();
    await coordinator.close();
    await rm(keysDir, { recursive: true, force: true });
  });

  function call(route: (typeof guardedRoutes)[number], authorization?: string): Promise<Response> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (authorization !== undefined) headers.authorization = authorization;
    return fetch(`${coordinator.url}${route.path}`, {
      method: route.method,
      headers,
      body: route.body,
      signal: AbortSignal.timeout(10_000),
    });
  }

  it("answers a request without a key with an OpenAI-shaped 401 on every guarded route", async () => {
    for (const route of guardedRoutes) {
      await expectUnauthorized(await call(route), "missing_api_key", `${route.method} ${route.path}`);
    }
  });

  it("answers a wrong key with a 401 on every guarded route", async () => {
    const wrong = [
      `Bearer ${FLAG_KEY}x`,
      `Bearer ${FLAG_KEY.slice(0, -1)}`,
      `Bearer ${FLAG_KEY.toUpperCase()}`,
      `Bearer ${FLAG_KEY},${FILE_KEY}`,
      "Bearer # clients of the coordinator", // the keys file's comment is not a key
      "Bearer sk-nothing-like-it",
    ];
    for (const route of guardedRoutes) {
      for (const authorization of wrong) {
        await expectUnauthorized(await call(route, authorization), "invalid_api_key", `${route.path} with ${authorization}`);
      }
    }
  });

  it("does not take the key from anywhere but a bearer Authorization header or Anthropic's x-api-key", async () => {
    const route = guardedRoutes[1] as (typeof guardedRoutes)[number];
    for (const authorization of [FLAG_KEY, `Basic ${Buffer.from(`user:${FLAG_KEY}`).toString("base64")}`, "Bearer", "Bearer "]) {
      await expectUnauthorized(await call(route, authorization), "missing_api_key", `Authorization: ${authorization}`);
    }
    const inOtherHeaders = await fetch(`${coordinator.url}/v1/models?api_key=${FLAG_KEY}`, {
      headers: { "api-key": FLAG_KEY },
    });
    await expectUnauthorized(inOtherHeaders, "missing_api_key", "key in a query parameter and other headers");
    const wrongXApiKey = await fetch(`${coordinator.url}/v1/models`, { headers: { "x-api-key": "not-the-key" } });
    await expectUnauthorized(wrongXApiKey, "invalid_api_key", "a wrong x-api-key");
    const xApiKey = await fetch(`${coordinator.url}/v1/models`, { headers: { "x-api-key": FILE_KEY } });
    expect(xApiKey.status).toBe(200);
  });

  it("serves every guarded route to either key", async () => {
    for (const key of [FLAG_KEY, FILE_KEY]) {
      for (const route of guardedRoutes) {
        const response = await call(route, `Bearer ${key}`);
        expect(response.status, `${route.path} with ${key}`).toBe(200);
        await response.body?.cancel(); // the cluster feed never ends by itself
      }
    }
  });

  it("lets the openai SDK complete with either key", async () => {
    for (const key of [FLAG_KEY, FILE_KEY]) {
      const client = clientWith(coordinator, key);
      const completion = await client.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: `key ${key}` }] });
      expect(completion.choices[0]?.finish_reason).toBe("stop");
      expect(completion.choices[0]?.message.content).toContain(`key ${key}`);
      expect((await client.models.list()).data.map((m) => m.id)).toEqual(["simulator"]);
    }
  });

  it("surfaces a wrong key in the openai SDK as an AuthenticationError", async () => {
    const request = clientWith(coordinator, "key-wrong-0000000").chat.completions.create({
      model: "simulator",
      messages: [{ role: "user", content: "hi" }],
    });
    await expect(request).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it("finds no way around the guard through odd spellings of a guarded path", async () => {
    const paths = [
      "/v1/models/", "/v1//models", "//v1/models", "/v1/models?x=1", "/v1/%6Dodels", "/V1/models", "/v1/models%2F",
      "/v1/cluster/", "/v1/cluster%2F", "/metrics/", "/metrics?format=json", "/METRICS", "/%76%31/models", "/v1;/models",
    ];
    for (const path of paths) {
      const response = await fetch(`${coordinator.url}${path}`);
      expect([401, 404], `${path} answered ${response.status}`).toContain(response.status);
      await response.body?.cancel();
    }
  });

  it("keeps /health and /ready open", async () => {
    expect((await fetch(`${coordinator.url}/health`)).status).toBe(200);
    expect((await fetch(`${coordinator.url}/ready`)).status).toBe(200);
  });
});

describe("worker identity", () => {
  let coordinator: RunningCoordinator;
  let good: TestWorker;

  beforeAll(async () => {
    // The tests below send more wrong tokens than the ban allows from one address: here the comparison answers each
    // one (the ban has its own tests in worker-token-limit.test.ts).
    coordinator = await startTestCoordinator({ apiKey: [FLAG_KEY], workerTokenFailures: 0 });
    good = await startSimWorker(coordinator, { name: "good", tokensPerSecond: 100, replyTokens: 40 });
  });

  afterAll(async () => {
    await good.stop();
    await coordinator.close();
  });

  it("refuses a wrong, missing, truncated or extended worker token with close code 4001", async () => {
    for (const token of ["wrong-token", "", TEST_TOKEN.slice(0, -1), `${TEST_TOKEN}0`, TEST_TOKEN.toUpperCase(), FLAG_KEY]) {
      const peer = await connectPeer(coordinator);
      peer.socket.send(JSON.stringify(hello({ token })));

      expect(await peer.next("ProtocolError"), token).toMatchObject({ code: "unauthorized" });
      expect((await peer.closed).code, token).toBe(CloseCode.unauthorized);
      expect(peer.received.some((m) => m.type === "Welcome"), token).toBe(false);
    }
    expect(coordinator.master.snapshot().workers.map((w) => w.name)).toEqual(["good"]);
  });

  it("disconnects a worker that reports on another worker's task, with 4000, and the task completes untouched", async () => {
    const rogue = await connectPeer(coordinator);
    rogue.socket.send(JSON.stringify(hello()));
    await rogue.next("Welcome");

    const completion = clientWith(coordinator, FLAG_KEY).chat.completions.create({
      model: "simulator",
      messages: [{ role: "user", content: "mine" }],
    });
    await good.log.until(() => good.log.started.length > 0, "the good worker to take the task");
    const stolen = good.log.started.at(-1) as string;
    rogue.socket.send(JSON.stringify({ type: "TaskFinished", taskId: stolen, finishReason: "stop", usage: { promptTokens: 1, completionTokens: 1 } }));

    expect(await rogue.next("ProtocolError")).toMatchObject({ code: "unknown_task" });
    expect((await rogue.closed).code).toBe(CloseCode.protocolError);
    const reply = await completion;
    expect(reply.choices[0]?.finish_reason).toBe("stop");
    expect(reply.choices[0]?.message.content).toContain("you said");
    expect(coordinator.master.snapshot().workers.map((w) => w.name)).toEqual(["good"]);
  });
});

describe("CORS", () => {
  const origin = "http://example.test";
  const preflight = (url: string, from: string) =>
    fetch(`${url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: { origin: from, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
    });

  it("is off without a configured origin", async () => {
    const coordinator = await startTestCoordinator({ apiKey: [FLAG_KEY] });
    try {
      const answer = await preflight(coordinator.url, origin);
      expect(answer.headers.get("access-control-allow-origin")).toBeNull();
      const models = await fetch(`${coordinator.url}/v1/models`, { headers: { origin, authorization: `Bearer ${FLAG_KEY}` } });
      expect(models.status).toBe(200);
      expect(models.headers.get("access-control-allow-origin")).toBeNull();
    } finally {
      await coordinator.close();
    }
  });

  it("answers a preflight from the configured origin without needing the key, and no other origin", async () => {
    const coordinator = await startTestCoordinator({ apiKey: [FLAG_KEY], corsOrigin: [origin] });
    try {
      const answer = await preflight(coordinator.url, origin);
      expect(answer.status).toBe(204);
      expect(answer.headers.get("access-control-allow-origin")).toBe(origin);
      expect(answer.headers.get("access-control-allow-methods")).toContain("POST");
      expect(answer.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");

      const stranger = await preflight(coordinator.url, "http://evil.test");
      expect(stranger.headers.get("access-control-allow-origin")).not.toBe("http://evil.test");

      // The browser may read a refusal (so it can tell its user the key is wrong), and a success with the key.
      const refused = await fetch(`${coordinator.url}/v1/models`, { headers: { origin } });
      expect(refused.status).toBe(401);
      expect(refused.headers.get("access-control-allow-origin")).toBe(origin);
      const served = await fetch(`${coordinator.url}/v1/models`, { headers: { origin, authorization: `Bearer ${FLAG_KEY}` } });
      expect(served.status).toBe(200);
      expect(served.headers.get("access-control-allow-origin")).toBe(origin);
    } finally {
      await coordinator.close();
    }
  });

  // @hono/node-server logs (console.error) when it tries to write the head of a response we already streamed.
  it.each([
    { cors: true, corsOrigin: [origin] },
    { cors: false, corsOrigin: [] },
  ])("streams (CORS on: $cors) with the right headers, and the HTTP layer reports no error", async ({ cors, corsOrigin }) => {
    const coordinator = await startTestCoordinator({ corsOrigin });
    const worker = await startSimWorker(coordinator, { name: "cors" });
    const reported = vi.spyOn(console, "error");
    const allowed = cors ? origin : null;
    try {
      const answer = await fetch(`${coordinator.url}/v1/chat/completions`, {
        method: "POST",
        headers: { origin, "content-type": "application/json" },
        body: JSON.stringify({ model: "simulator", stream: true, messages: [{ role: "user", content: "hi" }] }),
      });
      expect(answer.headers.get("access-control-allow-origin")).toBe(allowed);
      expect(answer.headers.get("content-type")).toContain("text/event-stream");
      expect(answer.headers.get("x-request-id")).toBeTruthy();
      expect(await answer.text()).toMatch(/data: \[DONE\]\n\n$/);

      const feed = new AbortController();
      const events = await fetch(`${coordinator.url}/v1/cluster/events`, { headers: { origin }, signal: feed.signal });
      expect(events.headers.get("access-control-allow-origin")).toBe(allowed);
      const reader = events.body?.getReader();
      expect((await reader?.read())?.done).toBe(false);
      feed.abort();
      await reader?.cancel().catch(() => {});
      expect(reported).not.toHaveBeenCalled();
    } finally {
      reported.mockRestore();
      await worker.stop();
      await coordinator.close();
    }
  });
});
