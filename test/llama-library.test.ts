// The llama engine's library: GGUF files of a models dir offered with node-llama-cpp's memory estimates, loaded and
// unloaded on command within --memory-limit. Real node-llama-cpp on the CPU with scripted test models of three sizes.
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeTestModel, SCRIPTED_REPLY } from "../scripts/make-test-model.js";
import { rawDefaults, WorkerConfig, workerOptions } from "../src/config.js";
import { type GenerationRequest, ModelLoadError, textSink } from "../src/worker/engines/engine.js";
import { LlamaEngine, type LlamaEngineOptions } from "../src/worker/engines/llama.js";
import type { LibraryModel, ModelInfo } from "../src/worker-protocol/index.js";

let dir: string;
let modelsDir: string;
let sizes: Record<"small" | "mid" | "big", number>;
/** Files the engines skipped, and why. */
const skipped: Array<{ path: string; reason: string }> = [];
/** Offers the models dir, without a memory limit, and loads at start a copy of the small model from outside it (`solo`). */
let engine: LlamaEngine;
let soloInfo: ModelInfo;
const engines: LlamaEngine[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "llama-library-"));
  modelsDir = join(dir, "models");
  const small = await makeTestModel(join(modelsDir, "small.gguf"));
  const mid = await makeTestModel(join(modelsDir, "mid.gguf"), { layers: 2, width: 64 });
  const big = await makeTestModel(join(modelsDir, "big.gguf"), { layers: 4, width: 128 });
  sizes = { small: small.bytes, mid: mid.bytes, big: big.bytes };
  await writeFile(join(modelsDir, "notes.txt"), "not a model");
  await writeFile(join(modelsDir, "broken.gguf"), "this is not a GGUF file");
  // A real model's first bytes (its header is cut), and one whose weights are cut.
  await writeFile(join(modelsDir, "truncated.gguf"), (await readFile(small.path)).subarray(0, 64));
  await writeFile(join(modelsDir, "cut.gguf"), (await readFile(mid.path)).subarray(0, Math.floor(mid.bytes / 2)));
  await mkdir(join(modelsDir, "nested"));
  await copyFile(small.path, join(modelsDir, "nested", "deep.gguf"));
  await copyFile(small.path, join(dir, "solo.gguf"));

  engine = await startEngine({ modelPaths: [join(dir, "solo.gguf")] });
  const solo = engine.library.get("solo");
  if (!solo) throw new Error("the model given with --model is not loaded");
  soloInfo = solo.info;
});

afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A started engine over the models dir (closed after all tests). */
async function startEngine(options: Partial<LlamaEngineOptions>): Promise<LlamaEngine> {
  const started = new LlamaEngine({
    modelPaths: [],
    modelsDir,
    gpu: "cpu",
    maxConcurrency: 1,
    onSkippedFile: (path, reason) => skipped.push({ path, reason }),
    ...options,
  });
  engines.push(started);
  await started.start();
  return started;
}

/** Loads `id` on command with the defaults. */
async function load(on: LlamaEngine, id: string): Promise<ModelInfo> {
  return on.library.load(id, {}, () => {}, new AbortController().signal);
}

function request(model: string): GenerationRequest {
  return { taskId: `task-${Math.random()}`, model, messages: [{ role: "user", content: "hi there" }], params: { temperature: 0 } };
}

async function generate(on: LlamaEngine, model: string): Promise<string> {
  let text = "";
  await on.generate(request(model), textSink((piece) => void (text += piece)), new AbortController().signal);
  return text;
}

function entry(list: LibraryModel[], id: string): LibraryModel {
  const found = list.find((model) => model.id === id);
  if (!found) throw new Error(`'${id}' is not in the library: ${list.map((model) => model.id).join(", ")}`);
  return found;
}

function loadError(promise: Promise<unknown>): Promise<ModelLoadError> {
  return promise.then(
    () => {
      throw new Error("the load succeeded");
    },
    (error: unknown) => {
      if (!(error instanceof ModelLoadError)) throw error;
      return error;
    },
  );
}

