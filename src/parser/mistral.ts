// Mistral tool calls: `[TOOL_CALLS]name[ARGS]{…}` (tokenizer v11+, optionally `[CALL_ID]id` before `[ARGS]`)
// and the older `[TOOL_CALLS] [{"name": …, "arguments": {…}}, …]` array.

import { customAlphabet } from "nanoid";
import { CallObjectReader } from "./call-object-reader.js";
import { appendText } from "./events.js";
import { JsonValueScanner, skipJsonWhitespace } from "./json-value-scanner.js";
import { TagFinder } from "./tag-finder.js";
import type { ToolCallEmitter } from "./tool-call-emitter.js";
import { SteppedBlockReader, type ToolCallSyntax } from "./tool-call-scanner.js";
import type { ParseEvent } from "./types.js";

const TOOL_CALLS = "[TOOL_CALLS]";
const ARGS = "[ARGS]";
const CALL_ID = "[CALL_ID]";
const nameEnd = new TagFinder([ARGS, CALL_ID]);
const idEnd = new TagFinder([ARGS]);
const maxNameLength = 256;

/** Mistral chat templates reject tool-call ids that are not exactly 9 letters and digits. */
export const mistralToolCallId = customAlphabet("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 9);

// sniff: what follows the trigger decides the variant.  name / callId / args: the v11 form.
// array / object: the older JSON form (a list of call objects, or a single one).
type State = "sniff" | "name" | "callId" | "beforeArgs" | "args" | "array" | "object" | "afterObject" | "done";

class MistralBlock extends SteppedBlockReader<State> {
  private readonly emitter: ToolCallEmitter;
  protected state: State = "sniff";
  private unclaimed: string[] = [TOOL_CALLS];
  private name = "";
  private id = "";
  private readonly value = new JsonValueScanner();
  private call: CallObjectReader | undefined;
  private calls = 0;

  constructor(emitter: ToolCallEmitter) {
    super();
    this.emitter = emitter;
  }

  get madeCall(): boolean {
    return this.calls > 0;
  }

  end(held: string, out: ParseEvent[]): boolean {
    if (this.emitter.isOpen) {
      this.emitter.end(out);
      return true;
    }
    if (this.state === "afterObject") return false; // the array was not closed, but every call in it was
    if (this.call !== undefined) this.unclaimed.push(this.call.unclaimed);
    appendText(out, "content", this.unclaimed.join("") + held);
    return true;
  }

  protected step(text: string, i: number, out: ParseEvent[]): number {
    switch (this.state) {
      case "sniff":
        return this.stepSniff(text, i);
      case "name":
        return this.stepName(text, i, out);
      case "callId":
        return this.stepCallId(text, i);
      case "beforeArgs":
        return this.stepBeforeArgs(text, i);
      case "args":
        return this.stepArgs(text, i, out);
      case "array":
      case "object":
        return this.stepObject(text, i, out);
      case "afterObject":
        return this.stepAfterObject(text, i);
      case "done":
        return i;
    }
  }

  private stepSniff(text: string, pos: number): number {
    const i = skipJsonWhitespace(text, pos);
    this.unclaimed.push(text.slice(pos, i));
    if (i === text.length) return i;
    const char = text[i];
    if (char === "[") {
      this.unclaimed.push(char);
      this.state = "array";
      return i + 1;
    }
    this.state = char === "{" ? "object" : "name";
    return i;
  }

  private stepName(text: string, pos: number, out: ParseEvent[]): number {
    let i = pos;
    while (i < text.length && isNameChar(text.charCodeAt(i))) i++;
    this.name += text.slice(pos, i);
    this.unclaimed.push(text.slice(pos, i));
    if (this.name.length > maxNameLength) return this.fail(i, out);
    if (i === text.length) return i;
    if (text.startsWith(ARGS, i)) return this.beginArgs(i + ARGS.length, out);
    if (text.startsWith(CALL_ID, i)) {
      this.unclaimed.push(CALL_ID);
      this.state = "callId";
      return i + CALL_ID.length;
    }
    if (text[i] === "{") return this.beginArgs(i, out);
    if (nameEnd.holdBack(text, i) === text.length - i) return i;
    return this.fail(i, out);
  }

  private stepCallId(text: string, pos: number): number {
    const match = idEnd.find(text, pos);
    const end = match === undefined ? text.length - idEnd.holdBack(text, pos) : match.index;
    this.id += text.slice(pos, end);
    this.unclaimed.push(text.slice(pos, end));
    if (match === undefined) return end;
    this.state = "name"; // the name step then finds [ARGS] right here
    return end;
  }

  private beginArgs(at: number, out: ParseEvent[]): number {
    if (this.name.length === 0) return this.fail(at, out);
    this.emitter.start(this.name, out, this.id.trim());
    this.calls++;
    this.unclaimed = [];
    this.value.reset();
    this.state = "beforeArgs";
    return at;
  }

  private stepBeforeArgs(text: string, pos: number): number {
    const i = skipJsonWhitespace(text, pos);
    if (i < text.length) this.state = "args";
    return i;
  }

  private stepArgs(text: string, pos: number, out: ParseEvent[]): number {
    const end = this.value.scan(text, pos);
    this.emitter.appendArgs(text.slice(pos, end === -1 ? text.length : end), out);
    if (end === -1) return text.length;
    this.emitter.end(out);
    this.state = "done";
    return end;
  }

  private stepObject(text: string, pos: number, out: ParseEvent[]): number {
    this.call ??= new CallObjectReader(this.emitter);
    const call = this.call;
    const next = call.read(text, pos, out);
    if (call.started) this.unclaimed = [];
    if (call.status === "reading") return next;
    this.call = undefined;
    if (call.status === "failed") {
      if (call.started) {
        this.state = "done";
        return next;
      }
      this.unclaimed.push(call.unclaimed);
      return this.fail(next, out);
    }
    this.calls++;
    this.state = this.state === "array" ? "afterObject" : "done";
    return next;
  }

  private stepAfterObject(text: string, pos: number): number {
    const i = skipJsonWhitespace(text, pos);
    if (i === text.length) return i;
    if (text[i] === ",") {
      this.state = "array";
      return i + 1;
    }
    this.state = "done";
    return text[i] === "]" ? i + 1 : i;
  }

  /** Not a call after all: what was read goes out as content, the rest of the text is ordinary content again. */
  private fail(i: number, out: ParseEvent[]): number {
    const unclaimed = this.unclaimed.join("");
    this.emitter.warn("malformed_tool_call", "[TOOL_CALLS] not followed by a readable call; returned as content", unclaimed);
    appendText(out, "content", unclaimed);
    this.unclaimed = [];
    this.state = "done";
    return i;
  }
}

function isNameChar(code: number): boolean {
  return (
    (code >= 0x30 && code <= 0x39) || // 0-9
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x61 && code <= 0x7a) || // a-z
    code === 0x5f || // _
    code === 0x2d || // -
    code === 0x2e || // .
    code === 0x3a // :
  );
}

export const mistralToolCalls: ToolCallSyntax = {
  triggers: [TOOL_CALLS],
  bareJson: false,
  open: (_trigger, emitter) => new MistralBlock(emitter),
};
