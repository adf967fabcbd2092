// The simulator's prompt cache: what a real engine's KV cache does for routing, without a model. It remembers the
// token sequences of its recent conversations (prompt and reply), least recently used first out, within a budget of
// tokens; a new prompt's longest common prefix with one of them is what the engine would not evaluate again.
import type { ChatMessage } from "../../worker-protocol/index.js";

/** Splits text into the simulator's tokens: tags alone, words with their leading space. */
export function simulatorTokens(text: string): string[] {
  return text.match(/<\/?think>|\s*[^\s<]+|\s*</g) ?? [];
}

/** A message as the simulator's "template" renders it: a role token, its content's tokens, two closing tokens. */
export function messageTokens(message: Pick<ChatMessage, "role" | "content">): string[] {
  return [`<|${message.role}|>`, ...simulatorTokens(message.content), "<|end|>", "\n"];
}

/** The prompt's tokens: a raw prompt's own, or the rendered messages'. */
export function promptTokenList(messages: readonly ChatMessage[], raw: string | undefined): string[] {
  return raw !== undefined ? simulatorTokens(raw) : messages.flatMap(messageTokens);
}

export class SimulatedPromptCache {
  /** Cached sequences, least recently used first. */
  private readonly entries = new Set<readonly string[]>();
  private held = 0;

  constructor(private readonly capacityTokens: number) {}

  /**
   * How many leading tokens of `tokens` some cached sequence holds; that sequence becomes the most recently used
   * (unless `touch` is false: a look that uses nothing).
   */
  lookup(tokens: readonly string[], touch = true): number {
    let best = 0;
    let bestEntry: readonly string[] | undefined;
    for (const entry of this.entries) {
      const limit = Math.min(entry.length, tokens.length);
      let common = 0;
      while (common < limit && entry[common] === tokens[common]) common++;
      if (common > best) {
        best = common;
        bestEntry = entry;
      }
    }
    if (bestEntry && touch) {
      this.entries.delete(bestEntry);
      this.entries.add(bestEntry);
    }
    return best;
  }

  /** Remembers a finished conversation; a cached sequence it extends is replaced by it. */
  store(tokens: readonly string[]): void {
    if (tokens.length === 0 || tokens.length > this.capacityTokens) return;
    for (const entry of this.entries) {
      if (entry.length <= tokens.length && entry.every((token, i) => token === tokens[i])) {
        this.entries.delete(entry);
        this.held -= entry.length;
      }
    }
    this.entries.add(tokens);
    this.held += tokens.length;
    for (const oldest of this.entries) {
      if (this.held <= this.capacityTokens) break;
      this.entries.delete(oldest);
      this.held -= oldest.length;
    }
  }

  stats(): { sequences: number; tokens: number } {
    return { sequences: this.entries.size, tokens: this.held };
  }
}
