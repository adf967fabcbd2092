// Each output token's log probability and the most likely alternatives, from node-llama-cpp's per-token metadata.
import type { LlamaModel, Token } from "node-llama-cpp";
import type { TokenLogprob } from "../../../worker-protocol/index.js";
import { DETOKENIZE_CONTEXT_TOKENS } from "./token-text.js";

/** What OpenAI reports for a token the sampler could not pick (a log of 0 would be -Infinity, which JSON lacks). */
const IMPOSSIBLE = -9999;

/** One sampled token as evaluateWithMetadata yields it (probabilities sorted from the most likely down). */
export interface SampledToken {
  token: Token;
  confidence?: number;
  probabilities?: Map<Token, number>;
}

/**
 * Turns sampled tokens into TokenLogprob entries. `text` is what the token added to the reply (a byte of a longer
 * UTF-8 character adds "" and its character goes with the token that completes it), so the entries' texts join
 * into the reply's text.
 */
export class LogprobRecorder {
  constructor(
    private readonly model: LlamaModel,
    private readonly top: number,
  ) {}

  entry(sampled: SampledToken, text: string, previous: readonly Token[]): TokenLogprob {
    const p = sampled.confidence ?? sampled.probabilities?.get(sampled.token) ?? 0;
    const entry: TokenLogprob = { token: text, logprob: logOf(p), bytes: utf8(text) };
    if (this.top > 0) entry.top = this.alternatives(sampled, previous.slice(-DETOKENIZE_CONTEXT_TOKENS));
    return entry;
  }

  private alternatives(sampled: SampledToken, context: readonly Token[]): NonNullable<TokenLogprob["top"]> {
    const top: NonNullable<TokenLogprob["top"]> = [];
    for (const [token, p] of sampled.probabilities ?? []) {
      if (top.length >= this.top) break;
      const text = this.model.detokenize([token], true, context);
      top.push({ token: text, logprob: logOf(p), bytes: utf8(text) });
    }
    return top;
  }
}

function logOf(p: number): number {
  return p > 0 ? Math.min(0, Math.max(IMPOSSIBLE, Math.log(p))) : IMPOSSIBLE;
}

function utf8(text: string): number[] {
  return [...Buffer.from(text, "utf8")];
}

/**
 * Logprob entries waiting for their text to be sent: the stop-string matcher may hold text back, and an entry goes
 * out with the chunk that completes its token's text (so a chunk's entries are the tokens of its text, in order).
 */
export class PendingLogprobs {
  private readonly entries: Array<{ start: number; end: number; entry: TokenLogprob }> = [];
  private produced = 0;

  add(entry: TokenLogprob): void {
    const start = this.produced;
    this.produced += entry.token.length;
    this.entries.push({ start, end: this.produced, entry });
  }

  /** The entries whose text lies within the first `sent` characters; with `cut`, also one the cut runs through. */
  take(sent: number, cut = false): TokenLogprob[] {
    let n = 0;
    while (n < this.entries.length) {
      const next = this.entries[n];
      if (!next || !(next.end <= sent || (cut && next.start < sent))) break;
      n++;
    }
    return this.entries.splice(0, n).map((pending) => pending.entry);
  }
}
