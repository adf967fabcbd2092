// Scheduling decisions: which worker takes a task, and the bounded FIFO queue per model for when none can.
import type { WorkerEntry } from "./registry.js";
import type { Task } from "./task.js";

/** Whether `a` should take the next task before `b`: a free slot first, then the lower load, then more free slots. */
export function preferred(a: WorkerEntry, b: WorkerEntry): boolean {
  if (a.hasCapacity !== b.hasCapacity) return a.hasCapacity;
  if (a.load !== b.load) return a.load < b.load;
  return a.capacity - a.busy > b.capacity - b.busy;
}

/** The least-loaded worker with a free slot, ties going to the one with the most free slots, or undefined (O(n)). */
export function pickWorker(candidates: Iterable<WorkerEntry> | undefined): WorkerEntry | undefined {
  let best: WorkerEntry | undefined;
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
export class WorkerHeap {
  private readonly heap: WorkerEntry[] = [];
  private readonly index = new Map<WorkerEntry, number>();

  get size(): number {
    return this.heap.length;
  }

  values(): IterableIterator<WorkerEntry> {
    return this.heap.values();
  }

  /** The best worker, if it has a free slot. */
  best(): WorkerEntry | undefined {
    const top = this.heap[0];
    return top?.hasCapacity ? top : undefined;
  }

  add(worker: WorkerEntry): void {
    if (this.index.has(worker)) return;
    this.heap.push(worker);
    this.index.set(worker, this.heap.length - 1);
    this.up(this.heap.length - 1);
  }

  remove(worker: WorkerEntry): void {
    const at = this.index.get(worker);
    if (at === undefined) return;
    const last = this.heap.pop() as WorkerEntry;
    this.index.delete(worker);
    if (at === this.heap.length) return;
    this.heap[at] = last;
    this.index.set(last, at);
    this.update(last);
  }

  /** Re-orders `worker` after its load or state changed. */
  update(worker: WorkerEntry): void {
    const at = this.index.get(worker);
    if (at === undefined) return;
    this.down(this.up(at));
  }

  private up(at: number): number {
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (!preferred(this.heap[at] as WorkerEntry, this.heap[parent] as WorkerEntry)) break;
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
      if (left < this.heap.length && preferred(this.heap[left] as WorkerEntry, this.heap[best] as WorkerEntry)) best = left;
      if (right < this.heap.length && preferred(this.heap[right] as WorkerEntry, this.heap[best] as WorkerEntry)) best = right;
      if (best === at) return;
      this.swap(at, best);
      at = best;
    }
  }

  private swap(i: number, j: number): void {
    const a = this.heap[i] as WorkerEntry;
    const b = this.heap[j] as WorkerEntry;
    this.heap[i] = b;
    this.heap[j] = a;
    this.index.set(b, i);
    this.index.set(a, j);
  }
}

/** FIFO queues of waiting tasks, one per model; removal of any task (a cancelled one) is O(1). */
export class ModelQueues {
  private readonly queues = new Map<string, Map<string, Task>>();

  constructor(private readonly maxLength: number) {}

  /** False when the model's queue is full. */
  offer(task: Task): boolean {
    let queue = this.queues.get(task.model);
    if (!queue) {
      queue = new Map();
      this.queues.set(task.model, queue);
    }
    if (queue.size >= this.maxLength) return false;
    queue.set(task.id, task);
    return true;
  }

  /** Puts a task ahead of all others of its model, whatever the bound (it was admitted before). */
  offerFront(task: Task): void {
    const queue = this.queues.get(task.model);
    this.queues.set(task.model, new Map([[task.id, task], ...(queue ?? [])]));
  }

  isFull(model: string): boolean {
    return (this.queues.get(model)?.size ?? 0) >= this.maxLength;
  }

  peek(model: string): Task | undefined {
    const queue = this.queues.get(model);
    if (!queue) return undefined;
    return queue.values().next().value;
  }

  remove(task: Task): boolean {
    const queue = this.queues.get(task.model);
    if (!queue) return false;
    const removed = queue.delete(task.id);
    if (queue.size === 0) this.queues.delete(task.model);
    return removed;
  }

  depth(model: string): number {
    return this.queues.get(model)?.size ?? 0;
  }

  depths(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [model, queue] of this.queues) out.set(model, queue.size);
    return out;
  }

  /** Every queued task, oldest first within each model. */
  *all(): IterableIterator<Task> {
    for (const queue of this.queues.values()) yield* queue.values();
  }
}
