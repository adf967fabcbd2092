// The prefix tree's edges, kept apart from its nodes: by node number, each node's label and its links to its parent's
// other children, in typed arrays and two plain arrays. A walk down the tree then reads its few hot arrays and the
// labels, and no node object or map: those lie scattered over a heap of hundreds of megabytes, where each one read
// cold costs a cache and a TLB miss (about 0.2 µs measured here; a walk made ten or more of them).

/** Nodes with more children than this also have a map of them by first character (a list is scanned below it). */
const MAP_ABOVE = 16;
const NONE = -1;

export class Edges<N> {
  /** By node number: the node, and its label (the edge from its parent). */
  readonly nodes: (N | undefined)[] = [];
  readonly labels: string[] = [];
  private firstChild = new Int32Array(64).fill(NONE);
  private nextSibling = new Int32Array(64).fill(NONE);
  private previousSibling = new Int32Array(64).fill(NONE);
  private childCount = new Int32Array(64);
  /** Its label's first character. */
  private code = new Uint16Array(64);
  /** The children by first character of the nodes with more than MAP_ABOVE of them. */
  private readonly maps = new Map<number, Map<number, number>>();
  private readonly free: number[] = [];
  private used = 0;

  /** A number for a new node with no parent and no children yet (its caller puts the node in `nodes`). */
  add(label: string): number {
    const id = this.free.pop() ?? this.used++;
    if (id >= this.code.length) this.grow();
    this.labels[id] = label;
    this.code[id] = label.charCodeAt(0);
    this.firstChild[id] = NONE;
    this.nextSibling[id] = NONE;
    this.previousSibling[id] = NONE;
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
    if (this.childCount[id] as number > MAP_ABOVE) return (this.maps.get(id) as Map<number, number>).get(code) ?? NONE;
    let child = this.firstChild[id] as number;
    while (child !== NONE && this.code[child] !== code) child = this.nextSibling[child] as number;
    return child;
  }

  isLeaf(id: number): boolean {
    return this.firstChild[id] === NONE;
  }

  /** A new label for `id`: one with the same first character, or for a node with no parent. */
  relabel(id: number, label: string): void {
    this.labels[id] = label;
    this.code[id] = label.charCodeAt(0);
  }

  /** Makes `child` (with no parent) a child of `parent`, which has none starting with the same character. */
  attach(parent: number, child: number): void {
    const first = this.firstChild[parent] as number;
    this.nextSibling[child] = first;
    this.previousSibling[child] = NONE;
    if (first !== NONE) this.previousSibling[first] = child;
    this.firstChild[parent] = child;
    const count = (this.childCount[parent] as number) + 1;
    this.childCount[parent] = count;
    const map = this.maps.get(parent);
    if (map) map.set(this.code[child] as number, child);
    else if (count > MAP_ABOVE) this.maps.set(parent, this.mapOf(parent));
  }

  /** Takes `child` from `parent`'s children. */
  detach(parent: number, child: number): void {
    const previous = this.previousSibling[child] as number;
    const next = this.nextSibling[child] as number;
    if (previous === NONE) this.firstChild[parent] = next;
    else this.nextSibling[previous] = next;
    if (next !== NONE) this.previousSibling[next] = previous;
    this.nextSibling[child] = NONE;
    this.previousSibling[child] = NONE;
    const count = (this.childCount[parent] as number) - 1;
    this.childCount[parent] = count;
    const map = this.maps.get(parent);
    if (map && count > MAP_ABOVE) map.delete(this.code[child] as number);
    else if (map) this.maps.delete(parent);
  }

  private mapOf(parent: number): Map<number, number> {
    const map = new Map<number, number>();
    for (let child = this.firstChild[parent] as number; child !== NONE; child = this.nextSibling[child] as number) {
      map.set(this.code[child] as number, child);
    }
    return map;
  }

  private grow(): void {
    const size = this.code.length * 2;
    const widen = (old: Int32Array, fill: number) => {
      const array = new Int32Array(size).fill(fill);
      array.set(old);
      return array;
    };
    this.firstChild = widen(this.firstChild, NONE);
    this.nextSibling = widen(this.nextSibling, NONE);
    this.previousSibling = widen(this.previousSibling, NONE);
    this.childCount = widen(this.childCount, 0);
    const code = new Uint16Array(size);
    code.set(this.code);
    this.code = code;
  }
}
