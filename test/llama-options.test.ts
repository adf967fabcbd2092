// The llama engine honours every request option it announces (issue #13): sampling, logit_bias, response_format,
// a forced tool_choice and logprobs, through real node-llama-cpp on the scripted test model.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestModel, SCRIPTED_REPLY } from "../scripts/make-test-model.js";
import type { EngineDescription, GenerationRequest, GenerationResult, GenerationSink } from "../src/worker/engines/engine.js";
import { LlamaEngine } from "../src/worker/engines/llama.js";
import { CAPABILITIES, type SamplingParams, type TokenLogprob } from "../src/worker-protocol/index.js";

let dir: string;
let engine: LlamaEngine;
let description: EngineDescription;
let llama: Llama;
/** A separate handle on the scripted model, to look up token ids. */
let tokenizer: LlamaModel;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "llama-options-"));
  const scripted = await makeTestModel(join(dir, "scripted.gguf"));
  // Its second choices close JSON, so that grammar-constrained output ends within a few dozen tokens.
  const json = await makeTestModel(join(dir, "json.gguf"), { closesJson: true });
  // Logits of ~5.7: sampling at temperature 1 strays from the script about half the time.
  const soft = await makeTestModel(join(dir, "soft.gguf"), { logitScale: 1 });
  // The same, looping " Hello! How can I help?" forever: repetition penalties bite after a round or two.
  const softLoop = await makeTestModel(join(dir, "soft-loop.gguf"), { logitScale: 1, endless: true });
  engine = new LlamaEngine({ modelPaths: [scripted.path, json.path, soft.path, softLoop.path], gpu: "cpu", maxConcurrency: 2 });
  description = await engine.start();
  llama = await getLlama({ gpu: false, build: "never", skipDownload: true });
  tokenizer = await llama.loadModel({ modelPath: scripted.path, vocabOnly: true });
});

