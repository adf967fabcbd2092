// Finds tool-call markup in answer text and hands each block to the reader of its format.

import type { ContentStage } from "./content-stage.js";
import { appendText } from "./events.js";
import { isJsonWhitespace, skipJsonWhitespace } from "./json-value-scanner.js";
import { TagFinder } from "./tag-finder.js";
import type { ToolCallEmitter } from "./tool-call-emitter.js";
import type { OpenSection, ParseEvent } from "./types.js";

/** Reads one block of tool-call markup after its trigger. */
export interface BlockReader {
  /** Reads from `pos`; returns where it stopped. Unless done, the text from there on is held for the next chunk. */
  read(text: string, pos: number, out: ParseEvent[]): number;
  readonly done: boolean;
  /** True when the block held at least one real call (whitespace around it is then dropped). */
  readonly madeCall: boolean;
  /** The stream ended inside the block; `held` is what read() had left unread. Returns true when a call was cut off. */
  end(held: string, out: ParseEvent[]): boolean;
}

/**
 * A block reader driven by a state machine: `step` reads from a position and may change `state`; the block ends
 * when the state is "done". Reading stops where a step makes no progress: the rest waits for the next chunk.
 */
export abstract class SteppedBlockReader<State extends string> implements BlockReader {
  protected abstract state: State;
  abstract readonly madeCall: boolean;
  abstract end(held: string, out: ParseEvent[]): boolean;
  protected abstract step(text: string, pos: number, out: ParseEvent[]): number;

  get done(): boolean {
    return this.state === "done";
  }

  read(text: string, pos: number, out: ParseEvent[]): number {
    let i = pos;
    while (i < text.length && !this.done) {
      const before = this.state;
      const next = this.step(text, i, out);
      if (next === i && this.state === before) return i;
      i = next;
    }
    return i;
  }
}

/** One family's tool-call markup. */
export interface ToolCallSyntax {
  /** Markup that opens a block anywhere in the answer; the reader starts just after it. */
  readonly triggers: readonly string[];
  /** Whether a `{` at the start of the answer (or right after a call) opens a block; the reader starts at the `{`. */
  readonly bareJson: boolean;
  open(trigger: string, emitter: ToolCallEmitter): BlockReader;
}

export const bareJsonTrigger = "{";

/**
 * Content stage for answers that may hold tool calls. Text outside markup is content, emitted at once except a
 * possible partial trigger and trailing whitespace; whitespace next to a call (before or after it) is dropped.
 */
export class ToolCallScanner implements ContentStage {
  private readonly byTrigger = new Map<string, ToolCallSyntax>();
  private readonly emitter: ToolCallEmitter;
  private readonly finder: TagFinder;
  private readonly bareJson: ToolCallSyntax | undefined;
  private held = "";
  /** Whitespace waiting to learn what follows: dropped before a call, emitted before more content. */
  private space = "";
  private block: BlockReader | undefined;
  private atSegmentStart = true;
  private begun = false;
  private ended: OpenSection | undefined;

  constructor(syntaxes: readonly ToolCallSyntax[], emitter: ToolCallEmitter) {
    for (const syntax of syntaxes) for (const trigger of syntax.triggers) this.byTrigger.set(trigger, syntax);
    this.emitter = emitter;
    this.finder = TagFinder.of(syntaxes.flatMap((syntax) => syntax.triggers));
    this.bareJson = syntaxes.find((syntax) => syntax.bareJson);
  }

  get unterminated(): OpenSection | undefined {
    return this.ended;
  }

  get toolCallsBegun(): boolean {
    return this.begun;
  }

  push(chunk: string, out: ParseEvent[]): void {
    const text = this.held.length === 0 ? chunk : this.held + chunk;
    this.held = "";
    let pos = 0;
    while (pos < text.length) {
      const next = this.block === undefined ? this.stepText(text, pos, out) : this.stepBlock(this.block, text, pos, out);
      if (next === undefined) return;
      pos = next;
    }
  }

  end(out: ParseEvent[]): void {
    if (this.block !== undefined) {
      const cut = this.block.end(this.held, out);
      this.block = undefined;
      this.held = "";
      if (cut) {
        this.ended = "tool_call";
        this.emitter.warn("unterminated_tool_call", "the stream ended inside a tool call");
      }
      return;
    }
    // Whitespace alone (after a call, or as the whole answer) is only separation, not content.
    if (!this.atSegmentStart || this.held.length > 0) appendText(out, "content", this.space + this.held);
    this.space = "";
    this.held = "";
  }

  private stepBlock(block: BlockReader, text: string, pos: number, out: ParseEvent[]): number | undefined {
    const next = block.read(text, pos, out);
    if (!block.done) {
      this.held = text.slice(next);
      return undefined;
    }
    this.block = undefined;
    if (block.madeCall) this.atSegmentStart = true;
    return next;
  }

  private stepText(text: string, from: number, out: ParseEvent[]): number | undefined {
    let pos = from;
    if (this.atSegmentStart) {
      pos = skipJsonWhitespace(text, from);
      this.space += text.slice(from, pos);
      if (pos === text.length) return undefined;
      const opened = this.openAt(text, pos);
      if (opened !== undefined) return opened;
      if (this.finder.holdBack(text, pos) === text.length - pos) {
        this.held = text.slice(pos);
        return undefined;
      }
      this.atSegmentStart = false;
    }
    const match = this.finder.find(text, pos);
    if (match === undefined) {
      // Trailing whitespace waits too: if a call follows, it is dropped with the other whitespace around calls.
      const partial = text.length - this.finder.holdBack(text, pos);
      const end = trimEndFrom(text, pos, partial);
      this.emitContent(text.slice(pos, end), out);
      this.space += text.slice(end, partial);
      this.held = text.slice(partial);
      return undefined;
    }
    this.emitContent(text.slice(pos, trimEndFrom(text, pos, match.index)), out);
    const syntax = this.byTrigger.get(match.tag);
    if (syntax === undefined) {
      this.emitContent(match.tag, out); // unreachable: the finder only knows registered triggers
      return match.index + match.tag.length;
    }
    return this.open(syntax, match.tag, match.index + match.tag.length);
  }

  private emitContent(text: string, out: ParseEvent[]): void {
    if (text.length === 0) return;
    if (this.space.length > 0) {
      appendText(out, "content", this.space);
      this.space = "";
    }
    appendText(out, "content", text);
  }

  /** At the start of a segment: a trigger (or a bare `{`) right here opens a block and drops the whitespace before it. */
  private openAt(text: string, start: number): number | undefined {
    if (this.bareJson !== undefined && text.charCodeAt(start) === 0x7b) {
      this.block = this.bareJson.open(bareJsonTrigger, this.emitter);
      this.begun = true;
      this.space = "";
      return start;
    }
    for (const [trigger, syntax] of this.byTrigger) {
      if (text.startsWith(trigger, start)) return this.open(syntax, trigger, start + trigger.length);
    }
    return undefined;
  }

  private open(syntax: ToolCallSyntax, trigger: string, after: number): number {
    this.begun = true;
    this.space = "";
    this.block = syntax.open(trigger, this.emitter);
    this.atSegmentStart = false;
    return after;
  }
}

/** The end of `text[from..to]` once trailing whitespace is left out. */
function trimEndFrom(text: string, from: number, to: number): number {
  let end = to;
  while (end > from && isJsonWhitespace(text.charCodeAt(end - 1))) end--;
  return end;
}
