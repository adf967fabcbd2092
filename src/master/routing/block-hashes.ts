// Hashes of a prompt's prefixes at fixed block boundaries: what heads tell each other of the prompts they routed
// (docs/routing.md, "Hints from other heads"), never the text. The hash of text[0, k·B) for every full block k comes
// from one pass over the text, since each prefix's hash is the running state where it ends.
//
// A hash is 53 bits (an exact JavaScript number, no BigInt) made of two 32-bit lanes, FNV-1a and a multiply-xorshift
// step over the UTF-16 code units, each finished with MurmurHash3's mixer. Taken as random 53-bit values, a lookup
// against N hashes finds a false match with odds of about N / 2^53: for 8 million hashes held (4,096 per worker,
// 1,000 workers, two other heads) about 1 in 10^9 per lookup, so once in tens of millions of decisions, and a false
// match costs one task routed to a worker that lacks the prefix. The hash is not cryptographic: a client that knows
// it could make prompts collide, with that same cost.

/** Characters per block. */
export const BLOCK_CHARS = 256;

const SEED_A = 0x811c9dc5;
const SEED_B = 0x9747b28c;

function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The hash of a prefix of `length` characters whose lanes ended at `a` and `b`. */
function finish(a: number, b: number, length: number): number {
  const high = mix(b ^ Math.imul(a, 0x9e3779b1) ^ length) >>> 11;
  const low = mix(a + Math.imul(b, 0x27d4eb2f));
  return high * 0x1_0000_0000 + low;
}

/**
 * The hash of `text[0, k·blockChars)` for each full block k (1, 2, …), written to `out[k − 1]`, up to the last full
 * block or to the first hash `more` turns down (not written), so that a caller pays only for the blocks it needs;
 * returns how many were written. `out` is the caller's, reused from call to call.
 */
export function blockHashes(text: string, blockChars: number, out: number[], more?: (hash: number) => boolean): number {
  let a = SEED_A;
  let b = SEED_B;
  let count = 0;
  for (let end = blockChars; end <= text.length; end += blockChars) {
    for (let i = end - blockChars; i < end; i++) {
      const c = text.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 15;
    }
    const hash = finish(a, b, end);
    if (more !== undefined && !more(hash)) break;
    out[count++] = hash;
  }
  return count;
}

/** The hash of the whole of `text`, block boundary or not (what blockHashes gives for each prefix it hashes). */
export function prefixHash(text: string): number {
  let a = SEED_A;
  let b = SEED_B;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  return finish(a, b, text.length);
}

/** A hash as heads write it: base 36, at most 11 characters. */
export function renderHash(hash: number): string {
  return hash.toString(36);
}

/** A hash as written by renderHash (exact: below 2^53), or undefined. */
export function parseHash(text: string): number | undefined {
  if (!/^[0-9a-z]{1,11}$/.test(text)) return undefined;
  const hash = Number.parseInt(text, 36);
  return hash <= Number.MAX_SAFE_INTEGER ? hash : undefined;
}
