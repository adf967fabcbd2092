// One running task's output on the worker: tokens not yet sent, merged into TokenChunks, within the task's window.
import { chunkCost, type TokenChunk, type TokenLogprob, type WorkerMessage } from "../worker-protocol/index.js";

/**
 * Holds a task's text until it can go out: merged into one TokenChunk that counts as the separate chunks would
 * have, and sent only while the task's flow-control window has room (one chunk may overshoot it). The engine
 * is told to wait (`ready()`) once the text it produced would use up what the master granted.
 */
export class TaskOutput {
  private seq = 0;
  private text = "";
  private tokens = 0;
  /** Whether every merged piece said how many tokens it held (the master counts a chunk without a count as one). */
  private counted = true;
  private pieces = 0;
  /** The held pieces' token logprobs, concatenated in order (none when the task did not ask for them). */
  private logprobs: TokenLogprob[] = [];
  /** Their size on the wire (JSON), which can be many times their text's: a merged frame must stay small. */
  /** What the window allows to be sent now: the window, less what was sent, plus what the master granted back. */
  private credit: number;
  /** Bytes held, not sent yet (an upper bound of what they will cost). */
  private heldBytes = 0;
  private waiters: Array<() => void> = [];
  private sentWaiters: Array<() => void> = [];

  constructor(
    private readonly taskId: string,
    windowBytes: number,
    private readonly send: (message: WorkerMessage) => void,
  ) {
    this.credit = windowBytes;
  }

  add(text: string, tokens: number | undefined, logprobs?: readonly TokenLogprob[]): void {
    this.text += text;
    if (logprobs) for (const entry of logprobs) this.logprobs.push(entry);
    this.heldBytes += chunkCost(text, logprobs);
    this.tokens += tokens ?? 1;
    if (tokens === undefined) this.counted = false;
    this.pieces += 1;
  }

  /** Sends what is held as one TokenChunk, unless the window is used up (then it waits for a grant). */
  flush(): void {
    if (this.pieces === 0 || this.credit <= 0) return;
    const { taskId, seq, text, logprobs } = this;
    const bare = this.pieces === 1 && !this.counted;
    const chunk: TokenChunk = bare ? { type: "TokenChunk", taskId, seq, text } : { type: "TokenChunk", taskId, seq, text, tokens: this.tokens };
    if (logprobs.length > 0) chunk.logprobs = logprobs;
    this.send(chunk);
    this.credit -= chunkCost(text, logprobs);
    this.seq += 1;
    this.text = "";
    this.tokens = 0;
    this.counted = true;
    this.pieces = 0;
    this.logprobs = [];
    this.heldBytes = 0;
    for (const resolve of this.sentWaiters.splice(0)) resolve();
  }

  /** The master consumed `bytes`: send what waited for them, and let the engine go on if it may. */
  grant(bytes: number): void {
    this.credit += bytes;
    this.flush();
    if (!this.paused) for (const resolve of this.waiters.splice(0)) resolve();
  }

  /** Bytes held, not sent yet. */
  get held(): number {
    return this.heldBytes;
  }

  /** About how large the next TokenChunk would be: the held text and its logprobs (as chunkCost counts them). */
  get frameBytes(): number {
    return this.heldBytes;
  }

  /** Whether the engine should wait: what it produced uses up the window. */
  get paused(): boolean {
    return this.credit - this.heldBytes <= 0;
  }

  /** Undefined while the engine may go on; otherwise resolves when it may (a grant), or on `abort()`. */
  ready(): Promise<void> | undefined {
    if (!this.paused) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Resolves once nothing is held (all text sent), or on `abort()`. */
  sent(): Promise<void> {
    if (this.pieces === 0) return Promise.resolve();
    return new Promise((resolve) => this.sentWaiters.push(resolve));
  }

  /** Releases every waiting call for good: the task was aborted. */
  abort(): void {
    for (const resolve of [...this.waiters.splice(0), ...this.sentWaiters.splice(0)]) resolve();
  }
}
