// A model's shape for the layer planner, estimated from what a GGUF file says: its tensors' sizes by name and its
// attention metadata. Pure; a worker that reads the file would send these figures (see docs/sharding.md).
import type { ModelShape } from "./layer-split.js";

export interface GgufTensorSize {
  name: string;
  bytes: number;
}

export interface GgufShapeInput {
  /** `<arch>.block_count`: the repeating layers, named `blk.<i>.*`. */
  blockCount: number;
  tensors: readonly GgufTensorSize[];
  /** `<arch>.attention.head_count_kv`: one figure, or one per layer (0 for a layer that keeps no KV cache). */
  headCountKv: number | readonly number[];
  /** `<arch>.attention.key_length` and `.value_length` (when absent from the file: embedding_length / head_count). */
  keyLength: number;
  valueLength: number;
  /** Bytes per cached element: 2 for llama.cpp's default f16 cache, 34 / 32 for q8_0. */
  cacheElementBytes?: number;
  /** Tokens of context over all sequences. */
  contextLength: number;
}

const LAYER_TENSOR = /^blk\.(\d+)\./;
const OUTPUT_TENSOR = /^output(_norm)?\./;

/**
 * Layers are the `blk.<i>.*` tensors; the output norm and matrix are the tail; everything else (the token embeddings
 * above all) is the head. Every attention layer is counted at the full context, so a sliding-window layer's cache is
 * overestimated: an upper bound, which is what placement needs.
 */
export function shapeFromGguf(input: GgufShapeInput): ModelShape {
  const { blockCount } = input;
  const layerBytes = new Array<number>(blockCount).fill(0);
  let headBytes = 0;
  let tailBytes = 0;
  let embeddingBytes = 0;
  let hasOutputMatrix = false;
  for (const { name, bytes } of input.tensors) {
    const layer = LAYER_TENSOR.exec(name);
    if (layer) {
      const index = Number(layer[1]);
      if (index >= blockCount) throw new RangeError(`tensor ${name} names a layer past block_count ${blockCount}`);
      layerBytes[index] = (layerBytes[index] ?? 0) + bytes;
    } else if (OUTPUT_TENSOR.test(name)) {
      tailBytes += bytes;
      hasOutputMatrix ||= name === "output.weight";
    } else {
      headBytes += bytes;
      if (name === "token_embd.weight") embeddingBytes = bytes;
    }
  }
  // Without an output matrix, llama.cpp uses the embeddings as one and loads them a second time, with the last layer.
  if (!hasOutputMatrix) tailBytes += embeddingBytes;
  return { layerCount: blockCount, layerBytes, kvBytesPerToken: kvBytesPerToken(input), contextLength: input.contextLength, headBytes, tailBytes };
}

/** Each layer's KV-cache bytes per token: every KV head caches a key and a value. */
export function kvBytesPerToken(input: Pick<GgufShapeInput, "blockCount" | "headCountKv" | "keyLength" | "valueLength" | "cacheElementBytes">): number[] {
  const { blockCount, headCountKv, keyLength, valueLength } = input;
  const heads = typeof headCountKv === "number" ? new Array<number>(blockCount).fill(headCountKv) : [...headCountKv];
  if (heads.length !== blockCount) throw new RangeError(`head_count_kv has ${heads.length} entries for ${blockCount} layers`);
  const elementBytes = input.cacheElementBytes ?? 2;
  return heads.map((count) => Math.ceil(count * (keyLength + valueLength) * elementBytes));
}
