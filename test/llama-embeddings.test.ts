// Embeddings on the llama engine, through real node-llama-cpp on the CPU, with the scripted test model (a decoder whose
// vector is its last token's state) and its encoder variant (non-causal, mean pooling: an embedding-only model).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestModel } from "../scripts/make-test-model.js";
import { MeteredEngine } from "../src/terminal/worker-status.js";
import { CAPABILITIES, type EmbedSpec } from "../src/worker-protocol/index.js";
import { type Engine, type EngineDescription, type EmbeddingResult, EngineRequestError } from "../src/worker/engines/engine.js";
import { LlamaEngine } from "../src/worker/engines/llama.js";

/** Over node-llama-cpp's default batch of 512 tokens: an input may hold 1,023 tokens, its beginning token included. */
const CONTEXT_LENGTH = 1024;
const MAX_INPUT_TOKENS = CONTEXT_LENGTH - 1;

let dir: string;
let engine: LlamaEngine;
let description: EngineDescription;
/** llama.cpp's log lines (one logger for the whole process: every getLlama here sets it). */
const logged: Array<{ level: string; message: string }> = [];
const onLog = (level: string, message: string) => void logged.push({ level, message });
/** The same files without --embeddings. */
let plain: LlamaEngine;
let plainDescription: EngineDescription;
/** A separate handle on the scripted model, to tokenize independently of the engine. */
let llama: Llama;
let tokenizer: LlamaModel;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "llama-embeddings-"));
  const scripted = await makeTestModel(join(dir, "scripted.gguf"));
  const encoder = await makeTestModel(join(dir, "encoder.gguf"), { encoder: true });
  const options = { gpu: "cpu" as const, maxConcurrency: 2, contextLength: CONTEXT_LENGTH, onLog };
  engine = new LlamaEngine({ ...options, modelPaths: [scripted.path, encoder.path], embeddings: true });
  description = await engine.start();
  plain = new LlamaEngine({ ...options, modelPaths: [scripted.path, encoder.path] });
  plainDescription = await plain.start();
  llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logger: onLog });
  tokenizer = await llama.loadModel({ modelPath: scripted.path });
});

