// The stage that receives the text a reasoning splitter decided is not reasoning (plain content or tool calls).

import { appendText } from "./events.js";
import type { OpenSection, ParseEvent, StreamParser } from "./types.js";

/** Receives answer text in pieces and turns it into events; holds back what it cannot decide yet. */
export interface ContentStage {
  push(text: string, out: ParseEvent[]): void;
  /** End of stream: flushes what was held back. */
  end(out: ParseEvent[]): void;
  /** Set by end() when the stream stopped inside a section of this stage. */
  readonly unterminated: OpenSection | undefined;
  /** True once tool-call markup has begun: from then on reasoning tags are literal text (e.g. inside arguments). */
  readonly toolCallsBegun: boolean;
}

/** Everything is content. */
export class PlainContent implements ContentStage {
  readonly unterminated = undefined;
  readonly toolCallsBegun = false;

  push(text: string, out: ParseEvent[]): void {
    appendText(out, "content", text);
  }

  end(): void {}
}

/** A parser for formats without reasoning markup: the whole stream goes to one content stage. */
export class ContentStageParser implements StreamParser {
  private readonly stage: ContentStage;
  private ended: OpenSection | undefined;

  constructor(stage: ContentStage) {
    this.stage = stage;
  }

  get unterminated(): OpenSection | undefined {
    return this.ended;
  }

  feed(chunk: string): ParseEvent[] {
    const out: ParseEvent[] = [];
    this.stage.push(chunk, out);
    return out;
  }

  finish(): ParseEvent[] {
    const out: ParseEvent[] = [];
    this.stage.end(out);
    this.ended = this.stage.unterminated;
    return out;
  }
}
