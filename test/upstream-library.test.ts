// The upstream engine's library (--upstream-library): the models an OpenAI-compatible upstream lists, followed as the
// list changes, and loaded on the master's command. A recording upstream (real HTTP) and the real engine; then a real
// coordinator with a real worker runtime in front of it.
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { silentLogger } from "../src/log.js";
import { type GenerationRequest, ModelLoadError, textSink } from "../src/worker/engines/engine.js";
import {
  DEFAULT_CONTEXT_LENGTH,
  OpenAIUpstreamEngine,
  type OpenAIUpstreamOptions,
  UPSTREAM_CAPABILITIES,
  UPSTREAM_EMBEDDING_CAPABILITIES,
} from "../src/worker/engines/openai-upstream.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import type { Hello, Library } from "../src/worker-protocol/index.js";
import { eventually, openaiClient, startTestCoordinator, TEST_TOKEN } from "./support/cluster.js";
import { completionChunk, type ListedModel, type RecordingUpstream, sendJson, startRecordingUpstream, streamChunks } from "./support/recording-upstream.js";
import { startWireTap } from "./support/wire-tap.js";

let upstream: RecordingUpstream | undefined;
let coordinator: RunningCoordinator | undefined;
/** Workers and engines to stop after each test, last started first. */
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await coordinator?.close();
  coordinator = undefined;
  await upstream?.close();
  upstream = undefined;
});

async function startUpstream(models: ListedModel[]): Promise<RecordingUpstream> {
  upstream = await startRecordingUpstream(models);
  return upstream;
}

function upstreamEngine(options: Partial<OpenAIUpstreamOptions> = {}): OpenAIUpstreamEngine {
  if (!upstream) throw new Error("no upstream");
  const engine = new OpenAIUpstreamEngine({ baseUrl: upstream.baseUrl, models: [], maxConcurrency: 4, library: true, ...options });
  cleanups.push(() => engine.close());
  return engine;
}

/** Answers every chat completion of `model` with `text`. */
function replyWith(model: string, text: string): void {
  upstream?.reply(model, (res) => streamChunks(res, [completionChunk({ content: text }), completionChunk({}, { finish_reason: "stop" })]));
}

const ids = (models: ReadonlyArray<{ id: string }> | undefined) => models?.map((model) => model.id);

