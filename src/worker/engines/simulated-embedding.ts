// The simulator's embeddings: deterministic unit vectors made by feature hashing, so that tests can compute the
// exact vector a text gets, and texts that share words get similar vectors (enough for a retrieval demo).

/** The vector length the simulator's models embed into, unless a request asks for `dimensions`. */
export const SIMULATED_EMBEDDING_DIMENSIONS = 64;

/** 32-bit FNV-1a of a string's UTF-16 code units. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** The features of an input: its lower-cased words, or its token ids; the whole text when it has no word. */
export function embeddingFeatures(input: string | readonly number[]): string[] {
  if (typeof input !== "string") return input.map((id) => `#${id}`);
  const words = input.toLowerCase().match(/[\p{L}\p{N}_]+/gu);
  return words ?? [input];
}

/**
 * The simulator's vector for `input`: each feature adds ±1 at a dimension chosen by its hash (and 0.5 at a second
 * one, so that short inputs are not one-hot), then the sum is scaled to unit length (a sum whose features cancel
 * out becomes the first axis).
 */
export function simulatedEmbedding(input: string | readonly number[], dimensions = SIMULATED_EMBEDDING_DIMENSIONS): Float32Array {
  const sums = new Float64Array(dimensions);
  for (const feature of embeddingFeatures(input)) {
    const hash = fnv1a(feature);
    const sign = hash & 1 ? 1 : -1;
    const first = hash % dimensions;
    const second = fnv1a(`${feature}\u0000`) % dimensions;
    sums[first] = (sums[first] as number) + sign;
    sums[second] = (sums[second] as number) + 0.5 * sign;
  }
  let norm = 0;
  for (const value of sums) norm += value * value;
  if (norm === 0) sums[0] = norm = 1;
  const scale = 1 / Math.sqrt(norm);
  return Float32Array.from(sums, (value) => value * scale);
}
