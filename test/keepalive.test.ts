// Keepalive frames fill silent periods (prefill, hidden thinking, queueing) without disturbing clients, in every
// dialect: SSE comments for chat completions and Responses, `ping` events for Messages, empty lines for Ollama.
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { simulatedReply } from "../src/worker/engines/simulator.js";
import { startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { EACH_DIALECT, postFrames } from "./support/dialects.js";

const messages = [{ role: "user" as const, content: "Tell me something." }];

describe.each(EACH_DIALECT)("keepalive (%s)", (_name, dialect) => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;

  afterEach(async () => {
    await worker?.stop();
    await coordinator?.close();
  });

  const keepalivesBeforeOutput = (frames: string[]) => {
    const firstOutput = frames.findIndex(dialect.isOutput);
    return frames.slice(0, firstOutput).filter(dialect.isKeepalive).length;
  };

  it("sends keepalives before the first output during a silent prefill, then completes", async () => {
    coordinator = await startTestCoordinator({ keepaliveMs: 100 });
    worker = await startSimWorker(coordinator, { prefillMs: 1_000 });

    const raw = await postFrames(coordinator, dialect, dialect.body(messages, true));

    expect(raw.status).toBe(200);
    expect(keepalivesBeforeOutput(raw.frames)).toBeGreaterThanOrEqual(3);
    expect(dialect.isEnd(raw.frames.at(-1) ?? "")).toBe(true);
  });

  it("keeps the stream alive while hidden thinking produces nothing visible", async () => {
    coordinator = await startTestCoordinator({ keepaliveMs: 100 });
    worker = await startSimWorker(coordinator, { thinkMs: 800 });

    const raw = await postFrames(coordinator, dialect, dialect.body(messages, true));

    expect(raw.frames.filter(dialect.isKeepalive).length).toBeGreaterThanOrEqual(3);
    expect(dialect.isEnd(raw.frames.at(-1) ?? "")).toBe(true);
  });

  it("keeps a queued request's stream alive until a worker takes it", async () => {
    coordinator = await startTestCoordinator({ keepaliveMs: 100 });
    worker = await startSimWorker(coordinator, { maxConcurrency: 1, prefillMs: 700 });
    const [first, second] = await Promise.all([
      postFrames(coordinator, dialect, dialect.body(messages, true)),
      postFrames(coordinator, dialect, dialect.body(messages, true)),
    ]);

    const queuedOne = [first, second].sort((a, b) => keepalivesBeforeOutput(b.frames) - keepalivesBeforeOutput(a.frames))[0];
    expect(keepalivesBeforeOutput(queuedOne?.frames ?? [])).toBeGreaterThanOrEqual(8);
    for (const raw of [first, second]) expect(dialect.isEnd(raw.frames.at(-1) ?? "")).toBe(true);
  });

  it("leaves the dialect's official SDK unaffected by keepalives", async () => {
    coordinator = await startTestCoordinator({ keepaliveMs: 100 });
    worker = await startSimWorker(coordinator, { prefillMs: 1_000 });

    let content = "";
    for await (const text of dialect.streamText(coordinator, messages, new AbortController().signal)) content += text;

    expect(content).toBe(simulatedReply(messages).answer);
  });
});
