// The simulator's prompt cache, alone and through a coordinator: a conversation's next turn reports the tokens it
// shares with the last one as cached, in every dialect's usage; the cache keeps within its budget, oldest out first.
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { messageTokens, promptTokenList, SimulatedPromptCache } from "../src/worker/engines/simulated-cache.js";
import { simulatedReply } from "../src/worker/engines/simulator.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";

describe("SimulatedPromptCache", () => {
  const seq = (...tokens: string[]) => tokens;

  it("finds the longest common prefix among what it holds, and replaces a sequence by its extension", () => {
    const cache = new SimulatedPromptCache(100);
    cache.store(seq("a", "b", "c"));
    cache.store(seq("x", "y"));

    expect(cache.lookup(seq("a", "b", "z"))).toBe(2);
    expect(cache.lookup(seq("x", "y", "z"))).toBe(2);
    expect(cache.lookup(seq("q"))).toBe(0);
    cache.store(seq("a", "b", "c", "d"));
    expect(cache.stats()).toEqual({ sequences: 2, tokens: 6 });
  });

  it("keeps within its budget, dropping the least recently used first", () => {
    const cache = new SimulatedPromptCache(6);
    cache.store(seq("a", "a", "a"));
    cache.store(seq("b", "b", "b"));
    cache.lookup(seq("a")); // a is now the most recently used
    cache.store(seq("c", "c", "c"));

    expect(cache.stats()).toEqual({ sequences: 2, tokens: 6 });
    expect(cache.lookup(seq("b"))).toBe(0);
    expect(cache.lookup(seq("a"))).toBe(1);
    cache.store(seq(..."too long to hold".split("")));
    expect(cache.stats().tokens).toBeLessThanOrEqual(6);
  });
});

describe("a simulator worker with a prompt cache, through the coordinator", () => {
  let coordinator: RunningCoordinator;
  let worker: TestWorker;

  beforeAll(async () => {
    coordinator = await startTestCoordinator({ heartbeatMs: 50 });
    worker = await startSimWorker(coordinator, { tokensPerSecond: 0, promptCacheTokens: 10_000 });
  });

  afterAll(async () => {
    await worker.stop();
    await coordinator.close();
  });

  it("reports the next turn's shared prefix as cached: OpenAI's cached_tokens, Anthropic's cache_read_input_tokens", async () => {
    const client = openaiClient(coordinator);
    type Turn = { role: "system" | "user" | "assistant"; content: string };
    const first: Turn[] = [
      { role: "system", content: "You are terse." },
      { role: "user", content: "Name a colour." },
    ];
    const one = await client.chat.completions.create({ model: "simulator", messages: first });
    expect(one.usage?.prompt_tokens_details?.cached_tokens).toBe(0);

    const answer = one.choices[0]?.message.content ?? "";
    expect(answer).toBe(simulatedReply(first).answer);
    const second: Turn[] = [...first, { role: "assistant", content: answer }, { role: "user", content: "Another." }];
    const two = await client.chat.completions.create({ model: "simulator", messages: second });
    const shared = promptTokenList(first, undefined).length + messageTokens({ role: "assistant", content: answer }).length;
    expect(two.usage?.prompt_tokens).toBe(promptTokenList(second, undefined).length);
    expect(two.usage?.prompt_tokens_details?.cached_tokens).toBe(shared);

    const anthropic = new Anthropic({ baseURL: coordinator.url, apiKey: "unused", maxRetries: 0 });
    const third = await anthropic.messages.create({
      model: "simulator",
      max_tokens: 200,
      system: "You are terse.",
      messages: [
        { role: "user", content: "Name a colour." },
        { role: "assistant", content: answer },
        { role: "user", content: "Another." },
      ],
    });
    expect(third.usage.cache_read_input_tokens).toBeGreaterThanOrEqual(shared);
    expect(third.usage.input_tokens + (third.usage.cache_read_input_tokens ?? 0)).toBe(promptTokenList(second, undefined).length);

    // The worker's heartbeats carry its cache, and /v1/cluster shows it with the hit ratio.
    await eventually(() => coordinator.master.snapshot().workers.some((w) => w.cache.models.some((m) => m.tokens > 0)), "the cache in a heartbeat");
    const view = coordinator.master.snapshot().workers[0];
    expect(view?.cache.cachedTokens).toBeGreaterThanOrEqual(2 * shared);
    expect(view?.cache.hitRatio).toBeGreaterThan(0);
  });
});
