// Routing policies as pure logic: least-loaded, power-of-two, session affinity and cache-aware routing (with and
// without other heads' hints) over fake workers, and the prefix tree against a brute-force reference.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { blockHashes } from "../src/master/routing/block-hashes.js";
import { CacheAwarePolicy, type RemoteCacheHints } from "../src/master/routing/cache-aware.js";
import { createPolicy, POLICY_NAMES, type Candidates, type RoutableWorker, type RoutedTask, type RoutingPolicy } from "../src/master/routing/index.js";
import { PowerOfTwoPolicy } from "../src/master/routing/power-of-two.js";
import { Edges } from "../src/master/routing/edges.js";
import { sharedLength } from "../src/master/routing/labels.js";
import { type Holders, PrefixTree } from "../src/master/routing/prefix-tree.js";
import { SessionPolicy } from "../src/master/routing/session.js";

class FakeWorker implements RoutableWorker {
  constructor(
    readonly id: string,
    public busy = 0,
    readonly slots = 4,
  ) {}

  get name(): string {
    return `${this.id}-name`;
  }

  get load(): number {
    return this.busy / this.slots;
  }

  get hasCapacity(): boolean {
    return this.busy < this.slots;
  }
}

/** Candidates over a plain list, in O(n): what the registry's index answers in O(1). */
class FakeCandidates implements Candidates<FakeWorker> {
  readonly workers: FakeWorker[];

  constructor(workers: FakeWorker[]) {
    this.workers = [...workers];
  }

  static of(count: number, slots = 4): FakeCandidates {
    return new FakeCandidates(Array.from({ length: count }, (_, i) => new FakeWorker(`w${i}`, 0, slots)));
  }

  leastLoaded(): FakeWorker | undefined {
    let best: FakeWorker | undefined;
    for (const w of this.workers) {
      if (!w.hasCapacity) continue;
      if (!best || w.load < best.load || (w.load === best.load && w.slots - w.busy > best.slots - best.busy)) best = w;
    }
    return best;
  }

  all(): Iterable<FakeWorker> {
    return this.workers;
  }

  get(id: string): FakeWorker | undefined {
    return this.workers.find((w) => w.id === id);
  }

  get size(): number {
    return this.workers.length;
  }

  w(id: string): FakeWorker {
    const worker = this.get(id);
    if (!worker) throw new Error(`no worker ${id}`);
    return worker;
  }

  remove(id: string): void {
    this.workers.splice(this.workers.indexOf(this.w(id)), 1);
  }
}

let taskCount = 0;
function task(text: string, sessionKey?: string): RoutedTask {
  return { id: `t${taskCount++}`, model: "m", text, sessionKey };
}

/** A seeded uniform source in [0, 1) (a linear congruential generator). */
function seeded(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function sharedPrefix(a: string, b: string): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/** The brute-force reference: per worker, the longest prefix of `query` shared with any text it was given. */
function bruteMatch(inserted: Array<[string, string]>, query: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const [text, worker] of inserted) {
    const n = sharedPrefix(text, query);
    if (n > 0 && n > (out.get(worker) ?? 0)) out.set(worker, n);
  }
  return out;
}

describe("createPolicy", () => {
  it("makes each named policy", () => {
    for (const name of POLICY_NAMES) expect(createPolicy(name).name).toBe(name);
  });
});

describe("least-loaded", () => {
  it("picks the candidates' least-loaded worker, and none when every slot is taken", () => {
    const candidates = new FakeCandidates([new FakeWorker("a", 2), new FakeWorker("b", 1), new FakeWorker("c", 4)]);
    const policy = createPolicy("least-loaded");
    expect(policy.pick(task("x"), candidates)).toEqual({ worker: candidates.w("b"), reason: "least_loaded" });
    for (const w of candidates.workers) w.busy = w.slots;
    expect(policy.pick(task("x"), candidates)).toBeUndefined();
  });
});

