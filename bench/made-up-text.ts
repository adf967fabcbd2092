// Made-up text for benchmarks, from a seeded random source: the same seed gives the same words on every run.

/** A seeded uniform source in [0, 1). */
export function seeded(seed: number): () => number {
  let state = (seed * 2654435761) >>> 0 || 1;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const vocabulary = (() => {
  const random = seeded(7);
  const letters = "etaoinshrdlucmfwypvbgkjqxz";
  return Array.from({ length: 4_000 }, () => {
    let word = "";
    const length = 2 + Math.floor(random() * 8);
    for (let i = 0; i < length; i++) word += letters[Math.floor(random() ** 1.5 * letters.length)];
    return word;
  });
})();

function word(random: () => number): string {
  return vocabulary[Math.floor(random() * vocabulary.length)] as string;
}

/** Words separated by spaces, between `min` and `max` characters long (about). */
export function words(random: () => number, min: number, max: number): string {
  const length = min + Math.floor(random() * (max - min));
  const out: string[] = [];
  let size = 0;
  while (size < length) {
    const next = word(random);
    out.push(next);
    size += next.length + 1;
  }
  return out.join(" ");
}

/** `count` words separated by spaces: `count` tokens to the simulator (a word and its leading space are one). */
export function wordCount(random: () => number, count: number): string {
  return Array.from({ length: count }, () => word(random)).join(" ");
}
