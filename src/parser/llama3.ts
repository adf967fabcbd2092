// Llama 3.x JSON tool calls: the reply is `{"name": …, "parameters": {…}}` (optionally after `<|python_tag|>`),
// possibly several separated by `;`.

import { CallObjectReader } from "./call-object-reader.js";
import { appendText } from "./events.js";
import { skipJsonWhitespace } from "./json-value-scanner.js";
import type { ToolCallEmitter } from "./tool-call-emitter.js";
import { bareJsonTrigger, SteppedBlockReader, type ToolCallSyntax } from "./tool-call-scanner.js";
import type { ParseEvent } from "./types.js";

const PYTHON_TAG = "<|python_tag|>";

// start: expecting the `{` of a call.  call: reading it.  between: after a call, a `;` may bring another.
type State = "start" | "call" | "between" | "done";

class Llama3Block extends SteppedBlockReader<State> {
  private readonly emitter: ToolCallEmitter;
  /** After <|python_tag|> the text is meant as a call, so a broken one is worth a warning; a bare `{` is not. */
  private readonly tagged: boolean;
  protected state: State = "start";
  private call: CallObjectReader | undefined;
  private calls = 0;
  private prefix: string;

  constructor(emitter: ToolCallEmitter, tagged: boolean) {
    super();
    this.emitter = emitter;
    this.tagged = tagged;
    this.prefix = tagged ? PYTHON_TAG : "";
  }

  get madeCall(): boolean {
    return this.calls > 0;
  }

  end(held: string, out: ParseEvent[]): boolean {
    if (this.emitter.isOpen) {
      this.emitter.end(out);
      return true;
    }
    if (this.state === "between") return false;
    appendText(out, "content", withoutTag(this.prefix + (this.call?.unclaimed ?? "") + held));
    return this.tagged || this.calls > 0;
  }

  protected step(text: string, pos: number, out: ParseEvent[]): number {
    switch (this.state) {
      case "start": {
        const i = skipJsonWhitespace(text, pos);
        this.prefix += text.slice(pos, i);
        if (i === text.length) return i;
        if (text[i] !== "{") return this.giveBack(i, out, false);
        this.call = new CallObjectReader(this.emitter, { onlyCallKeys: !this.tagged });
        this.state = "call";
        return i;
      }
      case "call":
        return this.stepCall(text, pos, out);
      case "between": {
        const i = skipJsonWhitespace(text, pos);
        if (i === text.length) return i;
        this.state = text[i] === ";" ? "start" : "done";
        return text[i] === ";" ? i + 1 : i;
      }
      case "done":
        return pos;
    }
  }

  private stepCall(text: string, pos: number, out: ParseEvent[]): number {
    const call = this.call;
    if (call === undefined) return pos;
    const next = call.read(text, pos, out);
    if (call.status === "reading") return next;
    this.call = undefined;
    if (call.status === "done") {
      this.calls++;
      this.prefix = "";
      this.state = "between";
      return next;
    }
    if (call.started) {
      this.state = "done";
      return next;
    }
    this.prefix += call.unclaimed;
    return this.giveBack(next, out, this.tagged);
  }

  /** Not a call: what was read goes back out as content, and the rest of the text is ordinary content again. */
  private giveBack(i: number, out: ParseEvent[], warn: boolean): number {
    if (warn) this.emitter.warn("malformed_tool_call", "<|python_tag|> not followed by a JSON call; returned as content", this.prefix);
    appendText(out, "content", withoutTag(this.prefix));
    this.prefix = "";
    this.state = "done";
    return i;
  }
}

/** The tag is a special token, not text the user should see. */
function withoutTag(text: string): string {
  return text.startsWith(PYTHON_TAG) ? text.slice(PYTHON_TAG.length) : text;
}

export const llama3ToolCalls: ToolCallSyntax = {
  triggers: [PYTHON_TAG],
  bareJson: true,
  open: (trigger, emitter) => new Llama3Block(emitter, trigger !== bareJsonTrigger),
};
