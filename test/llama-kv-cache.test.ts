// The llama engine's prompt cache: context sequences kept warm between tasks, each new prompt evaluated only past the
// longest prefix a free sequence holds. Real node-llama-cpp on the CPU with the scripted test models.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeTestModel } from "../scripts/make-test-model.js";
import type { GenerationRequest, GenerationResult, GenerationSink } from "../src/worker/engines/engine.js";
import { LlamaEngine, type LlamaEngineOptions } from "../src/worker/engines/llama.js";
import { chooseSequence } from "../src/worker/engines/llama/sequence-choice.js";
import type { ChatMessage, SamplingParams, TokenLogprob } from "../src/worker-protocol/index.js";

let dir: string;
let paths: { scripted: string; endless: string; mixed: string };
/** A separate handle on the model files, to tokenize rendered prompts apart from the engine. */
let llama: Llama;
let tokenizer: LlamaModel;
const engines: LlamaEngine[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "llama-kv-cache-"));
  paths = {
    scripted: (await makeTestModel(join(dir, "scripted.gguf"))).path,
    endless: (await makeTestModel(join(dir, "endless.gguf"), { endless: true })).path,
    // Soft logits and mixing attention: its sampling and logprobs depend on every earlier token and its position,
    // so a cache that held anything but the prompt's own prefix would show.
    mixed: (await makeTestModel(join(dir, "mixed.gguf"), { logitScale: 1, mixing: 0.1 })).path,
  };
  llama = await getLlama({ gpu: false, build: "never", skipDownload: true });
  tokenizer = await llama.loadModel({ modelPath: paths.scripted, vocabOnly: true });
});

afterEach(async () => {
  await Promise.all(engines.splice(0).map((engine) => engine.close()));
});

