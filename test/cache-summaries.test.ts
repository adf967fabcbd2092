// Cache summaries between heads, in process (two heads' summaries over one LocalMap; the bucket on a real nats-server
// is in shared-cache-routing.test.ts): what a head writes of the prompts it routed (hashes by worker name, never the
// text, bounded, at most every 5 s), what the other head reads of it, what it deletes, and what it ignores.
import { afterEach, describe, expect, it, vi } from "vitest";
import { createLogger, silentLogger } from "../src/log.js";
import { LocalMap, SharedUnavailable } from "../src/heads/shared-map.js";
import { blockHashes, renderHash } from "../src/master/routing/block-hashes.js";
import { CacheSummaries, type CacheSummariesOptions } from "../src/master/routing/cache-summaries.js";
import { CacheSummary, summaryKey } from "../src/master/routing/cache-summary.js";
import type { RoutedTask } from "../src/master/routing/policy.js";

const system = "You are a careful travel agent. ".repeat(40);
const prompt = `${system}user: plan a trip to Lisbon\n`;

let taskCount = 0;
function task(text: string, model = "m"): RoutedTask {
  return { id: `t${taskCount++}`, model, text, sessionKey: undefined };
}

function worker(name: string, models: string[] = ["m"]) {
  return { name, serves: (model: string) => models.includes(model) };
}

function hashesOf(text: string): number[] {
  const out: number[] = [];
  return out.slice(0, blockHashes(text, 256, out));
}

const open: CacheSummaries[] = [];

function head(map: LocalMap<CacheSummary>, id: string, options: Partial<CacheSummariesOptions> = {}, log = silentLogger): CacheSummaries {
  const summaries = new CacheSummaries(map, { headId: id, summarizes: (model) => model !== "plain", ...options }, log);
  open.push(summaries);
  return summaries;
}

afterEach(async () => {
  vi.useRealTimers();
  for (const summaries of open.splice(0)) await summaries.close();
});

/** Lets the hashing (after the assignment) and the first write (at once) happen. */
async function published(): Promise<void> {
  await vi.advanceTimersByTimeAsync(1);
}

