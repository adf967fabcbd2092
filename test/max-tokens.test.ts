// A reply's token limit is capped by the model's context length, as the worker serving the model announced it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type OpenAI from "openai";
import type { RunningCoordinator } from "../src/coordinator.js";
import { openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";

const messages = [{ role: "user" as const, content: "Hello" }];

describe("max_tokens and the model's context length", () => {
  let coordinator: RunningCoordinator;
  let client: OpenAI;
  let worker: TestWorker;

  beforeAll(async () => {
    coordinator = await startTestCoordinator();
    client = openaiClient(coordinator);
    worker = await startSimWorker(coordinator, { models: ["small"], contextLength: 1024 });
  });

  afterAll(async () => {
    await worker?.stop();
    await coordinator?.close();
  });

  it("refuses a max_tokens larger than the context with an OpenAI 400 naming max_tokens, before any worker runs it", async () => {
    const refused = client.chat.completions.create({ model: "small", messages, max_tokens: 1025 });

    await expect(refused).rejects.toMatchObject({
      status: 400,
      type: "invalid_request_error",
      param: "max_tokens",
      message: expect.stringMatching(/max_tokens is too large: 1025\. The model 'small' holds at most 1024 tokens/),
    });
    expect(worker.log.started).toEqual([]);
  });

  it("names max_completion_tokens when that is the limit the client set, streaming or not", async () => {
    const refused = client.chat.completions.create({ model: "small", messages, max_completion_tokens: 5000, stream: true });

    await expect(refused).rejects.toMatchObject({ status: 400, param: "max_completion_tokens" });
    expect(worker.log.started).toEqual([]);
  });

  it("accepts a limit equal to the context length", async () => {
    const completion = await client.chat.completions.create({ model: "small", messages, max_tokens: 1024 });

    expect(completion.choices[0]?.finish_reason).toBe("stop");
  });

  it("still answers 404 for a model no worker serves, whatever its max_tokens", async () => {
    const refused = client.chat.completions.create({ model: "nowhere", messages, max_tokens: 1_000_000 });

    await expect(refused).rejects.toMatchObject({ status: 404, code: "model_not_found" });
  });
});
