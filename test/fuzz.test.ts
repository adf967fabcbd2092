// Fuzzing the worker protocol: whatever a worker sends, the coordinator drops that one peer (never a crash or a
// hang), and well-behaved traffic carries on beside it. (The HTTP API is fuzzed in fuzz-http.test.ts.)
import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { CloseCode, decodeWorkerMessage, PROTOCOL_VERSION } from "../src/worker-protocol/index.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, TEST_TOKEN, type TestWorker } from "./support/cluster.js";
import { mutate, mutation, serialize, utf8Length, within } from "./support/fuzz-json.js";
import { connectPeer, hello } from "./support/peer.js";

// ---------- the worker protocol ----------

const MAX_WORKER_PAYLOAD = 64 * 1024;

interface Frame {
  data: string | Buffer;
  binary?: boolean;
}

/** What the master must do with a frame: the close code, and the ProtocolError it sends first (if any). */
interface Expected {
  code: number;
  error?: string;
  /** The first frame was accepted: the connection stayed open until the probe that follows it. */
  kept?: boolean;
}

/** The oracle for a frame sent before Hello; a valid Hello is kept, and the probe Hello after it is a duplicate. */
function expectedBeforeHello(text: string): Expected {
  if (utf8Length(text) > MAX_WORKER_PAYLOAD) return { code: CloseCode.tooLarge };
  const decoded = decodeWorkerMessage(text);
  // A Hello that lacks a token (as a string) is refused as unauthorized, whatever else is wrong with it.
  if (!decoded.ok) return helloWithoutToken(text) ? { code: CloseCode.unauthorized, error: "unauthorized" } : { code: CloseCode.protocolError, error: "invalid_message" };
  const message = decoded.message;
  if (message.type !== "Hello") return { code: CloseCode.protocolError, error: "hello_expected" };
  if (message.protocolVersion !== PROTOCOL_VERSION) return { code: CloseCode.unsupportedVersion, error: "unsupported_version" };
  if (message.token !== TEST_TOKEN) return { code: CloseCode.unauthorized, error: "unauthorized" };
  // Nothing to serve: no model, and no library offered with the models feature.
  if (message.models.length === 0 && !(message.library !== undefined && message.features?.includes("models"))) {
    return { code: CloseCode.protocolError, error: "no_models" };
  }
  return { code: CloseCode.protocolError, error: "duplicate_hello", kept: true };
}

function helloWithoutToken(text: string): boolean {
  try {
    const json = JSON.parse(text) as unknown;
    return typeof json === "object" && json !== null && (json as { type?: unknown }).type === "Hello" && typeof (json as { token?: unknown }).token !== "string";
  } catch {
    return false;
  }
}

/** The oracle for a frame sent after a valid Hello by a worker that holds no task; the probe is an ack for an unknown task. */
function expectedAfterHello(text: string): Expected {
  if (utf8Length(text) > MAX_WORKER_PAYLOAD) return { code: CloseCode.tooLarge };
  const decoded = decodeWorkerMessage(text);
  if (!decoded.ok) return { code: CloseCode.protocolError, error: "invalid_message" };
  switch (decoded.message.type) {
    case "Hello":
      return { code: CloseCode.protocolError, error: "duplicate_hello" };
    case "Heartbeat":
    case "Draining":
      return { code: CloseCode.protocolError, error: "unknown_task", kept: true };
    case "Library":
    case "ModelStatus":
      // This worker's Hello did not take up the models feature.
      return { code: CloseCode.protocolError, error: "feature_not_negotiated" };
    default:
      return { code: CloseCode.protocolError, error: "unknown_task", kept: false };
  }
}

const baseMessages: ReadonlyArray<Record<string, unknown>> = [
  { type: "TokenChunk", taskId: "task-fuzz", seq: 0, text: "x", tokens: 1 },
  { type: "TaskFinished", taskId: "task-fuzz", finishReason: "stop", usage: { promptTokens: 1, completionTokens: 1 } },
  { type: "TaskFailed", taskId: "task-fuzz", error: { message: "boom", code: "engine_error" } },
  { type: "TaskCancelAck", taskId: "task-fuzz", completionTokens: 3 },
  { type: "TaskProgress", taskId: "task-fuzz", promptTokensDone: 10, promptTokens: 20 },
  { type: "Heartbeat", at: 1_764_000_000_000, running: 0 },
  { type: "Draining" },
  { type: "Library", library: [{ id: "lib-model", sizeBytes: 1, memoryBytes: 1, contextLength: 16 }], memory: { totalBytes: 10, freeBytes: 10 } },
  { type: "ModelStatus", model: "lib-model", state: "loaded", info: { id: "lib-model", contextLength: 16 } },
];

