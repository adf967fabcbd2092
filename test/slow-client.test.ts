// A client that stops reading cannot pin a worker or grow the coordinator's memory: its stream is cancelled. In
// every dialect.
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { eventually, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { EACH_DIALECT, postFrames } from "./support/dialects.js";

describe.each(EACH_DIALECT)("slow clients (%s)", (_name, dialect) => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;

  afterEach(async () => {
    await worker?.stop();
    await coordinator?.close();
  });

  it("cancels a stream whose client stops reading, and the worker stops generating", async () => {
    coordinator = await startTestCoordinator({ slowClientMs: 500, slowClientBytes: 64 * 1024 });
    worker = await startSimWorker(coordinator, { tokensPerSecond: 0, replyTokens: 2_000_000, contextLength: 4_000_000 });
    const body = JSON.stringify(dialect.body([{ role: "user", content: "flood me" }], true, 2_100_000));
    const socket = connect(coordinator.port, "127.0.0.1");
    socket.on("error", () => {});
    socket.write(
      `POST ${dialect.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    // The client reads one chunk and then never again.
    await new Promise<void>((resolve) => socket.once("data", () => resolve()));
    socket.pause();

    // The kernel's socket buffers (several MB on loopback) fill before the coordinator sees any backlog.
    await worker.log.until(() => worker!.log.aborted.size === 1, "the engine to be told to stop", 60_000);
    expect(coordinator.master.snapshot().workers).toHaveLength(1);
    await eventually(() => coordinator!.master.liveTasks === 0, "the task to be gone");
    expect(worker.log.ended).toHaveLength(0);
    socket.destroy();
  }, 90_000);

  it("lets a client that reads slowly but steadily finish", async () => {
    coordinator = await startTestCoordinator({ slowClientMs: 500, slowClientBytes: 64 * 1024 });
    worker = await startSimWorker(coordinator, { tokensPerSecond: 200, replyTokens: 100 });

    const raw = await postFrames(coordinator, dialect, dialect.body([{ role: "user", content: "hi" }], true));

    expect(dialect.isEnd(raw.frames.at(-1) ?? "")).toBe(true);
    expect(worker.log.aborted.size).toBe(0);
  });
});
