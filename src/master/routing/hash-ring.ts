// Consistent hashing: each worker owns many points ("virtual nodes") on a 32-bit ring and a key belongs to the owner
// of the first point at or after its hash, so a worker joining or leaving moves about 1/n of the keys, not most.

/** FNV-1a over UTF-16 code units, finished with MurmurHash3's mixer so that near-identical strings spread. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

interface Point {
  hash: number;
  owner: string;
}

// Equal hashes (rare) are ordered by owner, so the ring is the same whatever the order workers joined in.
const before = (hash: number, owner: string, other: Point) => hash < other.hash || (hash === other.hash && owner <= other.owner);
const byPoint = (a: Point, b: Point) => (a.hash === b.hash && a.owner === b.owner ? 0 : before(a.hash, a.owner, b) ? -1 : 1);

export class HashRing {
  private hashes = new Uint32Array(0);
  private owners: string[] = [];

  constructor(readonly virtualNodes: number) {}

  /** Points on the ring. */
  get size(): number {
    return this.owners.length;
  }

  /** Approximate bytes held: a 4-byte hash and an 8-byte owner reference per point. */
  get bytes(): number {
    return this.owners.length * 12;
  }

  /** Adds workers' points, merged into the sorted ring in O(points). */
  add(ids: readonly string[]): void {
    if (ids.length === 0) return;
    const incoming: Point[] = [];
    for (const owner of ids) {
      for (let v = 0; v < this.virtualNodes; v++) incoming.push({ hash: hash32(`${owner}\u0000${v}`), owner });
    }
    incoming.sort(byPoint);
    const total = this.owners.length + incoming.length;
    const hashes = new Uint32Array(total);
    const owners: string[] = new Array<string>(total);
    let i = 0;
    let j = 0;
    for (let k = 0; k < total; k++) {
      const next = incoming[j];
      if (i < this.owners.length && (next === undefined || before(this.hashes[i] as number, this.owners[i] as string, next))) {
        hashes[k] = this.hashes[i] as number;
        owners[k] = this.owners[i] as string;
        i++;
      } else {
        hashes[k] = (next as Point).hash;
        owners[k] = (next as Point).owner;
        j++;
      }
    }
    this.hashes = hashes;
    this.owners = owners;
  }

  /** Removes workers' points in O(points). */
  remove(ids: readonly string[]): void {
    if (ids.length === 0) return;
    const gone = new Set(ids);
    const hashes = new Uint32Array(this.owners.length);
    const owners: string[] = [];
    for (let i = 0; i < this.owners.length; i++) {
      const owner = this.owners[i] as string;
      if (gone.has(owner)) continue;
      hashes[owners.length] = this.hashes[i] as number;
      owners.push(owner);
    }
    this.hashes = hashes.slice(0, owners.length);
    this.owners = owners;
  }

  /** The worker owning `key`, or undefined on an empty ring. */
  lookup(key: string): string | undefined {
    const n = this.owners.length;
    if (n === 0) return undefined;
    const h = hash32(key);
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.hashes[mid] as number) < h) lo = mid + 1;
      else hi = mid;
    }
    return this.owners[lo === n ? 0 : lo];
  }
}
