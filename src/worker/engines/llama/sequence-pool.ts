// A context's sequences shared by the tasks of one model, kept warm between tasks as a prompt cache: one sequence per
// running task, a queue beyond that, and each task given the free sequence that already holds most of its prompt.
import type { LlamaContext, LlamaContextSequence, Token } from "node-llama-cpp";
import { chooseSequence } from "./sequence-choice.js";

export interface SequencePoolOptions {
  /** Keep each sequence's evaluated tokens after its task, for the next prompts that start the same way. */
  promptCache: boolean;
}

interface Slot {
  /** Made on first use; undefined again once discarded. */
  sequence?: LlamaContextSequence;
  busy: boolean;
  /** When a task last took it (a counter: higher is more recent). */
  usedAt: number;
  /** The length of the prompt of the task that last took it. */
  prompt: number;
}

/** What a model's sequences hold now: those holding tokens, free or busy, and their tokens. */
export interface PoolStats {
  sequences: number;
  tokens: number;
}

/**
 * Hands out a context's sequences, one per running task, and queues tasks beyond that. With the prompt cache, a
 * sequence keeps what it evaluated after its task (node-llama-cpp's `contextTokens` say what that is) and the next
 * task takes the free sequence that serves its prompt best (see sequence-choice.ts); without it, each sequence is
 * disposed after its task, which clears it and returns its slot to the context.
 */
export class SequencePool {
  private readonly slots: Slot[];
  private readonly waiting: Array<() => void> = [];
  private clock = 0;

  constructor(
    private readonly context: LlamaContext,
    size: number,
    private readonly options: SequencePoolOptions,
  ) {
    this.slots = Array.from({ length: size }, () => ({ busy: false, usedAt: 0, prompt: 0 }));
  }

  /**
   * The free sequence best placed to evaluate `tokens` (the task then keeps from it only the prefix it shares with
   * them); waits for one while all are taken, and gives up its place in line when `signal` aborts.
   */
  async acquire(tokens: Token[], signal: AbortSignal): Promise<LlamaContextSequence> {
    while (!this.slots.some((slot) => !slot.busy)) await this.nextTurn(signal);
    if (signal.aborted) {
      this.waiting.shift()?.(); // we may have been woken for this slot: pass it on
      throw signal.reason;
    }
    const slot = this.choose(tokens);
    slot.busy = true;
    slot.usedAt = ++this.clock;
    slot.prompt = tokens.length;
    try {
      if (!slot.sequence || slot.sequence.disposed) slot.sequence = this.context.getSequence();
      return slot.sequence;
    } catch (error) {
      this.giveBack(slot);
      throw error;
    }
  }

  /**
   * Returns a task's sequence. `intact`: its task ended without an error, so what node-llama-cpp says the sequence
   * holds is what it holds, and it may serve later prompts. Otherwise (an evaluation failed midway and may have
   * written cells it does not account for) or without the prompt cache, the sequence is disposed.
   */
  async release(sequence: LlamaContextSequence, intact: boolean): Promise<void> {
    const slot = this.slots.find((candidate) => candidate.sequence === sequence);
    if (!slot) throw new Error("this sequence is not one of the pool's");
    try {
      if (!intact || !this.options.promptCache) {
        slot.sequence = undefined;
        await sequence.dispose();
      }
    } finally {
      this.giveBack(slot);
    }
  }

  /** Cheap enough for every heartbeat: no token is read or copied. */
  stats(): PoolStats {
    let sequences = 0;
    let tokens = 0;
    for (const { sequence } of this.slots) {
      const held = sequence && !sequence.disposed ? sequence.nextTokenIndex : 0;
      if (held === 0) continue;
      sequences++;
      tokens += held;
    }
    return { sequences, tokens };
  }

  private choose(tokens: Token[]): Slot {
    const free = this.slots.filter((slot) => !slot.busy);
    const candidates = free.map(({ sequence, usedAt, prompt }) => {
      const live = sequence && !sequence.disposed ? sequence : undefined;
      return {
        held: live?.nextTokenIndex ?? 0,
        // compareContextTokens walks the shared prefix only, and copies nothing.
        shared: live ? live.compareContextTokens(tokens).firstDifferentIndex : 0,
        prompt,
        usedAt,
      };
    });
    const chosen = free[chooseSequence(candidates)];
    if (!chosen) throw new Error("no free sequence to choose from");
    return chosen;
  }

  private giveBack(slot: Slot): void {
    slot.busy = false;
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

/**
 * Trims `sequence` to the longest prefix it shares with `tokens` minus the last one (which must be evaluated anew:
 * its logits give the first output token), and says how many tokens it kept: the prompt tokens not evaluated again.
 * Without shifting (`allowShift` false): a token kept stays at the position it was evaluated at, with the context it
 * saw, so the output is the same as from a fresh sequence. On models that cannot erase the end of their state
 * (recurrent, hybrid, sliding-window attention) node-llama-cpp goes back to its latest checkpoint at or before the
 * shared prefix, or clears the sequence: `nextTokenIndex` then says what is really kept.
 */
export async function keepSharedPrefix(sequence: LlamaContextSequence, tokens: Token[]): Promise<number> {
  await sequence.adaptStateToTokens(tokens.slice(0, -1), false);
  return sequence.nextTokenIndex;
}
