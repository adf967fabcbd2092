// Block hashes of prompt prefixes (what heads share of the prompts they routed) against a reference that hashes each
// prefix from scratch, their written form, and the bounded set of recent hashes a head keeps per worker.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { blockHashes, parseHash, prefixHash, renderHash } from "../src/master/routing/block-hashes.js";
import { RecentHashes } from "../src/master/routing/recent-hashes.js";

function hashesOf(text: string, block: number): number[] {
  const out: number[] = [];
  const count = blockHashes(text, block, out);
  return out.slice(0, count);
}

/** The reference: each full block's prefix hashed on its own. */
function reference(text: string, block: number): number[] {
  const out: number[] = [];
  for (let end = block; end <= text.length; end += block) out.push(prefixHash(text.slice(0, end)));
  return out;
}

const conversation = "system\u0000You answer questions about rivers.\u0000user\u0000Which is the longest?\u0000".repeat(80);

describe("block hashes", () => {
  it("hashes each full block's prefix: same prefix, same hashes; a partial last block adds none", () => {
    // Given a prompt of 12 full blocks and a later turn that starts with it
    const first = conversation.slice(0, 12 * 256);
    const next = `${first}assistant\u0000The Nile.\u0000user\u0000And the widest?\u0000`.padEnd(14 * 256 + 17, "x");

    // Then the later turn's first 12 hashes are the first turn's, and it has two more
    expect(hashesOf(first, 256)).toHaveLength(12);
    expect(hashesOf(next, 256)).toHaveLength(14);
    expect(hashesOf(next, 256).slice(0, 12)).toEqual(hashesOf(first, 256));
    // And a text shorter than a block has none
    expect(hashesOf(first.slice(0, 255), 256)).toEqual([]);
    // And the hashes of different prefixes differ
    expect(new Set(hashesOf(next, 256)).size).toBe(14);
  });

  it("changes the hashes from the changed block on, and only those", () => {
    const text = conversation.slice(0, 10 * 256);
    const before = hashesOf(text, 256);
    for (const at of [0, 255, 256, 1000, 10 * 256 - 1]) {
      const changed = `${text.slice(0, at)}${text[at] === "#" ? "%" : "#"}${text.slice(at + 1)}`;
      const after = hashesOf(changed, 256);
      const block = Math.floor(at / 256);
      expect(after.slice(0, block)).toEqual(before.slice(0, block));
      for (let k = block; k < 10; k++) expect(after[k], `block ${k}, change at ${at}`).not.toBe(before[k]);
    }
  });

  it("agrees with hashing each prefix from scratch, for any text and block size", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 400 }), fc.integer({ min: 1, max: 64 }), (text, block) => {
        expect(hashesOf(text, block)).toEqual(reference(text, block));
      }),
      { numRuns: 300 },
    );
  });

  it("reuses the caller's array: a shorter text's count says where its hashes end", () => {
    const out: number[] = [];
    expect(blockHashes(conversation.slice(0, 2048), 256, out)).toBe(8);
    expect(blockHashes(conversation.slice(0, 600), 256, out)).toBe(2);
    expect(out.slice(0, 2)).toEqual(reference(conversation.slice(0, 600), 256));
  });

  it("stops at the first hash the caller turns down, having hashed no further", () => {
    const text = conversation.slice(0, 10 * 256);
    const seen: number[] = [];
    const out: number[] = [];
    const count = blockHashes(text, 256, out, (hash) => seen.push(hash) < 3);
    expect(count).toBe(2);
    expect(seen).toEqual(reference(text, 256).slice(0, 3));
    expect(out.slice(0, 2)).toEqual(reference(text, 256).slice(0, 2));
  });

  it("writes each hash in base 36 and reads it back exactly; anything else does not parse", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        const hash = prefixHash(text);
        expect(Number.isSafeInteger(hash) && hash >= 0).toBe(true);
        expect(renderHash(hash).length).toBeLessThanOrEqual(11);
        expect(parseHash(renderHash(hash))).toBe(hash);
      }),
      { numRuns: 300 },
    );
    expect(parseHash(renderHash(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER);
    for (const bad of ["", "zzzzzzzzzzz", "ABC", "12 3", "-1", "1.5", "000000000000"]) expect(parseHash(bad), bad).toBeUndefined();
  });
});

describe("recent hashes", () => {
  it("keeps at most its bound, forgetting the least recently used first", () => {
    // Given a set of 3 holding 1, 2, 3, where 1 was used again
    const recent = new RecentHashes(3);
    expect([recent.touch(1), recent.touch(2), recent.touch(3)]).toEqual([true, true, true]);
    expect(recent.touch(1)).toBe(false);
    expect([...recent.values()]).toEqual([2, 3, 1]);

    // When a fourth comes, the least recent (2) goes
    expect(recent.touch(4)).toBe(true);
    expect([...recent.values()]).toEqual([3, 1, 4]);
    expect(recent.has(2)).toBe(false);
    expect(recent.size).toBe(3);
  });

  it("never holds more than its bound, and holds the most recent of what it was given", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 30 }), { maxLength: 200 }), fc.integer({ min: 1, max: 10 }), (uses, max) => {
        const recent = new RecentHashes(max);
        for (const hash of uses) recent.touch(hash);
        // The reference: distinct hashes by their last use, the most recent `max` of them.
        const byLastUse = [...new Set([...uses].reverse())].slice(0, max).reverse();
        expect([...recent.values()]).toEqual(byLastUse);
      }),
      { numRuns: 300 },
    );
  });
});