describe("power-of-two", () => {
  it("gives the task to the less loaded of the two workers drawn", () => {
    // given workers w0..w9 where w3 is busier than w7
    const candidates = FakeCandidates.of(10);
    candidates.w("w3").busy = 2;
    candidates.w("w7").busy = 1;
    // when the draws land on w3 then w7
    const draws = [0.35, 0.75];
    const policy = new PowerOfTwoPolicy({ random: () => draws.shift() ?? 0 });
    // then the less loaded of the two wins
    expect(policy.pick(task("x"), candidates)).toEqual({ worker: candidates.w("w7"), reason: "power_of_two" });
  });

  it("falls back to the least-loaded worker when the draws find no free slot", () => {
    const candidates = FakeCandidates.of(100, 1);
    for (const w of candidates.workers) w.busy = 1;
    candidates.w("w99").busy = 0;
    const policy = new PowerOfTwoPolicy({ random: () => 0 });
    expect(policy.pick(task("x"), candidates)).toEqual({ worker: candidates.w("w99"), reason: "least_loaded" });
    candidates.w("w99").busy = 1;
    expect(policy.pick(task("x"), candidates)).toBeUndefined();
  });

  it("never picks a worker without a free slot, nor one that left (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 40 }), fc.integer(), fc.nat(), (busy, seed, leaving) => {
        const candidates = new FakeCandidates(busy.map((b, i) => new FakeWorker(`w${i}`, b, 4)));
        const policy = new PowerOfTwoPolicy({ random: seeded(seed) });
        policy.pick(task("x"), candidates);
        const gone = candidates.workers[leaving % candidates.size] as FakeWorker;
        candidates.remove(gone.id);
        if (leaving % 2 === 0) policy.workerRemoved(gone.id);
        for (let i = 0; i < 20; i++) {
          const decision = policy.pick(task("x"), candidates);
          if (candidates.leastLoaded() === undefined) {
            if (decision !== undefined) return false;
          } else if (!decision || !decision.worker.hasCapacity || decision.worker === gone) return false;
        }
        return true;
      }),
    );
  });
});

describe("session", () => {
  it("keeps a session on one worker and spreads sessions over the workers", () => {
    const candidates = FakeCandidates.of(10, 1_000);
    const policy = new SessionPolicy();
    const counts = new Map<string, number>();
    for (let i = 0; i < 5_000; i++) {
      const first = policy.pick(task("x", `session-${i}`), candidates);
      expect(first?.reason).toBe("session");
      expect(policy.pick(task("y", `session-${i}`), candidates)?.worker).toBe(first?.worker);
      counts.set(first?.worker.id ?? "", (counts.get(first?.worker.id ?? "") ?? 0) + 1);
    }
    // 500 each if even: within a factor of 1.5 either way.
    for (const w of candidates.workers) expect(counts.get(w.id)).toBeGreaterThan(333);
    for (const w of candidates.workers) expect(counts.get(w.id)).toBeLessThan(750);
  });

  it("moves about 1/(n+1) of the sessions, and only to it, when a worker joins", () => {
    // given 10 workers and 10,000 sessions
    const candidates = FakeCandidates.of(10);
    const policy = new SessionPolicy();
    const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);
    const before = keys.map((k) => policy.owner(k, candidates)?.id);
    // when an 11th joins
    candidates.workers.push(new FakeWorker("w10"));
    const after = keys.map((k) => policy.owner(k, candidates)?.id);
    // then about 1/11 (909) move, all of them to the newcomer
    const moved = keys.filter((_, i) => before[i] !== after[i]).length;
    expect(moved).toBeGreaterThan(10_000 / 11 / 2);
    expect(moved).toBeLessThan((10_000 / 11) * 2);
    expect(keys.every((_, i) => before[i] === after[i] || after[i] === "w10")).toBe(true);
    // and when one leaves, only its sessions move
    candidates.remove("w4");
    policy.workerRemoved("w4");
    const later = keys.map((k) => policy.owner(k, candidates)?.id);
    expect(keys.every((_, i) => after[i] === "w4" || later[i] === after[i])).toBe(true);
    expect(later.includes("w4")).toBe(false);
  });

  it("gives the same session to the same worker whatever the order the workers joined in", () => {
    const forward = FakeCandidates.of(20);
    const backward = new FakeCandidates([...forward.workers].reverse());
    const [a, b] = [new SessionPolicy(), new SessionPolicy()];
    for (let i = 0; i < 1_000; i++) expect(a.owner(`k${i}`, forward)?.id).toBe(b.owner(`k${i}`, backward)?.id);
  });

  it("falls back to the least-loaded worker without a session key or when the session's worker is full", () => {
    const candidates = FakeCandidates.of(4, 2);
    candidates.w("w0").busy = 1;
    const policy = new SessionPolicy();
    expect(policy.pick(task("x"), candidates)?.reason).toBe("no_session");
    const owner = policy.owner("s", candidates) as FakeWorker;
    owner.busy = owner.slots;
    const decision = policy.pick(task("x", "s"), candidates);
    expect(decision?.reason).toBe("session_overflow");
    expect(decision?.worker).toBe(candidates.leastLoaded());
    for (const w of candidates.workers) w.busy = w.slots;
    expect(policy.pick(task("x", "s"), candidates)).toBeUndefined();
  });

  it("notices a worker that left without workerRemoved", () => {
    const candidates = FakeCandidates.of(3);
    const policy = new SessionPolicy();
    const key = Array.from({ length: 100 }, (_, i) => `k${i}`).find((k) => policy.owner(k, candidates)?.id === "w1") as string;
    candidates.remove("w1");
    candidates.workers.push(new FakeWorker("w3"));
    expect(["w0", "w2", "w3"]).toContain(policy.pick(task("x", key), candidates)?.worker.id);
  });
});

