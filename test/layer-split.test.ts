// The planner's layer split for an instance spanning workers: worked cases, refusals, properties against a
// brute-force reference that tries every subset of the devices and every way to cut the layers, and the model's
// shape estimated from GGUF metadata.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { kvBytesPerToken, shapeFromGguf } from "../src/master/placement/gguf-shape.js";
import { type ModelShape, planLayerSplit, type Shard, type SplitDevice } from "../src/master/placement/layer-split.js";

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** Ten layers of 10 bytes and nothing else: 100 bytes in all. */
const tenByTen: ModelShape = { layerCount: 10, layerBytes: 10, kvBytesPerToken: 0, contextLength: 0 };

function device(id: string, freeBytes: number, weight?: number): SplitDevice {
  return weight === undefined ? { id, freeBytes } : { id, freeBytes, weight };
}

function shardsOf(result: ReturnType<typeof planLayerSplit>): Shard[] {
  if (!result.ok) throw new Error(`refused: ${JSON.stringify(result)}`);
  return result.shards;
}

describe("planLayerSplit", () => {
  it("puts the whole model on the device with the most free memory when it fits there", () => {
    // Given three devices, only the largest of which holds the whole model
    const devices = [device("small", 60), device("large", 120), device("medium", 90)];

    // When the model is planned
    const result = planLayerSplit(tenByTen, devices);

    // Then it takes one shard on that device, though the others could have shared it
    expect(result).toEqual({ ok: true, neededBytes: 100, shards: [{ deviceId: "large", firstLayer: 0, layerCount: 10, bytes: 100 }] });
  });

  it("splits the worked example of docs/sharding.md: 41.25 GiB over a 32 GiB and a 24 GiB worker", () => {
    // Given a 70B-class model at 4 bits: 80 layers of 480 MiB, an f16 KV cache of 4 KiB per token and layer at 8,192
    // tokens (32 MiB per layer), and 1.25 GiB with the last layer (embeddings and output head, see the doc)
    const model: ModelShape = { layerCount: 80, layerBytes: 480 * MiB, kvBytesPerToken: 4096, contextLength: 8192, tailBytes: 1280 * MiB };

    // When it is planned over the two workers
    const result = planLayerSplit(model, [device("w24", 24 * GiB), device("w32", 32 * GiB)]);

    // Then the 32 GiB worker leads with 47 layers (23.5 GiB, against a share of 23.57) and the 24 GiB one takes 33
    // layers and the tail (17.75 GiB, against 17.68)
    expect(result).toEqual({
      ok: true,
      neededBytes: 42_240 * MiB,
      shards: [
        { deviceId: "w32", firstLayer: 0, layerCount: 47, bytes: 24_064 * MiB },
        { deviceId: "w24", firstLayer: 47, layerCount: 33, bytes: 18_176 * MiB },
      ],
    });
  });

  it("splits across three equal devices with the extra layer on the first", () => {
    // Given 100 bytes over three devices of 40 (a share of 33 each)
    const shards = shardsOf(planLayerSplit(tenByTen, [device("c", 40), device("a", 40), device("b", 40)]));

    // Then 4 + 3 + 3 layers, in id order among equals: 4, 3, 3 and 3, 4, 3 are as close, and the later cut wins
    expect(shards.map((s) => [s.deviceId, s.firstLayer, s.layerCount, s.bytes])).toEqual([
      ["a", 0, 4, 40],
      ["b", 4, 3, 30],
      ["c", 7, 3, 30],
    ]);
  });

  it("counts the head bytes on the first shard and the tail bytes on the last", () => {
    // Given 100 bytes of layers, a head of 20 and a tail of 8, over 80 and 70 free bytes (shares of 68 and 59)
    const model: ModelShape = { ...tenByTen, headBytes: 20, tailBytes: 8 };

    const shards = shardsOf(planLayerSplit(model, [device("b", 70), device("a", 80)]));

    // Then "a" (most free memory) leads with the head and 5 layers, and "b" takes 5 layers and the tail
    expect(shards).toEqual([
      { deviceId: "a", firstLayer: 0, layerCount: 5, bytes: 70 },
      { deviceId: "b", firstLayer: 5, layerCount: 5, bytes: 58 },
    ]);
  });

  it("takes per-layer sizes and KV cache per layer", () => {
    // Given layers of 30, 10, 10, 30 bytes and 2 bytes of cache per token per layer at 5 tokens (10 per layer)
    const model: ModelShape = { layerCount: 4, layerBytes: [30, 10, 10, 30], kvBytesPerToken: [2, 2, 2, 2], contextLength: 5 };

    const shards = shardsOf(planLayerSplit(model, [device("a", 60), device("b", 60)]));

    expect(shards.map((s) => [s.firstLayer, s.layerCount, s.bytes])).toEqual([
      [0, 2, 60],
      [2, 2, 60],
    ]);
  });

  it("refuses with the exact shortfall when all the free memory together is too little", () => {
    const model: ModelShape = { layerCount: 80, layerBytes: 480 * MiB, kvBytesPerToken: 4096, contextLength: 8192, tailBytes: 1280 * MiB };

    const result = planLayerSplit(model, [device("w24", 24 * GiB), device("w16", 16 * GiB)]);

    expect(result).toEqual({ ok: false, reason: "not_enough_memory", neededBytes: 42_240 * MiB, freeBytes: 40 * GiB, shortfallBytes: 1280 * MiB });
    expect(planLayerSplit(model, [])).toMatchObject({ reason: "not_enough_memory", freeBytes: 0, shortfallBytes: 42_240 * MiB });
  });

  it("refuses when the memory is there but on more devices than an instance may span", () => {
    const devices = ["a", "b", "c", "d"].map((id) => device(id, 30));

    const result = planLayerSplit(tenByTen, devices, { maxDevices: 3 });

    expect(result).toEqual({ ok: false, reason: "too_many_devices", maxDevices: 3, neededBytes: 100, freeBytes: 90, shortfallBytes: 10 });
  });

  it("refuses when the bytes add up but whole layers do not fit", () => {
    // Given three layers of 10 bytes and two devices of 15: 30 bytes free for 30 needed, but one layer each
    const model: ModelShape = { layerCount: 3, layerBytes: 10, kvBytesPerToken: 0, contextLength: 0 };

    const result = planLayerSplit(model, [device("a", 15), device("b", 15)]);

    expect(result).toEqual({ ok: false, reason: "layers_do_not_fit", neededBytes: 30, largestLayerBytes: 10 });
  });

  it("chooses devices by free memory and shares by weight when weights are given", () => {
    // Given a fast device with little memory, and two slower ones with more
    const devices = [device("fast", 40, 10), device("big", 70, 1), device("mid", 60, 3)];

    const shards = shardsOf(planLayerSplit(tenByTen, devices));

    // Then the two with most memory are chosen, and "mid" (weight 3) takes as much as fits: its share is 75 bytes
    expect(shards.map((s) => [s.deviceId, s.layerCount, s.bytes])).toEqual([
      ["big", 4, 40],
      ["mid", 6, 60],
    ]);
  });

  it("gives the same split whatever the order of the candidates, breaking ties in free memory by id", () => {
    const devices = [device("b", 30), device("B", 30), device("a", 30), device("c", 50)];
    const expected = planLayerSplit(tenByTen, devices);

    for (const order of [[3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]]) {
      expect(planLayerSplit(tenByTen, order.map((i) => devices[i] as SplitDevice))).toEqual(expected);
    }
    // "B" sorts before "a" by code unit, whatever the locale
    expect(shardsOf(expected).map((s) => s.deviceId)).toEqual(["c", "B", "a"]);
  });

  it("refuses malformed input as a programming error", () => {
    expect(() => planLayerSplit({ ...tenByTen, layerCount: 0 }, [])).toThrow(RangeError);
    expect(() => planLayerSplit({ ...tenByTen, layerBytes: [1, 2] }, [])).toThrow(/2 entries for 10 layers/);
    expect(() => planLayerSplit({ ...tenByTen, headBytes: -1 }, [])).toThrow(RangeError);
    expect(() => planLayerSplit({ ...tenByTen, layerBytes: 2 ** 50 }, [])).toThrow(RangeError);
    expect(() => planLayerSplit(tenByTen, [device("a", 10), device("a", 20)])).toThrow(/twice/);
    expect(() => planLayerSplit(tenByTen, [device("a", 10, 1), device("b", 20)])).toThrow(/every device or to none/);
    expect(() => planLayerSplit(tenByTen, [device("a", 10, 0)])).toThrow(RangeError);
    expect(() => planLayerSplit(tenByTen, [device("a", 0.5)])).toThrow(RangeError);
    expect(() => planLayerSplit(tenByTen, [], { maxDevices: 0 })).toThrow(RangeError);
  });
});

