// SSE keepalive comments fill silent periods (prefill, hidden thinking, queueing) without disturbing clients.
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { simulatedReply } from "../src/worker/engines/simulator.js";
import { openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { postSse } from "./support/sse.js";

const messages = [{ role: "user" as const, content: "Tell me something." }];

describe("SSE keepalive", () => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;

  afterEach(async () => {
    await worker?.stop();
    await coordinator?.close();
  });

  it("sends keepalive comments before the first data chunk during a silent prefill, then completes", async () => {
    coordinator = await startTestCoordinator({ keepaliveMs: 100 });
    worker = await startSimWorker(coordinator, { prefillMs: 1_000 });

    const raw = await postSse(`${coordinator.url}/v1/chat/completions`, { model: "simulator", messages, stream: true });

    const firstData = raw.frames.findIndex((f) => f.startsWith("data: "));
    const keepalivesBefore = raw.frames.slice(0, firstData).filter((f) => f === ": keepalive");
    expect(keepalivesBefore.length).toBeGreaterThanOrEqual(3);
    expect(raw.done).toBe(true);
    expect(raw.frames.at(-1)).toBe("data: [DONE]");
  });

  it("keeps the stream alive while hidden thinking produces nothing visible", async () => {
    coordinator = await startTestCoordinator({ keepaliveMs: 100 });
    worker = await startSimWorker(coordinator, { thinkMs: 800 });

    const raw = await postSse(`${coordinator.url}/v1/chat/completions`, { model: "simulator", messages, stream: true });

    expect(raw.frames.filter((f) => f === ": keepalive").length).toBeGreaterThanOrEqual(3);
    expect(raw.done).toBe(true);
  });

  it("keeps a queued request's stream alive until a worker takes it", async () => {
    coordinator = await startTestCoordinator({ keepaliveMs: 100 });
    worker = await startSimWorker(coordinator, { maxConcurrency: 1, prefillMs: 700 });
    const url = `${coordinator.url}/v1/chat/completions`;

    const [first, second] = await Promise.all([
      postSse(url, { model: "simulator", messages, stream: true }),
      postSse(url, { model: "simulator", messages, stream: true }),
    ]);

    const queuedOne = [first, second].sort((a, b) => b.frames.length - a.frames.length)[0];
    const firstData = queuedOne?.frames.findIndex((f) => f.startsWith("data: ")) ?? 0;
    expect(queuedOne?.frames.slice(0, firstData).filter((f) => f === ": keepalive").length).toBeGreaterThanOrEqual(8);
    expect(first.done && second.done).toBe(true);
  });

  it("leaves the openai SDK unaffected by keepalive comments", async () => {
    coordinator = await startTestCoordinator({ keepaliveMs: 100 });
    worker = await startSimWorker(coordinator, { prefillMs: 1_000 });

    const stream = await openaiClient(coordinator).chat.completions.create({ model: "simulator", messages, stream: true });
    let content = "";
    for await (const chunk of stream) content += chunk.choices[0]?.delta.content ?? "";

    expect(content).toBe(simulatedReply(messages).answer);
  });
});