describe("prefix tree", () => {
  // Three characters make deep trees; forty (some outside Latin-1) make nodes with more children than Edges lists
  // before it keeps a map of them, and take them back under it as prompts are evicted or workers leave.
  const narrow = fc.string({ unit: fc.constantFrom("a", "b", "c"), minLength: 1, maxLength: 24 });
  const wide = fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789éλ世🙂"), minLength: 1, maxLength: 6 });
  const text = fc.oneof(narrow, wide);
  const worker = fc.constantFrom("w0", "w1", "w2", "w3");

  it("matches, per worker, the longest prefix it was given (property, against brute force)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(text, worker), { maxLength: 30 }), fc.array(text, { maxLength: 10 }), (inserts, queries) => {
        const tree = new PrefixTree({ maxBytes: Number.POSITIVE_INFINITY });
        for (const [t, w] of inserts) tree.insert(t, w);
        for (const q of [...queries, ...inserts.map(([t]) => t)]) expect(tree.matchLengths(q)).toEqual(bruteMatch(inserts, q));
      }),
    );
  });

  it("forgets exactly the workers removed, and nothing is left when all are (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(text, worker), { maxLength: 30 }), fc.subarray(["w0", "w1", "w2", "w3"]), fc.array(text, { maxLength: 10 }), (inserts, removed, queries) => {
        const tree = new PrefixTree({ maxBytes: Number.POSITIVE_INFINITY });
        for (const [t, w] of inserts) tree.insert(t, w);
        for (const w of removed) tree.removeWorker(w);
        const kept = inserts.filter(([, w]) => !removed.includes(w));
        for (const q of [...queries, ...inserts.map(([t]) => t)]) expect(tree.matchLengths(q)).toEqual(bruteMatch(kept, q));
        for (const w of ["w0", "w1", "w2", "w3"]) tree.removeWorker(w);
        expect(tree.stats()).toEqual({ prompts: 0, nodes: 0, holds: 0, chars: 0, bytes: 0 });
      }),
    );
  });

  it("stays under its memory bound, keeps the newest prompt and never claims more than a worker was given (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(text, worker), { minLength: 1, maxLength: 40 }), fc.integer({ min: 2_000, max: 6_000 }), (inserts, maxBytes) => {
        const tree = new PrefixTree({ maxBytes });
        for (let i = 0; i < inserts.length; i++) {
          const [t, w] = inserts[i] as [string, string];
          tree.insert(t, w);
          expect(tree.stats().bytes).toBeLessThanOrEqual(maxBytes);
          expect(tree.matchLengths(t).get(w)).toBe(t.length);
          const given = inserts.slice(0, i + 1);
          for (const [q] of given) {
            const claimed = tree.matchLengths(q);
            const reference = bruteMatch(given, q);
            for (const [id, n] of claimed) expect(n).toBeLessThanOrEqual(reference.get(id) ?? 0);
          }
        }
      }),
    );
  });

  it("finds each of a node's many children by its first character as they come and go (property, against brute force)", () => {
    const first = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ");
    const prompt = fc.tuple(first, fc.string({ unit: fc.constantFrom("x", "y"), maxLength: 4 })).map(([a, b]) => `shared ${a}${b}`);
    fc.assert(
      fc.property(fc.array(fc.tuple(prompt, worker), { minLength: 20, maxLength: 80 }), fc.subarray(["w0", "w1", "w2", "w3"]), (inserts, removed) => {
        const tree = new PrefixTree({ maxBytes: Number.POSITIVE_INFINITY });
        for (const [t, w] of inserts) tree.insert(t, w);
        for (const [q] of inserts) expect(tree.matchLengths(q)).toEqual(bruteMatch(inserts, q));
        for (const w of removed) tree.removeWorker(w);
        const kept = inserts.filter(([, w]) => !removed.includes(w));
        for (const [q] of inserts) expect(tree.matchLengths(q)).toEqual(bruteMatch(kept, q));
        // the freed node numbers are taken again
        for (const [t, w] of inserts) tree.insert(`${t}!`, w);
        for (const [q] of inserts) expect(tree.matchLengths(`${q}!`)).toEqual(bruteMatch(inserts.map(([t, w]) => [`${t}!`, w] as [string, string]), `${q}!`));
      }),
    );
  });

  it("walks as far as needed: each step's holders as a full walk's, its depth the same below `needed` (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(text, worker), { maxLength: 30 }), text, fc.integer({ min: 0, max: 30 }), (inserts, query, needed) => {
        const tree = new PrefixTree({ maxBytes: Number.POSITIVE_INFINITY });
        for (const [t, w] of inserts) tree.insert(t, w);
        const steps = (path: ReturnType<PrefixTree["walk"]>) =>
          Array.from({ length: path.length }, (_, i) => ({ depth: path.depths[i] as number, holders: [...(path.holders[i] as Holders).holderIds()].sort() }));
        const full = steps(tree.walk(query));
        const bounded = steps(tree.walk(query, needed));
        expect(bounded.map((step) => step.holders)).toEqual(full.map((step) => step.holders));
        for (const [i, step] of bounded.entries()) {
          const exact = (full[i] as { depth: number }).depth;
          if (exact < needed) expect(step.depth).toBe(exact);
          else expect(step.depth).toBeGreaterThanOrEqual(needed);
          expect(step.depth).toBeLessThanOrEqual(exact);
        }
      }),
    );
  });

  it("finds where a long label and a text part, at any offset (property, against brute force)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 3_000 }), fc.string({ maxLength: 300 }), fc.string({ maxLength: 300 }), fc.string({ maxLength: 50 }), (common, a, b, lead) => {
        const label = common + a;
        const text = lead + common + b;
        expect(sharedLength(label, text, lead.length)).toBe(sharedPrefix(label, text.slice(lead.length)));
      }),
    );
  });

  it("extends a conversation only its worker holds in place, and splits it when another worker or a branch shares part", () => {
    // given a conversation of ten turns on one worker
    const tree = new PrefixTree({ maxBytes: Number.POSITIVE_INFINITY });
    const turns: string[] = [];
    let text = "system: be brief\n";
    for (let i = 0; i < 10; i++) turns.push((text += `user: question ${i}\nassistant: answer ${i}\n`));
    for (const t of turns) tree.insert(t, "w0");
    // then it is one node, holding every turn
    expect(tree.stats()).toMatchObject({ prompts: 10, nodes: 1, holds: 1, chars: (turns[9] as string).length });
    tree.insert(turns[9] as string, "w0");
    expect(tree.stats().prompts).toBe(10);
    // when another worker takes turn 5 and the first worker answers turn 3 anew
    tree.insert(turns[4] as string, "w1");
    tree.insert(`${turns[2]}user: something else\n`, "w0");
    // then each holds exactly its own prefixes
    expect(tree.matchLengths(turns[9] as string)).toEqual(new Map([["w0", (turns[9] as string).length], ["w1", (turns[4] as string).length]]));
    expect(tree.matchLengths(`${turns[2]}user: something else\n`).get("w0")).toBe((turns[2] as string).length + "user: something else\n".length);
    expect(tree.stats().prompts).toBe(12);
  });

  it("counts two bytes per character for labels outside Latin-1, one otherwise", () => {
    const latin = new PrefixTree({ maxBytes: Number.POSITIVE_INFINITY });
    const wide = new PrefixTree({ maxBytes: Number.POSITIVE_INFINITY });
    latin.insert("é".repeat(100), "w0");
    wide.insert("€".repeat(100), "w0");
    expect(wide.stats().bytes - latin.stats().bytes).toBe(100);
  });

  it("evicts a worker's least recently used prompts beyond its own bound", () => {
    const tree = new PrefixTree({ maxBytes: Number.POSITIVE_INFINITY, maxCharsPerWorker: 250 });
    const [p1, p2, p3] = ["a", "b", "c"].map((c) => c.repeat(100)) as [string, string, string];
    tree.insert(p1, "w0");
    tree.insert(p2, "w0");
    tree.insert(p1, "w0"); // p1 used again: p2 is now the least recently used
    tree.insert(p3, "w0");
    expect(tree.matchLengths(p1).get("w0")).toBe(100);
    expect(tree.matchLengths(p2).get("w0")).toBeUndefined();
    expect(tree.matchLengths(p3).get("w0")).toBe(100);
    expect(tree.stats().prompts).toBe(2);
  });
});

