// A context's sequences shared by the tasks of one model: one sequence per running task, a queue beyond that.
import type { LlamaContext, LlamaContextSequence } from "node-llama-cpp";

/**
 * Hands out a context's sequences, one per running task, and queues tasks beyond that.
 * Each sequence is disposed after its task, which clears its cache and returns its slot to the context.
 */
export class SequencePool {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly context: LlamaContext,
    size: number,
  ) {
    this.free = size;
  }

  /** A free sequence; waits for one while all are taken, and gives up its place in line when `signal` aborts. */
  async acquire(signal: AbortSignal): Promise<LlamaContextSequence> {
    while (this.free === 0) await this.nextTurn(signal);
    if (signal.aborted) {
      if (this.free > 0) this.waiting.shift()?.(); // we may have been woken for this slot: pass it on
      throw signal.reason;
    }
    this.free--;
    try {
      return this.context.getSequence();
    } catch (error) {
      this.giveBack();
      throw error;
    }
  }

  async release(sequence: LlamaContextSequence): Promise<void> {
    try {
      await sequence.dispose();
    } finally {
      this.giveBack();
    }
  }

  private giveBack(): void {
    this.free++;
    this.waiting.shift()?.();
  }

  private nextTurn(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const index = this.waiting.indexOf(wake);
        if (index >= 0) this.waiting.splice(index, 1);
        reject(signal.reason);
      };
      const wake = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      this.waiting.push(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}
