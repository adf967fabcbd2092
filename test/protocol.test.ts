// The worker endpoint refuses bad peers with a protocol error and a close code, and keeps serving everyone else.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { RunningCoordinator } from "../src/coordinator.js";
import { CloseCode } from "../src/worker-protocol/index.js";
import { openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { connectPeer, hello } from "./support/peer.js";

describe("worker protocol enforcement", () => {
  let coordinator: RunningCoordinator;
  let good: TestWorker;

  beforeAll(async () => {
    coordinator = await startTestCoordinator();
    good = await startSimWorker(coordinator, { name: "good", tokensPerSecond: 100, replyTokens: 40 });
  });

  afterAll(async () => {
    await good.stop();
    await coordinator.close();
  });

  /** Runs `misbehave` while a well-behaved streaming request is in flight, and checks that request completes. */
  async function withConcurrentRequest(misbehave: () => Promise<void>): Promise<void> {
    const completion = openaiClient(coordinator).chat.completions.create({
      model: "simulator",
      messages: [{ role: "user", content: "still there?" }],
    });
    await misbehave();
    expect((await completion).choices[0]?.finish_reason).toBe("stop");
  }

  it("closes a connection that sends malformed JSON with a protocol error", async () => {
    await withConcurrentRequest(async () => {
      const peer = await connectPeer(coordinator);
      peer.socket.send("{not json");

      expect(await peer.next("ProtocolError")).toMatchObject({ code: "invalid_message" });
      expect((await peer.closed).code).toBe(CloseCode.protocolError);
    });
  });

  it("refuses a wrong token", async () => {
    await withConcurrentRequest(async () => {
      const peer = await connectPeer(coordinator);
      peer.socket.send(JSON.stringify(hello({ token: "wrong-token" })));

      expect(await peer.next("ProtocolError")).toMatchObject({ code: "unauthorized" });
      expect((await peer.closed).code).toBe(CloseCode.unauthorized);
    });
    const models = (await (await fetch(`${coordinator.url}/v1/models`)).json()) as { data: unknown[] };
    expect(models.data).toHaveLength(1);
  });

  it("refuses an unsupported protocol version", async () => {
    const peer = await connectPeer(coordinator);
    peer.socket.send(JSON.stringify(hello({ protocolVersion: 99 })));

    expect((await peer.closed).code).toBe(CloseCode.unsupportedVersion);
  });

  it("closes a connection that sends an unknown message type", async () => {
    await withConcurrentRequest(async () => {
      const peer = await connectPeer(coordinator);
      peer.socket.send(JSON.stringify(hello()));
      await peer.next("Welcome");
      peer.socket.send(JSON.stringify({ type: "Teleport", to: "mars" }));

      expect(await peer.next("ProtocolError")).toMatchObject({ code: "invalid_message" });
      expect((await peer.closed).code).toBe(CloseCode.protocolError);
    });
  });

  it("requires Hello first", async () => {
    const peer = await connectPeer(coordinator);
    peer.socket.send(JSON.stringify({ type: "Heartbeat", at: 1 }));

    expect(await peer.next("ProtocolError")).toMatchObject({ code: "hello_expected" });
    expect((await peer.closed).code).toBe(CloseCode.protocolError);
  });

  it("disconnects a worker that reports on a task that is not its own, and the real task completes", async () => {
    const rogue = await connectPeer(coordinator);
    rogue.socket.send(JSON.stringify(hello()));
    await rogue.next("Welcome");

    const completion = openaiClient(coordinator).chat.completions.create({
      model: "simulator",
      messages: [{ role: "user", content: "mine" }],
    });
    await good.log.until(() => good.log.started.length > 0, "the good worker to take a task");
    const stolenTaskId = good.log.started.at(-1) as string;
    rogue.socket.send(JSON.stringify({ type: "TokenChunk", taskId: stolenTaskId, seq: 0, text: "hijacked" }));

    expect(await rogue.next("ProtocolError")).toMatchObject({ code: "unknown_task" });
    expect((await rogue.closed).code).toBe(CloseCode.protocolError);
    const message = (await completion).choices[0]?.message.content ?? "";
    expect(message).not.toContain("hijacked");
    expect(message).toContain("you said");
  });

  it("disconnects a worker that reports on a task id nobody has", async () => {
    const rogue = await connectPeer(coordinator);
    rogue.socket.send(JSON.stringify(hello()));
    await rogue.next("Welcome");
    rogue.socket.send(JSON.stringify({ type: "TaskFinished", taskId: "task-made-up", finishReason: "stop", usage: { promptTokens: 1, completionTokens: 1 } }));

    expect((await rogue.closed).code).toBe(CloseCode.protocolError);
  });

  it("refuses WebSocket upgrades on other paths", async () => {
    const socket = new WebSocket(`${coordinator.workerUrl}/elsewhere`);
    const error = await new Promise<Error>((resolve) => socket.once("error", resolve));

    expect(error.message).toContain("404");
  });

  it("still lists only the good worker after all that", async () => {
    const cluster = (await (await fetch(`${coordinator.url}/v1/cluster`)).json()) as { workers: Array<{ name: string }> };

    expect(cluster.workers.map((w) => w.name)).toEqual(["good"]);
  });
});
