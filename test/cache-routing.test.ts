// Routing policies through a real coordinator and simulator workers: cache-aware routing keeps a conversation on the
// worker that holds its prefix while load allows and spreads when that worker is much busier; session routing keeps
// a session on one worker; a worker that leaves takes its part of the tree with it; decisions are counted.
import type OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { HandWorker } from "./support/hand-worker.js";

type Turn = { role: "system" | "user" | "assistant"; content: string };

let coordinator: RunningCoordinator | undefined;
const workers: TestWorker[] = [];

afterEach(async () => {
  for (const worker of workers.splice(0)) await worker.stop();
  await coordinator?.close();
  coordinator = undefined;
});

async function cluster(routing: "cache-aware" | "session", count: number, options: Parameters<typeof startSimWorker>[1] = {}) {
  coordinator = await startTestCoordinator({ routing, heartbeatMs: 200 });
  for (let i = 0; i < count; i++) workers.push(await startSimWorker(coordinator, { name: `w${i}`, tokensPerSecond: 0, promptCacheTokens: 100_000, ...options }));
  return { coordinator, client: openaiClient(coordinator) };
}


/**
 * Runs conversations turn by turn, one request at a time (turn 1 of each, then turn 2 of each, …), each with its own
 * system prompt; returns, per conversation, the worker each turn ran on (by the master's assignments).
 */
async function converse(head: RunningCoordinator, client: OpenAI, topics: string[], turns: number, session?: "X-Session-Id" | "prompt_cache_key" | "user"): Promise<string[][]> {
  const ranOn = new Map<string, string>();
  const unobserve = head.master.observers.add({ taskAssigned: (task, worker) => ranOn.set(task.request.messages.at(-1)?.content ?? "", worker.name) });
  const conversations = topics.map((topic): Turn[] => [{ role: "system", content: `You are an expert on ${topic}. `.repeat(20) }]);
  const placed = topics.map((): string[] => []);
  try {
    for (let turn = 0; turn < turns; turn++) {
      for (const [i, messages] of conversations.entries()) {
        const question = `Tell me about ${topics[i]}, part ${turn}.`;
        messages.push({ role: "user", content: question });
        const key = `session-${topics[i]}`;
        const headers = session === "X-Session-Id" ? { "X-Session-Id": key } : {};
        const keyed = session === "prompt_cache_key" ? { prompt_cache_key: key } : session === "user" ? { user: key } : {};
        const reply = await client.chat.completions.create({ model: "simulator", messages, ...keyed }, { headers });
        placed[i]?.push(ranOn.get(question) ?? "?");
        messages.push({ role: "assistant", content: reply.choices[0]?.message.content ?? "" });
      }
    }
  } finally {
    unobserve();
  }
  return placed;
}

