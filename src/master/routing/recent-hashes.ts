// A bounded set of block hashes, least recently used out first: what one head tells the others a worker holds.

export class RecentHashes {
  /** In order of use, the least recent first (a Set keeps insertion order; a hash used again is moved to the end). */
  private readonly order = new Set<number>();

  constructor(readonly max: number) {}

  get size(): number {
    return this.order.size;
  }

  /** Makes `hash` the most recent, adding it (and forgetting the least recent beyond the bound); whether it was new. */
  touch(hash: number): boolean {
    const known = this.order.delete(hash);
    this.order.add(hash);
    if (known) return false;
    if (this.order.size > this.max) this.forgetOldest();
    return true;
  }

  has(hash: number): boolean {
    return this.order.has(hash);
  }

  /** The hashes, least recent first. */
  values(): IterableIterator<number> {
    return this.order.values();
  }

  private forgetOldest(): void {
    for (const oldest of this.order) {
      this.order.delete(oldest);
      return;
    }
  }
}
