// JSON routes take JSON only: a body sent as text/plain, a form or with no Content-Type (what a web page may send to
// any origin without a CORS preflight) gets an OpenAI-shaped 415 and never reaches a worker.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";

const chatBody = JSON.stringify({ model: "simulator", messages: [{ role: "user", content: "json only" }] });

describe("JSON content type", () => {
  let coordinator: RunningCoordinator;
  let worker: TestWorker;

  beforeAll(async () => {
    coordinator = await startTestCoordinator({ corsOrigin: ["http://allowed.test"] });
    worker = await startSimWorker(coordinator, { tokensPerSecond: 0 });
  });

  afterAll(async () => {
    await worker.stop();
    await coordinator.close();
  });

  /** Posts `body` as bytes, so that fetch adds no Content-Type of its own. */
  function post(contentType: string | undefined, body: string = chatBody, path = "/v1/chat/completions"): Promise<Response> {
    const headers: Record<string, string> = { origin: "http://elsewhere.test" };
    if (contentType !== undefined) headers["content-type"] = contentType;
    return fetch(`${coordinator.url}${path}`, { method: "POST", headers, body: new TextEncoder().encode(body) });
  }

  it.each([
    undefined,
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/json",
    "application/jsonp",
    "application/json; charset=latin1",
    "application/json; charset=utf-16",
  ])("refuses a chat request sent as %s with a 415, and no worker sees it", async (contentType) => {
    const startedBefore = worker.log.started.length;

    const response = await post(contentType);

    expect(response.status).toBe(415);
    expect(await response.json()).toEqual({
      error: { message: expect.stringContaining("application/json"), type: "invalid_request_error", param: null, code: "unsupported_media_type" },
    });
    expect(worker.log.started.length).toBe(startedBefore);
  });

  it("refuses a text/plain body over the body limit with the 415 too, not with a dropped connection", async () => {
    const response = await post("text/plain", "x".repeat(9 * 1024 * 1024));

    expect(response.status).toBe(415);
    expect((await response.json()) as unknown).toMatchObject({ error: { code: "unsupported_media_type" } });
  });

  it("refuses a non-JSON POST on any /v1 route, before it is routed", async () => {
    const response = await post("text/plain", chatBody, "/v1/some/future/route");

    expect(response.status).toBe(415);
  });

  it.each([
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON;Charset=\"UTF-8\"",
    "application/vnd.api+json",
  ])("serves a chat request sent as %s", async (contentType) => {
    const response = await post(contentType);

    expect(response.status).toBe(200);
    expect(((await response.json()) as { choices: Array<{ finish_reason: string }> }).choices[0]?.finish_reason).toBe("stop");
  });

  it("still serves the openai SDK, which sends application/json", async () => {
    const client = new OpenAI({ baseURL: `${coordinator.url}/v1`, apiKey: "unused", maxRetries: 0 });

    const completion = await client.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "sdk" }] });

    expect(completion.choices[0]?.finish_reason).toBe("stop");
  });

  it("lets pages of the configured origins call Ollama's routes (CORS), and refuses other origins there", async () => {
    const preflight = await fetch(`${coordinator.url}/api/chat`, {
      method: "OPTIONS",
      headers: { origin: "http://allowed.test", "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
    });
    const allowed = await fetch(`${coordinator.url}/api/tags`, { headers: { origin: "http://allowed.test" } });
    const elsewhere = await fetch(`${coordinator.url}/api/tags`, { headers: { origin: "http://elsewhere.test" } });

    expect(preflight.headers.get("access-control-allow-origin")).toBe("http://allowed.test");
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("http://allowed.test");
    expect(elsewhere.status).toBe(403);
    await Promise.all([preflight.body?.cancel(), allowed.body?.cancel(), elsewhere.body?.cancel()]);
  });
});