describe("the llama engine's library", () => {
  afterEach(async () => {
    for (const id of ["small", "mid", "big"]) await engine.library.unload(id);
  });

  it("offers each GGUF file of its models dir with its size, default context and growing memory estimate", () => {
    const list = engine.library.list();

    expect(list.map((model) => model.id)).toEqual(["solo", "big", "mid", "small"]);
    for (const id of ["small", "mid", "big"] as const) {
      const model = entry(list, id);
      expect(model.sizeBytes).toBe(sizes[id]);
      expect(model.contextLength).toBe(2048);
      expect(model.format).toBe("think");
      expect(model.memoryBytes).toBeGreaterThan(model.sizeBytes); // the weights and a 2048-token KV cache
    }
    expect(entry(list, "small").memoryBytes).toBeLessThan(entry(list, "mid").memoryBytes);
    expect(entry(list, "mid").memoryBytes).toBeLessThan(entry(list, "big").memoryBytes);
  });

  it("skips a file that is not a GGUF and cut ones, saying why once, and ignores other files and subfolders", async () => {
    await engine.library.refresh();
    const reasons = Object.fromEntries(skipped.map(({ path, reason }) => [path, reason]));

    expect(reasons).toEqual({
      [join(modelsDir, "broken.gguf")]: expect.stringMatching(/GGUF magic/),
      [join(modelsDir, "truncated.gguf")]: expect.stringMatching(/^the file is cut short: it has 64 bytes/),
      [join(modelsDir, "cut.gguf")]: expect.stringMatching(/^the file is cut short/),
    });
    expect(skipped).toHaveLength(3); // scanned twice, reported once
  });

  it("lists a model loaded at start with --model as the same file in the dir", () => {
    const list = engine.library.list();

    expect(entry(list, "solo")).toEqual({ ...entry(list, "small"), id: "solo" });
    expect(engine.library.get("solo")?.info).toEqual(soloInfo);
  });

  it("sees a file added to the dir, and one removed, on refresh", async () => {
    const added = join(modelsDir, "added.gguf");
    await copyFile(join(modelsDir, "mid.gguf"), added);
    try {
      expect(engine.library.list().map((model) => model.id)).not.toContain("added");
      const refreshed = await engine.library.refresh();
      expect(entry(refreshed, "added")).toEqual({ ...entry(refreshed, "mid"), id: "added" });
    } finally {
      await rm(added);
    }
    expect((await engine.library.refresh()).map((model) => model.id)).toEqual(["solo", "big", "mid", "small"]);
  });

  it("loads a model on command, reporting progress, and serves it as a model loaded at start", async () => {
    const offered = entry(engine.library.list(), "small");
    const fractions: number[] = [];
    const info = await engine.library.load("small", {}, (fraction) => fractions.push(fraction), new AbortController().signal);
    const again = await load(engine, "small");

    expect(info).toEqual({ ...soloInfo, id: "small" });
    // What the library announced before loading is what the model serves.
    expect(offered).toMatchObject({ contextLength: info.contextLength, format: info.format, capabilities: info.capabilities });
    expect(await generate(engine, "small")).toBe(SCRIPTED_REPLY);
    expect(await generate(engine, "small")).toBe(await generate(engine, "solo"));
    expect(again).toEqual(info);
    expect(fractions.length).toBeGreaterThan(0);
    for (const [index, fraction] of fractions.entries()) {
      expect(fraction).toBeGreaterThanOrEqual(fractions[index - 1] ?? 0);
      expect(fraction).toBeLessThanOrEqual(1);
    }
  });

  it("refuses an id that is not in the library (unknown_model), and unloading one is a no-op", async () => {
    const error = await loadError(load(engine, "deep")); // a file of a subfolder

    expect(error.code).toBe("unknown_model");
    expect((await loadError(load(engine, "broken"))).code).toBe("unknown_model");
    await engine.library.unload("nope");
  });

  it("loads with the sequences and context length asked for", async () => {
    const info = await engine.library.load("mid", { contextLength: 512, concurrency: 2 }, () => {}, new AbortController().signal);

    expect(info.contextLength).toBe(512);
    expect(engine.library.get("mid")?.chat?.context.totalSequences).toBe(2);
    expect(await generate(engine, "mid")).toBe(SCRIPTED_REPLY);
  });
});