describe("the upstream engine's library", () => {
  it("serves no model at its start, and offers every model the upstream lists at no memory cost, with its context length and capabilities", async () => {
    await startUpstream(["plain", { id: "roomy", context_length: 32_768 }, { id: "vllm", max_model_len: 8192 }]);
    const engine = upstreamEngine({ embeddingModels: ["plain"] });

    const description = await engine.start();

    expect(description.models).toEqual([]);
    const entry = (id: string, contextLength: number, capabilities: readonly string[] = UPSTREAM_CAPABILITIES) => ({
      id,
      sizeBytes: 0,
      memoryBytes: 0,
      contextLength,
      format: "hermes",
      capabilities: [...capabilities],
    });
    expect(engine.library?.list()).toEqual([
      entry("plain", DEFAULT_CONTEXT_LENGTH, [...UPSTREAM_CAPABILITIES, ...UPSTREAM_EMBEDDING_CAPABILITIES]),
      entry("roomy", 32_768),
      entry("vllm", 8192),
    ]);
    expect(engine.library?.memory()).toEqual({ totalBytes: 0, freeBytes: 0 });
  });

  it("serves the models named with --model from its start, whether the upstream lists them or not", async () => {
    await startUpstream(["listed", { id: "named", context_length: 16_384 }]);
    const engine = upstreamEngine({ models: ["named", "private"] });

    const description = await engine.start();

    expect(description.models).toEqual([
      expect.objectContaining({ id: "named", contextLength: 16_384 }),
      expect.objectContaining({ id: "private", contextLength: DEFAULT_CONTEXT_LENGTH }),
    ]);
    expect(ids(engine.library?.list())).toEqual(["listed", "named", "private"]);
  });

  it("follows the upstream's list when refreshed, and keeps the last list when the upstream cannot list", async () => {
    const up = await startUpstream(["first", "second"]);
    const engine = upstreamEngine();
    await engine.start();

    up.models.splice(0, 1, "pulled");
    expect(ids(await engine.library?.refresh())).toEqual(["pulled", "second"]);

    up.failModelList(503);
    await expect(engine.library?.refresh()).rejects.toThrow(/503.*cannot list models now/);
    expect(ids(engine.library?.list())).toEqual(["pulled", "second"]);
  });

  it("loads a model the upstream lists, fetching the list again for one not in the last; refuses one it does not list", async () => {
    const up = await startUpstream(["listed"]);
    const engine = upstreamEngine();
    await engine.start();
    const load = (id: string) => engine.library?.load(id, {}, () => {}, new AbortController().signal);

    expect(await load("listed")).toMatchObject({ id: "listed", format: "hermes" });
    up.models.push({ id: "just-pulled", context_length: 2048 });
    expect(await load("just-pulled")).toMatchObject({ id: "just-pulled", contextLength: 2048 });

    const unknown = load("ghost");
    await expect(unknown).rejects.toBeInstanceOf(ModelLoadError);
    await expect(unknown).rejects.toMatchObject({ code: "unknown_model", message: "the upstream does not list a model 'ghost'" });
    up.failModelList(500);
    await expect(load("unreachable")).rejects.toMatchObject({ code: "load_failed", message: expect.stringContaining("cannot list models now") });
  });

  it("fails a task of a model it does not serve before asking the upstream; serves it once loaded, until unloaded", async () => {
    const up = await startUpstream(["m"]);
    replyWith("m", "through the upstream");
    const engine = upstreamEngine();
    await engine.start();
    const request: GenerationRequest = { taskId: "t1", model: "m", messages: [{ role: "user", content: "hi" }], params: {} };
    const generate = async () => {
      let text = "";
      await engine.generate(request, textSink((piece) => (text += piece)), new AbortController().signal);
      return text;
    };
    const embed = () => engine.embed({ taskId: "t2", model: "m", embed: { inputs: ["hi"] } }, { vector() {}, progress() {} }, new AbortController().signal);

    await expect(generate()).rejects.toThrow("model 'm' is not loaded on this worker");
    await expect(embed()).rejects.toThrow("model 'm' is not loaded on this worker");
    expect(up.requests).toEqual([]);

    await engine.library?.load("m", {}, () => {}, new AbortController().signal);
    expect(await generate()).toBe("through the upstream");

    await engine.library?.unload("m");
    await expect(generate()).rejects.toThrow("not loaded");
    expect(up.requests).toHaveLength(1);
  });

  it("refuses to start when the upstream lists nothing and no model is named", async () => {
    await startUpstream([]);

    await expect(upstreamEngine().start()).rejects.toThrow(/lists no models; name them with --model/);
  });

  it("has no library without the option, and serves every model the upstream lists from its start", async () => {
    await startUpstream(["a", "b"]);
    const engine = upstreamEngine({ library: false });

    const description = await engine.start();

    expect(engine.library).toBeUndefined();
    expect(ids(description.models)).toEqual(["a", "b"]);
  });
});

/** A worker runtime on `engine`, joined to the coordinator through a wire tap; `sent()`: every message it sent so far, Hello included. */
async function joinWorker(engine: OpenAIUpstreamEngine, name: string, libraryScanMs?: number) {
  if (!coordinator) throw new Error("no coordinator");
  const tap = await startWireTap(coordinator.workerUrl);
  cleanups.push(() => tap.close());
  const runtime = new WorkerRuntime(engine, await engine.start(), {
    join: tap.url,
    token: TEST_TOKEN,
    name,
    maxConcurrency: 4,
    reconnect: false,
    ...(libraryScanMs !== undefined && { libraryScanMs }),
    log: silentLogger,
  });
  const id = await runtime.start();
  cleanups.push(() => runtime.stop());
  const sent = () => tap.messages.flatMap((tapped) => (tapped.from === "worker" ? [tapped.message] : []));
  const hello = sent().find((message): message is Hello => message.type === "Hello");
  return { id, sent, hello };
}

async function ask(model: string, content = "hello"): Promise<string> {
  if (!coordinator) throw new Error("no coordinator");
  const reply = await openaiClient(coordinator).chat.completions.create({ model, messages: [{ role: "user", content }] });
  return reply.choices[0]?.message.content ?? "";
}

function slotState(workerId: string, model: string): string | undefined {
  return coordinator?.master.placer.state.workers.get(workerId)?.slots.get(model)?.state;
}

async function getJson<T>(path: string): Promise<T> {
  if (!coordinator) throw new Error("no coordinator");
  return (await (await fetch(`${coordinator.url}${path}`)).json()) as T;
}

