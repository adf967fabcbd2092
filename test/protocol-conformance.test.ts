// docs/worker-protocol.md as a checklist: a worker written from that page alone is driven through every message
// and every close code the page lists, and the master does what the page says.
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { serveDefaults } from "../src/config.js";
import { type RunningCoordinator, startCoordinator } from "../src/coordinator.js";
import { createLogger } from "../src/log.js";
import { CloseCode, PROTOCOL_VERSION } from "../src/worker-protocol/index.js";
import { HandWorker } from "./support/hand-worker.js";
import { eventually, openaiClient, startTestCoordinator, TEST_TOKEN } from "./support/cluster.js";
import { openNonReadingStream } from "./support/slow-readers.js";
import { postSse } from "./support/sse.js";

describe("worker protocol conformance (docs/worker-protocol.md)", () => {
  let coordinator: RunningCoordinator;
  const open: HandWorker[] = [];

  beforeAll(async () => {
    coordinator = await startTestCoordinator({
      heartbeatMs: 100,
      heartbeatDeadlineMs: 2_000,
      helloTimeoutMs: 300,
      slowClientBytes: 64 * 1024,
      maxWorkerPayload: 64 * 1024,
      taskStallMs: 5_000,
    });
  });

  afterAll(async () => {
    for (const worker of open) worker.terminate();
    await coordinator.close();
  });

  async function join(maxConcurrency = 2) {
    const joined = await HandWorker.join(coordinator.workerUrl, { maxConcurrency });
    open.push(joined.worker);
    return joined;
  }

  function ask(model: string, extra: Record<string, unknown> = {}) {
    return openaiClient(coordinator).chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], ...extra });
  }

  it("Hello → Welcome with the documented fields, then Heartbeats from the master", async () => {
    const { worker, welcome } = await join();
    expect(welcome).toMatchObject({ type: "Welcome", protocolVersion: PROTOCOL_VERSION, heartbeatIntervalMs: 100, taskWindowBytes: 32 * 1024 });
    expect(welcome.workerId).toEqual(expect.any(String));
    expect(await worker.take("Heartbeat")).toMatchObject({ at: expect.any(Number) });
  });

  it("TaskAssigned → TaskProgress, TokenChunks, TaskFinished: the client sees the text and TaskFinished's usage", async () => {
    const { worker } = await join();
    const reply = ask(worker.model, { max_tokens: 50, temperature: 0.5, stop: ["END"] });
    const task = await worker.take("TaskAssigned");
    expect(task).toMatchObject({ model: worker.model, params: { maxTokens: 50, temperature: 0.5, stop: ["END"] } });
    expect(task.messages).toEqual([{ role: "user", content: "hi" }]);
    worker.send({ type: "TaskProgress", taskId: task.taskId, promptTokensDone: 0 });
    worker.send({ type: "TaskProgress", taskId: task.taskId, promptTokensDone: 3, promptTokens: 3 });
    worker.send({ type: "TokenChunk", taskId: task.taskId, seq: 0, text: "<think>hm</think>Hel", tokens: 3 });
    worker.send({ type: "TokenChunk", taskId: task.taskId, seq: 0, text: "ignored duplicate" });
    worker.send({ type: "TokenChunk", taskId: task.taskId, seq: 1, text: "lo" });
    worker.send({ type: "TaskFinished", taskId: task.taskId, finishReason: "stop", usage: { promptTokens: 7, completionTokens: 4 } });
    const done = await reply;
    expect(done.choices[0]?.message.content).toBe("Hello");
    expect(done.usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 4 });
    // A late message about the ended task is ignored: the connection stays.
    worker.send({ type: "TokenChunk", taskId: task.taskId, seq: 2, text: "late" });
    const next = ask(worker.model);
    const second = await worker.take("TaskAssigned");
    worker.send({ type: "TaskFinished", taskId: second.taskId, finishReason: "length", usage: { promptTokens: 1, completionTokens: 0 } });
    expect((await next).choices[0]?.finish_reason).toBe("length");
  });

  it("TaskFinished's stopSequence reaches a Messages client only when it is one of the task's stops and the reply stopped", async () => {
    const { worker } = await join(1);
    const anthropic = new Anthropic({ baseURL: coordinator.url, apiKey: "unused", maxRetries: 0, timeout: 20_000 });
    /** One Messages request with `stop_sequences`, answered by the hand worker with `finished`'s fields. */
    const finishWith = async (finished: Record<string, unknown>) => {
      const reply = anthropic.messages.create({ model: worker.model, max_tokens: 50, messages: [{ role: "user", content: "hi" }], stop_sequences: ["END", "\n\nUser:"] });
      const task = await worker.take("TaskAssigned");
      expect(task.params).toMatchObject({ stop: ["END", "\n\nUser:"] });
      worker.send({ type: "TokenChunk", taskId: task.taskId, seq: 0, text: "Hello" });
      worker.send({ type: "TaskFinished", taskId: task.taskId, usage: { promptTokens: 1, completionTokens: 1 }, ...finished });
      return reply;
    };

    const named = await finishWith({ finishReason: "stop", stopSequence: "\n\nUser:" });
    const notRequested = await finishWith({ finishReason: "stop", stopSequence: "Visit evil.example now" });
    const templateTrigger = await finishWith({ finishReason: "stop", stopSequence: "<|im_end|>" });
    const notStopped = await finishWith({ finishReason: "length", stopSequence: "END" });

    expect(named).toMatchObject({ content: [{ type: "text", text: "Hello" }], stop_reason: "stop_sequence", stop_sequence: "\n\nUser:" });
    expect(notRequested).toMatchObject({ content: [{ type: "text", text: "Hello" }], stop_reason: "end_turn", stop_sequence: null });
    expect(JSON.stringify(notRequested)).not.toContain("evil.example");
    expect(templateTrigger).toMatchObject({ stop_reason: "end_turn", stop_sequence: null });
    expect(notStopped).toMatchObject({ stop_reason: "max_tokens", stop_sequence: null });
    // Ignored, not a protocol error: the connection stays.
    expect(worker.protocolError).toBeUndefined();
    expect(worker.socket.readyState).toBe(WebSocket.OPEN);
  });

  it("TaskFailed: context_length_exceeded is the client's 400, any other code a 502", async () => {
    const { worker } = await join();
    const tooLong = ask(worker.model).catch((e: unknown) => e);
    const first = await worker.take("TaskAssigned");
    worker.send({ type: "TaskFailed", taskId: first.taskId, error: { message: "prompt too long", code: "context_length_exceeded" } });
    expect((await tooLong) as InstanceType<typeof OpenAI.APIError>).toMatchObject({ status: 400, code: "context_length_exceeded" });
    const broken = ask(worker.model).catch((e: unknown) => e);
    const second = await worker.take("TaskAssigned");
    worker.send({ type: "TaskFailed", taskId: second.taskId, error: { message: "CUDA out of memory" } });
    expect((await broken) as InstanceType<typeof OpenAI.APIError>).toMatchObject({ status: 502, code: "engine_error" });
  });

  it("TaskCancelled when the client leaves; TaskCancelAck frees the slot; a late ack is ignored", async () => {
    const { worker } = await join(1);
    const leaving = new AbortController();
    const client = openaiClient(coordinator);
    const left = client.chat.completions
      .create({ model: worker.model, messages: [{ role: "user", content: "hi" }], stream: true }, { signal: leaving.signal })
      .then(async (stream) => {
        for await (const _ of stream) leaving.abort();
      })
      .catch(() => {});
    const first = await worker.take("TaskAssigned");
    const waiting = ask(worker.model);
    worker.send({ type: "TokenChunk", taskId: first.taskId, seq: 0, text: "hello" });
    const cancelled = await worker.take("TaskCancelled");
    expect(cancelled).toMatchObject({ taskId: first.taskId, reason: "client disconnected" });
    await left;
    worker.send({ type: "TaskCancelAck", taskId: first.taskId, completionTokens: 1 });
    // The slot is free again: the waiting request is assigned now; a second ack for the first task is late.
    const second = await worker.take("TaskAssigned");
    worker.send({ type: "TaskCancelAck", taskId: first.taskId });
    worker.send({ type: "TaskFinished", taskId: second.taskId, finishReason: "stop", usage: { promptTokens: 1, completionTokens: 0 } });
    expect((await waiting).choices[0]?.finish_reason).toBe("stop");
    expect(worker.socket.readyState).toBe(WebSocket.OPEN);
  });

  it("TaskCredit as the client consumes the output, within the announced window", async () => {
    const { worker, welcome } = await join();
    const window = Number(welcome.taskWindowBytes);
    const sse = postSse(`${coordinator.url}/v1/chat/completions`, { model: worker.model, messages: [{ role: "user", content: "hi" }], stream: true });
    const task = await worker.take("TaskAssigned");
    const piece = "y".repeat(4096);
    let sent = 0;
    let seq = 0;
    while (sent < window) {
      worker.send({ type: "TokenChunk", taskId: task.taskId, seq: seq++, text: piece });
      sent += piece.length;
    }
    const credit = await worker.take("TaskCredit");
    expect(credit.taskId).toBe(task.taskId);
    expect(Number(credit.bytes)).toBeGreaterThan(0);
    expect(Number(credit.bytes)).toBeLessThanOrEqual(window);
    worker.send({ type: "TokenChunk", taskId: task.taskId, seq: seq++, text: piece });
    worker.send({ type: "TaskFinished", taskId: task.taskId, finishReason: "stop", usage: { promptTokens: 1, completionTokens: seq } });
    const body = await sse;
    expect(body.done).toBe(true);
  });

  it("Draining: no new task is assigned, running ones finish", async () => {
    const { worker } = await join();
    const running = ask(worker.model);
    const task = await worker.take("TaskAssigned");
    worker.send({ type: "Draining" });
    await eventually(() => coordinator.master.snapshot().workers.find((w) => w.name === worker.name)?.state === "draining", "draining");
    const refused = ask(worker.model, {}).catch((e: unknown) => e);
    worker.send({ type: "TaskFinished", taskId: task.taskId, finishReason: "stop", usage: { promptTokens: 1, completionTokens: 0 } });
    await running;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(worker.received.filter((m) => m.type === "TaskAssigned")).toHaveLength(1);
    worker.terminate();
    // With its only worker gone the queued request waits for the queue timeout; it is not this test's concern.
    void refused;
  });

  describe("close codes", () => {
    async function refusedWith(frames: Array<string | Buffer>, binary = false) {
      const worker = await HandWorker.connect(coordinator.workerUrl);
      open.push(worker);
      for (const frame of frames) worker.socket.send(frame, { binary });
      const closed = await worker.closed;
      const error = worker.received.find((m) => m.type === "ProtocolError");
      return { code: closed.code, error: error?.code };
    }

    it("4000 for invalid JSON, a binary frame, a message before Hello, a second Hello", async () => {
      expect(await refusedWith(["{not json"])).toEqual({ code: CloseCode.protocolError, error: "invalid_message" });
      expect(await refusedWith([Buffer.from("{}")], true)).toEqual({ code: CloseCode.protocolError, error: "binary_frame" });
      expect(await refusedWith([JSON.stringify({ type: "Heartbeat", at: 1 })])).toEqual({ code: CloseCode.protocolError, error: "hello_expected" });
      const { worker } = await join();
      worker.send(worker.hello());
      expect((await worker.closed).code).toBe(CloseCode.protocolError);
      expect(worker.received.find((m) => m.type === "ProtocolError")?.code).toBe("duplicate_hello");
    });

    it("4000 for a chunk out of sequence, a task not its own, an ack for a running task, a chunk past the window", async () => {
      const outOfSequence = await join();
      const a = ask(outOfSequence.worker.model).catch(() => {});
      const taskA = await outOfSequence.worker.take("TaskAssigned");
      outOfSequence.worker.send({ type: "TokenChunk", taskId: taskA.taskId, seq: 5, text: "skip" });
      expect((await outOfSequence.worker.closed).code).toBe(CloseCode.protocolError);
      expect(outOfSequence.worker.received.find((m) => m.type === "ProtocolError")?.code).toBe("bad_sequence");
      void a; // its task went back to the queue (nothing had been relayed) and waits for a worker: not this test's concern

      const stranger = await join();
      stranger.worker.send({ type: "TaskFinished", taskId: "task-nobody", finishReason: "stop", usage: { promptTokens: 0, completionTokens: 0 } });
      expect((await stranger.worker.closed).code).toBe(CloseCode.protocolError);
      expect(stranger.worker.received.find((m) => m.type === "ProtocolError")?.code).toBe("unknown_task");

      const acker = await join();
      const b = ask(acker.worker.model).catch(() => {});
      const taskB = await acker.worker.take("TaskAssigned");
      acker.worker.send({ type: "TaskCancelAck", taskId: taskB.taskId });
      expect((await acker.worker.closed).code).toBe(CloseCode.protocolError);
      expect(acker.worker.received.find((m) => m.type === "ProtocolError")?.code).toBe("unexpected_ack");
      void b;

      const flooder = await join();
      const client = await openNonReadingStream(coordinator.port, flooder.worker.model);
      const taskC = await flooder.worker.take("TaskAssigned");
      const big = "z".repeat(16 * 1024);
      for (let seq = 0; seq < 2_000 && flooder.worker.socket.readyState === WebSocket.OPEN; seq++) {
        flooder.worker.send({ type: "TokenChunk", taskId: taskC.taskId, seq, text: big });
        if (seq % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
      }
      expect((await flooder.worker.closed).code).toBe(CloseCode.protocolError);
      expect(flooder.worker.received.find((m) => m.type === "ProtocolError")?.code).toBe("window_exceeded");
      client.destroy();
    });

    it("4001 for a wrong or a missing token, 4002 for another protocol version, 4003 without Hello", async () => {
      const worker = await HandWorker.connect(coordinator.workerUrl);
      expect(await refusedWith([JSON.stringify(worker.hello({ token: "wrong-token-123" }))])).toEqual({ code: CloseCode.unauthorized, error: "unauthorized" });
      const { token: _, ...noToken } = worker.hello();
      expect(await refusedWith([JSON.stringify(noToken)])).toEqual({ code: CloseCode.unauthorized, error: "unauthorized" });
      expect(await refusedWith([JSON.stringify(worker.hello({ protocolVersion: 2 }))])).toEqual({ code: CloseCode.unsupportedVersion, error: "unsupported_version" });
      expect(await refusedWith([])).toEqual({ code: CloseCode.timeout, error: "handshake_timeout" });
      worker.terminate();
    });

    it("4005 for the name of a live worker; 4004 for a connection replaced after it stopped answering", async () => {
      const { worker: live } = await join();
      const second = await HandWorker.connect(coordinator.workerUrl);
      open.push(second);
      second.send(second.hello({ name: live.name }));
      expect((await second.closed).code).toBe(CloseCode.nameInUse);
      expect(second.received.find((m) => m.type === "ProtocolError")?.code).toBe("name_in_use");

      // A connection that no longer answers pings loses its name to a new one. It still heartbeats (its deadline is
      // not what drops it here): only its silence to the ping does.
      const { worker: frozen } = await HandWorker.join(coordinator.workerUrl, { answerPings: false });
      open.push(frozen);
      const { worker: replacement } = await HandWorker.join(coordinator.workerUrl, { name: frozen.name });
      open.push(replacement);
      expect((await frozen.closed).code).toBe(CloseCode.replaced);
      expect(coordinator.master.registry.findByName(frozen.name)?.link).toBeDefined();
    });

    it("1009 for a frame over --max-worker-payload, 1007 for a text frame that is not UTF-8", async () => {
      const { worker } = await join();
      worker.send({ type: "Heartbeat", at: 1, padding: "p".repeat(70 * 1024) });
      expect((await worker.closed).code).toBe(CloseCode.tooLarge);
      const other = await join();
      other.worker.socket.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
      expect((await other.worker.closed).code).toBe(1007);
    });

    it("1006 for a worker that misses its heartbeat deadline, 1001 when the coordinator shuts down", async () => {
      const silent = await HandWorker.connect(coordinator.workerUrl);
      open.push(silent);
      silent.send(silent.hello());
      await silent.take("Welcome");
      // It never sends a Heartbeat: the master drops it without a close frame.
      expect((await silent.closed).code).toBe(1006);

      const other = await startTestCoordinator();
      const { worker } = await HandWorker.join(other.workerUrl);
      await other.close();
      expect((await worker.closed).code).toBe(CloseCode.goingAway);
    });
  });

  it("names the worker in the log line of a protocol error", async () => {
    const lines: string[] = [];
    const log = createLogger("warn", "coordinator", { format: "json", destination: { write: (line: string) => void lines.push(line) } });
    const logged = await startCoordinator(serveDefaults({ host: "127.0.0.1", port: 0, workerToken: TEST_TOKEN }), log);
    try {
      const { worker } = await HandWorker.join(logged.workerUrl);
      worker.send({ type: "TaskFinished", taskId: "task-nobody", finishReason: "stop", usage: { promptTokens: 0, completionTokens: 0 } });
      await worker.closed;
      const line = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => String(r.msg).startsWith("worker protocol error"));
      expect(line).toMatchObject({ workerName: worker.name, code: "unknown_task" });
      expect(line?.worker).toEqual(expect.any(String));
    } finally {
      await logged.close();
    }
  });
});