describe("prefix tree edges", () => {
  it("finds every child by its parent and first character as edges come and go, past many resizes (property, against a map)", () => {
    // ops: attach a new node (parent index, first character) or detach an existing edge (index)
    const op = fc.oneof(fc.tuple(fc.constant("attach" as const), fc.nat(), fc.integer({ min: 0, max: 40 })), fc.tuple(fc.constant("detach" as const), fc.nat(), fc.constant(0)));
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 400 }), (ops) => {
        const edges = new Edges<string>();
        const root = edges.add("");
        const nodes = [root];
        const reference = new Map<string, number>(); // "parent/code" -> child
        for (const [kind, a, code] of ops) {
          if (kind === "attach") {
            const parent = nodes[a % nodes.length] as number;
            if (reference.has(`${parent}/${code}`)) continue;
            const child = edges.add(String.fromCharCode(code) + "label");
            edges.attach(parent, child);
            nodes.push(child);
            reference.set(`${parent}/${code}`, child);
          } else if (reference.size > 0) {
            const [key, child] = [...reference][a % reference.size] as [string, number];
            if (!edges.isLeaf(child)) continue;
            edges.detach(Number(key.split("/")[0]), child);
            reference.delete(key);
            nodes.splice(nodes.indexOf(child), 1);
            edges.remove(child);
          }
        }
        for (const parent of nodes) {
          for (let code = 0; code <= 40; code++) expect(edges.child(parent, code)).toBe(reference.get(`${parent}/${code}`) ?? -1);
          expect(edges.isLeaf(parent)).toBe(![...reference.keys()].some((key) => key.startsWith(`${parent}/`)));
        }
      }),
    );
  });
});

