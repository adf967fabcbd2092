// The llama.cpp engine against the scripted test model, through real node-llama-cpp on the CPU.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestModel, SCRIPTED_REPLY, type TestModel } from "../scripts/make-test-model.js";
import { type EngineDescription, type GenerationRequest, type GenerationResult, textSink } from "../src/worker/engines/engine.js";
import { LlamaEngine } from "../src/worker/engines/llama.js";
import type { SamplingParams } from "../src/worker-protocol/index.js";

let dir: string;
let scripted: TestModel;
let engine: LlamaEngine;
let description: EngineDescription;
/** A separate handle on the same file, to tokenize independently of the engine. */
let llama: Llama;
let tokenizer: LlamaModel;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "llama-engine-"));
  scripted = await makeTestModel(join(dir, "scripted.gguf"));
  const endless = await makeTestModel(join(dir, "endless.gguf"), { endless: true });
  // Logits of ~5.7 instead of ~90: sampling at temperature 1 strays from the script about half the time.
  const soft = await makeTestModel(join(dir, "soft.gguf"), { logitScale: 1 });
  engine = new LlamaEngine({ modelPaths: [scripted.path, endless.path, soft.path], gpu: "cpu", maxConcurrency: 2 });
  description = await engine.start();
  llama = await getLlama({ gpu: false, build: "never", skipDownload: true });
  tokenizer = await llama.loadModel({ modelPath: scripted.path });
});

