// How a worker puts tokens on the wire: a lone token leaves at once, and tokens produced faster than the network
// drains merge into few frames that count as the separate ones would have. A bare-bones master (a real ws server)
// stands in for the coordinator, so the test can stop reading and see exactly what the worker sent.
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../src/log.js";
import type { Engine, EngineDescription, GenerationRequest, GenerationResult, GenerationSink } from "../src/worker/engines/engine.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { eventually } from "./support/cluster.js";
import { startBareMaster } from "./support/bare-master.js";

const description: EngineDescription = {
  device: { kind: "simulator", name: "test", memoryBytes: 0 },
  models: [{ id: "m", contextLength: 1_000 }],
};

/** An engine the test drives: `produce` runs inside generate, with the sink. */
class ScriptedEngine implements Engine {
  readonly kind = "scripted";
  constructor(private readonly produce: (sink: GenerationSink) => Promise<number>) {}
  async start(): Promise<EngineDescription> {
    return description;
  }
  async generate(_request: GenerationRequest, sink: GenerationSink): Promise<GenerationResult> {
    const tokens = await this.produce(sink);
    return { finishReason: "stop", usage: { promptTokens: 1, completionTokens: tokens } };
  }
  async close(): Promise<void> {}
}

describe("token frames from a worker", () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  async function master() {
    const started = await startBareMaster();
    cleanup.push(started.close);
    return started;
  }

  /** Joins `at` with a worker whose engine runs `produce` for the task the master assigns. */
  async function join(at: { url: string }, produce: (sink: GenerationSink) => Promise<number>) {
    const runtime = new WorkerRuntime(new ScriptedEngine(produce), description, {
      join: at.url,
      token: "t",
      name: "frames",
      maxConcurrency: 1,
      reconnect: false,
      log: silentLogger,
    });
    cleanup.push(() => runtime.stop());
    await runtime.start();
  }

  /**
   * Runs a task of `tokens` tokens, `emit` making each, one a turn (as a real engine yields between decode steps),
   * while the master reads nothing; then lets it read, and returns the chunks it received.
   */
  async function backedUp(tokens: number, emit: (sink: GenerationSink, i: number) => void) {
    let doneProducing!: () => void;
    const producing = new Promise<void>((resolve) => (doneProducing = resolve));
    const coordinator = await master();
    await join(coordinator, async (sink) => {
      coordinator.pauseReading();
      for (let i = 0; i < tokens; i++) {
        emit(sink, i);
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      doneProducing();
      return tokens;
    });
    await producing;
    coordinator.resumeReading();
    await eventually(() => coordinator.received.some((m) => m.type === "TaskFinished"), "TaskFinished", 20_000);
    return coordinator.chunks();
  }

  it("sends a lone token at once, without waiting for the next one", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const coordinator = await master();
    await join(coordinator, async (sink) => {
      sink.text("first", 1);
      await held;
      sink.text(" second", 1);
      return 2;
    });
    // The engine is still holding its second token: the first must already be at the master.
    await eventually(() => coordinator.chunks().length === 1, "the first token at the master");
    expect(coordinator.chunks()[0]).toMatchObject({ seq: 0, text: "first", tokens: 1 });
    release();
    await eventually(() => coordinator.received.some((m) => m.type === "TaskFinished"), "TaskFinished");
    expect(coordinator.chunks().map((c) => c.text)).toEqual(["first", " second"]);
  });

  it("merges tokens made while the network is backed up into few frames, in order and counted as made", async () => {
    const tokens = 400;
    const piece = "x".repeat(32 * 1024);
    let produced = "";
    const chunks = await backedUp(tokens, (sink, i) => {
      const text = `${i}:${piece}|`;
      produced += text;
      sink.text(text, 1);
    });
    // 12.8 MB cannot sit in loopback's kernel buffers: most tokens waited in the worker and left merged.
    expect(chunks.length).toBeLessThan(tokens / 2);
    expect(chunks.map((c) => c.seq)).toEqual(chunks.map((_, i) => i));
    expect(chunks.map((c) => c.text).join("")).toBe(produced);
    expect(chunks.reduce((sum, c) => sum + (c.tokens ?? 1), 0)).toBe(tokens);
  });

  it("carries each token's logprobs with its text, concatenated in order when tokens merge", async () => {
    const tokens = 400;
    const piece = "z".repeat(32 * 1024);
    const chunks = await backedUp(tokens, (sink, i) => {
      const text = `${i}:${piece}|`;
      sink.text(text, 1, [{ token: text, logprob: -(i + 1) / 1000, top: [{ token: text, logprob: -(i + 1) / 1000 }] }]);
    });

    expect(chunks.length).toBeLessThan(tokens / 2); // merged
    for (const chunk of chunks) expect((chunk.logprobs ?? []).map((entry) => entry.token).join("")).toBe(chunk.text);
    const entries = chunks.flatMap((chunk) => chunk.logprobs ?? []);
    expect(entries.map((entry) => entry.logprob)).toEqual(Array.from({ length: tokens }, (_, i) => -(i + 1) / 1000));
  });

  it("sends no TaskProgress to a master that announces no task window (an older one), and never pauses the engine", async () => {
    const coordinator = await master();
    const rooms: unknown[] = [];
    await join(coordinator, async (sink) => {
      sink.progress(5, 10);
      for (let i = 0; i < 100; i++) {
        sink.text("y".repeat(64 * 1024), 1);
        rooms.push(sink.ready());
      }
      return 100;
    });
    await eventually(() => coordinator.received.some((m) => m.type === "TaskFinished"), "TaskFinished", 20_000);
    expect(coordinator.received.map((m) => m.type)).not.toContain("TaskProgress");
    expect(rooms.every((room) => room === undefined)).toBe(true);
  });
});
