// Generated tokens as text, streamed: spaced as the model meant and never splitting a UTF-8 character.
import type { LlamaModel, Token } from "node-llama-cpp";

/** Tokens given to the detokenizer as context, so the first reply token is spaced as the model meant. */
export const DETOKENIZE_CONTEXT_TOKENS = 16;

/** Turns generated tokens into text incrementally, holding back bytes of a character that is not complete yet. */
export class TokenText {
  private pending: Token[] = [];
  private previous: Token[];

  constructor(
    private readonly model: LlamaModel,
    promptTokens: readonly Token[],
  ) {
    this.previous = promptTokens.slice(-DETOKENIZE_CONTEXT_TOKENS);
  }

  push(token: Token): string {
    this.pending.push(token);
    const text = this.model.detokenize(this.pending, true, this.previous);
    if (text.endsWith("\uFFFD") && this.pending.length < 4) return ""; // a UTF-8 sequence spans up to 4 byte tokens
    return this.take(text);
  }

  flush(): string {
    return this.pending.length === 0 ? "" : this.take(this.model.detokenize(this.pending, true, this.previous));
  }

  private take(text: string): string {
    this.previous = [...this.previous, ...this.pending].slice(-DETOKENIZE_CONTEXT_TOKENS);
    this.pending = [];
    return text;
  }
}
