// Splits reasoning wrapped in a pair of tags (`<think>…</think>` and its cousins) from the answer, chunk-safely.

import { PlainContent, type ContentStage } from "./content-stage.js";
import { appendText } from "./events.js";
import { TagFinder } from "./tag-finder.js";
import type { OpenSection, ParseEvent, ParserOptions, StreamParser } from "./types.js";

export interface ReasoningTags {
  open: string;
  close: string;
}

export const THINK_TAGS: ReasoningTags = { open: "<think>", close: "</think>" };

export interface ThinkTagParserOptions extends ParserOptions {
  tags?: ReasoningTags;
  /** The chat template already opened the reasoning block: output begins inside it and only the close tag appears. */
  startsInReasoning?: boolean;
  /** Where answer text goes (e.g. a tool-call scanner); plain content by default. */
  content?: ContentStage;
}

// start: only whitespace so far, an open tag may still come and swallow it.
// before: answer text seen, no reasoning yet; an open tag starts reasoning, a stray close tag ends the search.
// inside: reasoning until the close tag.  closed: just after it, where whitespace only separates (and is dropped).
// after: the reasoning is over, everything goes to the content stage.
type Phase = "start" | "before" | "inside" | "closed" | "after";

/**
 * One reasoning section per reply: text before the open tag is content, text up to the close tag is reasoning,
 * and after it nothing is markup any more (a literal `<think>` in the answer stays content).
 */
export class ThinkTagParser implements StreamParser {
  private readonly tags: ReasoningTags;
  private readonly startsInReasoning: boolean;
  private readonly content: ContentStage;
  private readonly options: ParserOptions;
  private readonly openOrClose: TagFinder;
  private readonly closeOnly: TagFinder;
  private phase: Phase = "start";
  private held = "";
  /** Whitespace before anything else: dropped if the open tag follows. */
  private leading = "";
  private ended: OpenSection | undefined;

  constructor(options: ThinkTagParserOptions = {}) {
    this.tags = options.tags ?? THINK_TAGS;
    this.startsInReasoning = options.startsInReasoning ?? false;
    this.content = options.content ?? new PlainContent();
    this.options = options;
    this.openOrClose = TagFinder.of([this.tags.open, this.tags.close]);
    this.closeOnly = TagFinder.of([this.tags.close]);
  }

  get unterminated(): OpenSection | undefined {
    return this.ended;
  }

  feed(chunk: string): ParseEvent[] {
    const out: ParseEvent[] = [];
    const text = this.held.length === 0 ? chunk : this.held + chunk;
    this.held = "";
    let pos = 0;
    while (pos < text.length) {
      const next = this.step(text, pos, out);
      if (next === undefined) break;
      pos = next;
    }
    return out;
  }

  finish(): ParseEvent[] {
    const out: ParseEvent[] = [];
    const held = this.leading + this.held;
    this.leading = "";
    this.held = "";
    const inReasoning = this.phase === "inside" || (this.phase === "start" && this.startsInReasoning);
    if (inReasoning) {
      appendText(out, "reasoning", held);
      this.ended = "reasoning";
    } else {
      this.content.push(held, out);
    }
    this.content.end(out);
    this.ended ??= this.content.unterminated;
    return out;
  }

  /** Consumes text from `pos` in the current phase; returns where to continue, or undefined when the rest is held. */
  private step(text: string, pos: number, out: ParseEvent[]): number | undefined {
    switch (this.phase) {
      case "start":
        return this.stepStart(text, pos, out);
      case "before":
        return this.stepBefore(text, pos, out);
      case "inside":
        return this.stepInside(text, pos, out);
      case "closed": {
        let i = pos;
        while (i < text.length && isWhitespace(text.charCodeAt(i))) i++;
        if (i < text.length) this.phase = "after";
        return i;
      }
      case "after":
        this.content.push(pos === 0 ? text : text.slice(pos), out);
        return text.length;
    }
  }

  private stepStart(text: string, pos: number, out: ParseEvent[]): number | undefined {
    let i = pos;
    while (i < text.length && isWhitespace(text.charCodeAt(i))) i++;
    this.leading += text.slice(pos, i);
    if (i === text.length) return undefined;
    const open = this.tags.open;
    if (text.startsWith(open, i)) {
      this.leading = "";
      this.phase = "inside";
      return i + open.length;
    }
    const rest = text.length - i;
    if (rest < open.length && text.startsWith(open.slice(0, rest), i)) {
      this.held = text.slice(i);
      return undefined;
    }
    // Not an open tag: the whitespace belongs to whatever comes next.
    const leading = this.leading;
    this.leading = "";
    if (this.startsInReasoning) {
      this.phase = "inside";
      appendText(out, "reasoning", leading);
    } else {
      this.phase = "before";
      this.content.push(leading, out);
    }
    return i;
  }

  private stepBefore(text: string, pos: number, out: ParseEvent[]): number | undefined {
    const match = this.openOrClose.find(text, pos);
    if (match === undefined) return this.holdTail(text, pos, this.openOrClose, "content", out);
    this.content.push(text.slice(pos, match.index), out);
    if (this.content.toolCallsBegun) {
      // Reasoning comes before tool calls, so from here on the tags are text (e.g. inside a call's arguments).
      this.phase = "after";
      return match.index;
    }
    if (match.tag === this.tags.open) {
      this.phase = "inside";
    } else {
      this.phase = "closed";
      this.options.onWarning?.({
        code: "unopened_reasoning_close",
        message: `${this.tags.close} without ${this.tags.open}: the chat template probably opens the reasoning block; use the prefilled format for this model`,
        excerpt: text.slice(Math.max(0, match.index - 200), match.index),
      });
    }
    return match.index + match.tag.length;
  }

  private stepInside(text: string, pos: number, out: ParseEvent[]): number | undefined {
    const match = this.closeOnly.find(text, pos);
    if (match === undefined) return this.holdTail(text, pos, this.closeOnly, "reasoning", out);
    appendText(out, "reasoning", text.slice(pos, match.index));
    this.phase = "closed";
    return match.index + match.tag.length;
  }

  /** Emits text from `pos` except a possible partial tag at the end, which waits for the next chunk. */
  private holdTail(text: string, pos: number, finder: TagFinder, kind: "content" | "reasoning", out: ParseEvent[]): undefined {
    const keep = finder.holdBack(text, pos);
    const emit = text.slice(pos, text.length - keep);
    if (kind === "reasoning") appendText(out, "reasoning", emit);
    else this.content.push(emit, out);
    this.held = keep === 0 ? "" : text.slice(text.length - keep);
    return undefined;
  }
}

function isWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}
