// The prefix tree's edges, kept apart from its nodes: by node number, each node's label, and one hash table in a
// typed array from (node, first character) to child. A walk down the tree then reads that table, the labels and
// nothing else: node objects and maps lie scattered over a heap of hundreds of megabytes, where each one read cold
// costs a cache and a TLB miss (0.2–0.5 µs measured here; a walk made ten or more of them).

const EMPTY = -1;
/** Int32s per slot of the table: parent, code, child. */
const SLOT = 3;

export class Edges<N> {
  /** By node number: the node, and its label (the edge from its parent). */
  readonly nodes: (N | undefined)[] = [];
  readonly labels: string[] = [];
  private childCount = new Int32Array(64);
  /** Open addressing with linear probing; a slot whose parent is EMPTY is free. Kept at most half full. */
  private table = new Int32Array(64 * SLOT).fill(EMPTY);
  private mask = 63;
  private edges = 0;
  private readonly free: number[] = [];
  private used = 0;

  /** A number for a new node with no parent and no children yet (its caller puts the node in `nodes`). */
  add(label: string): number {
    const id = this.free.pop() ?? this.used++;
    if (id >= this.childCount.length) {
      const counts = new Int32Array(this.childCount.length * 2);
      counts.set(this.childCount);
      this.childCount = counts;
    }
    this.labels[id] = label;
    this.childCount[id] = 0;
    return id;
  }

  /** Forgets a node that has no parent and no children any more; its number is given to a later node. */
  remove(id: number): void {
    this.nodes[id] = undefined;
    this.labels[id] = "";
    this.free.push(id);
  }

  /** `id`'s child whose label starts with `code`, or -1. */
  child(id: number, code: number): number {
    const table = this.table;
    for (let slot = home(id, code) & this.mask; ; slot = (slot + 1) & this.mask) {
      const at = slot * SLOT;
      const parent = table[at] as number;
      if (parent === EMPTY) return EMPTY;
      if (parent === id && table[at + 1] === code) return table[at + 2] as number;
    }
  }

  isLeaf(id: number): boolean {
    return this.childCount[id] === 0;
  }

  /** A new label for `id`: one with the same first character, or for a node with no parent. */
  relabel(id: number, label: string): void {
    this.labels[id] = label;
  }

  /** Makes `child` (with no parent) a child of `parent`, which has none starting with the same character. */
  attach(parent: number, child: number): void {
    if ((this.edges + 1) * 2 > this.mask + 1) this.resize((this.mask + 1) * 2);
    this.put(parent, (this.labels[child] as string).charCodeAt(0), child);
    this.edges++;
    this.childCount[parent] = (this.childCount[parent] as number) + 1;
  }

  /** Takes `child` from `parent`'s children. */
  detach(parent: number, child: number): void {
    const table = this.table;
    const code = (this.labels[child] as string).charCodeAt(0);
    let slot = home(parent, code) & this.mask;
    while (!(table[slot * SLOT] === parent && table[slot * SLOT + 1] === code)) {
      // (a run ends at a free slot: an edge not there is a bug in the tree, better thrown than looped on)
      if (table[slot * SLOT] === EMPTY) throw new Error(`no edge from node ${parent} by character ${code}`);
      slot = (slot + 1) & this.mask;
    }
    // Backward shift: a later slot of the same run moves into the hole unless its home lies after the hole.
    for (let next = (slot + 1) & this.mask; table[next * SLOT] !== EMPTY; next = (next + 1) & this.mask) {
      const at = next * SLOT;
      const from = home(table[at] as number, table[at + 1] as number) & this.mask;
      if (((next - from) & this.mask) >= ((next - slot) & this.mask)) {
        table.copyWithin(slot * SLOT, at, at + SLOT);
        slot = next;
      }
    }
    table[slot * SLOT] = EMPTY;
    this.edges--;
    this.childCount[parent] = (this.childCount[parent] as number) - 1;
  }

  private put(parent: number, code: number, child: number): void {
    const table = this.table;
    let slot = home(parent, code) & this.mask;
    while (table[slot * SLOT] !== EMPTY) slot = (slot + 1) & this.mask;
    table[slot * SLOT] = parent;
    table[slot * SLOT + 1] = code;
    table[slot * SLOT + 2] = child;
  }

  private resize(slots: number): void {
    const old = this.table;
    this.table = new Int32Array(slots * SLOT).fill(EMPTY);
    this.mask = slots - 1;
    for (let at = 0; at < old.length; at += SLOT) {
      if (old[at] !== EMPTY) this.put(old[at] as number, old[at + 1] as number, old[at + 2] as number);
    }
  }
}

/** Where (parent, code) is looked for first, before the mask. */
function home(parent: number, code: number): number {
  let h = Math.imul(parent, 0x9e3779b1) ^ code;
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  return h ^ (h >>> 13);
}
