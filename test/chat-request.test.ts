// Request validation: OpenAI-style 400s that name the bad field, never a 500, for any JSON a client may send.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseChatRequest, toTaskRequest } from "../src/api/chat-request.js";
import { InvalidRequestError } from "../src/api/errors.js";
import type { RunningCoordinator } from "../src/coordinator.js";
import { openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";

function paramOf(body: unknown): string | null {
  try {
    parseChatRequest(body);
    return "accepted";
  } catch (error) {
    if (!(error instanceof InvalidRequestError)) throw error;
    return error.param;
  }
}

describe("parseChatRequest", () => {
  const ok = { model: "m", messages: [{ role: "user", content: "hi" }] };

  it("names the offending field", () => {
    expect(paramOf({ messages: ok.messages })).toBe("model");
    expect(paramOf({ ...ok, messages: [] })).toBe("messages");
    expect(paramOf({ ...ok, messages: [{ role: "wizard", content: "x" }] })).toBe("messages[0].role");
    expect(paramOf({ ...ok, messages: [{ role: "user", content: 5 }] })).toBe("messages[0].content");
    expect(paramOf({ ...ok, messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] })).toBe("messages[0].content[0]");
    expect(paramOf({ ...ok, temperature: 3 })).toBe("temperature");
    expect(paramOf({ ...ok, max_tokens: -1 })).toBe("max_tokens");
    expect(paramOf({ ...ok, n: 2 })).toBe("n");
    expect(paramOf({ ...ok, stream: "yes" })).toBe("stream");
    expect(paramOf({ ...ok, reasoning_format: "loud" })).toBe("reasoning_format");
    expect(paramOf([1, 2])).toBe(null);
  });

  it("maps OpenAI fields onto the task, max_completion_tokens first; text parts join with newlines; unknown fields go on as extraBody", () => {
    const request = parseChatRequest({
      ...ok,
      messages: [{ role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] }],
      max_tokens: 10,
      max_completion_tokens: 20,
      stop: "END",
      temperature: 0,
      seed: 3,
      unknown_field: true,
    });
    expect(toTaskRequest(request)).toEqual({
      model: "m",
      messages: [{ role: "user", content: "a\nb" }],
      params: { maxTokens: 20, stop: ["END"], temperature: 0, seed: 3 },
      extraBody: { unknown_field: true },
    });
  });

  it("never throws anything but InvalidRequestError, whatever JSON it gets (property)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        paramOf(value);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(
        fc.record({ model: fc.jsonValue(), messages: fc.jsonValue(), max_tokens: fc.jsonValue(), stop: fc.jsonValue() }, { requiredKeys: [] }),
        (value) => {
          paramOf(value);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("bad input over HTTP", () => {
  let coordinator: RunningCoordinator;
  let worker: TestWorker;

  beforeAll(async () => {
    coordinator = await startTestCoordinator();
    worker = await startSimWorker(coordinator);
  });

  afterAll(async () => {
    await worker.stop();
    await coordinator.close();
  });

  async function post(body: string, contentType = "application/json") {
    const response = await fetch(`${coordinator.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": contentType }, body });
    return { status: response.status, body: (await response.json()) as { error: Record<string, unknown> } };
  }

  it("answers invalid JSON, empty bodies and wrong types with an OpenAI-shaped 400", async () => {
    for (const body of ["{nope", "", "[]", "null", '{"model":"simulator","messages":"hi"}', '{"model":1,"messages":[]}']) {
      const response = await post(body);
      expect(response.status, body).toBe(400);
      expect(response.body.error).toMatchObject({ type: "invalid_request_error", message: expect.any(String) });
      expect(Object.keys(response.body.error).sort()).toEqual(["code", "message", "param", "type"]);
    }
  });

  it("answers unknown routes with an OpenAI-shaped 404", async () => {
    const response = await fetch(`${coordinator.url}/v1/nothing`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
  });

  it("never answers 500 to random JSON bodies (property), and keeps serving", async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (value) => {
        const response = await post(JSON.stringify(value));
        return response.status === 400 || response.status === 404;
      }),
      { numRuns: 100 },
    );
    const completion = await openaiClient(coordinator).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "ok?" }] });
    expect(completion.choices[0]?.finish_reason).toBe("stop");
  });
});