// ---- Properties, against a brute-force reference ----

interface Case {
  model: ModelShape;
  devices: SplitDevice[];
  maxDevices: number;
}

const arbModel: fc.Arbitrary<ModelShape> = fc
  .record({
    layerCount: fc.integer({ min: 1, max: 8 }),
    uniform: fc.boolean(),
    sizes: fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 8, maxLength: 8 }),
    kvBytesPerToken: fc.integer({ min: 0, max: 3 }),
    contextLength: fc.integer({ min: 0, max: 4 }),
    headBytes: fc.integer({ min: 0, max: 20 }),
    tailBytes: fc.integer({ min: 0, max: 20 }),
  })
  .map(({ uniform, sizes, ...model }) => ({ ...model, layerBytes: uniform ? (sizes[0] ?? 0) : sizes.slice(0, model.layerCount) }));

/** A device: its id, the percentage of the model's bytes it has free (mostly 20–60, so most cases need several) and a few bytes more. */
const arbDevice = fc.tuple(
  fc.constantFrom("a", "b", "c", "d", "e", "A"),
  fc.oneof(fc.integer({ min: 20, max: 60 }), fc.integer({ min: 0, max: 110 })),
  fc.integer({ min: 0, max: 5 }),
);

/** A model and one to five devices, all weighted or none. */
const arbCase: fc.Arbitrary<Case> = arbModel.chain((model) =>
  fc
    .record({
      free: fc.uniqueArray(arbDevice, { minLength: 1, maxLength: 5, selector: ([id]) => id }),
      weights: fc.option(fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 5, maxLength: 5 })),
      maxDevices: fc.integer({ min: 1, max: 5 }),
    })
    .map(({ free, weights, maxDevices }) => ({
      model,
      devices: free.map(([id, percent, extra], i) => device(id, Math.floor((neededOf(model) * percent) / 100) + extra, weights?.[i])),
      maxDevices,
    })),
);