afterAll(async () => {
  await engine?.close();
  await llama?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Recorded {
  text: string;
  chunks: Array<{ text: string; logprobs: readonly TokenLogprob[] | undefined }>;
  result: GenerationResult;
}

function request(model: string, params: SamplingParams = {}, extra: Partial<GenerationRequest> = {}): GenerationRequest {
  return { taskId: `task-${Math.random()}`, model, messages: [{ role: "user", content: "hi there" }], params, ...extra };
}

async function run(req: GenerationRequest): Promise<Recorded> {
  const chunks: Recorded["chunks"] = [];
  const sink: GenerationSink = {
    text: (text, _tokens, logprobs) => void chunks.push({ text, logprobs }),
    progress() {},
    ready: () => undefined,
  };
  const result = await engine.generate(req, sink, new AbortController().signal);
  return { text: chunks.map((c) => c.text).join(""), chunks, result };
}

/** The reply without its reasoning block, as the master's think parser would give the content. */
function content(text: string): string {
  return text.includes("</think>") ? text.slice(text.indexOf("</think>") + "</think>".length).trim() : text.trim();
}

describe("llama engine capabilities", () => {
  it("announces exactly what it honours for the think format: tools, forced calls, sampling, logit_bias, JSON, logprobs", () => {
    for (const model of description.models) {
      expect(model.format).toBe("think");
      expect(model.capabilities).toEqual([
        CAPABILITIES.tools,
        CAPABILITIES.toolChoiceRequired,
        CAPABILITIES.sampling,
        CAPABILITIES.logitBias,
        CAPABILITIES.jsonObject,
        CAPABILITIES.jsonSchema,
        CAPABILITIES.logprobs,
        CAPABILITIES.rawPrompt,
      ]);
      expect(model.capabilities).not.toContain(CAPABILITIES.vision);
    }
  });
});

describe("llama engine structured output", () => {
  const schema = {
    type: "object",
    properties: { answer: { type: "string" }, mood: { enum: ["happy", "sad"] }, count: { type: "integer" } },
    required: ["answer", "mood", "count"],
    additionalProperties: false,
  };

  it("writes JSON that validates against a json_schema in every run, whatever the seed", async () => {
    const runs = await Promise.all(
      [1, 2, 3, 4, 5, 6].map((seed) =>
        run(request("json", { temperature: 1, seed, maxTokens: 120 }, { responseFormat: { type: "json_schema", schema, strict: true } })),
      ),
    );
    const plain = await run(request("json", { temperature: 1, seed: 1 }));

    expect(plain.text).toBe(SCRIPTED_REPLY); // without the grammar the variant writes its sentence
    for (const { text, result } of runs) {
      expect(result.finishReason).toBe("stop");
      const value = JSON.parse(content(text)) as Record<string, unknown>;
      expect(Object.keys(value).sort()).toEqual(["answer", "count", "mood"]);
      expect(typeof value.answer).toBe("string");
      expect(["happy", "sad"]).toContain(value.mood);
      expect(Number.isInteger(value.count)).toBe(true);
    }
  });

  it("writes a JSON object for json_object", async () => {
    const { text, result } = await run(request("json", { temperature: 1, seed: 3, maxTokens: 120 }, { responseFormat: { type: "json_object" } }));

    expect(result.finishReason).toBe("stop");
    const value: unknown = JSON.parse(content(text));
    expect(typeof value === "object" && value !== null && !Array.isArray(value)).toBe(true);
  });

  it("takes the schemas SDKs write ($defs and $ref, anyOf with null, type lists, enums beside a type)", async () => {
    const pydantic = {
      $defs: { City: { type: "object", properties: { name: { type: "string", maxLength: 40 } }, required: ["name"], title: "City" } },
      type: "object",
      properties: {
        city: { anyOf: [{ $ref: "#/$defs/City" }, { type: "null" }] },
        note: { type: ["string", "null"], maxLength: 40 },
        unit: { type: "string", enum: ["C", "F"] },
      },
      required: ["city", "note", "unit"],
    };
    const { text, result } = await run(
      request("json", { temperature: 1, seed: 11, maxTokens: 160 }, { responseFormat: { type: "json_schema", schema: pydantic } }),
    );

    expect(result.finishReason).toBe("stop");
    const value = JSON.parse(content(text)) as { city: { name: string } | null; note: string | null; unit: string };
    expect(value.city === null || (typeof value.city.name === "string" && value.city.name.length <= 40)).toBe(true);
    expect(value.note === null || value.note.length <= 40).toBe(true);
    expect(["C", "F"]).toContain(value.unit);
  });

  it("refuses a schema the grammar cannot enforce, naming what", async () => {
    const refused = (schema: Record<string, unknown>) =>
      run(request("json", {}, { responseFormat: { type: "json_schema", schema } }));

    await expect(refused({ type: "string", pattern: "^a+$" })).rejects.toThrow(/the keyword "pattern" at #/);
    await expect(refused({ type: "object", properties: { n: { type: "number", minimum: 3 } } })).rejects.toThrow(
      /"minimum" at #\/properties\/n/,
    );
    await expect(refused({ type: "object", properties: {}, required: ["x"] })).rejects.toThrow(/required property "x"/);
    await expect(refused({ $ref: "#/$defs/missing" })).rejects.toThrow(/points to no definition/);
    await expect(refused({ type: "string", format: "email" })).rejects.toMatchObject({ code: "invalid_request" });
  });
});

describe("llama engine forced tool calls", () => {
  const tools = [
    {
      type: "function",
      function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
    },
    { type: "function", function: { name: "get_time", parameters: { type: "object", properties: {} } } },
  ];

  it("forces a Hermes tool call of the named function when tool_choice names it", async () => {
    const { text, result } = await run(
      request("json", { temperature: 1, seed: 5, maxTokens: 120 }, { tools, toolChoice: { type: "function", function: { name: "get_weather" } } }),
    );

    expect(result.finishReason).toBe("stop");
    expect(calls(content(text)).map((call) => call.name)).toEqual(["get_weather"]);
  });

  it("leaves the tools out of the prompt for tool_choice none, so the model cannot call them", async () => {
    const params = { temperature: 0, maxTokens: 4 };
    const without = await run(request("json", params));
    const none = await run(request("json", params, { tools, toolChoice: "none" }));
    const auto = await run(request("json", params, { tools, toolChoice: "auto" }));

    expect(none.result.usage.promptTokens).toBe(without.result.usage.promptTokens);
    expect(auto.result.usage.promptTokens).toBeGreaterThan(without.result.usage.promptTokens);
  });

  it("forces calls with tool_choice required: one with parallel_tool_calls false, one or more otherwise", async () => {
    const seeds = [9, 10, 11, 12];
    const single = await Promise.all(
      seeds.map((seed) => run(request("json", { temperature: 1, seed, maxTokens: 200 }, { tools, toolChoice: "required", parallelToolCalls: false }))),
    );
    const parallel = await Promise.all(
      seeds.map((seed) => run(request("json", { temperature: 1, seed, maxTokens: 400 }, { tools, toolChoice: "required" }))),
    );

    for (const { text } of single) expect(calls(content(text))).toHaveLength(1);
    for (const { text, result } of parallel) {
      expect(result.finishReason).toBe("stop");
      expect(calls(content(text)).length).toBeGreaterThanOrEqual(1);
    }
  });

  it("refuses a named function that is not among the tools, and tool_choice required without tools", async () => {
    await expect(run(request("json", {}, { tools, toolChoice: { type: "function", function: { name: "nope" } } }))).rejects.toThrow(
      /'nope', which is not among the tools/,
    );
    await expect(run(request("json", {}, { toolChoice: "required" }))).rejects.toThrow(/there are no tools/);
  });
});

/** The Hermes tool calls a reply is made of (it must be nothing else), each checked against the tools above. */
function calls(reply: string): Array<{ name: string; arguments: Record<string, unknown> }> {
  const blocks = reply.split("\n<tool_call>\n");
  expect(blocks[0]?.startsWith("<tool_call>\n"), reply).toBe(true);
  return blocks.map((block) => {
    const json = block.replace(/^<tool_call>\n/, "").replace(/\n<\/tool_call>$/, "");
    const call = JSON.parse(json) as { name: string; arguments: Record<string, unknown> };
    if (call.name === "get_weather") expect(typeof call.arguments.city).toBe("string");
    else expect(call).toEqual({ name: "get_time", arguments: {} });
    return call;
  });
}

describe("llama engine sampling options", () => {
  it("top_k 1 makes sampling at temperature 1 deterministic across seeds", async () => {
    const free = await Promise.all([1, 2, 3].map((seed) => run(request("soft", { temperature: 1, seed, maxTokens: 12 }))));
    const topK = await Promise.all([1, 2, 3].map((seed) => run(request("soft", { temperature: 1, seed, topK: 1, maxTokens: 12 }))));

    expect(new Set(free.map((r) => r.text)).size).toBeGreaterThan(1);
    for (const r of topK) expect(r.text).toBe(SCRIPTED_REPLY);
  });

  it("logit_bias -100 removes a token the model would write", async () => {
    const [user] = tokenizer.tokenize(" user");
    const banned = await run(request("scripted", { temperature: 0, maxTokens: 30, logitBias: { [String(user)]: -100 } }));

    expect(SCRIPTED_REPLY).toContain(" user");
    expect(banned.text).not.toContain(" user");
    expect(banned.text.startsWith("<think> The")).toBe(true);
    await expect(run(request("scripted", { logitBias: { "999999": 5 } }))).rejects.toThrow(/vocabulary has 271 tokens/);
  });

  it("min_p keeps only tokens near the most likely one", async () => {
    const runs = await Promise.all([1, 2, 3].map((seed) => run(request("soft", { temperature: 1, seed, minP: 0.5, maxTokens: 12 }))));

    for (const r of runs) expect(r.text).toBe(SCRIPTED_REPLY);
  });

  it("frequency and presence penalties break a loop the model would repeat, and a repetition penalty weakens it", async () => {
    const loop = await run(request("soft-loop", { temperature: 0, maxTokens: 48 }));
    const penalized = await run(request("soft-loop", { temperature: 0, maxTokens: 48, frequencyPenalty: 2, presencePenalty: 2 }));
    const repeated = await run(request("soft-loop", { temperature: 0, maxTokens: 48, repetitionPenalty: 1.5, frequencyPenalty: 1 }));
    const count = (text: string) => text.split(" Hello!").length - 1;

    expect(count(loop.text)).toBeGreaterThanOrEqual(3);
    expect(count(penalized.text)).toBeLessThanOrEqual(2);
    expect(count(repeated.text)).toBeLessThan(count(loop.text));
  });
});

describe("llama engine logprobs", () => {
  it("reports each token's logprob with its top alternatives, sorted, with the chunk that holds its text", async () => {
    const { chunks } = await run(request("soft", { temperature: 0 }, { logprobs: { top: 3 } }));
    const entries = chunks.flatMap((c) => c.logprobs ?? []);

    for (const chunk of chunks) expect((chunk.logprobs ?? []).map((e) => e.token).join("")).toBe(chunk.text);
    expect(entries.map((e) => e.token)).toEqual(tokenizer.tokenize(SCRIPTED_REPLY).map((t) => tokenizer.detokenize([t], true)));
    for (const entry of entries) {
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(entry.logprob).toBeGreaterThan(-2); // the scripted successor holds about half the mass in the soft model
      expect(entry.bytes).toEqual([...Buffer.from(entry.token)]);
      expect(entry.top).toHaveLength(3);
      const top = entry.top ?? [];
      expect(top[0]?.token).toBe(entry.token); // greedy: the sampled token is the most likely one
      for (let i = 1; i < top.length; i++) expect(top[i]?.logprob ?? 0).toBeLessThanOrEqual(top[i - 1]?.logprob ?? 0);
    }
  });

  it("sends no logprobs when none were asked for", async () => {
    const { chunks } = await run(request("scripted", { temperature: 0 }));

    for (const chunk of chunks) expect(chunk.logprobs).toBeUndefined();
  });
});
