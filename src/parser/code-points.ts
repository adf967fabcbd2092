// Keeps surrogate pairs whole across chunks, so that every piece of text a parser emits is well-formed UTF-16.

import type { OpenSection, ParseEvent, StreamParser } from "./types.js";

/**
 * Wraps a parser: a chunk that ends in the first half of a surrogate pair keeps that half back for the next chunk.
 * Emitted pieces then never split a character, which matters to clients that decode each delta on its own.
 */
export class WholeCodePoints implements StreamParser {
  private readonly inner: StreamParser;
  private held = "";

  constructor(inner: StreamParser) {
    this.inner = inner;
  }

  get unterminated(): OpenSection | undefined {
    return this.inner.unterminated;
  }

  feed(chunk: string): ParseEvent[] {
    let text = this.held.length === 0 ? chunk : this.held + chunk;
    this.held = "";
    const last = text.charCodeAt(text.length - 1);
    if (last >= 0xd800 && last <= 0xdbff) {
      this.held = text.slice(-1);
      text = text.slice(0, -1);
    }
    return text.length === 0 ? [] : this.inner.feed(text);
  }

  finish(): ParseEvent[] {
    const held = this.held;
    this.held = "";
    const out = held.length === 0 ? [] : this.inner.feed(held);
    return out.length === 0 ? this.inner.finish() : [...out, ...this.inner.finish()];
  }
}
