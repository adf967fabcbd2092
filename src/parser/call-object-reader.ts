// Reads one `{"name": …, "arguments": {…}}` tool-call object from streamed text, streaming the arguments as they come.

import { JsonValueScanner, skipJsonWhitespace } from "./json-value-scanner.js";
import type { ToolCallEmitter } from "./tool-call-emitter.js";
import type { ParseEvent } from "./types.js";

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

const argumentKeys = new Set(["arguments", "parameters"]);

type State =
  | "open"
  | "key"
  | "keyString"
  | "colon"
  | "value"
  | "nameString"
  | "argsValue"
  | "skipValue"
  | "afterValue"
  | "done"
  | "failed";

export type CallReadStatus = "reading" | "done" | "failed";

export interface CallObjectReaderOptions {
  /**
   * For formats where a bare JSON answer looks alike: an object with a key other than name, type, arguments or
   * parameters, or without arguments, is not a call. The unknown key ends the reading at once.
   */
  onlyCallKeys?: boolean;
}

const callKeys = new Set(["name", "type", "arguments", "parameters"]);

/**
 * A character-level state machine over one call object. The call starts as soon as the name is complete and the
 * arguments begin; until then everything read is kept, so that an object that turns out not to be a call can be
 * handed back as content.
 */
export class CallObjectReader {
  private readonly emitter: ToolCallEmitter;
  private readonly onlyCallKeys: boolean;
  private readonly value = new JsonValueScanner();
  private state: State = "open";
  private stringParts: string[] = [];
  private escaped = false;
  private key = "";
  private name: string | undefined;
  private sawArguments = false;
  private argumentsAreString = false;
  private heldArguments: string[] = [];
  private unclaimedParts: string[] = [];
  private callStarted = false;

  constructor(emitter: ToolCallEmitter, options: CallObjectReaderOptions = {}) {
    this.emitter = emitter;
    this.onlyCallKeys = options.onlyCallKeys ?? false;
  }

  get status(): CallReadStatus {
    if (this.state === "done") return "done";
    if (this.state === "failed") return "failed";
    return "reading";
  }

  /** True once tool_call_start has gone out for this object. */
  get started(): boolean {
    return this.callStarted;
  }

  /** Everything read while no call had started: the text to hand back as content if the object is not a call. */
  get unclaimed(): string {
    return this.unclaimedParts.join("");
  }

  /** Reads from `pos`; returns where it stopped: past the object's `}`, at the character that broke it, or the end. */
  read(text: string, pos: number, out: ParseEvent[]): number {
    let i = pos;
    while (i < text.length && this.status === "reading") i = this.step(text, i, out);
    if (!this.callStarted) this.unclaimedParts.push(text.slice(pos, i));
    else if (this.state === "failed" && this.emitter.isOpen) {
      this.emitter.warn("malformed_tool_call", "tool-call object broken after its arguments; the rest is content", text.slice(i));
      this.emitter.end(out);
    }
    return i;
  }

  /** The stream ended inside the object: closes a started call (its arguments are then checked and likely invalid). */
  end(out: ParseEvent[]): void {
    if (this.callStarted && this.status === "reading") this.emitter.end(out);
  }

  private step(text: string, i: number, out: ParseEvent[]): number {
    switch (this.state) {
      case "open":
        return this.expect(text, i, "{", "key");
      case "key":
        return this.stepKey(text, i, out);
      case "keyString":
      case "nameString":
        return this.stepString(text, i);
      case "colon":
        return this.expect(text, i, ":", "value");
      case "value":
        return this.stepValue(text, i, out);
      case "argsValue":
        return this.stepArguments(text, i, out);
      case "skipValue": {
        const end = this.value.scan(text, i);
        if (end === -1) return text.length;
        this.state = "afterValue";
        return end;
      }
      case "afterValue":
        return this.stepAfterValue(text, i, out);
      case "done":
      case "failed":
        return i;
    }
  }

  private expect(text: string, pos: number, char: string, next: State): number {
    const i = skipJsonWhitespace(text, pos);
    if (i === text.length) return i;
    if (text[i] !== char) return this.fail(i);
    this.state = next;
    return i + 1;
  }

