// Workers' holds on the prefix tree's nodes, each kept in two recency lists without allocating list cells: the
// tree's list of every hold (for its memory bound) and its worker's own (for a worker's cache size, and to forget a
// worker that leaves without walking the tree).

type Link = "older" | "newer" | "olderOwn" | "newerOwn";

/** A worker's belief that it holds a node's whole prefix. */
export class Hold<N> {
  /** Prompts inserted for this worker that ended in this node (a conversation's turns, when it was extended). */
  prompts = 0;
  older: Hold<N> | undefined;
  newer: Hold<N> | undefined;
  olderOwn: Hold<N> | undefined;
  newerOwn: Hold<N> | undefined;

  constructor(
    readonly node: N,
    readonly tenant: Tenant<N>,
  ) {}
}

/** A doubly linked list of holds, least recently used first, threaded through the holds' own fields. */
export class HoldList<N> {
  oldest: Hold<N> | undefined;
  newest: Hold<N> | undefined;
  private readonly olderKey: Link;
  private readonly newerKey: Link;

  /** `own`: a worker's list of its holds, rather than the list of everyone's. */
  constructor(own: boolean) {
    this.olderKey = own ? "olderOwn" : "older";
    this.newerKey = own ? "newerOwn" : "newer";
  }

  append(hold: Hold<N>): void {
    hold[this.olderKey] = this.newest;
    hold[this.newerKey] = undefined;
    if (this.newest) this.newest[this.newerKey] = hold;
    else this.oldest = hold;
    this.newest = hold;
  }

  insertAfter(hold: Hold<N>, after: Hold<N>): void {
    const next = after[this.newerKey];
    hold[this.olderKey] = after;
    hold[this.newerKey] = next;
    after[this.newerKey] = hold;
    if (next) next[this.olderKey] = hold;
    else this.newest = hold;
  }

  remove(hold: Hold<N>): void {
    const older = hold[this.olderKey];
    const newer = hold[this.newerKey];
    if (older) older[this.newerKey] = newer;
    else this.oldest = newer;
    if (newer) newer[this.olderKey] = older;
    else this.newest = older;
    hold[this.olderKey] = undefined;
    hold[this.newerKey] = undefined;
  }
}

/** One worker as the tree knows it: its holds, least recently used first, and the characters they cover. */
export class Tenant<N> {
  readonly own = new HoldList<N>(true);
  chars = 0;

  constructor(readonly id: string) {}

  /** A new hold of this worker's on `node`: its newest, or just after `after` in its list. */
  add(node: N, after: Hold<N> | undefined): Hold<N> {
    const hold = new Hold(node, this);
    if (after) this.own.insertAfter(hold, after);
    else this.own.append(hold);
    return hold;
  }
}