afterAll(async () => {
  await engine?.close();
  await plain?.close();
  await llama?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Embedded {
  vectors: Float32Array[];
  tokens: number[];
  progress: Array<[number, number | undefined]>;
  result: EmbeddingResult;
}

/** Embeds `inputs` with `model`, collecting what the sink receives; `onVector` may abort. */
async function embed(
  model: string,
  inputs: EmbedSpec["inputs"],
  options: { truncate?: boolean; signal?: AbortSignal; onVector?: (count: number) => void; on?: Engine } = {},
): Promise<Embedded> {
  const vectors: Float32Array[] = [];
  const tokens: number[] = [];
  const progress: Embedded["progress"] = [];
  const sink = {
    vector: (values: Float32Array | readonly number[], count: number) => {
      vectors.push(Float32Array.from(values));
      tokens.push(count);
      options.onVector?.(vectors.length);
    },
    progress: (done: number, total?: number) => progress.push([done, total]),
  };
  const on = options.on ?? engine;
  if (!on.embed) throw new Error(`the ${on.kind} engine has no embed()`);
  const embed = { inputs, ...(options.truncate !== undefined && { truncate: options.truncate }) };
  const result = await on.embed({ taskId: `task-${Math.random()}`, model, embed }, sink, options.signal ?? new AbortController().signal);
  return { vectors, tokens, progress, result };
}

function norm(vector: Float32Array): number {
  return Math.sqrt(vector.reduce((sum, value) => sum + value * value, 0));
}

/** The tokens of a text as node-llama-cpp's embedding context reads it (without the beginning token it adds). */
function tokensOf(text: string): number[] {
  return tokenizer.tokenize(text, false);
}

/** Expects `promise` to reject with an EngineRequestError of `code` whose message matches. */
async function expectRefusal(promise: Promise<unknown>, code: EngineRequestError["code"], message: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(EngineRequestError);
  expect(error).toMatchObject({ code, message: expect.stringMatching(message) });
}

describe("llama engine embeddings: capabilities", () => {
  it("announces embeddings with --embeddings, keeping every chat capability; without it, none", () => {
    const announced = description.models.find((m) => m.id === "scripted")?.capabilities ?? [];
    const chatOnly = plainDescription.models.find((m) => m.id === "scripted")?.capabilities ?? [];

    expect(announced).toContain(CAPABILITIES.embeddings);
    expect(announced).toContain(CAPABILITIES.chat);
    expect(announced).toEqual(expect.arrayContaining(chatOnly));
    expect(announced).not.toContain(CAPABILITIES.embeddingDimensions);
    expect(chatOnly).not.toContain(CAPABILITIES.embeddings);
  });

  it("serves an embedding-only model (non-causal) for embeddings alone, with or without --embeddings", () => {
    for (const described of [description, plainDescription]) {
      const encoder = described.models.find((m) => m.id === "encoder");
      expect(encoder).toEqual({ id: "encoder", contextLength: CONTEXT_LENGTH, capabilities: [CAPABILITIES.embeddings] });
    }
  });

  it("refuses to generate with an embedding-only model, and to embed with a model started without --embeddings", async () => {
    const generating = engine.generate(
      { taskId: "t", model: "encoder", messages: [{ role: "user", content: "hi" }], params: {} },
      { text: () => {}, progress: () => {}, ready: () => undefined },
      new AbortController().signal,
    );

    await expectRefusal(generating, "invalid_request", /'encoder' is an embedding model/);
    await expectRefusal(embed("scripted", ["hi"], { on: plain }), "invalid_request", /--embeddings/);
    await expect(embed("nope", ["hi"])).rejects.toThrow(/does not serve the model 'nope'/);
  });
});

describe("llama engine embeddings: vectors", () => {
  it("gives unit vectors of the model's embedding size, the same for the same text and different for another", async () => {
    const { vectors, tokens, progress, result } = await embed("scripted", [" The user", " The user says", " The user"]);

    expect(vectors).toHaveLength(3);
    for (const vector of vectors) {
      expect(vector).toHaveLength(tokenizer.embeddingVectorSize);
      expect(norm(vector)).toBeCloseTo(1, 6);
    }
    expect(vectors[2]).toEqual(vectors[0]);
    expect(vectors[1]).not.toEqual(vectors[0]);
    // Each input's tokens with the beginning token the model adds (its tokenizer prepends BOS).
    expect(tokens).toEqual([1 + tokensOf(" The user").length, 1 + tokensOf(" The user says").length, 1 + tokensOf(" The user").length]);
    expect(result.promptTokens).toBe(tokens.reduce((sum, n) => sum + n, 0));
    expect(progress.at(-1)).toEqual([3, 3]);
  });

  it("is the model's own vector, normalized: the scripted decoder's last token, the encoder's mean over tokens", async () => {
    const last = (await embed("scripted", [" The user"])).vectors[0];
    const mean = (await embed("encoder", [" The user"])).vectors[0];

    // The scripted model puts each reply piece on its own dimension and every other token (BOS here) on dimension 0.
    expect(Array.from(last ?? []).filter((v) => v !== 0)).toEqual([1]);
    const third = 1 / Math.sqrt(3); // BOS, " The" and " user", equally
    expect(Array.from(mean ?? []).filter((v) => v !== 0)).toEqual([third, third, third].map((v) => expect.closeTo(v, 6)));
  });

  it("gives a token array the vector and count of the text it tokenizes, its beginning token added unless there", async () => {
    const text = " The user says";
    const bos = tokenizer.tokens.bos ?? 1;
    for (const model of ["scripted", "encoder"]) {
      const { vectors, tokens } = await embed(model, [text, tokensOf(text), [bos, ...tokensOf(text)]]);

      expect(vectors[1]).toEqual(vectors[0]);
      expect(vectors[2]).toEqual(vectors[0]);
      expect(tokens).toEqual([tokens[0], tokens[0], tokens[0]]);
    }
  });

  it("refuses a token id outside the vocabulary and an empty text, before embedding any input", async () => {
    const vocabulary = tokenizer.fileInfo.metadata.tokenizer.ggml.tokens.length;
    let delivered = 0;
    const onVector = () => (delivered += 1);

    const badToken = new RegExp(`input 1 holds token ${vocabulary}, but the vocabulary of 'scripted' has ${vocabulary} tokens`);
    await expectRefusal(embed("scripted", [" The", [5, vocabulary]], { onVector }), "invalid_request", badToken);
    await expectRefusal(embed("encoder", [" The", ""], { onVector }), "invalid_request", /input 1 has no tokens/);
    expect(delivered).toBe(0);
    expect((await embed("scripted", [[vocabulary - 1]])).vectors).toHaveLength(1);
  });
});

describe("llama engine embeddings: long inputs", () => {
  // " The" and " user" are pieces of their own; each "x" is one byte token.
  const long = (xs: number) => ` The${"x".repeat(xs)} user`;

  it("takes an input of exactly the context's bound, and refuses a longer one with context_length_exceeded", async () => {
    const fits = long(MAX_INPUT_TOKENS - 3); // BOS, " The", the xs, " user"
    const { tokens } = await embed("scripted", [fits]);

    expect(tokens).toEqual([MAX_INPUT_TOKENS]);
    const tooLong = new RegExp(`input 0 is ${MAX_INPUT_TOKENS + 1} tokens, but 'scripted' embeds at most ${MAX_INPUT_TOKENS} tokens`);
    await expectRefusal(embed("scripted", [long(MAX_INPUT_TOKENS - 2)]), "context_length_exceeded", tooLong);
  });

  it("with truncate, cuts an input's end to fit: the vector of its first tokens", async () => {
    const text = long(CONTEXT_LENGTH + 100);
    for (const model of ["scripted", "encoder"]) {
      const cut = await embed(model, [text], { truncate: true });
      const head = await embed(model, [tokensOf(text).slice(0, MAX_INPUT_TOKENS - 1)]);

      expect(cut.tokens).toEqual([MAX_INPUT_TOKENS]);
      expect(cut.result.promptTokens).toBe(MAX_INPUT_TOKENS);
      expect(cut.vectors[0]).toEqual(head.vectors[0]);
      expect(cut.vectors[0]).not.toEqual((await embed(model, [" The user"])).vectors[0]);
    }
  });

  it("pools an encoder's input longer than one default batch (512 tokens) over all of it", async () => {
    const { vectors, tokens } = await embed("encoder", [long(600)]);
    const [small, other, large] = Array.from(vectors[0] ?? [])
      .filter((v) => v !== 0)
      .sort((a, b) => a - b);

    expect(tokens).toEqual([603]);
    // " The" and " user" on their own dimensions, BOS and the 600 xs on the shared one. Pooling over the last batch
    // alone (the last 91 tokens) would miss " The", the second token.
    expect(other).toBeCloseTo(small ?? 0, 6);
    expect((large ?? 0) / (small ?? 1)).toBeCloseTo(601, 0);
  });
});

describe("llama engine embeddings: cancellation and concurrency", () => {
  it("stops between inputs when the signal aborts", async () => {
    const controller = new AbortController();
    const inputs = Array.from({ length: 50 }, (_, i) => ` The${"x".repeat(i)} user`);
    let delivered = 0;

    const aborted = embed("scripted", inputs, {
      signal: controller.signal,
      onVector: (count) => {
        delivered = count;
        controller.abort();
      },
    });

    const error = await aborted.then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBe(controller.signal.reason);
    expect(delivered).toBe(1);
    expect((await embed("scripted", [" The"])).vectors).toHaveLength(1); // the context serves the next task
  });

  it("gives concurrent tasks on one model the same vectors as one after the other", async () => {
    for (const model of ["scripted", "encoder"]) {
      const first = Array.from({ length: 20 }, (_, i) => ` The${"x".repeat(i)} user says`);
      const second = Array.from({ length: 20 }, (_, i) => ` user${"y".repeat(i * 3)} The`);
      const alone = [await embed(model, first), await embed(model, second)];

      const together = await Promise.all([embed(model, first), embed(model, second)]);

      expect(together.map((run) => run.vectors)).toEqual(alone.map((run) => run.vectors));
      expect(together.map((run) => run.tokens)).toEqual(alone.map((run) => run.tokens));
    }
  });

  it("passes through the terminal's metered engine, which counts the task as running", async () => {
    const metered = new MeteredEngine(engine);
    let running = 0;

    const { vectors } = await embed("scripted", [" The"], { on: metered, onVector: () => (running = metered.running) });

    expect(vectors).toHaveLength(1);
    expect(running).toBe(1);
    expect(metered.running).toBe(0);
    const chatOnly: Engine = { kind: "chat-only", start: async () => description, generate: (...task) => engine.generate(...task), close: async () => {} };
    expect(new MeteredEngine(chatOnly).embed).toBeUndefined();
  });

  it("leaves llama.cpp nothing to complain about", () => {
    expect(logged.filter((line) => line.level === "error" || line.level === "fatal")).toEqual([]);
  });
});
