// Hermes / Qwen tool calls: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, several per reply.

import { CallObjectReader } from "./call-object-reader.js";
import { appendText } from "./events.js";
import { skipJsonWhitespace } from "./json-value-scanner.js";
import { TagFinder } from "./tag-finder.js";
import type { ToolCallEmitter } from "./tool-call-emitter.js";
import { SteppedBlockReader, type ToolCallSyntax } from "./tool-call-scanner.js";
import type { ParseEvent } from "./types.js";

const OPEN = "<tool_call>";
const CLOSE = "</tool_call>";
const closeFinder = new TagFinder([CLOSE]);

// call: reading the JSON object.  close: after it, expecting the close tag.
// malformed: the block is not a call; its text up to and including the close tag goes out as content.
type State = "call" | "close" | "malformed" | "done";

class HermesBlock extends SteppedBlockReader<State> {
  private readonly emitter: ToolCallEmitter;
  private readonly call: CallObjectReader;
  protected state: State = "call";

  constructor(emitter: ToolCallEmitter) {
    super();
    this.emitter = emitter;
    this.call = new CallObjectReader(emitter);
  }

  get madeCall(): boolean {
    return this.call.started;
  }

  end(held: string, out: ParseEvent[]): boolean {
    if (this.state === "malformed") {
      appendText(out, "content", held);
      return false;
    }
    if (this.state !== "call") return false;
    if (!this.call.started) appendText(out, "content", OPEN + this.call.unclaimed + held);
    this.call.end(out);
    return true;
  }

  /** Returns where to go on; returning `i` in the same state means the text from `i` must wait. */
  protected step(text: string, i: number, out: ParseEvent[]): number {
    switch (this.state) {
      case "call":
        return this.stepCall(text, i, out);
      case "close":
        return this.stepClose(text, i);
      case "malformed":
        return this.stepMalformed(text, i, out);
      case "done":
        return i;
    }
  }

  private stepCall(text: string, i: number, out: ParseEvent[]): number {
    const next = this.call.read(text, i, out);
    if (this.call.status === "done") this.state = "close";
    else if (this.call.status === "failed") {
      this.state = "malformed";
      if (!this.call.started) {
        const unclaimed = OPEN + this.call.unclaimed;
        this.emitter.warn("malformed_tool_call", "<tool_call> block is not a JSON call object; returned as content", unclaimed + text.slice(next));
        appendText(out, "content", unclaimed);
      }
    }
    return next;
  }

  private stepClose(text: string, pos: number): number {
    const i = skipJsonWhitespace(text, pos);
    if (i === text.length) return i;
    if (text.startsWith(CLOSE, i)) {
      this.state = "done";
      return i + CLOSE.length;
    }
    if (closeFinder.holdBack(text, i) === text.length - i) return i;
    // No close tag (e.g. the next <tool_call> follows at once): the block ends here.
    this.state = "done";
    return i;
  }

  private stepMalformed(text: string, pos: number, out: ParseEvent[]): number {
    const match = closeFinder.find(text, pos);
    if (match !== undefined) {
      appendText(out, "content", text.slice(pos, match.index + CLOSE.length));
      this.state = "done";
      return match.index + CLOSE.length;
    }
    const keep = closeFinder.holdBack(text, pos);
    appendText(out, "content", text.slice(pos, text.length - keep));
    return text.length - keep;
  }
}

export const hermesToolCalls: ToolCallSyntax = {
  triggers: [OPEN],
  bareJson: false,
  open: (_trigger, emitter) => new HermesBlock(emitter),
};