afterAll(async () => {
  await llama?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** An engine serving `models`, with two sequences each; closed after the test. */
async function startEngine(models: Array<keyof typeof paths>, options: Partial<LlamaEngineOptions> = {}): Promise<LlamaEngine> {
  const engine = new LlamaEngine({ modelPaths: models.map((model) => paths[model]), gpu: "cpu", maxConcurrency: 2, ...options });
  engines.push(engine);
  await engine.start();
  return engine;
}

interface Run {
  text: string;
  logprobs: TokenLogprob[];
  /** Each TaskProgress the engine reported: prompt tokens done, of the total. */
  progress: Array<[number, number | undefined]>;
  result: GenerationResult;
}

interface Hooks {
  signal?: AbortSignal;
  onText?: (chunks: number) => void;
  onProgress?: (done: number) => void;
}

async function run(engine: LlamaEngine, request: GenerationRequest, hooks: Hooks = {}): Promise<Run> {
  const out: Omit<Run, "result"> = { text: "", logprobs: [], progress: [] };
  let chunks = 0;
  const sink: GenerationSink = {
    text(text, _tokens, logprobs) {
      out.text += text;
      out.logprobs.push(...(logprobs ?? []));
      hooks.onText?.(++chunks);
    },
    progress(done, total) {
      out.progress.push([done, total]);
      hooks.onProgress?.(done);
    },
    ready: () => undefined,
  };
  const result = await engine.generate(request, sink, hooks.signal ?? new AbortController().signal);
  return { ...out, result };
}

function chat(model: string, messages: ChatMessage[], params: SamplingParams = { temperature: 0 }, top?: number): GenerationRequest {
  return { taskId: `task-${Math.random()}`, model, messages, params, ...(top === undefined ? {} : { logprobs: { top } }) };
}

/** A conversation: its system prompt and user turns; `upTo(n)` is turn n's messages, earlier replies included. */
function conversation(system: string, users: string[], replies: string[] = []): { upTo(turn: number): ChatMessage[] } {
  return {
    upTo(turn) {
      const messages: ChatMessage[] = [{ role: "system", content: system }];
      for (let i = 0; i < turn; i++) {
        messages.push({ role: "user", content: users[i] ?? `question ${i}` });
        if (i + 1 < turn) messages.push({ role: "assistant", content: replies[i] ?? "Hello! How can I help?" });
      }
      return messages;
    },
  };
}

/** The scripted models' chat template, written out by hand (see src/worker/engines/gguf/scripted-model.ts). */
function rendered(messages: ChatMessage[]): string {
  const turns = messages.map(({ role, content }) => {
    const text = typeof content === "string" ? content : "";
    return role === "assistant" ? `<|assistant|>\n${text.split("</think>").at(-1)?.trim()}</s>\n` : `<|${role}|>\n${text}\n`;
  });
  return `<s>${turns.join("")}<|assistant|>\n`;
}

function promptTokens(messages: ChatMessage[]): number[] {
  return tokenizer.tokenize(rendered(messages), true);
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/** The prompt cache's figures for one model. */
function cacheOf(engine: LlamaEngine, model: string) {
  return engine.cacheStats().find((cache) => cache.model === model);
}

const LONG_SYSTEM = "You are a careful assistant. Answer briefly and say what you are unsure of. ".repeat(20);

describe("the llama engine's prompt cache", () => {
  it("reads a conversation's second turn up to the first turn's prompt from the cache, counted exactly, progress starting there", async () => {
    const engine = await startEngine(["scripted"]);
    const talk = conversation(LONG_SYSTEM, ["hi there", "and then?"]);

    const first = await run(engine, chat("scripted", talk.upTo(1)));
    const second = await run(engine, chat("scripted", talk.upTo(2)));

    const [before, after] = [promptTokens(talk.upTo(1)), promptTokens(talk.upTo(2))];
    expect(first.result.usage).toMatchObject({ promptTokens: before.length, cachedTokens: 0 });
    expect(second.result.usage).toMatchObject({ promptTokens: after.length, cachedTokens: commonPrefix(before, after) });
    expect(commonPrefix(before, after)).toBe(before.length); // the whole first prompt: the template renders it again
    expect(second.progress[0]).toEqual([commonPrefix(before, after), after.length]);
    expect(second.text).toBe(first.text);
  });

  it("writes the same text and logprobs with a reused prefix as without (same seed), and the model is context-sensitive", async () => {
    const warm = await startEngine(["mixed"]);
    const fresh = await startEngine(["mixed"], { promptCache: false });
    const talk = conversation("Be brief.", ["hi there", "and then?", "why?"]);
    const request = (turn: number) => chat("mixed", talk.upTo(turn), { temperature: 1, seed: 11, maxTokens: 24 }, 3);

    const reference = await run(fresh, request(3));
    await run(warm, request(1));
    await run(warm, request(2));
    const reused = await run(warm, request(3));
    const again = await run(warm, request(3)); // the whole prompt cached but its last token
    const otherHistory = await run(fresh, chat("mixed", conversation("Be brief.", ["hello", "and then?", "why?"]).upTo(3), request(3).params, 3));

    expect(reference.result.usage.cachedTokens).toBe(0);
    expect(reused.result.usage.cachedTokens).toBe(commonPrefix(promptTokens(talk.upTo(2)), promptTokens(talk.upTo(3))));
    expect(again.result.usage.cachedTokens).toBe(reference.result.usage.promptTokens - 1);
    for (const output of [reused, again]) {
      expect(output.text).toBe(reference.text);
      expect(output.logprobs).toEqual(reference.logprobs);
    }
    // Without this, equal outputs would prove nothing: another history changes them.
    expect(otherHistory.logprobs).not.toEqual(reference.logprobs);
  });

  it("keeps two interleaved conversations on their own sequences with maxConcurrency 2", async () => {
    const engine = await startEngine(["scripted"]);
    const talks = [conversation(`First. ${LONG_SYSTEM}`, ["one", "two", "three"]), conversation(`Second. ${LONG_SYSTEM}`, ["uno", "dos", "tres"])];

    for (let turn = 1; turn <= 3; turn++) {
      const runs = await Promise.all(talks.map((talk) => run(engine, chat("scripted", talk.upTo(turn)))));
      runs.forEach((output, i) => {
        const talk = talks[i];
        if (!talk) throw new Error("no such conversation");
        const expected = turn === 1 ? 0 : commonPrefix(promptTokens(talk.upTo(turn - 1)), promptTokens(talk.upTo(turn)));
        if (turn > 1) expect(expected).toBeGreaterThan(LONG_SYSTEM.length);
        expect(output.result.usage.cachedTokens, `conversation ${i}, turn ${turn}`).toBe(expected);
      });
    }
    expect(cacheOf(engine, "scripted")?.sequences).toBe(2);
  });

  it("evicts the least recently used sequence when there are more conversations than sequences", async () => {
    const engine = await startEngine(["scripted"]);
    const [a, b, c] = ["Alpha.", "Beta.", "Gamma."].map((name) => conversation(`${name} ${LONG_SYSTEM}`, ["hi", "more"]));
    if (!a || !b || !c) throw new Error("three conversations");
    const cachedOf = async (messages: ChatMessage[]) => (await run(engine, chat("scripted", messages))).result.usage.cachedTokens;

    await cachedOf(a.upTo(1));
    await cachedOf(b.upTo(1)); // takes the empty sequence: it shares only the template's first tokens with a's
    const bothKept = cacheOf(engine, "scripted")?.sequences;
    await cachedOf(c.upTo(1)); // evicts a's, the least recently used
    const hits = { b: await cachedOf(b.upTo(2)), c: await cachedOf(c.upTo(2)) };
    const missed = await cachedOf(a.upTo(2)); // evicts b's, used before c's

    expect(bothKept).toBe(2);
    expect(hits).toEqual({
      b: commonPrefix(promptTokens(b.upTo(1)), promptTokens(b.upTo(2))),
      c: commonPrefix(promptTokens(c.upTo(1)), promptTokens(c.upTo(2))),
    });
    expect(missed).toBe(commonPrefix(promptTokens(a.upTo(2)), promptTokens(b.upTo(2))));
    expect(missed).toBeLessThan(commonPrefix(promptTokens(a.upTo(1)), promptTokens(a.upTo(2))) / 10);
  });
});

describe("the prompt cache after a cancelled or failed task", () => {
  const talk = conversation(LONG_SYSTEM, ["hi there"]);
  const request = () => chat("mixed", talk.upTo(1), { temperature: 1, seed: 5, maxTokens: 20 }, 2);

  it("counts only the batches evaluated whole before an abort mid-prefill, and writes the same output after", async () => {
    const reference = await run(await startEngine(["mixed"], { promptCache: false }), request());
    const engine = await startEngine(["mixed"]);
    const controller = new AbortController();
    let evaluated = 0;

    const aborted = await run(engine, request(), {
      signal: controller.signal,
      onProgress: (done) => {
        if (done > 0 && !controller.signal.aborted) {
          evaluated = done;
          controller.abort();
        }
      },
    });
    const held = cacheOf(engine, "mixed")?.tokens;
    const next = await run(engine, request());

    expect(reference.result.usage.promptTokens).toBeGreaterThan(2 * 512); // several batches
    expect(aborted.result.usage.completionTokens).toBe(0);
    expect(evaluated).toBe(512); // one batch
    expect(held).toBe(evaluated);
    expect(next.result.usage.cachedTokens).toBe(evaluated);
    expect(next.text).toBe(reference.text);
    expect(next.logprobs).toEqual(reference.logprobs);
  });

  it("keeps what an abort mid-generation evaluated, and reads the prompt from it but its last token", async () => {
    const reference = await run(await startEngine(["mixed"], { promptCache: false }), request());
    const engine = await startEngine(["mixed"]);
    const controller = new AbortController();

    const aborted = await run(engine, request(), { signal: controller.signal, onText: (chunks) => chunks === 3 && controller.abort() });
    const held = cacheOf(engine, "mixed")?.tokens;
    const next = await run(engine, request());

    // Every token sampled and counted was evaluated into the sequence, but the last (dropped at the abort).
    expect(held).toBe(aborted.result.usage.promptTokens + aborted.result.usage.completionTokens);
    expect(next.result.usage.cachedTokens).toBe(reference.result.usage.promptTokens - 1);
    expect(next.text).toBe(reference.text);
    expect(next.logprobs).toEqual(reference.logprobs);
  });

  it("drops the sequence of a task that failed, so that nothing it left is reused", async () => {
    const engine = await startEngine(["scripted"]);
    await run(engine, chat("scripted", talk.upTo(1)));
    const warm = cacheOf(engine, "scripted");

    const failing = run(engine, chat("scripted", talk.upTo(1)), {
      onText: () => {
        throw new Error("the sink broke");
      },
    });
    await expect(failing).rejects.toThrow("the sink broke");
    const afterFailure = cacheOf(engine, "scripted");
    const next = await run(engine, chat("scripted", talk.upTo(1)));

    expect(warm?.sequences).toBe(1);
    expect(afterFailure).toEqual({ model: "scripted", sequences: 0, tokens: 0 });
    expect(next.result.usage.cachedTokens).toBe(0);
  });
});

describe("cacheStats", () => {
  it("counts, per model, the sequences holding tokens, free or busy, and their tokens; nothing without the cache", async () => {
    const engine = await startEngine(["scripted", "endless", "mixed"]);
    const empty = engine.cacheStats();
    const one = await run(engine, chat("scripted", conversation("Short.", ["hi"]).upTo(1)));
    const controller = new AbortController();
    let busy: ReturnType<typeof cacheOf>;
    const streaming = run(engine, chat("endless", conversation("Other.", ["go on"]).upTo(1), { temperature: 0 }), {
      signal: controller.signal,
      onText: (chunks) => {
        if (chunks !== 5) return;
        busy = cacheOf(engine, "endless");
        controller.abort();
      },
    });
    const { result } = await streaming;
    const withoutCache = await startEngine(["scripted"], { promptCache: false });
    await run(withoutCache, chat("scripted", conversation("Short.", ["hi"]).upTo(1)));

    expect(empty).toEqual(["scripted", "endless", "mixed"].map((model) => ({ model, sequences: 0, tokens: 0 })));
    // A reply that ends by itself: its every token was evaluated (the end-of-generation token was sampled after the last).
    expect(cacheOf(engine, "scripted")).toEqual({ model: "scripted", sequences: 1, tokens: one.result.usage.promptTokens + one.result.usage.completionTokens });
    expect(busy?.sequences).toBe(1);
    expect(busy?.tokens).toBeGreaterThan(result.usage.promptTokens);
    expect(cacheOf(engine, "endless")?.tokens).toBe(result.usage.promptTokens + result.usage.completionTokens);
    expect(withoutCache.cacheStats()).toEqual([]);
  });
});

describe("the placement rule (chooseSequence)", () => {
  const at = (held: number, shared: number, usedAt: number, prompt = 0) => ({ held, shared, prompt, usedAt });

  it("takes the longest shared prefix when it keeps at least as much as it throws away", () => {
    expect(chooseSequence([at(100, 10, 1), at(120, 100, 2), at(0, 0, 0)])).toBe(1);
    expect(chooseSequence([at(300, 150, 1), at(0, 0, 0)])).toBe(0);
  });

  it("takes a conversation's own sequence for its next turn, even when its last reply was longer than its prompt", () => {
    expect(chooseSequence([at(0, 0, 0), at(550, 50, 1, 50), at(40, 30, 2)])).toBe(1);
  });

  it("prefers an empty sequence to evicting a conversation that shares only a few tokens", () => {
    expect(chooseSequence([at(300, 3, 1, 250), at(0, 0, 0)])).toBe(1);
  });

  it("evicts the least recently used when no free sequence is worth keeping and none is empty", () => {
    expect(chooseSequence([at(300, 3, 5), at(200, 3, 2), at(400, 4, 9)])).toBe(1);
  });

  it("breaks ties by what is thrown away, then by age", () => {
    expect(chooseSequence([at(120, 100, 1), at(100, 100, 2)])).toBe(1);
    expect(chooseSequence([at(100, 100, 7), at(100, 100, 3)])).toBe(1);
  });
});