  private stepKey(text: string, pos: number, out: ParseEvent[]): number {
    const i = skipJsonWhitespace(text, pos);
    if (i === text.length) return i;
    const char = text[i];
    if (char === "}") return this.finishObject(i, out);
    if (char !== '"') return this.fail(i);
    this.state = "keyString";
    return i + 1;
  }

  /** Gathers a key or the name up to its closing quote. */
  private stepString(text: string, pos: number): number {
    for (let i = pos; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (this.escaped) this.escaped = false;
      else if (code === BACKSLASH) this.escaped = true;
      else if (code === QUOTE) {
        this.stringParts.push(text.slice(pos, i));
        const decoded = decodeJsonString(this.stringParts.join(""));
        this.stringParts = [];
        if (decoded === undefined) return this.fail(i);
        if (this.state === "keyString") {
          if (this.onlyCallKeys && !callKeys.has(decoded)) return this.fail(i);
          this.key = decoded;
          this.state = "colon";
        } else {
          if (decoded.length === 0) return this.fail(i);
          this.name = decoded;
          this.state = "afterValue";
        }
        return i + 1;
      }
    }
    this.stringParts.push(text.slice(pos));
    return text.length;
  }

  private stepValue(text: string, pos: number, out: ParseEvent[]): number {
    const i = skipJsonWhitespace(text, pos);
    if (i === text.length) return i;
    this.value.reset();
    if (this.key === "name" && this.name === undefined) {
      if (text[i] !== '"') return this.fail(i);
      this.state = "nameString";
      return i + 1;
    }
    if (argumentKeys.has(this.key) && !this.sawArguments) {
      this.sawArguments = true;
      this.argumentsAreString = text[i] === '"';
      this.state = "argsValue";
      if (this.name !== undefined && !this.argumentsAreString) this.startCall(out);
      return i;
    }
    this.state = "skipValue";
    return i;
  }

  private stepArguments(text: string, pos: number, out: ParseEvent[]): number {
    const end = this.value.scan(text, pos);
    const piece = text.slice(pos, end === -1 ? text.length : end);
    if (this.callStarted) this.emitter.appendArgs(piece, out);
    else this.heldArguments.push(piece);
    if (end === -1) return text.length;
    this.state = "afterValue";
    if (this.argumentsAreString) {
      // Some models write the arguments as a JSON-encoded string; the API wants the JSON text itself.
      const decoded = decodeJsonString(this.heldArguments.join("").slice(1, -1));
      if (decoded === undefined) return this.fail(end);
      this.heldArguments = [decoded];
    }
    if (this.name !== undefined && !this.callStarted) this.startCall(out);
    return end;
  }

  private stepAfterValue(text: string, pos: number, out: ParseEvent[]): number {
    const i = skipJsonWhitespace(text, pos);
    if (i === text.length) return i;
    const char = text[i];
    if (char === ",") {
      this.state = "key";
      return i + 1;
    }
    if (char === "}") return this.finishObject(i, out);
    return this.fail(i);
  }

  private finishObject(i: number, out: ParseEvent[]): number {
    if (this.name === undefined || (this.onlyCallKeys && !this.sawArguments)) return this.fail(i);
    if (!this.callStarted) this.startCall(out);
    this.emitter.end(out);
    this.state = "done";
    return i + 1;
  }

  private startCall(out: ParseEvent[]): void {
    if (this.name === undefined) return;
    this.emitter.start(this.name, out);
    this.callStarted = true;
    this.unclaimedParts = [];
    for (const piece of this.heldArguments) this.emitter.appendArgs(piece, out);
    this.heldArguments = [];
  }

  /** Marks the object broken at `i`; read() closes a call that had already started. */
  private fail(i: number): number {
    this.state = "failed";
    return i;
  }
}

/** The value of a JSON string literal's inside (escapes included), or undefined when it is not valid. */
export function decodeJsonString(inside: string): string | undefined {
  try {
    const value: unknown = JSON.parse(`"${inside}"`);
    return typeof value === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}
