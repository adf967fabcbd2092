// Flow control: a client that stops reading pauses its own task on the worker (and only that one), memory held
// for it stays bounded, and a worker that ignores its window is disconnected.
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { CHUNKY_MODEL, type ChunkyWorker, startChunkyWorker } from "./support/chunky-worker.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { type NonReadingClient, openNonReadingStream } from "./support/slow-readers.js";
import { chunkCost, decodeWorkerMessage } from "../src/worker-protocol/index.js";

const SLOW_CLIENT_BYTES = 64 * 1024;

describe("flow control", () => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;
  let chunky: ChunkyWorker | undefined;
  const clients: NonReadingClient[] = [];

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await chunky?.close();
    await worker?.stop();
    await coordinator?.close();
    chunky = worker = coordinator = undefined;
  });

  it("pauses the generation of a client that stops reading, while other tasks on the same worker keep flowing", async () => {
    // Given a full-speed worker and a stream whose client has stopped reading
    coordinator = await startTestCoordinator({ slowClientBytes: SLOW_CLIENT_BYTES, slowClientMs: 120_000 });
    worker = await startSimWorker(coordinator, { tokensPerSecond: 0, replyTokens: 20_000_000, maxConcurrency: 4 });
    clients.push(await openNonReadingStream(coordinator.port, "simulator"));
    await worker.log.until(() => worker!.log.paused.size === 1, "the engine to wait for its client", 60_000);
    const [stalledTask] = [...worker.log.paused.keys()];

    // When another client asks the same worker for a reply
    const client = openaiClient(coordinator);
    const stream = await client.chat.completions.create({
      model: "simulator",
      messages: [{ role: "user", content: "hello" }],
      stream: true,
      max_tokens: 300,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";

    // Then that reply flows to its end, while the first task stays paused with a bounded backlog
    expect(text.length).toBeGreaterThan(100);
    const task = coordinator.master.liveTask(stalledTask as string);
    expect(task?.state).toBe("streaming");
    expect(task?.outstandingBytes).toBeLessThanOrEqual(SLOW_CLIENT_BYTES / 2 + 4096);
    expect(worker.log.ended).toHaveLength(1);
    expect(worker.log.produced.get(stalledTask as string)).toBeLessThan(20_000_000);

    // And when the slow client leaves, its task is cancelled on the worker
    clients.pop()?.destroy();
    await worker.log.until(() => worker!.log.aborted.has(stalledTask as string), "the paused task to be cancelled");
    await eventually(() => coordinator!.master.liveTasks === 0, "no task left");
  }, 90_000);

  it("pauses a worker that sends 64 KiB chunks at its window, and cancels the stream after --slow-client-ms", async () => {
    coordinator = await startTestCoordinator({ slowClientBytes: SLOW_CLIENT_BYTES, slowClientMs: 1_500 });
    chunky = await startChunkyWorker(coordinator.workerUrl);
    clients.push(await openNonReadingStream(coordinator.port, CHUNKY_MODEL));

    await eventually(() => chunky!.waiting.size === 1, "the worker to wait for credit", 60_000);
    const [taskId] = [...chunky.waiting];
    expect(coordinator.master.liveTask(taskId as string)?.outstandingBytes).toBeLessThanOrEqual(SLOW_CLIENT_BYTES / 2 + 64 * 1024);

    // Paused for longer than --slow-client-ms: the stream is given up on and the worker told to stop.
    await eventually(() => chunky!.cancelled.has(taskId as string), "the paused task to be cancelled", 30_000);
    expect(chunky.errors).toEqual([]);
  }, 90_000);

  it("disconnects a worker that ignores its window, with a protocol error, and keeps serving others", async () => {
    coordinator = await startTestCoordinator({ slowClientBytes: SLOW_CLIENT_BYTES });
    chunky = await startChunkyWorker(coordinator.workerUrl, { ignoreWindow: true });
    worker = await startSimWorker(coordinator);
    clients.push(await openNonReadingStream(coordinator.port, CHUNKY_MODEL));

    const closed = await chunky.closed;
    expect(closed.code).toBe(4000);
    expect(chunky.errors).toEqual(["window_exceeded"]);
    const reply = await openaiClient(coordinator).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "still there?" }] });
    expect(reply.choices[0]?.message.content).toContain("simulated model");
  }, 90_000);

  it("refuses a non-streamed reply that outgrows --max-reply-bytes, and stops the worker", async () => {
    coordinator = await startTestCoordinator({ maxReplyBytes: 4096 });
    worker = await startSimWorker(coordinator, { tokensPerSecond: 0, replyTokens: 100_000 });

    const error = await openaiClient(coordinator)
      .chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "a long one" }] })
      .catch((e: unknown) => e);

    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe("reply_too_large");
    await worker.log.until(() => worker!.log.aborted.size === 1, "the engine to be stopped");
  });
});

describe("chunkCost", () => {
  it("counts logprobs (which can outweigh the text a hundredfold) the same on both sides, whatever the key order", () => {
    const entry = { token: " hé", logprob: -0.5, bytes: [32, 104, 195, 169], top: [{ token: " hé", logprob: -0.5 }, { token: " a", logprob: -2 }] };
    const reordered = JSON.parse(`{"top":[{"logprob":-0.5,"token":" hé"},{"logprob":-2,"token":" a"}],"bytes":[32,104,195,169],"logprob":-0.5,"token":" hé"}`);
    const decoded = decodeWorkerMessage(JSON.stringify({ type: "TokenChunk", taskId: "t", seq: 0, text: " hé", logprobs: [reordered] }));

    expect(chunkCost(" hé")).toBe(4);
    expect(chunkCost(" hé", [entry])).toBe(4 + (48 + 4 + 16) + (48 + 4) + (48 + 2));
    expect(decoded.ok && decoded.message.type === "TokenChunk" && chunkCost(decoded.message.text, decoded.message.logprobs)).toBe(chunkCost(" hé", [entry]));
  });
});