describe("placement through an upstream worker", () => {
  it("loads a model the upstream lists when a request asks for it and answers through the upstream; loads another beside it", async () => {
    coordinator = await startTestCoordinator();
    const up = await startUpstream(["alpha", "beta"]);
    replyWith("alpha", "alpha from the upstream");
    replyWith("beta", "beta from the upstream");
    const { id, hello, sent } = await joinWorker(upstreamEngine(), "upstream-worker");

    expect(hello).toMatchObject({ models: [], features: ["models", "epoch", "refuse", "heads"], memory: { totalBytes: 0, freeBytes: 0 } });
    expect(ids(hello?.library)).toEqual(["alpha", "beta"]);
    const loadable = await getJson<{ data: Array<{ id: string; loaded: boolean; loadable_on: unknown[] }> }>("/v1/models?loadable=true");
    expect(loadable.data).toContainEqual(expect.objectContaining({ id: "alpha", loaded: false, loadable_on: [expect.objectContaining({ memory_bytes: 0, size_bytes: 0 })] }));

    expect(await ask("alpha")).toBe("alpha from the upstream");
    expect(up.requests.at(-1)).toMatchObject({ model: "alpha" });
    const statuses = sent().flatMap((m) => (m.type === "ModelStatus" ? [`${m.model} ${m.state}`] : []));
    expect(statuses).toEqual(["alpha loading", "alpha loaded"]);

    // No memory is counted, so the second model fits beside the first: nothing is evicted.
    expect(await ask("beta")).toBe("beta from the upstream");
    expect(slotState(id, "alpha")).toBe("loaded");
    expect(slotState(id, "beta")).toBe("loaded");
    const cluster = await getJson<{ workers: Array<{ id: string; placement: unknown }> }>("/v1/cluster");
    expect(cluster.workers.find((w) => w.id === id)?.placement).toMatchObject({ memory: { totalBytes: 0, usedBytes: 0, freeBytes: 0 } });
  });

  it("offers a model the upstream adds once rescanned, and no longer one it removes; a removed model still loaded stays served until unloaded", async () => {
    coordinator = await startTestCoordinator();
    const up = await startUpstream(["kept", "dropped", "gone"]);
    replyWith("pulled", "pulled from the upstream");
    const { id, sent } = await joinWorker(upstreamEngine(), "following", 50);
    await ask("dropped");
    expect(slotState(id, "dropped")).toBe("loaded");

    up.models.splice(0, up.models.length, "kept", "pulled");
    const libraries = () => sent().filter((m): m is Library => m.type === "Library");
    await eventually(() => libraries().length > 0, "a Library message");
    expect(ids(libraries().at(-1)?.library)).toEqual(["kept", "pulled"]);
    expect(await ask("pulled")).toBe("pulled from the upstream");
    // Never loaded and no longer offered: unknown.
    await expect(ask("gone")).rejects.toMatchObject({ status: 404 });

    // Still loaded: its requests go to the upstream, which answers as it will.
    expect(slotState(id, "dropped")).toBe("loaded");
    up.reply("dropped", (res) => sendJson(res, 404, { error: { message: "model 'dropped' not found" } }));
    await expect(ask("dropped")).rejects.toThrow(/model 'dropped' not found/);

    const unload = await fetch(`${coordinator.url}/v1/models/unload`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "dropped", worker: "following" }),
    });
    expect(unload.status).toBe(200);
    await eventually(() => slotState(id, "dropped") === undefined, "dropped unloaded");
    const models = await getJson<{ data: Array<{ id: string }> }>("/v1/models?loadable=true");
    expect(ids(models.data)).not.toContain("dropped");
  });

  it("without --upstream-library the worker offers no library: it serves the upstream's models from its start, as before", async () => {
    coordinator = await startTestCoordinator();
    await startUpstream(["fixed"]);
    replyWith("fixed", "as ever");
    const { id, hello } = await joinWorker(upstreamEngine({ library: false }), "fixed-worker", 50);

    expect(hello).not.toHaveProperty("library");
    expect(hello?.features).toEqual(["refuse", "heads"]);
    expect(ids(hello?.models)).toEqual(["fixed"]);
    expect(coordinator.master.placer.state.workers.has(id)).toBe(false);
    expect(await ask("fixed")).toBe("as ever");
  });
});
