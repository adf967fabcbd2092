// A client that goes away at any stage cancels its task: out of the queue, or TaskCancelled to the worker, which stops.
// Every dialect, through its official SDK.
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { eventually, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { type DialectCase, EACH_DIALECT } from "./support/dialects.js";

const messages = [{ role: "user" as const, content: "Write a long story." }];

interface ClusterState {
  workers: Array<{ inflight: string[]; cancelling: string[] }>;
  models: Array<{ id: string; queueDepth: number }>;
  tasks: { live: number };
}

async function clusterState(coordinator: RunningCoordinator): Promise<ClusterState> {
  return (await (await fetch(`${coordinator.url}/v1/cluster`)).json()) as ClusterState;
}

/** No task left anywhere: nothing live, queued, running or waiting for a cancel acknowledgement. */
async function expectIdle(coordinator: RunningCoordinator): Promise<void> {
  await eventually(async () => {
    const state = await clusterState(coordinator);
    return (
      state.tasks.live === 0 &&
      state.models.every((m) => m.queueDepth === 0) &&
      state.workers.every((w) => w.inflight.length === 0 && w.cancelling.length === 0)
    );
  }, "the cluster to be idle");
}

/** Sends a streaming request over a raw TCP socket; returns the socket and a promise of the first body bytes. */
function rawStreamingRequest(coordinator: RunningCoordinator, dialect: DialectCase) {
  const body = JSON.stringify(dialect.body(messages, true));
  const socket = connect(coordinator.port, "127.0.0.1");
  socket.write(
    `POST ${dialect.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  let received = "";
  const firstData = new Promise<void>((resolve) => {
    socket.on("data", (data) => {
      received += data.toString();
      // The response's head and the first bytes of its body (an SSE frame or an NDJSON line) have arrived.
      const bodyAt = received.indexOf("\r\n\r\n");
      if (bodyAt >= 0 && received.length > bodyAt + 4) resolve();
    });
  });
  socket.on("error", () => {});
  return { socket, firstData };
}

/**
 * Starts a streaming request and reads it until the client aborts it. The SDK rejects an abort that comes
 * before the response headers and ends the stream quietly after them; either way is the client going away.
 */
async function readStream(dialect: DialectCase, coordinator: RunningCoordinator, signal: AbortSignal): Promise<void> {
  try {
    for await (const _text of dialect.streamText(coordinator, messages, signal)) {
      // Reading until the abort ends it.
    }
  } catch (error) {
    if (!signal.aborted) throw error;
  }
  expect(signal.aborted).toBe(true);
}

describe.each(EACH_DIALECT)("cancellation on client disconnect (%s)", (_name, dialect) => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;

  afterEach(async () => {
    await worker?.stop();
    await coordinator?.close();
  });

  it("removes a queued task from the queue without it ever reaching a worker", async () => {
    coordinator = await startTestCoordinator();
    worker = await startSimWorker(coordinator, { maxConcurrency: 1, prefillMs: 1_500 });
    const running = dialect.complete(coordinator, messages);
    await worker.log.until(() => worker!.log.started.length === 1, "the first task to start");

    const controller = new AbortController();
    const queued = readStream(dialect, coordinator, controller.signal);
    await eventually(async () => (await clusterState(coordinator!)).models[0]?.queueDepth === 1, "the second task to queue");
    controller.abort();
    await queued;

    await eventually(async () => (await clusterState(coordinator!)).models[0]?.queueDepth === 0, "the queue to empty");
    await running;
    await expectIdle(coordinator);
    expect(worker.log.started).toHaveLength(1);
  });

  it("sends TaskCancelled during a silent prefill; the engine stops having produced nothing", async () => {
    coordinator = await startTestCoordinator();
    worker = await startSimWorker(coordinator, { prefillMs: 5_000 });
    const controller = new AbortController();
    const stream = readStream(dialect, coordinator, controller.signal);
    await worker.log.until(() => worker!.log.started.length === 1, "the task to start");

    controller.abort();
    await stream;

    const taskId = worker.log.started[0] as string;
    await worker.log.until(() => worker!.log.aborted.has(taskId), "the engine to see the abort");
    expect(worker.log.aborted.get(taskId)).toBe(0);
    expect(worker.log.ended).not.toContain(taskId);
    await expectIdle(coordinator);
  });

  it("sends TaskCancelled during hidden thinking (the client saw nothing yet)", async () => {
    coordinator = await startTestCoordinator();
    worker = await startSimWorker(coordinator, { thinkMs: 5_000 });
    const stages: string[] = [];
    coordinator.master.observers.add({ taskEnded: (_task, outcome) => void (outcome.state === "cancelled" && stages.push(outcome.stage)) });
    const controller = new AbortController();
    const request = readStream(dialect, coordinator, controller.signal);
    await worker.log.until(() => [...worker!.log.produced.values()].some((n) => n > 3), "thinking tokens to flow");

    controller.abort();
    await request;

    const taskId = worker.log.started[0] as string;
    await worker.log.until(() => worker!.log.aborted.has(taskId), "the engine to see the abort");
    expect(worker.log.ended).not.toContain(taskId);
    expect(stages).toEqual(["thinking"]);
    await expectIdle(coordinator);
  });

  it("sends TaskCancelled mid-stream; the engine produces no further tokens", async () => {
    coordinator = await startTestCoordinator();
    worker = await startSimWorker(coordinator, { tokensPerSecond: 50, replyTokens: 2_000 });
    const controller = new AbortController();
    let received = 0;
    try {
      for await (const _text of dialect.streamText(coordinator, messages, controller.signal)) {
        received += 1;
        if (received === 3) controller.abort();
      }
    } catch (error) {
      if (!controller.signal.aborted) throw error;
    }
    expect(received).toBe(3);

    const taskId = worker.log.started[0] as string;
    await worker.log.until(() => worker!.log.aborted.has(taskId), "the engine to see the abort");
    // Once the engine has seen the abort its loop is over: what it had produced then is all it ever produces.
    expect(worker.log.produced.get(taskId)).toBe(worker.log.aborted.get(taskId));
    expect(worker.log.aborted.get(taskId)).toBeLessThan(2_000);
    expect(worker.log.ended).not.toContain(taskId);
    await expectIdle(coordinator);
  });

  it("cancels when a raw TCP client simply closes its socket", async () => {
    coordinator = await startTestCoordinator();
    worker = await startSimWorker(coordinator, { tokensPerSecond: 50, replyTokens: 2_000 });
    const { socket, firstData } = rawStreamingRequest(coordinator, dialect);
    await firstData;

    socket.destroy();

    await worker.log.until(() => worker!.log.aborted.size === 1, "the engine to see the abort");
    await expectIdle(coordinator);
  });

  it("cancels a non-streaming request whose client goes away", async () => {
    coordinator = await startTestCoordinator();
    worker = await startSimWorker(coordinator, { tokensPerSecond: 50, replyTokens: 2_000 });
    const controller = new AbortController();
    const request = dialect.complete(coordinator, messages, controller.signal);
    await worker.log.until(() => [...worker!.log.produced.values()].some((n) => n > 3), "tokens to flow");

    controller.abort();
    await expect(request).rejects.toThrow();

    await worker.log.until(() => worker!.log.aborted.size === 1, "the engine to see the abort");
    await expectIdle(coordinator);
  });

  it("frees the worker's slot after a cancellation, so the next request runs on it", async () => {
    coordinator = await startTestCoordinator();
    worker = await startSimWorker(coordinator, { maxConcurrency: 1, prefillMs: 5_000 });
    const first = new AbortController();
    const firstRequest = dialect.complete(coordinator, messages, first.signal);
    await worker.log.until(() => worker!.log.started.length === 1, "the first task to start");
    first.abort();
    await expect(firstRequest).rejects.toThrow();

    const second = new AbortController();
    const secondRequest = dialect.complete(coordinator, messages, second.signal);
    await worker.log.until(() => worker!.log.started.length === 2, "the second task to start on the same worker");
    second.abort();
    await expect(secondRequest).rejects.toThrow();
    await expectIdle(coordinator);
  });
});
