// Consistent hashing: each worker owns many points ("virtual nodes") on a 32-bit ring and a key belongs to the owner
// of the first point at or after its hash, so a worker joining or leaving moves about 1/n of the keys, not most.

/** FNV-1a over UTF-16 code units, finished with MurmurHash3's mixer so that near-identical strings spread. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return mix32(h);
}

/** MurmurHash3's 32-bit finaliser. */
function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The hash of a worker's `v`th point: its id's hash stepped by the golden ratio and mixed again. */
function pointHash(idHash: number, v: number): number {
  return mix32(idHash ^ Math.imul(v + 1, 0x9e3779b9));
}

// A point is one number, hash × SLOTS + its owner's slot (exact in a double: 32 + 21 bits), so that the ring is a
// Float64Array sorted natively, merged and filtered without objects. Equal hashes (about one pair in 100,000 points)
// are ordered by slot.
const SLOTS = 2 ** 21;

export class HashRing {
  private points: Float64Array = new Float64Array(0);
  private readonly owners: Array<string | undefined> = [];
  private readonly slots = new Map<string, number>();
  private readonly freeSlots: number[] = [];

  constructor(readonly virtualNodes: number) {}

  /** Points on the ring. */
  get size(): number {
    return this.points.length;
  }

  /** Approximate bytes held: 8 per point, and a slot per worker. */
  get bytes(): number {
    return this.points.length * 8 + this.slots.size * 64;
  }

  /** Adds workers' points: O(new points × log) to sort them, O(points) to merge them in. */
  add(ids: readonly string[]): void {
    const incoming = new Float64Array(ids.length * this.virtualNodes);
    let count = 0;
    for (const id of ids) {
      if (this.slots.has(id)) continue;
      const slot = this.freeSlots.pop() ?? this.owners.length;
      if (slot >= SLOTS) throw new RangeError(`a hash ring holds at most ${SLOTS} workers`);
      this.owners[slot] = id;
      this.slots.set(id, slot);
      const idHash = hash32(id);
      for (let v = 0; v < this.virtualNodes; v++) incoming[count++] = pointHash(idHash, v) * SLOTS + slot;
    }
    if (count > 0) this.points = merge(this.points, incoming.slice(0, count).sort());
  }

  /** Removes workers' points in O(points). */
  remove(ids: readonly string[]): void {
    const gone = new Uint8Array(this.owners.length);
    let any = false;
    for (const id of ids) {
      const slot = this.slots.get(id);
      if (slot === undefined) continue;
      gone[slot] = 1;
      any = true;
      this.slots.delete(id);
      this.owners[slot] = undefined;
      this.freeSlots.push(slot);
    }
    if (!any) return;
    const kept = new Float64Array(this.points.length);
    let count = 0;
    for (const point of this.points) if (gone[point % SLOTS] === 0) kept[count++] = point;
    this.points = kept.slice(0, count);
  }

  /** The worker owning `key`, or undefined on an empty ring. */
  lookup(key: string): string | undefined {
    const points = this.points;
    if (points.length === 0) return undefined;
    const start = hash32(key) * SLOTS;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((points[mid] as number) < start) lo = mid + 1;
      else hi = mid;
    }
    return this.owners[(points[lo === points.length ? 0 : lo] as number) % SLOTS];
  }
}

function merge(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = (a[i] as number) <= (b[j] as number) ? (a[i++] as number) : (b[j++] as number);
  while (i < a.length) out[k++] = a[i++] as number;
  while (j < b.length) out[k++] = b[j++] as number;
  return out;
}