describe("cache-aware", () => {
  const system = "You are a helpful assistant. ".repeat(40);

  /** Runs one task: pick, assign, release; returns the decision. */
  function turn(policy: RoutingPolicy, candidates: FakeCandidates, text: string) {
    const t = task(text);
    const decision = policy.pick(t, candidates);
    if (decision) {
      policy.assigned(t, decision.worker.id);
      policy.released(t, decision.worker.id);
    }
    return decision;
  }

  it("keeps a conversation on one worker while load allows, and moves it when that worker is much busier", () => {
    // given four workers with some background load, and a conversation growing turn by turn
    const candidates = FakeCandidates.of(4, 8);
    const policy = new CacheAwarePolicy();
    let conversation = `${system}user: plan a trip to Lisbon\n`;
    const first = turn(policy, candidates, conversation);
    const home = first?.worker as FakeWorker;
    // when the other workers are a little less busy, the conversation stays where its cache is
    home.busy = 2;
    for (let i = 1; i < 6; i++) {
      conversation += `assistant: ${"day plan ".repeat(20)}\nuser: and day ${i + 1}?\n`;
      expect(turn(policy, candidates, conversation)).toEqual({ worker: home, reason: "cache_hit" });
    }
    // when its worker is much busier than the least-loaded one, the next turn goes to the least-loaded
    home.busy = 6;
    conversation += "assistant: done\nuser: and the way back?\n";
    const moved = turn(policy, candidates, conversation);
    expect(moved?.reason).toBe("balance");
    expect(moved?.worker).not.toBe(home);
    // and then stays there: its new worker holds the longest prefix now
    home.busy = 2;
    conversation += "assistant: by train\nuser: thanks\n";
    expect(turn(policy, candidates, conversation)).toEqual({ worker: moved?.worker, reason: "cache_hit" });
  });

  it("sends a prompt it holds too little of to the least-loaded worker", () => {
    const candidates = FakeCandidates.of(3);
    const policy = new CacheAwarePolicy();
    policy.assigned(task("short shared start, then a long tail of its own"), "w2");
    candidates.w("w0").busy = 1;
    const decision = policy.pick(task(`short shared start, ${"then something else entirely ".repeat(5)}`), candidates);
    expect(decision).toEqual({ worker: candidates.w("w1"), reason: "cache_miss" });
    expect(policy.pick(task(""), candidates)).toEqual({ worker: candidates.w("w1"), reason: "cache_miss" });
  });

  it("falls back from a full holder of the longest prefix to a holder of a shorter one", () => {
    const candidates = FakeCandidates.of(4, 2);
    const policy = new CacheAwarePolicy();
    const turn1 = `${system}user: hi\n`;
    const turn2 = `${turn1}assistant: hello\nuser: more\n`;
    policy.assigned(task(turn1), "w1");
    policy.assigned(task(turn2), "w2");
    candidates.w("w0").busy = 1;
    candidates.w("w3").busy = 1;
    candidates.w("w2").busy = 2; // full
    candidates.w("w1").busy = 1;
    expect(policy.pick(task(`${turn2}assistant: ok\n`), candidates)).toEqual({ worker: candidates.w("w1"), reason: "cache_hit" });
  });

  it("never routes by a prompt it evicted", () => {
    // given a tree with room for about one long prompt
    const candidates = FakeCandidates.of(3);
    const policy = new CacheAwarePolicy({ maxBytes: 3_000 });
    const old = "an old conversation ".repeat(50);
    policy.assigned(task(old), "w2");
    expect(policy.pick(task(old), candidates)).toEqual({ worker: candidates.w("w2"), reason: "cache_hit" });
    // when newer prompts on other workers fill it
    policy.assigned(task("a newer conversation ".repeat(50)), "w1");
    policy.assigned(task("the newest conversation ".repeat(50)), "w0");
    // then the old prompt is no longer believed held
    expect(policy.matchLengths(old).get("w2")).toBeUndefined();
    expect(policy.pick(task(old), candidates)?.reason).toBe("cache_miss");
    expect(policy.stats().bytes).toBeLessThanOrEqual(3_000);
  });

  it("drops a worker's entries when it leaves", () => {
    const candidates = FakeCandidates.of(2);
    const policy = new CacheAwarePolicy();
    const prompt = `${system}user: hello\n`;
    policy.assigned(task(prompt), "w1");
    policy.assigned(task(`${system}user: other\n`), "w0");
    expect(policy.stats().entries).toBe(2);
    policy.workerRemoved("w1");
    candidates.remove("w1");
    expect(policy.stats().entries).toBe(1);
    expect(policy.matchLengths(prompt).has("w1")).toBe(false);
    expect(policy.pick(task(prompt), candidates)?.worker.id).toBe("w0");
  });
});

