// The bounded FIFO queue of waiting tasks per model. Which worker takes a task is a routing policy's choice
// (routing/), among the workers the registry indexes by model (worker-heap.ts).
import type { Task } from "./task.js";

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

  /** Tasks queued, over every model. */
  get size(): number {
    let total = 0;
    for (const queue of this.queues.values()) total += queue.size;
    return total;
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