afterAll(async () => {
  await engine?.close();
  await llama?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Run {
  chunks: Array<{ text: string; tokens: number | undefined }>;
  text: string;
  result: GenerationResult;
}

function request(model: string, params: SamplingParams = {}, content = "hi there"): GenerationRequest {
  return { taskId: `task-${Math.random()}`, model, messages: [{ role: "user", content }], params };
}

/** Generates, collecting the streamed chunks; `onChunk` may abort. */
async function run(req: GenerationRequest, signal = new AbortController().signal, onChunk?: (count: number) => void) {
  const chunks: Run["chunks"] = [];
  const result = await engine.generate(
    req,
    textSink((text, tokens) => {
      chunks.push({ text, tokens });
      onChunk?.(chunks.length);
    }),
    signal,
  );
  return { chunks, text: chunks.map((c) => c.text).join(""), result } satisfies Run;
}

describe("LlamaEngine", () => {
  it("describes the CPU device and each model with its context length and reasoning format", () => {
    expect(description.device.kind).toBe("cpu");
    expect(description.device.memoryBytes).toBeGreaterThan(0);
    expect(description.models.map((m) => m.id)).toEqual(["scripted", "endless", "soft"]);
    for (const model of description.models) {
      expect(model.contextLength).toBe(2048);
      expect(model.format).toBe("think");
    }
  });

  it("streams the scripted reply through the model's chat template and counts tokens as the model tokenizes", async () => {
    const { chunks, text, result } = await run(request("scripted", { temperature: 0 }));

    expect(text).toBe(SCRIPTED_REPLY);
    expect(chunks.length).toBeGreaterThan(1);
    expect(result.finishReason).toBe("stop");
    expect(result.usage.completionTokens).toBe(tokenizer.tokenize(SCRIPTED_REPLY).length);
    const renderedPrompt = "<s><|user|>\nhi there\n<|assistant|>\n"; // the template's rendering of this chat
    expect(result.usage.promptTokens).toBe(tokenizer.tokenize(renderedPrompt, true).length);
    expect(chunks.reduce((sum, c) => sum + (c.tokens ?? 0), 0)).toBe(result.usage.completionTokens);
  });

  it("is deterministic at temperature 0 and with a fixed seed, and honours top_p", async () => {
    const greedy = await run(request("soft", { temperature: 0 }));
    const seeded = [await run(request("soft", { temperature: 1, seed: 7 })), await run(request("soft", { temperature: 1, seed: 7 }))];
    const reseeded = await Promise.all([1, 2, 3].map((seed) => run(request("soft", { temperature: 1, seed, maxTokens: 12 }))));
    // The scripted successor has probability ~0.5: a top_p of 0.3 keeps only it.
    const nucleus = await run(request("soft", { temperature: 1, topP: 0.3 }));

    expect(greedy.text).toBe(SCRIPTED_REPLY);
    expect(seeded[0]?.text).toBe(seeded[1]?.text);
    expect(new Set(reseeded.map((r) => r.text)).size).toBeGreaterThan(1);
    expect(nucleus.text).toBe(SCRIPTED_REPLY);
  });

  it("stops at max_tokens with finish reason length", async () => {
    const { text, result } = await run(request("scripted", { temperature: 0, maxTokens: 3 }));

    expect(text).toBe("<think> The user");
    expect(result).toEqual({ finishReason: "length", usage: { promptTokens: expect.any(Number), completionTokens: 3, cachedTokens: expect.any(Number) } });
  });

  it("stops at a stop string, sending none of it, and names it", async () => {
    const { text, result } = await run(request("scripted", { temperature: 0, stop: ["hello.</th"] }));

    expect(text).toBe("<think> The user says ");
    expect(result.finishReason).toBe("stop");
    expect(result.stopSequence).toBe("hello.</th");
    expect(result.usage.completionTokens).toBe(6); // up to `</think>`, which completed the stop string
  });

  it("stops decoding within one token step of the abort, and the sequence serves the next tasks", async () => {
    const controller = new AbortController();
    const abortAt = 5;

    const aborted = await run(request("endless", { temperature: 0 }), controller.signal, (count) => {
      if (count === abortAt) controller.abort();
    });
    // Both sequences of the model must be free again: two more tasks run side by side to completion.
    const next = await Promise.all([
      run(request("endless", { temperature: 0, maxTokens: 20 })),
      run(request("endless", { temperature: 0, maxTokens: 20 })),
    ]);

    expect(aborted.result.usage.completionTokens).toBeLessThanOrEqual(abortAt + 1);
    expect(aborted.chunks).toHaveLength(abortAt);
    for (const r of next) expect(r.result.usage.completionTokens).toBe(20);
  });

  it("decodes nothing when the abort comes before the prompt is evaluated", async () => {
    const controller = new AbortController();
    const generation = run(request("endless", { temperature: 0 }, "a long prompt ".repeat(100)), controller.signal);
    controller.abort();

    const { chunks, result } = await generation;

    expect(chunks).toEqual([]);
    expect(result.usage.completionTokens).toBe(0);
  });

  it("settles at once when the signal is already aborted, and lets a queued task give up its place", async () => {
    const preAborted = AbortSignal.abort();
    const hog = new AbortController();
    const hogs = [run(request("endless", { temperature: 0 }), hog.signal), run(request("endless", { temperature: 0 }), hog.signal)];
    const queued = new AbortController();
    const waiting = run(request("endless", { temperature: 0, maxTokens: 5 }), queued.signal);

    await expect(run(request("scripted"), preAborted)).rejects.toThrow();
    queued.abort();
    await expect(waiting).rejects.toThrow();
    hog.abort();
    const hogResults = await Promise.all(hogs);
    const after = await run(request("endless", { temperature: 0, maxTokens: 5 }));

    for (const r of hogResults) expect(r.result.usage.completionTokens).toBeLessThan(2048);
    expect(after.result.usage.completionTokens).toBe(5);
  });

  it("serves two tasks at once with maxConcurrency 2, interleaving their tokens", async () => {
    const order: string[] = [];
    const generate = (name: string) =>
      engine.generate(request("endless", { temperature: 0, maxTokens: 40 }), textSink(() => order.push(name)), new AbortController().signal);
    const both = await Promise.all([generate("a"), generate("b")]);
    const scriptedPair = await Promise.all([run(request("scripted", { temperature: 0 })), run(request("scripted", { temperature: 0 }))]);

    for (const result of both) expect(result.usage.completionTokens).toBe(40);
    // Interleaved: b streamed before a finished.
    expect(order.indexOf("b")).toBeLessThan(order.lastIndexOf("a"));
    for (const r of scriptedPair) expect(r.text).toBe(SCRIPTED_REPLY);
  });

  it("renders tools, tool calls and their results through the chat template", async () => {
    const plain = await run(request("scripted", { temperature: 0 }));
    const withTools = await run({
      ...request("scripted", { temperature: 0 }),
      messages: [
        { role: "user", content: "weather?" },
        {
          role: "assistant",
          content: "",
          toolCalls: [{ id: "c1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }],
        },
        { role: "tool", toolCallId: "c1", content: "sunny" },
      ],
      tools: [{ type: "function", function: { name: "get_weather", description: "Weather now", parameters: { type: "object" } } }],
    });

    expect(withTools.text).toBe(SCRIPTED_REPLY);
    expect(withTools.result.usage.promptTokens).toBeGreaterThan(plain.result.usage.promptTokens + "get_weather".length);
    await expect(
      run({ ...request("scripted"), messages: [{ role: "tool", toolCallId: "nope", content: "x" }] }),
    ).rejects.toThrow(/answers no earlier assistant tool call/);
  });

  it("rejects a prompt longer than the context, and an unknown model", async () => {
    await expect(run(request("scripted", {}, "x".repeat(3000)))).rejects.toThrow(/holds at most 2048 tokens/);
    await expect(run(request("nope"))).rejects.toThrow(/does not serve the model 'nope'/);
  });
});

describe("llama engine flow control", () => {
  it("pauses its sampling loop while the sink has no room, reports prompt progress, and goes on when released", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let gated = false;
    let tokensWhileGated = 0;
    let tokens = 0;
    const progress: number[] = [];
    const controller = new AbortController();
    const sink = {
      text(_text: string, count?: number) {
        tokens += count ?? 1;
        if (gated) tokensWhileGated += 1;
        if (tokens >= 30) controller.abort();
      },
      progress: (done: number) => void progress.push(done),
      // Room for 5 tokens, then none until the test releases the gate.
      ready: () => {
        if (tokens < 5) return undefined;
        gated = true;
        return gate.then(() => void (gated = false));
      },
    };

    const generation = engine.generate(request("endless", { temperature: 0 }, "a long prompt ".repeat(100)), sink, controller.signal);
    await eventuallyTrue(() => gated, "the loop to wait for room");
    // A window in which a loop that ignored the sink would have made many tokens (it makes one every few ms here).
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(tokensWhileGated).toBe(0);
    release();
    await generation.catch(() => undefined);

    expect(tokens).toBeGreaterThanOrEqual(30);
    expect(progress.length).toBeGreaterThan(0);
  });
});

async function eventuallyTrue(predicate: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