/** A (possibly) broken message: a protocol message as is or with 1–3 mutations, or any JSON, or not JSON at all. */
const fuzzFrame = (bases: ReadonlyArray<object>): fc.Arbitrary<string> =>
  fc.oneof(
    { arbitrary: fc.constantFrom(...bases).map((base) => JSON.stringify(base)), weight: 2 },
    { arbitrary: fc.tuple(fc.constantFrom(...bases), fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([base, m]) => serialize(mutate(base, m))), weight: 6 },
    { arbitrary: fc.jsonValue().map((value) => JSON.stringify(value)), weight: 1 },
    { arbitrary: fc.string({ maxLength: 40 }), weight: 1 },
  );

describe("fuzzing the worker protocol", () => {
  let coordinator: RunningCoordinator;
  let legit: TestWorker;
  const legitName = `legit-${randomUUID()}`;
  let stopTraffic = false;
  let traffic: Promise<Array<{ content: string; finish: string | null }>>;

  /** Well-formed streaming requests, one after another, until told to stop. */
  async function legitTraffic(): Promise<Array<{ content: string; finish: string | null }>> {
    const client = openaiClient(coordinator);
    const results: Array<{ content: string; finish: string | null }> = [];
    for (let i = 0; !stopTraffic || i === 0; i++) {
      const stream = await client.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: `request ${i}` }], stream: true });
      let content = "";
      let finish: string | null = null;
      for await (const chunk of stream) {
        content += chunk.choices[0]?.delta.content ?? "";
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      results.push({ content, finish });
    }
    return results;
  }

  beforeAll(async () => {
    // Many generated Hellos carry wrong or no tokens: the per-address ban (its own test) would turn the rest away.
    coordinator = await startTestCoordinator({ maxWorkerPayload: MAX_WORKER_PAYLOAD, workerTokenFailures: 0 });
    legit = await startSimWorker(coordinator, { name: legitName, tokensPerSecond: 400, replyTokens: 30 });
    traffic = legitTraffic();
    traffic.catch(() => {}); // awaited (and its failure reported) by the last test
    await legit.log.until(() => legit.log.started.length > 0, "the legit worker to take a task");
  });

  afterAll(async () => {
    stopTraffic = true;
    await traffic.catch(() => {});
    await legit.stop();
    await coordinator.close();
  });

  /** Sends the frames on a fresh connection and reports how the master ended it; it must end it. */
  async function exchange(frames: readonly Frame[]) {
    const peer = await connectPeer(coordinator);
    try {
      for (const frame of frames) peer.socket.send(frame.data, { binary: frame.binary ?? false });
      const { code } = await within(peer.closed, 5_000, "the master to close the connection");
      return {
        code,
        error: peer.received.find((m) => m.type === "ProtocolError"),
        welcomed: peer.received.some((m) => m.type === "Welcome"),
      };
    } finally {
      peer.socket.terminate();
    }
  }

  function checkOutcome(outcome: Awaited<ReturnType<typeof exchange>>, expected: Expected, probeTaskId?: string): void {
    expect(outcome.code).toBe(expected.code);
    if (expected.error === undefined) {
      expect(outcome.error).toBeUndefined();
      return;
    }
    expect(outcome.error?.code).toBe(expected.error);
    if (probeTaskId !== undefined && expected.kept !== undefined) {
      expect(String(outcome.error?.message).includes(probeTaskId), `kept=${expected.kept}: ${String(outcome.error?.message)}`).toBe(expected.kept);
    }
  }

  it("refuses a broken first message, and welcomes a valid Hello (property)", async () => {
    const rogueHello = { ...hello(), worker: { ...hello().worker, name: `fuzz-${randomUUID()}` } };
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.oneof({ arbitrary: fuzzFrame([rogueHello]), weight: 3 }, fuzzFrame(baseMessages)), async (text) => {
        fc.pre(!text.includes("simulator")); // a rogue must never offer the model the legit traffic asks for
        const expected = expectedBeforeHello(text);
        const outcome = await exchange([{ data: text }, { data: JSON.stringify(hello()) }]);
        checkOutcome(outcome, expected);
        expect(outcome.welcomed).toBe(expected.kept === true);
        const label = expected.kept ? "kept" : (expected.error ?? String(expected.code));
        seen.set(label, (seen.get(label) ?? 0) + 1);
      }),
      { numRuns: 120, examples: [[JSON.stringify(rogueHello)], ...baseMessages.map((base) => [JSON.stringify(base)] as [string])] },
    );
    // Both sides of the boundary must be reached, or the property proves little.
    expect(seen.get("kept") ?? 0).toBeGreaterThan(3);
    expect(seen.get("invalid_message") ?? 0).toBeGreaterThan(3);
  });

  it("refuses broken messages after Hello, and keeps the connection for valid ones (property)", async () => {
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fuzzFrame([hello(), ...baseMessages]), async (text) => {
        const probeTaskId = `probe-${randomUUID()}`;
        const outcome = await exchange([
          { data: JSON.stringify(hello()) },
          { data: text },
          { data: JSON.stringify({ type: "TaskCancelAck", taskId: probeTaskId }) },
        ]);
        const expected = expectedAfterHello(text);
        checkOutcome(outcome, expected, probeTaskId);
        const label = expected.kept ? "kept" : (expected.error ?? String(expected.code));
        seen.set(label, (seen.get(label) ?? 0) + 1);
      }),
      // Every message as is, on top of the generated ones: both sides of the boundary are reached by design, not by
      // luck (only Heartbeat and Draining keep the connection: ~6 % of the generated frames).
      { numRuns: 150, examples: [hello(), ...baseMessages].map((base) => [JSON.stringify(base)] as [string]) },
    );
    expect(seen.get("kept") ?? 0).toBeGreaterThan(3);
    expect(seen.get("unknown_task") ?? 0).toBeGreaterThan(3);
    expect(seen.get("invalid_message") ?? 0).toBeGreaterThan(3);
  });

  it("disconnects a worker that reports on the legit worker's tasks (property)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...baseMessages.slice(0, 4)), fc.nat(), async (base, pick) => {
        const stolen = legit.log.started[pick % legit.log.started.length] as string;
        const outcome = await exchange([{ data: JSON.stringify(hello()) }, { data: JSON.stringify({ ...base, taskId: stolen }) }]);
        checkOutcome(outcome, { code: CloseCode.protocolError, error: "unknown_task" });
        expect(String(outcome.error?.message)).toContain(stolen);
      }),
      { numRuns: 30 },
    );
  });

  it("refuses binary frames, oversize frames and invalid UTF-8 text, before and after Hello (property)", async () => {
    const kind = fc.oneof(
      fc.uint8Array({ maxLength: 256 }).map((bytes) => ({ frame: { data: Buffer.from(bytes), binary: true }, expected: { code: CloseCode.protocolError, error: "binary_frame" } })),
      fc.constant({ frame: { data: Buffer.from(JSON.stringify(hello())), binary: true }, expected: { code: CloseCode.protocolError, error: "binary_frame" } }),
      fc.tuple(fc.integer({ min: MAX_WORKER_PAYLOAD + 1, max: MAX_WORKER_PAYLOAD * 3 }), fc.boolean()).map(([size, binary]) => ({
        frame: { data: Buffer.alloc(size, "{"), binary },
        expected: { code: CloseCode.tooLarge },
      })),
      fc.constantFrom([0xc3, 0x28], [0xff], [0xed, 0xa0, 0x80], [0xc0, 0xaf]).map((bad) => ({
        frame: { data: Buffer.from([...Buffer.from('{"type":"Heartbeat","at":1,"x":"'), ...bad, ...Buffer.from('"}')]), binary: false },
        expected: { code: 1007 }, // RFC 6455 "invalid frame payload data": ws refuses it before the master sees it
      })),
    );
    await fc.assert(
      fc.asyncProperty(kind, fc.boolean(), async ({ frame, expected }, afterHello) => {
        const frames: Frame[] = afterHello ? [{ data: JSON.stringify(hello()) }, frame] : [frame];
        checkOutcome(await exchange(frames), expected);
      }),
      { numRuns: 40 },
    );
  });

  it("served the legit traffic throughout, and lists only the legit worker with no task left", async () => {
    stopTraffic = true;
    const results = await within(traffic, 20_000, "the legit traffic to end");
    expect(results.length).toBeGreaterThan(1);
    for (const result of results) {
      expect(result.finish).toBe("stop");
      expect(result.content).toContain("you said");
    }
    await eventually(() => coordinator.master.snapshot().workers.length === 1, "the rogue workers to be gone");
    expect(coordinator.master.snapshot().workers.map((w) => w.name)).toEqual([legitName]);
    await eventually(() => coordinator.master.liveTasks === 0, "no task left in the master");
    expect((await fetch(`${coordinator.url}/health`)).status).toBe(200);
  });
});
