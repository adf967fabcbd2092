// Cache-aware routing across heads (docs/routing.md, "Hints from other heads"): two heads on a real nats-server with
// the cache-aware policy and workers joined to both; a conversation's first turn through one head and its second
// through the other land on the same worker, by the summary the first head wrote to the `coordinator-cache` bucket
// (block hashes, never the text). A value that does not parse is ignored; each head deletes its summaries of a worker
// that leaves and all of them when it closes; nothing is left after.
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import type { HeadView } from "../src/heads/heads.js";
import { encodeKey } from "../src/heads/shared-map.js";
import { blockHashes, renderHash } from "../src/master/routing/block-hashes.js";
import { CACHE_BUCKET, type CacheSummary, summaryKey } from "../src/master/routing/cache-summary.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { keysRead, type NatsServer, startNatsServer, stopHeads } from "./support/nats.js";
import { settled, trackResources, type TrackedResources } from "./support/resources.js";

const DEADLINE_MS = 20_000;
const MODEL = "simulator";

type Message = OpenAI.Chat.Completions.ChatCompletionMessageParam;

async function selfId(coordinator: RunningCoordinator): Promise<string> {
  const heads = ((await (await fetch(`${coordinator.url}/v1/cluster`)).json()) as { heads: HeadView[] }).heads;
  return heads.find((head) => head.self)?.id ?? "";
}

/** A gauge's or counter's value in the head's /metrics, 0 when absent. */
async function metric(coordinator: RunningCoordinator, series: string): Promise<number> {
  const text = await (await fetch(`${coordinator.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe("cache-aware routing across heads", () => {
  let nats: NatsServer | undefined;
  let resources: TrackedResources | undefined;
  const coordinators: RunningCoordinator[] = [];
  const workers: TestWorker[] = [];

  afterEach(async () => {
    await stopHeads(workers, coordinators, nats);
    resources?.stop();
    nats = resources = undefined;
  });

  async function head(name: string): Promise<RunningCoordinator> {
    const coordinator = await startTestCoordinator({ nats: [nats?.url ?? ""], headName: name, routing: "cache-aware" });
    coordinators.push(coordinator);
    await keysRead(coordinator.url);
    return coordinator;
  }

  /** Each summary in the bucket, by key. */
  async function bucket(): Promise<Map<string, string>> {
    const connection = await connect({ servers: (nats as NatsServer).url });
    try {
      const kv = await new Kvm(connection).open(CACHE_BUCKET);
      const stored = new Map<string, string>();
      for await (const key of await kv.keys()) stored.set(key, (await kv.get(key))?.string() ?? "");
      return stored;
    } finally {
      await connection.close();
    }
  }

  async function put(key: string, text: string): Promise<void> {
    const connection = await connect({ servers: (nats as NatsServer).url });
    try {
      await (await new Kvm(connection).open(CACHE_BUCKET)).put(key, text);
    } finally {
      await connection.close();
    }
  }

  it("sends a conversation's next turn, through another head, to the worker its first turn went to", { timeout: 90_000 }, async () => {
    // Given two cache-aware heads and three simulator workers joined to both
    resources = trackResources();
    nats = await startNatsServer();
    const a = await head("a");
    const b = await head("b");
    const [aId, bId] = await Promise.all([selfId(a), selfId(b)]);
    for (const name of ["w0", "w1", "w2"]) {
      workers.push(await startSimWorker({ workerUrl: `${a.workerUrl},${b.workerUrl}` }, { name, tokensPerSecond: 0, promptCacheTokens: 100_000 }));
    }
    await eventually(() => a.master.workerCount === 3 && b.master.workerCount === 3, "the workers on both heads", DEADLINE_MS);
    const ranOn = new Map<RunningCoordinator, string[]>([[a, []], [b, []]]);
    for (const [coordinator, names] of ranOn) coordinator.master.observers.add({ taskAssigned: (_task, worker) => names.push(worker.name) });

    // When a conversation's long first turn goes through head a
    const messages: Message[] = [
      { role: "system", content: "You are a careful travel agent who plans every day of a trip. ".repeat(50) },
      { role: "user", content: "Plan a week in Lisbon." },
    ];
    const first = await openaiClient(a).chat.completions.create({ model: MODEL, messages });
    const home = ranOn.get(a)?.[0] as string;
    expect(home).toMatch(/^w\d$/);

    // Then head a writes its summary of that worker, and head b reads it
    await eventually(async () => (await metric(b, "coordinator_cache_hint_summaries")) === 1, "b to read a's summary", DEADLINE_MS);
    const stored = await bucket();
    expect([...stored.keys()]).toEqual([summaryKey(MODEL, home, aId)]);
    const summary = JSON.parse(stored.get(summaryKey(MODEL, home, aId)) ?? "{}") as CacheSummary;
    expect(summary).toMatchObject({ v: 1, model: MODEL, worker: home, head: aId, block: 256 });
    expect(summary.hashes.length).toBeGreaterThan(10);
    expect(stored.get(summaryKey(MODEL, home, aId))).not.toMatch(/travel|Lisbon/);

    // When its second turn goes through head b, which never saw the first
    messages.push({ role: "assistant", content: first.choices[0]?.message.content ?? "" }, { role: "user", content: "And a day trip to Sintra?" });
    await openaiClient(b).chat.completions.create({ model: MODEL, messages });

    // Then it went to the same worker, for the other head's hint
    expect(ranOn.get(b)).toEqual([home]);
    expect(await metric(b, `coordinator_routing_decisions_total{model="${MODEL}",policy="cache-aware",reason="cache_hit_remote"}`)).toBe(1);
    // And head b writes its own summary of that worker, which head a reads
    await eventually(async () => (await metric(a, "coordinator_cache_hint_summaries")) === 1, "a to read b's summary", DEADLINE_MS);

    // When values that do not parse come before a valid one written by hand
    const forged = `${encodeKey(MODEL)}.${encodeKey("w-by-hand")}.forged`;
    await put(`${forged}1`, "not json");
    await put(`${forged}2`, JSON.stringify({ v: 2, model: MODEL, worker: "w-by-hand", head: "forged2", block: 256, hashes: [] }));
    const text = "written by hand ".repeat(40);
    const out: number[] = [];
    const hashes = out.slice(0, blockHashes(text, 256, out)).map(renderHash);
    await put(summaryKey(MODEL, "w-by-hand", "by-hand"), JSON.stringify({ v: 1, model: MODEL, worker: "w-by-hand", head: "by-hand", block: 256, hashes }));

    // Then each head takes the valid one only
    for (const coordinator of [a, b]) {
      await eventually(async () => (await metric(coordinator, "coordinator_cache_hint_summaries")) === 2, "the valid summary read", DEADLINE_MS);
    }

    // When head a closes, its summaries are gone from the bucket
    coordinators.splice(coordinators.indexOf(a), 1);
    await a.close();
    expect([...(await bucket()).keys()].filter((key) => key.endsWith(`.${aId}`))).toEqual([]);
    expect([...(await bucket()).keys()]).toContain(summaryKey(MODEL, home, bId));

    // When the workers leave, head b deletes its summaries of them
    for (const worker of workers.splice(0)) await worker.stop();
    await eventually(async () => ![...(await bucket()).keys()].some((key) => key.endsWith(`.${bId}`)), "b's summaries deleted", DEADLINE_MS);

    // And once everything is closed, nothing of either head is left
    for (const coordinator of coordinators.splice(0)) await coordinator.close();
    await nats.stop();
    nats = undefined;
    await settled(resources);
    expect(resources.summary()).toBe("");
  });
});
