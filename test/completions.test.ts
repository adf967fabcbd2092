// POST /v1/completions through the official openai SDK: a raw prompt continued with no chat template, whole and
// streamed, echo, OpenAI's default of 16 tokens, the refusals, and the raw_prompt capability.
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { SIMULATED_LOGPROB, simulatedReply } from "../src/worker/engines/simulator.js";
import { openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { startWireTap, type WireTap } from "./support/wire-tap.js";

const prompt = "Once upon a time";
const answer = simulatedReply([{ role: "user", content: prompt }]).answer;

describe("POST /v1/completions", () => {
  let coordinator: RunningCoordinator;
  let client: OpenAI;
  let tap: WireTap;
  const workers: TestWorker[] = [];

  beforeAll(async () => {
    coordinator = await startTestCoordinator();
    client = openaiClient(coordinator);
    tap = await startWireTap(coordinator.workerUrl);
    workers.push(await startSimWorker({ workerUrl: tap.url }, { tokensPerSecond: 0 }));
    workers.push(await startSimWorker(coordinator, { models: ["legacy"], capabilities: null, tokensPerSecond: 0 }));
  });

  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await tap.close();
    await coordinator.close();
  });

  const lastAssigned = () => tap.messages.flatMap((t) => (t.message.type === "TaskAssigned" ? [t.message] : [])).at(-1);

  it("continues the raw prompt, with no template and no reasoning, as a text_completion", async () => {
    const completion = await client.completions.create({ model: "simulator", prompt, max_tokens: 200, temperature: 0, stop: ["zzz"] });
    const task = lastAssigned();

    expect(completion).toMatchObject({ object: "text_completion", model: "simulator" });
    expect(completion.id).toMatch(/^cmpl-/);
    expect(completion.choices).toEqual([{ text: answer, index: 0, logprobs: null, finish_reason: "stop" }]);
    expect(completion.usage?.completion_tokens).toBeGreaterThan(0);
    expect(task).toMatchObject({ messages: [], prompt, params: { maxTokens: 200, temperature: 0, stop: ["zzz"] } });
  });

  it("gives 16 tokens when max_tokens is not set (OpenAI's default), ending with length", async () => {
    const completion = await client.completions.create({ model: "simulator", prompt });

    expect(lastAssigned()?.params.maxTokens).toBe(16);
    expect(completion.choices[0]?.finish_reason).toBe("length");
    expect(completion.usage?.completion_tokens).toBe(16);
  });

  it("streams the text in chunks, then the finish reason, usage when asked, and [DONE]; echo puts the prompt first", async () => {
    const stream = await client.completions.create({ model: "simulator", prompt, max_tokens: 200, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    const echoed = await client.completions.create({ model: "simulator", prompt, max_tokens: 200, echo: true });
    let echoedStream = "";
    for await (const chunk of await client.completions.create({ model: "simulator", prompt, max_tokens: 200, echo: true, stream: true })) {
      echoedStream += chunk.choices[0]?.text ?? "";
    }

    expect(text).toBe(answer);
    expect(finish).toBe("stop");
    expect(usage?.total_tokens).toBeGreaterThan(0);
    expect(echoed.choices[0]?.text).toBe(prompt + answer);
    expect(echoedStream).toBe(prompt + answer);
  });

  it("gives the legacy logprobs, whole and streamed: each token, its logprob, its alternatives and its offset", async () => {
    const whole = await client.completions.create({ model: "simulator", prompt, max_tokens: 200, logprobs: 2 });
    const streamed = { tokens: [] as string[], offsets: [] as number[], text: "" };
    for await (const chunk of await client.completions.create({ model: "simulator", prompt, max_tokens: 200, logprobs: 2, stream: true })) {
      streamed.text += chunk.choices[0]?.text ?? "";
      streamed.tokens.push(...(chunk.choices[0]?.logprobs?.tokens ?? []));
      streamed.offsets.push(...(chunk.choices[0]?.logprobs?.text_offset ?? []));
    }

    const logprobs = whole.choices[0]?.logprobs;
    expect(lastAssigned()?.logprobs).toEqual({ top: 2 });
    expect(logprobs?.tokens?.join("")).toBe(answer);
    expect(logprobs?.token_logprobs?.every((value) => value === SIMULATED_LOGPROB)).toBe(true);
    expect(logprobs?.top_logprobs?.every((top) => Object.keys(top).length === 2)).toBe(true);
    const offsets = (logprobs?.tokens ?? []).map((_, i, tokens) => tokens.slice(0, i).join("").length);
    expect(logprobs?.text_offset).toEqual(offsets);
    expect(streamed).toEqual({ tokens: logprobs?.tokens, offsets, text: answer });
    const plain = await client.completions.create({ model: "simulator", prompt, max_tokens: 200 });
    expect(plain.choices[0]?.logprobs).toBeNull();
  });

  it("refuses, naming the parameter, what it cannot honour", async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ suffix: "end" }, "suffix"],
      [{ logprobs: 2, echo: true }, "echo"],
      [{ logprobs: 6 }, "logprobs"],
      [{ n: 2 }, "n"],
      [{ best_of: 3 }, "best_of"],
      [{ prompt: ["one", "two"] }, "prompt"],
      [{ prompt: [1, 2, 3] }, "prompt"],
      [{ stop: ["a", "b", "c", "d", "e"] }, "stop"],
      [{ model: "legacy" }, "prompt"],
    ];
    for (const [body, param] of cases) {
      const response = await fetch(`${coordinator.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "simulator", prompt, ...body }),
      });
      const { error } = (await response.json()) as { error: { param: unknown; type: string } };
      expect({ status: response.status, param: error.param, type: error.type }, JSON.stringify(body)).toEqual({ status: 400, param, type: "invalid_request_error" });
    }
  });
});