/** Each layer's bytes, weights and cache, as the model describes them. */
function layerCostsOf(model: ModelShape): number[] {
  return Array.from({ length: model.layerCount }, (_, i) => {
    const weights = typeof model.layerBytes === "number" ? model.layerBytes : (model.layerBytes[i] ?? 0);
    const kv = typeof model.kvBytesPerToken === "number" ? model.kvBytesPerToken : (model.kvBytesPerToken[i] ?? 0);
    return weights + kv * model.contextLength;
  });
}

function neededOf(model: ModelShape): number {
  return layerCostsOf(model).reduce((a, b) => a + b, 0) + (model.headBytes ?? 0) + (model.tailBytes ?? 0);
}

/** The documented order: most free memory first, then id by code unit. */
function inPlannerOrder(devices: readonly SplitDevice[]): SplitDevice[] {
  return [...devices].sort((a, b) => b.freeBytes - a.freeBytes || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** The bytes of each shard of a split given by its layer counts. */
function shardBytes(model: ModelShape, counts: readonly number[]): number[] {
  const costs = layerCostsOf(model);
  let first = 0;
  return counts.map((count, i) => {
    const layers = costs.slice(first, first + count).reduce((a, b) => a + b, 0);
    first += count;
    return layers + (i === 0 ? (model.headBytes ?? 0) : 0) + (i === counts.length - 1 ? (model.tailBytes ?? 0) : 0);
  });
}

/** Every way to write n as an ordered sum of k positive counts. */
function compositions(n: number, k: number): number[][] {
  if (k === 1) return [[n]];
  const out: number[][] = [];
  for (let first = 1; first <= n - (k - 1); first++) for (const rest of compositions(n - first, k - 1)) out.push([first, ...rest]);
  return out;
}

interface Candidate {
  devices: SplitDevice[];
  counts: number[];
}

/** Every split that fits: any subset of the devices (at most maxDevices, in the planner's order), any cut. */
function everySplit({ model, devices, maxDevices }: Case): Candidate[] {
  const ordered = inPlannerOrder(devices);
  const out: Candidate[] = [];
  for (let mask = 1; mask < 1 << ordered.length; mask++) {
    const subset = ordered.filter((_, i) => mask & (1 << i));
    if (subset.length > maxDevices || subset.length > model.layerCount) continue;
    for (const counts of compositions(model.layerCount, subset.length)) {
      if (shardBytes(model, counts).every((bytes, i) => bytes <= (subset[i]?.freeBytes ?? 0))) out.push({ devices: subset, counts });
    }
  }
  return out;
}

/** Total absolute difference from each device's proportional share, rounded down (the documented objective). */
function deviation(model: ModelShape, devices: readonly SplitDevice[], counts: readonly number[]): number {
  const needed = neededOf(model);
  const weights = devices.map((d) => d.weight ?? d.freeBytes);
  const total = weights.reduce((a, b) => a + b, 0);
  const bytes = shardBytes(model, counts);
  return weights.reduce((sum, w, i) => sum + Math.abs((bytes[i] ?? 0) - (total > 0 ? Math.floor((needed * w) / total) : 0)), 0);
}

/** Cut positions from the last to the first, for the documented tie rule (later cuts first, latest wins). */
function cutsFromLast(counts: readonly number[]): number[] {
  const cuts: number[] = [];
  let at = 0;
  for (const count of counts.slice(0, -1)) cuts.push((at += count));
  return cuts.reverse();
}

function compareLexicographic(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return (a[i] ?? 0) - (b[i] ?? 0);
  return a.length - b.length;
}

describe("planLayerSplit (properties)", () => {
  it("assigns every layer once, contiguously and in order, within each device's free bytes, conserving bytes", () => {
    fc.assert(
      fc.property(arbCase, ({ model, devices, maxDevices }) => {
        const result = planLayerSplit(model, devices, { maxDevices });
        expect(result.neededBytes).toBe(neededOf(model));
        if (!result.ok) return;
        const { shards } = result;
        let next = 0;
        for (const shard of shards) {
          expect(shard.firstLayer).toBe(next);
          expect(shard.layerCount).toBeGreaterThanOrEqual(1);
          next += shard.layerCount;
          const free = devices.find((d) => d.id === shard.deviceId)?.freeBytes;
          expect(shard.bytes).toBeLessThanOrEqual(free ?? -1);
        }
        expect(next).toBe(model.layerCount);
        expect(new Set(shards.map((s) => s.deviceId)).size).toBe(shards.length);
        expect(shards.length).toBeLessThanOrEqual(maxDevices);
        expect(shards.map((s) => s.bytes)).toEqual(shardBytes(model, shards.map((s) => s.layerCount)));
        expect(shards.reduce((sum, s) => sum + s.bytes, 0)).toBe(result.neededBytes);
      }),
      { numRuns: 1000 },
    );
  });

  it("finds a split exactly when one exists, on the fewest devices, which are those with the most free memory", () => {
    fc.assert(
      fc.property(arbCase, (c) => {
        const result = planLayerSplit(c.model, c.devices, { maxDevices: c.maxDevices });
        const splits = everySplit(c);
        expect(result.ok).toBe(splits.length > 0);
        if (!result.ok) return;
        const fewest = Math.min(...splits.map((s) => s.devices.length));
        expect(result.shards.length).toBe(fewest);
        expect(result.shards.map((s) => s.deviceId)).toEqual(inPlannerOrder(c.devices).slice(0, fewest).map((d) => d.id));
      }),
      { numRuns: 1000 },
    );
  });

  it("returns, among the splits over the chosen devices, the closest to proportional shares, ties to the latest cuts", () => {
    fc.assert(
      fc.property(arbCase, (c) => {
        const result = planLayerSplit(c.model, c.devices, { maxDevices: c.maxDevices });
        if (!result.ok) return;
        const chosen = result.shards.map((s) => s.deviceId).join();
        const rivals = everySplit(c).filter((s) => s.devices.map((d) => d.id).join() === chosen);
        const devices = rivals[0]?.devices ?? [];
        const score = (counts: readonly number[]) => deviation(c.model, devices, counts);
        const counts = result.shards.map((s) => s.layerCount);
        const best = Math.min(...rivals.map((s) => score(s.counts)));
        expect(score(counts)).toBe(best);
        for (const rival of rivals.filter((s) => score(s.counts) === best)) {
          expect(compareLexicographic(cutsFromLast(counts), cutsFromLast(rival.counts))).toBeGreaterThanOrEqual(0);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("always splits when the k devices with most free memory hold the model plus one largest layer each", () => {
    // The guarantee of docs/sharding.md: fold the head into layer 0 and the tail into the last layer; a cut wastes
    // less than one largest layer per device, so this much free memory always suffices.
    fc.assert(
      fc.property(arbCase, ({ model, devices, maxDevices }) => {
        const costs = layerCostsOf(model);
        const folded = costs.map((b, i) => b + (i === 0 ? (model.headBytes ?? 0) : 0) + (i === costs.length - 1 ? (model.tailBytes ?? 0) : 0));
        const largest = Math.max(...folded);
        const ordered = inPlannerOrder(devices);
        let free = 0;
        for (let k = 1; k <= Math.min(maxDevices, ordered.length); k++) {
          free += ordered[k - 1]?.freeBytes ?? 0;
          if (free >= neededOf(model) + k * largest) {
            expect(planLayerSplit(model, devices, { maxDevices }).ok).toBe(true);
            return;
          }
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("refuses with the reason the totals give, and the exact shortfall", () => {
    fc.assert(
      fc.property(arbCase, ({ model, devices, maxDevices }) => {
        const result = planLayerSplit(model, devices, { maxDevices });
        if (result.ok) return;
        const needed = neededOf(model);
        const free = devices.reduce((sum, d) => sum + d.freeBytes, 0);
        const limited = inPlannerOrder(devices)
          .slice(0, maxDevices)
          .reduce((sum, d) => sum + d.freeBytes, 0);
        if (free < needed) {
          expect(result).toEqual({ ok: false, reason: "not_enough_memory", neededBytes: needed, freeBytes: free, shortfallBytes: needed - free });
        }
        else if (limited < needed) expect(result).toMatchObject({ reason: "too_many_devices", freeBytes: limited, shortfallBytes: needed - limited });
        else expect(result.reason).toBe("layers_do_not_fit");
      }),
      { numRuns: 1000 },
    );
  });

  it("does not depend on the order of the candidates", () => {
    const shuffledCase = arbCase.chain((c) =>
      fc.tuple(fc.constant(c), fc.shuffledSubarray(c.devices, { minLength: c.devices.length, maxLength: c.devices.length })),
    );
    fc.assert(
      fc.property(shuffledCase, ([{ model, devices, maxDevices }, shuffled]) => {
        expect(planLayerSplit(model, shuffled, { maxDevices })).toEqual(planLayerSplit(model, devices, { maxDevices }));
      }),
      { numRuns: 300 },
    );
  });
});

describe("shapeFromGguf", () => {
  it("sums each layer's tensors, puts the output with the last layer and the rest with the first", () => {
    const shape = shapeFromGguf({
      blockCount: 2,
      tensors: [
        { name: "token_embd.weight", bytes: 100 },
        { name: "rope_freqs.weight", bytes: 3 },
        { name: "blk.0.attn_q.weight", bytes: 10 },
        { name: "blk.0.ffn_up.weight", bytes: 20 },
        { name: "blk.1.attn_q.weight", bytes: 10 },
        { name: "blk.1.ffn_up.weight", bytes: 25 },
        { name: "output_norm.weight", bytes: 1 },
        { name: "output.weight", bytes: 50 },
      ],
      headCountKv: 8,
      keyLength: 128,
      valueLength: 128,
      contextLength: 4096,
    });

    expect(shape).toEqual({ layerCount: 2, layerBytes: [30, 35], kvBytesPerToken: [4096, 4096], contextLength: 4096, headBytes: 103, tailBytes: 51 });
  });

  it("counts tied embeddings again with the last layer, as llama.cpp loads them twice", () => {
    const shape = shapeFromGguf({
      blockCount: 1,
      tensors: [
        { name: "token_embd.weight", bytes: 100 },
        { name: "blk.0.attn_q.weight", bytes: 10 },
        { name: "output_norm.weight", bytes: 1 },
      ],
      headCountKv: 1,
      keyLength: 64,
      valueLength: 64,
      contextLength: 1,
    });

    expect(shape).toMatchObject({ headBytes: 100, tailBytes: 101 });
  });

  it("takes KV heads per layer and a quantized cache, rounding up", () => {
    // q8_0: 34 bytes per 32 elements; 8 heads × 256 elements × 34 / 32
    expect(kvBytesPerToken({ blockCount: 2, headCountKv: [8, 0], keyLength: 128, valueLength: 128, cacheElementBytes: 34 / 32 })).toEqual([2176, 0]);
    expect(kvBytesPerToken({ blockCount: 1, headCountKv: 3, keyLength: 1, valueLength: 0, cacheElementBytes: 0.5 })).toEqual([2]);
    expect(() => kvBytesPerToken({ blockCount: 2, headCountKv: [8], keyLength: 1, valueLength: 1 })).toThrow(RangeError);
  });

  it("refuses a tensor of a layer past block_count", () => {
    const tensors = [{ name: "blk.1.attn_q.weight", bytes: 1 }];
    expect(() => shapeFromGguf({ blockCount: 1, tensors, headCountKv: 1, keyLength: 1, valueLength: 1, contextLength: 1 })).toThrow(/past block_count/);
  });

  it("gives the worked example of docs/sharding.md once the embeddings move to the serving (last) shard", () => {
    // Given the example's model as GGUF metadata: 80 blocks of 480 MiB, 512 MiB of embeddings, a 768 MiB output head
    const tensors = [
      { name: "token_embd.weight", bytes: 512 * MiB },
      ...Array.from({ length: 80 }, (_, i) => ({ name: `blk.${i}.ffn_up.weight`, bytes: 480 * MiB })),
      { name: "output.weight", bytes: 768 * MiB },
    ];
    const shape = shapeFromGguf({ blockCount: 80, tensors, headCountKv: 8, keyLength: 128, valueLength: 128, contextLength: 8192 });

    // When llama.cpp's serving process, which keeps the embeddings, is the last shard
    const served: ModelShape = { ...shape, headBytes: 0, tailBytes: (shape.headBytes ?? 0) + (shape.tailBytes ?? 0) };
    const result = planLayerSplit(served, [device("w24", 24 * GiB), device("w32", 32 * GiB)]);

    // Then the split is the example's: 47 layers on the 32 GiB worker, 33 and the tail on the 24 GiB one
    expect(shardsOf(result).map((s) => [s.deviceId, s.firstLayer, s.layerCount, s.bytes / MiB])).toEqual([
      ["w32", 0, 47, 24_064],
      ["w24", 47, 33, 18_176],
    ]);
  });
});
