// End to end through the official openai SDK: coordinator on port 0, two simulator workers over real WebSockets.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type OpenAI from "openai";
import type { RunningCoordinator } from "../src/coordinator.js";
import { simulatedReply } from "../src/worker/engines/simulator.js";
import { openaiClient, startSimWorker, startTestCoordinator, type TestWorker, withExtensions } from "./support/cluster.js";
import { postSse } from "./support/sse.js";

const question = "What is the capital of France?";
const messages = [{ role: "user" as const, content: question }];
const expected = simulatedReply(messages);

describe("chat completions end to end", () => {
  let coordinator: RunningCoordinator;
  let client: OpenAI;
  const workers: TestWorker[] = [];

  beforeAll(async () => {
    coordinator = await startTestCoordinator();
    client = openaiClient(coordinator);
    workers.push(await startSimWorker(coordinator, { name: "a" }), await startSimWorker(coordinator, { name: "b" }));
  });

  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await coordinator.close();
  });

  it("answers a non-streaming request with the simulator's answer, no thinking, and usage", async () => {
    const completion = await client.chat.completions.create({ model: "simulator", messages });

    expect(completion.object).toBe("chat.completion");
    // No system_fingerprint: the spec types it as a string, and a null breaks clients checked against it.
    expect(completion).not.toHaveProperty("system_fingerprint");
    expect(completion.choices[0]?.message.content).toBe(expected.answer);
    expect(completion.choices[0]?.message.content).not.toContain("think");
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(completion.usage?.completion_tokens).toBeGreaterThan(10);
    expect(completion.usage?.prompt_tokens).toBeGreaterThan(0);
    expect(completion.usage?.total_tokens).toBe(
      (completion.usage?.prompt_tokens ?? 0) + (completion.usage?.completion_tokens ?? 0),
    );
  });

  it("streams the answer with the thinking hidden by default, and the usage chunk when asked", async () => {
    const stream = await client.chat.completions.create({
      model: "simulator",
      messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = "";
    let reasoning = "";
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    let role: string | undefined;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice) {
        role ??= choice.delta.role;
        content += choice.delta.content ?? "";
        reasoning += (choice.delta as { reasoning_content?: string }).reasoning_content ?? "";
        finish = choice.finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }

    expect(role).toBe("assistant");
    expect(content).toBe(expected.answer);
    expect(reasoning).toBe("");
    expect(finish).toBe("stop");
    expect(usage?.completion_tokens).toBeGreaterThan(10);
  });

  it("sends the thinking as reasoning_content in separate mode, never in content", async () => {
    const stream = await client.chat.completions.create(
      withExtensions({ model: "simulator", messages, stream: true as const }, { reasoning_format: "separate" }),
    );
    let content = "";
    let reasoning = "";
    for await (const chunk of stream) {
      content += chunk.choices[0]?.delta.content ?? "";
      reasoning += (chunk.choices[0]?.delta as { reasoning_content?: string }).reasoning_content ?? "";
    }

    expect(reasoning).toBe(expected.reasoning);
    expect(content).toBe(expected.answer);

    const whole = await client.chat.completions.create(
      withExtensions({ model: "simulator", messages }, { reasoning_format: "separate" }),
    );
    const message = whole.choices[0]?.message as { content: string; reasoning_content?: string };
    expect(message.reasoning_content).toBe(expected.reasoning);
    expect(message.content).toBe(expected.answer);
  });

  it("passes the text through untouched in raw mode", async () => {
    const completion = await client.chat.completions.create(
      withExtensions({ model: "simulator", messages }, { reasoning_format: "raw" }),
    );

    expect(completion.choices[0]?.message.content).toBe(`<think>${expected.reasoning}</think>${expected.answer}`);
  });

  it("honours max_tokens with finish_reason length", async () => {
    const completion = await client.chat.completions.create({ model: "simulator", messages, max_tokens: 3, reasoning_effort: "low" });

    expect(completion.choices[0]?.finish_reason).toBe("length");
    expect(completion.usage?.completion_tokens).toBe(3);
  });

  it("accepts array-of-text-parts content, system messages and unknown fields", async () => {
    const completion = await client.chat.completions.create(
      withExtensions(
        {
          model: "simulator",
          messages: [
            { role: "system" as const, content: "Be brief." },
            { role: "user" as const, content: [{ type: "text" as const, text: "What is the capital" }, { type: "text" as const, text: " of France?" }] },
          ],
          temperature: 0.2,
          top_p: 0.9,
          seed: 7,
          stop: ["never-appears"],
          user: "someone",
        },
        { some_future_field: { x: 1 } }, // unknown fields are ignored, as OpenAI does
      ),
    );

    expect(completion.choices[0]?.message.content).toBe(expected.answer);
  });

  it("frames SSE for proxies: event-stream headers, data lines, [DONE]", async () => {
    const raw = await postSse(`${coordinator.url}/v1/chat/completions`, { model: "simulator", messages, stream: true });

    expect(raw.status).toBe(200);
    expect(raw.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(raw.headers.get("cache-control")).toBe("no-cache");
    expect(raw.headers.get("x-accel-buffering")).toBe("no");
    expect(raw.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(raw.done).toBe(true);
    expect(raw.frames.at(-1)).toBe("data: [DONE]");
    for (const chunk of raw.data) {
      expect(chunk.object).toBe("chat.completion.chunk");
      expect(chunk).not.toHaveProperty("system_fingerprint");
    }
  });

  it("lists the served models with the workers serving each", async () => {
    const list = await client.models.list();
    const model = list.data.find((m) => m.id === "simulator") as unknown as { workers: Array<{ name: string }>; owned_by: string };

    expect(model.owned_by).toBe("coordinator-simulator");
    expect(model.workers.map((w) => w.name).sort()).toEqual(["a", "b"]);
    expect((await client.models.retrieve("simulator")).id).toBe("simulator");
    await expect(client.models.retrieve("nope")).rejects.toMatchObject({ status: 404 });
  });

  it("reports health, readiness and the cluster state", async () => {
    expect((await fetch(`${coordinator.url}/health`)).status).toBe(200);
    const ready = await fetch(`${coordinator.url}/ready`);
    expect(ready.status).toBe(200);
    const cluster = (await (await fetch(`${coordinator.url}/v1/cluster`)).json()) as {
      workers: Array<{ name: string; maxConcurrency: number; inflight: string[]; device: { kind: string } }>;
      models: Array<{ id: string; queueDepth: number }>;
    };
    expect(cluster.workers.map((w) => w.name).sort()).toEqual(["a", "b"]);
    expect(cluster.workers[0]?.device.kind).toBe("simulator");
    expect(cluster.models).toEqual([expect.objectContaining({ id: "simulator", queueDepth: 0 })]);
  });
});

describe("reasoning field choice", () => {
  it("sends thinking as both reasoning_content and reasoning with --reasoning-field both", async () => {
    const coordinator = await startTestCoordinator({ reasoning: "separate", reasoningField: "both" });
    const worker = await startSimWorker(coordinator);
    try {
      const client = openaiClient(coordinator);
      const whole = await client.chat.completions.create({ model: "simulator", messages });
      const message = whole.choices[0]?.message as { reasoning_content?: string; reasoning?: string };
      expect(message.reasoning_content).toBe(expected.reasoning);
      expect(message.reasoning).toBe(expected.reasoning);

      let viaReasoning = "";
      for await (const chunk of await client.chat.completions.create({ model: "simulator", messages, stream: true })) {
        viaReasoning += (chunk.choices[0]?.delta as { reasoning?: string } | undefined)?.reasoning ?? "";
      }
      expect(viaReasoning).toBe(expected.reasoning);
    } finally {
      await worker.stop();
      await coordinator.close();
    }
  });
});
