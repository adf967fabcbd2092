// The hand-built scripted GGUF: small, and real llama.cpp (through node-llama-cpp) decodes exactly its scripted reply.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, readGgufFileInfo, resolveChatWrapper, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestModel, SCRIPTED_REPLY, splitIntoPieces, type TestModel } from "../scripts/make-test-model.js";

let dir: string;
let scripted: TestModel;
let endless: TestModel;
let llama: Llama;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "test-model-"));
  scripted = await makeTestModel(join(dir, "scripted.gguf"));
  endless = await makeTestModel(join(dir, "endless.gguf"), { endless: true });
  llama = await getLlama({ gpu: false, build: "never", skipDownload: true });
});

afterAll(async () => {
  await llama?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Renders a one-turn chat with the model's own template and decodes greedily, as a plain node-llama-cpp user would. */
async function greedyReply(model: LlamaModel, userText: string, maxTokens: number): Promise<Token[]> {
  const context = await model.createContext({ contextSize: 2048, threads: 1 });
  try {
    const sequence = context.getSequence();
    const state = resolveChatWrapper(model).generateContextState({
      chatHistory: [{ type: "user", text: userText }, { type: "model", response: [] }],
    });
    const generated: Token[] = [];
    for await (const token of sequence.evaluate(state.contextText.tokenize(model.tokenizer), { temperature: 0 })) {
      generated.push(token);
      if (generated.length >= maxTokens) break;
    }
    return generated;
  } finally {
    await context.dispose();
  }
}

describe("the scripted test model", () => {
  it("is a small llama GGUF with a chat template and a 2k context", async () => {
    expect(scripted.bytes).toBeLessThan(200 * 1024);
    const info = await readGgufFileInfo(scripted.path);
    expect(info.metadata.general.architecture).toBe("llama");
    expect(info.metadata.tokenizer.chat_template).toContain("</think>");
    expect(info.architectureMetadata.context_length).toBeGreaterThanOrEqual(2048);
  });

  it("replies with exactly the scripted text under greedy decoding, the same every run", async () => {
    const model = await llama.loadModel({ modelPath: scripted.path });
    try {
      const first = await greedyReply(model, "hello", 64);
      const second = await greedyReply(model, "something else entirely", 64);

      expect(scripted.scriptedReply).toBe(SCRIPTED_REPLY);
      expect(model.detokenize(first, true)).toBe(SCRIPTED_REPLY);
      expect(second).toEqual(first);
      // The reply's pieces are whole tokens: tokenizing the reply gives back exactly what was generated.
      expect(model.tokenize(SCRIPTED_REPLY)).toEqual(first);
      expect(first).toHaveLength(scripted.pieces.length);
      expect(model.getWarnings()).toEqual([]);
    } finally {
      await model.dispose();
    }
  });

  it("has an endless variant that keeps answering until stopped", async () => {
    const model = await llama.loadModel({ modelPath: endless.path });
    try {
      const tokens = await greedyReply(model, "hello", 30);
      expect(tokens).toHaveLength(30);
      const text = model.detokenize(tokens, true);
      expect(text.startsWith(`${SCRIPTED_REPLY} Hello! How can I help? Hello!`)).toBe(true);
    } finally {
      await model.dispose();
    }
  });

  it("has larger variants (--layers, --width, --mixing) that say the same, each the same file every time", async () => {
    const options = { layers: 3, width: 64, mixing: 0.1 };
    const larger = await makeTestModel(join(dir, "larger.gguf"), options);
    const again = await makeTestModel(join(dir, "larger-again.gguf"), options);
    const model = await llama.loadModel({ modelPath: larger.path });
    try {
      const info = await readGgufFileInfo(larger.path);
      const tokens = await greedyReply(model, "a prompt of some length, to mix in", 64);

      expect(info.architectureMetadata).toMatchObject({ block_count: 3, embedding_length: 64 });
      expect(larger.bytes).toBeGreaterThan(scripted.bytes * 3);
      expect(await readFile(again.path)).toEqual(await readFile(larger.path));
      expect(model.detokenize(tokens, true)).toBe(SCRIPTED_REPLY);
    } finally {
      await model.dispose();
    }
    await expect(makeTestModel(join(dir, "narrow.gguf"), { width: 12 })).rejects.toThrow(/width must be a multiple of 8/);
  });

  it("cuts a reply into think tags and words with their leading space, each unique", () => {
    expect(splitIntoPieces("<think> Hm.</think> Yes, sure.")).toEqual(["<think>", " Hm.", "</think>", " Yes,", " sure."]);
    expect(() => splitIntoPieces(" yes yes")).toThrow(/repeats/);
  });
});