describe("cache summaries", () => {
  it("tells the other heads which worker holds which prefixes, by its name, never the text", async () => {
    // Given two heads sharing one map
    vi.useFakeTimers();
    const map = new LocalMap<CacheSummary>();
    const a = head(map, "head-a");
    const b = head(map, "head-b");

    // When head a routes a prompt to w1
    a.taskAssigned(task(prompt), worker("w1"));
    await published();

    // Then its summary is in the map under MODEL.WORKER.HEAD: the prompt's block hashes, not its text
    const entry = map.get(summaryKey("m", "w1", "head-a"));
    expect(entry?.value).toEqual({ v: 1, model: "m", worker: "w1", head: "head-a", block: 256, hashes: hashesOf(prompt).map(renderHash).reverse() });
    expect(CacheSummary.safeParse(entry?.value).success).toBe(true);
    expect(JSON.stringify(entry?.value)).not.toContain("travel");
    // And head b knows w1 holds each of its prefixes, and head a does not count its own
    for (const hash of hashesOf(prompt)) expect(b.hints.holders("m", hash)).toEqual(["w1"]);
    expect(b.hints.has("m")).toBe(true);
    expect(a.hints.has("m")).toBe(false);
    expect(b.hints.has("plain")).toBe(false);
  });

  it("summarizes only the cache-aware models' prompts of a block or more", async () => {
    vi.useFakeTimers();
    const map = new LocalMap<CacheSummary>();
    const a = head(map, "head-a");
    a.taskAssigned(task(prompt, "plain"), worker("w1", ["plain"]));
    a.taskAssigned(task(prompt.slice(0, 255)), worker("w1"));
    await published();
    expect(map.entries()).toEqual([]);
  });

  it("writes the summaries that changed at most every 5 s, and each at most its bound, the shallowest blocks kept", async () => {
    // Given a head that keeps 8 hashes per worker, whose first write went out at once
    vi.useFakeTimers();
    const map = new LocalMap<CacheSummary>();
    const writes: string[] = [];
    map.onChange((key, entry) => entry && writes.push(key));
    const a = head(map, "head-a", { maxHashes: 8 });
    const long = `${prompt}${"and then a long reply ".repeat(200)}`;
    a.taskAssigned(task(prompt), worker("w1"));
    await published();
    expect(writes).toHaveLength(1);

    // When it routes more within the next 5 s (another worker, a longer prompt, the same prompt again)
    a.taskAssigned(task(long), worker("w1"));
    a.taskAssigned(task(prompt), worker("w2"));
    await vi.advanceTimersByTimeAsync(4_000);
    a.taskAssigned(task(prompt), worker("w2"));

    // Then nothing more is written until 5 s after the first write, then each changed summary once
    expect(writes).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(writes.sort()).toEqual([summaryKey("m", "w1", "head-a"), summaryKey("m", "w1", "head-a"), summaryKey("m", "w2", "head-a")].sort());
    // And w1's summary holds 8 hashes: the long prompt's 8 first blocks (the ones more prompts share)
    expect(map.get(summaryKey("m", "w1", "head-a"))?.value.hashes).toEqual(hashesOf(long).slice(0, 8).map(renderHash).reverse());

    // And a prompt routed again, adding nothing, writes nothing while the summary is fresh
    a.taskAssigned(task(prompt), worker("w2"));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(writes).toHaveLength(3);
    // But 30 s after the summary's last write (half the bucket's max age), it is written again, not to age out
    await vi.advanceTimersByTimeAsync(20_000);
    a.taskAssigned(task(prompt), worker("w2"));
    await published();
    expect(writes).toHaveLength(4);
  });

  it("deletes its summary of a worker that left or no longer serves the model, and all of them on close", async () => {
    vi.useFakeTimers();
    const map = new LocalMap<CacheSummary>();
    const a = head(map, "head-a");
    const b = head(map, "head-b");
    for (const name of ["w1", "w2", "w3"]) a.taskAssigned(task(prompt), worker(name));
    a.taskAssigned(task(prompt, "other"), worker("w1", ["m", "other"]));
    await published();
    expect(map.entries()).toHaveLength(4);

    // When w1 leaves, and w2 unloads the model
    a.workerLeft(worker("w1"));
    a.workerModelsChanged(worker("w2", []));
    await published();

    // Then only w3's summary is left, and head b no longer believes the others
    expect(map.entries().map((entry) => entry.key)).toEqual([summaryKey("m", "w3", "head-a")]);
    expect(b.hints.holders("m", hashesOf(prompt)[0] as number)).toEqual(["w3"]);
    expect(b.hints.has("other")).toBe(false);

    // And once head a closes, nothing of it is left
    await a.close();
    expect(map.entries()).toEqual([]);
    expect(b.hints.has("m")).toBe(false);
    expect(b.hints.stats()).toEqual({ summaries: 0, hashes: 0 });
  });

  it("counts a worker held through two heads once per head, and forgets each head's part alone", async () => {
    vi.useFakeTimers();
    const map = new LocalMap<CacheSummary>();
    const [a, b, c] = [head(map, "head-a"), head(map, "head-b"), head(map, "head-c")];
    a.taskAssigned(task(prompt), worker("w1"));
    b.taskAssigned(task(prompt), worker("w1"));
    await published();
    const first = hashesOf(prompt)[0] as number;
    expect(c.hints.holders("m", first)).toEqual(["w1", "w1"]);
    await a.close();
    expect(c.hints.holders("m", first)).toEqual(["w1"]);
    expect(b.hints.stats().summaries).toBe(0);
  });

  it("ignores a summary whose key is not its own, of another block size, and a value that does not parse", async () => {
    const map = new LocalMap<CacheSummary>();
    const lines: string[] = [];
    const log = createLogger("warn", "coordinator", { format: "json", destination: { write: (line: string) => void lines.push(line) } });
    const b = head(map, "head-b", {}, log);
    const hashes = hashesOf(prompt).map(renderHash);
    await map.put(summaryKey("m", "w9", "head-a"), { v: 1, model: "m", worker: "w1", head: "head-a", block: 256, hashes });
    await map.put(summaryKey("m", "w1", "head-a"), { v: 1, model: "m", worker: "w1", head: "head-a", block: 128, hashes });
    expect(b.hints.has("m")).toBe(false);
    expect(lines.join("")).toContain("not its key's");
    expect(lines.join("")).toContain("another block size");
    // The bucket parses every value with the schema: hashes that are no hashes, or too many, do not pass
    const value = { v: 1, model: "m", worker: "w1", head: "head-a", block: 256 };
    expect(CacheSummary.safeParse({ ...value, hashes }).success).toBe(true);
    expect(CacheSummary.safeParse({ ...value, hashes: ["NOT-A-HASH"] }).success).toBe(false);
    expect(CacheSummary.safeParse({ ...value, hashes: ["zzzzzzzzzzz"] }).success).toBe(false);
    expect(CacheSummary.safeParse({ ...value, hashes: Array.from({ length: 4_097 }, (_, i) => renderHash(i)) }).success).toBe(false);
  });

  it("logs a write that fails once, not at every try, and writes it once the map takes writes again", async () => {
    // Given a map that refuses writes for now
    vi.useFakeTimers();
    let refusing = true;
    class FlakyMap extends LocalMap<CacheSummary> {
      override async put(key: string, value: CacheSummary): Promise<number> {
        if (refusing) throw new SharedUnavailable("could not write the cache summaries");
        return super.put(key, value);
      }
    }
    const map = new FlakyMap();
    const lines: string[] = [];
    const log = createLogger("warn", "coordinator", { format: "json", destination: { write: (line: string) => void lines.push(line) } });
    const a = head(map, "head-a", {}, log);

    // When it routes a prompt, and tries for 20 s
    a.taskAssigned(task(prompt), worker("w1"));
    await vi.advanceTimersByTimeAsync(20_000);

    // Then it said so once, threw nothing, and writes the summary once the map takes writes
    expect(lines.filter((line) => line.includes("could not write a cache summary"))).toHaveLength(1);
    refusing = false;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(map.get(summaryKey("m", "w1", "head-a"))).toBeDefined();
  });
});
