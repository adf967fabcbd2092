// The workers serving one model, indexed by load: a binary heap gives the least-loaded worker with a free slot in
// O(1) (what the least-loaded policy picks, and what every policy falls back to), and a map finds one by id.
import type { Candidates } from "./routing/policy.js";

/** What the heap orders workers by. The registry's WorkerEntry is one. */
export interface HeapWorker {
  readonly id: string;
  readonly name: string;
  readonly load: number;
  readonly hasCapacity: boolean;
  readonly capacity: number;
  readonly busy: number;
}

/** Whether `a` should take the next task before `b`: a free slot first, then the lower load, then more free slots. */
export function preferred(a: HeapWorker, b: HeapWorker): boolean {
  if (a.hasCapacity !== b.hasCapacity) return a.hasCapacity;
  if (a.load !== b.load) return a.load < b.load;
  return a.capacity - a.busy > b.capacity - b.busy;
}

/** The least-loaded worker with a free slot, ties going to the one with the most free slots, or undefined (O(n)). */
export function pickWorker<W extends HeapWorker>(candidates: Iterable<W> | undefined): W | undefined {
  let best: W | undefined;
  if (!candidates) return undefined;
  for (const worker of candidates) {
    if (worker.hasCapacity && (!best || preferred(worker, best))) best = worker;
  }
  return best;
}

/**
 * The workers serving one model in a binary heap ordered by `preferred`: the best is found in O(1), and a worker
 * whose slots or state changed is put back in order in O(log n). Gives the same choice as pickWorker.
 */
export class WorkerHeap<W extends HeapWorker> {
  private readonly heap: W[] = [];
  private readonly index = new Map<W, number>();

  get size(): number {
    return this.heap.length;
  }

  values(): IterableIterator<W> {
    return this.heap.values();
  }

  /** The best worker, if it has a free slot. */
  best(): W | undefined {
    const top = this.heap[0];
    return top?.hasCapacity ? top : undefined;
  }

  add(worker: W): void {
    if (this.index.has(worker)) return;
    this.heap.push(worker);
    this.index.set(worker, this.heap.length - 1);
    this.up(this.heap.length - 1);
  }

  remove(worker: W): void {
    const at = this.index.get(worker);
    if (at === undefined) return;
    const last = this.heap.pop() as W;
    this.index.delete(worker);
    if (at === this.heap.length) return;
    this.heap[at] = last;
    this.index.set(last, at);
    this.update(last);
  }

  /** Re-orders `worker` after its load or state changed. */
  update(worker: W): void {
    const at = this.index.get(worker);
    if (at === undefined) return;
    this.down(this.up(at));
  }

  private up(at: number): number {
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (!preferred(this.heap[at] as W, this.heap[parent] as W)) break;
      this.swap(at, parent);
      at = parent;
    }
    return at;
  }

  private down(at: number): void {
    for (;;) {
      const left = 2 * at + 1;
      const right = left + 1;
      let best = at;
      if (left < this.heap.length && preferred(this.heap[left] as W, this.heap[best] as W)) best = left;
      if (right < this.heap.length && preferred(this.heap[right] as W, this.heap[best] as W)) best = right;
      if (best === at) return;
      this.swap(at, best);
      at = best;
    }
  }

  private swap(i: number, j: number): void {
    const a = this.heap[i] as W;
    const b = this.heap[j] as W;
    this.heap[i] = b;
    this.heap[j] = a;
    this.index.set(b, i);
    this.index.set(a, j);
  }
}

/** The workers serving one model: the heap by load, and by id (a policy's Candidates). */
export class ModelWorkers<W extends HeapWorker> implements Candidates<W> {
  private readonly heap = new WorkerHeap<W>();
  private readonly byId = new Map<string, W>();

  get size(): number {
    return this.byId.size;
  }

  add(worker: W): void {
    this.byId.set(worker.id, worker);
    this.heap.add(worker);
  }

  remove(worker: W): void {
    if (this.byId.get(worker.id) !== worker) return;
    this.byId.delete(worker.id);
    this.heap.remove(worker);
  }

  /** Re-orders `worker` after its load or state changed. */
  update(worker: W): void {
    this.heap.update(worker);
  }

  leastLoaded(): W | undefined {
    return this.heap.best();
  }

  all(): IterableIterator<W> {
    return this.byId.values();
  }

  get(workerId: string): W | undefined {
    return this.byId.get(workerId);
  }
}