describe("cache-aware routing", () => {
  it("keeps each conversation on the worker that holds it while load allows, and reports the hits", async () => {
    const { client, coordinator: head } = await cluster("cache-aware", 3);
    const conversations = await converse(head, client, ["rivers", "mountains", "deserts", "forests"], 5);

    for (const placed of conversations) expect(new Set(placed).size, JSON.stringify(conversations)).toBe(1);
    // GET /v1/cluster shows the policy and its tree, and each worker's cache: what it holds and what it reused.
    type View = ReturnType<typeof head.master.snapshot>;
    const clusterView = async () => (await (await fetch(`${head.url}/v1/cluster`)).json()) as View;
    // (what a worker's cache holds comes with its heartbeats)
    await expect.poll(async () => (await clusterView()).workers.every((w) => w.cache.promptTokens === 0 || w.cache.models.length > 0), { timeout: 10_000 }).toBe(true);
    const view = await clusterView();
    expect(view.models[0]?.routing).toMatchObject({ policy: "cache-aware" });
    expect(view.models[0]?.routing?.entries).toBeGreaterThan(0);
    const busy = view.workers.filter((w) => w.cache.promptTokens > 0);
    expect(busy.length).toBeGreaterThan(0);
    for (const w of busy) {
      expect(w.cache.models).toEqual([expect.objectContaining({ model: "simulator", sequences: expect.any(Number), tokens: expect.any(Number) })]);
      expect(w.cache.models[0]?.tokens).toBeGreaterThan(0);
      expect(w.cache.hitRatio).toBeCloseTo(w.cache.cachedTokens / w.cache.promptTokens, 10);
    }
    const cached = view.workers.reduce((sum, w) => sum + w.cache.cachedTokens, 0);
    const prompt = view.workers.reduce((sum, w) => sum + w.cache.promptTokens, 0);
    // Every turn after the first finds the conversation so far in its worker's cache.
    expect(cached / prompt).toBeGreaterThan(0.5);
    // /metrics: decisions by policy and reason, and per model and worker the cached and prompt tokens (their ratio
    // is the hit ratio), agreeing with the view.
    const metrics = await (await fetch(`${head.url}/metrics`)).text();
    expect(metrics).toMatch(/coordinator_routing_decisions_total\{model="simulator",policy="cache-aware",reason="cache_hit"\} 16/);
    const series = (name: string, worker: string) => Number(metrics.match(new RegExp(`^${name}\\{model="simulator",worker="${worker}"\\} ([\\d.e+-]+)`, "m"))?.[1]);
    for (const w of busy) {
      expect(series("coordinator_cached_prompt_tokens_total", w.name)).toBe(w.cache.cachedTokens);
      expect(series("coordinator_prompt_tokens_total", w.name)).toBe(w.cache.promptTokens);
      expect(series("coordinator_cache_hit_ratio", w.name)).toBeCloseTo(w.cache.hitRatio, 6);
    }
  });

  it("sends a turn elsewhere when the worker holding its prefix is much busier, and forgets a worker that leaves", async () => {
    coordinator = await startTestCoordinator({ routing: "cache-aware" });
    const head = coordinator;
    const model = "hand-cached";
    const [x, y] = await Promise.all([0, 1].map(async () => (await HandWorker.join(head.workerUrl, { model, maxConcurrency: 2 })).worker));
    const hands = [x, y] as HandWorker[];
    /** Tasks a hand worker was given, by id; answered at once unless held. */
    const given = hands.map(() => [] as string[]);
    const held = new Set<string>();
    hands.forEach((hand, i) =>
      hand.onMessage((message) => {
        if (message.type !== "TaskAssigned") return;
        const taskId = message.taskId as string;
        given[i]?.push(taskId);
        if (holdNext) {
          holdNext = false;
          held.add(taskId);
          hand.send({ type: "TaskProgress", taskId, promptTokensDone: 0 });
          return;
        }
        hand.send({ type: "TokenChunk", taskId, seq: 0, text: "Fine." });
        hand.send({ type: "TaskFinished", taskId, finishReason: "stop", usage: { promptTokens: 10, completionTokens: 1 } });
      }),
    );
    let holdNext = false;
    const client = openaiClient(head);
    // A long system prompt: every turn of the conversation shares most of its text with the last.
    const messages: Turn[] = [{ role: "system", content: "You answer questions about geology. ".repeat(60) }, { role: "user", content: "Volcanoes?" }];
    /** Which hand worker was given the task of a request. */
    const placed = async (request: () => Promise<unknown>) => {
      const before = given.map((ids) => ids.length);
      await request();
      return given.findIndex((ids, i) => ids.length > (before[i] ?? 0));
    };
    const holder = await placed(() => client.chat.completions.create({ model, messages }));

    // The same prompt again is a cache hit on the holder, which keeps it (its load is now half its slots)...
    holdNext = true;
    const pending = client.chat.completions.create({ model, messages });
    await eventually(() => held.size === 1, "the holder to take the second request and hold it");
    expect(given[holder]).toContain([...held][0]);
    // ...so the conversation's next turn, though the holder has its prefix, goes to the idle worker.
    messages.push({ role: "assistant", content: "Fine." }, { role: "user", content: "And geysers?" });
    expect(await placed(() => client.chat.completions.create({ model, messages }))).toBe(1 - holder);
    const metrics = await (await fetch(`${head.url}/metrics`)).text();
    expect(metrics).toMatch(/coordinator_routing_decisions_total\{model="hand-cached",policy="cache-aware",reason="balance"\} 1/);

    // A worker that leaves takes what the tree believed it held.
    const entries = head.master.snapshot().models[0]?.routing?.entries ?? 0;
    const other = hands[1 - holder] as HandWorker;
    await other.close();
    await eventually(() => (head.master.snapshot().models[0]?.routing?.entries ?? 0) < entries, "the leaving worker's entries to go");
    const heldTask = [...held][0] as string;
    (hands[holder] as HandWorker).send({ type: "TaskFinished", taskId: heldTask, finishReason: "stop", usage: { promptTokens: 10, completionTokens: 0 } });
    await pending;
    await (hands[holder] as HandWorker).close();
  });
});

describe("session routing", () => {
  it("keeps a session on one worker by X-Session-Id, prompt_cache_key or user, and different sessions spread", async () => {
    const { client, coordinator: head } = await cluster("session", 3, { promptCacheTokens: 0 });
    for (const key of ["X-Session-Id", "prompt_cache_key", "user"] as const) {
      const sessions = await converse(head, client, ["a", "b", "c", "d", "e", "f", "g", "h"], 3, key);

      for (const placed of sessions) expect(new Set(placed).size, `${key}: ${JSON.stringify(sessions)}`).toBe(1);
      expect(new Set(sessions.map((placed) => placed[0])).size, key).toBeGreaterThan(1);
    }
    const metrics = await (await fetch(`${head.url}/metrics`)).text();
    expect(metrics).toMatch(/coordinator_routing_decisions_total\{model="simulator",policy="session",reason="session"\} 72/);
  });
});