/** Other heads' hints as the policy sees them: per worker name, the prompts some other head routed there. */
class FakeHints implements RemoteCacheHints {
  readonly blockChars = 256;
  private readonly index = new Map<number, string[]>();

  constructor(
    readonly model: string,
    routed: Array<[text: string, workerName: string]>,
  ) {
    const out: number[] = [];
    for (const [text, name] of routed) {
      const count = blockHashes(text, this.blockChars, out);
      for (const hash of out.slice(0, count)) this.index.set(hash, [...(this.index.get(hash) ?? []), name]);
    }
  }

  has(model: string): boolean {
    return model === this.model && this.index.size > 0;
  }

  holders(model: string, hash: number): readonly string[] | undefined {
    return model === this.model ? this.index.get(hash) : undefined;
  }
}

describe("cache-aware, with other heads' hints", () => {
  const system = "You are a careful travel agent. ".repeat(40);
  const turn1 = `${system}user: plan a trip to Lisbon\n`;
  const turn2 = `${turn1}assistant: ${"day plan ".repeat(30)}\nuser: and the way back?\n`;

  it("sends a turn its own tree knows nothing of to the worker another head sent the conversation to", () => {
    // Given four workers, and another head that routed the conversation's first turn to w2
    const candidates = FakeCandidates.of(4, 8);
    const policy = new CacheAwarePolicy({ remote: new FakeHints("m", [[turn1, candidates.w("w2").name]]) });
    candidates.w("w2").busy = 1;

    // When its second turn comes to this head, w2 takes it, though another is less loaded
    const t = task(turn2);
    const decision = policy.pick(t, candidates);
    expect(decision).toEqual({ worker: candidates.w("w2"), reason: "cache_hit_remote" });

    // And from then on this head's own tree knows it
    policy.assigned(t, "w2");
    expect(policy.pick(task(`${turn2}assistant: by train\n`), candidates)).toEqual({ worker: candidates.w("w2"), reason: "cache_hit" });
  });

  it("does not send it to a much busier holder, nor by a prefix too short to matter", () => {
    const candidates = FakeCandidates.of(4, 8);
    const policy = new CacheAwarePolicy({ remote: new FakeHints("m", [[turn1, candidates.w("w2").name], [system.slice(0, 512), candidates.w("w3").name]]) });
    // A holder much busier than the least-loaded worker: the least-loaded one, for balance
    candidates.w("w2").busy = 6;
    expect(policy.pick(task(turn2), candidates)).toEqual({ worker: candidates.w("w0"), reason: "balance" });
    // A holder of only 512 characters of a prompt of 2,000: a miss
    candidates.w("w2").busy = 0;
    candidates.w("w0").busy = 1;
    expect(policy.pick(task(`${system.slice(0, 512)}${"something else entirely ".repeat(60)}`), candidates)).toEqual({ worker: candidates.w("w1"), reason: "cache_miss" });
  });

  it("falls back from a full remote holder of the longest prefix to a remote holder of a shorter one", () => {
    const candidates = FakeCandidates.of(4, 2);
    const policy = new CacheAwarePolicy({ remote: new FakeHints("m", [[turn1, candidates.w("w1").name], [turn2, candidates.w("w2").name]]) });
    candidates.w("w0").busy = 1;
    candidates.w("w3").busy = 1;
    candidates.w("w2").busy = 2; // full
    candidates.w("w1").busy = 1;
    expect(policy.pick(task(`${turn2}assistant: ok\n`), candidates)).toEqual({ worker: candidates.w("w1"), reason: "cache_hit_remote" });
  });

  it("prefers its own tree's holder, and decides as without hints when none are for the model or the prompt", () => {
    const candidates = FakeCandidates.of(4, 8);
    const hints = new FakeHints("m", [[turn1, candidates.w("w2").name]]);
    const policy = new CacheAwarePolicy({ remote: hints });
    // Its own tree's holder wins over a remote one
    policy.assigned(task(turn1), "w1");
    expect(policy.pick(task(turn2), candidates)).toEqual({ worker: candidates.w("w1"), reason: "cache_hit" });

    // The same traffic through a policy without hints, one with hints of another model only, and one whose hints
    // hold none of its prompts decides the same
    const random = seeded(7);
    const without = new CacheAwarePolicy();
    const otherModel = new CacheAwarePolicy({ remote: new FakeHints("another", [[turn1, "w2-name"]]) });
    const otherPrompts = new CacheAwarePolicy({ remote: new FakeHints("m", [["an unrelated conversation ".repeat(40), "w2-name"]]) });
    const conversations = Array.from({ length: 6 }, (_, i) => `${system}user: trip ${i}\n`);
    for (let step = 0; step < 200; step++) {
      for (const worker of candidates.workers) worker.busy = Math.floor(random() * 9);
      const i = Math.floor(random() * conversations.length);
      conversations[i] += `assistant: ${"ok ".repeat(Math.floor(random() * 40))}\nuser: more ${step}\n`;
      const text = conversations[i] as string;
      const [expected, ...others] = [without, otherModel, otherPrompts].map((p) => {
        const t = task(text);
        const decision = p.pick(t, candidates);
        if (decision) p.assigned(t, decision.worker.id);
        return decision && { id: decision.worker.id, reason: decision.reason };
      });
      expect(others).toEqual([expected, expected]);
    }
  });
});