describe("the llama engine's memory limit", () => {
  let limited: LlamaEngine;
  let limit: number;
  let estimates: Record<"small" | "big", number>;

  beforeAll(async () => {
    const list = engine.library.list();
    estimates = { small: entry(list, "small").memoryBytes, big: entry(list, "big").memoryBytes };
    // Room for the big model or the small one, not both.
    limit = estimates.big + Math.floor(estimates.small / 2);
    limited = await startEngine({ memoryLimitBytes: limit });
  });

  afterEach(async () => {
    for (const id of ["small", "big"]) await limited.library.unload(id);
  });

  it("counts a loaded model's estimate against the limit, and frees it on unload; its tasks are then refused", async () => {
    expect(limited.library.memory()).toEqual({ totalBytes: limit, freeBytes: limit });

    await load(limited, "big");
    expect(limited.library.memory()).toEqual({ totalBytes: limit, freeBytes: limit - estimates.big });
    expect(await generate(limited, "big")).toBe(SCRIPTED_REPLY);
    await limited.library.unload("big");

    expect(limited.library.memory()).toEqual({ totalBytes: limit, freeBytes: limit });
    expect(limited.library.get("big")).toBeUndefined();
    await expect(generate(limited, "big")).rejects.toThrow(/does not serve the model 'big' \(it is not loaded\)/);
    expect(limited.cacheStats()).toEqual([]);
  });

  it("refuses a load beyond the limit (out_of_memory) before loading anything, and takes it once another is unloaded", async () => {
    await load(limited, "big");

    const refused = await loadError(load(limited, "small"));

    expect(refused.code).toBe("out_of_memory");
    expect(refused.message).toMatch(/'small' needs about [\d.]+ MiB, but [\d.]+ MiB of [\d.]+ MiB are free/);
    expect(limited.library.get("small")).toBeUndefined();
    expect(limited.library.memory().freeBytes).toBe(limit - estimates.big);
    await limited.library.unload("big");
    await load(limited, "small");
    expect(await generate(limited, "small")).toBe(SCRIPTED_REPLY);
    expect(limited.library.memory().freeBytes).toBe(limit - estimates.small);
  });

  it("gives a load up when its signal aborts, before it starts or once the file is loading, and keeps nothing of it", async () => {
    const preAborted = limited.library.load("big", {}, () => {}, AbortSignal.abort(new Error("not wanted")));
    await expect(preAborted).rejects.toThrow("not wanted");

    const controller = new AbortController();
    const loading = limited.library.load("big", {}, () => controller.abort(new Error("changed my mind")), controller.signal);
    await expect(loading).rejects.toThrow("changed my mind");

    expect(limited.library.get("big")).toBeUndefined();
    expect(limited.library.memory().freeBytes).toBe(limit);
    await expect(generate(limited, "big")).rejects.toThrow(/does not serve the model 'big'/);
  });

  it("gives a load up when the model is unloaded while it loads", async () => {
    const loading = load(limited, "big");
    await limited.library.unload("big");

    await expect(loading).rejects.toThrow(/'big' was unloaded before it finished loading/);
    expect(limited.library.get("big")).toBeUndefined();
    expect(limited.library.memory().freeBytes).toBe(limit);
  });
});

describe("the llama engine's options", () => {
  it("needs --model or --models-dir", () => {
    expect(() => new LlamaEngine({ modelPaths: [], gpu: "cpu", maxConcurrency: 1 })).toThrow(/needs --model PATH.gguf or --models-dir DIR/);
  });

  it("takes --memory-limit in bytes or KiB, MiB, GiB, TiB", () => {
    const parse = (memoryLimit: string) => WorkerConfig.safeParse({ ...rawDefaults(workerOptions), join: "ws://head:52415", token: "t", memoryLimit });

    expect(parse("1048576").data?.memoryLimit).toBe(2 ** 20);
    expect(parse("512MiB").data?.memoryLimit).toBe(512 * 2 ** 20);
    expect(parse("1.5 gib").data?.memoryLimit).toBe(1.5 * 2 ** 30);
    for (const bad of ["12GB", "1.5", "0", "lots", ""]) expect(parse(bad).success, bad).toBe(false);
  });
});
