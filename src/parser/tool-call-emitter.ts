// Numbers, names and closes tool calls in one reply, checks their arguments, and reports warnings.

import { customAlphabet } from "nanoid";
import type { ParseEvent, ParserOptions, ParserWarningCode } from "./types.js";

const alphanumeric = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const randomSuffix = customAlphabet(alphanumeric, 24);

/** OpenAI-style tool-call id: `call_` and 24 random letters and digits. */
export function openAiToolCallId(): string {
  return `call_${randomSuffix()}`;
}

const excerptLength = 200;

/** Shortens model text for a warning. */
export function excerptOf(text: string): string {
  return text.length <= excerptLength ? text : `${text.slice(0, excerptLength - 1)}…`;
}

/** Owns the tool calls of one reply: indexes from 0, unique ids, argument text gathered to be checked at the end. */
export class ToolCallEmitter {
  private readonly options: ParserOptions;
  private readonly newId: () => string;
  private nextIndex = 0;
  private openIndex: number | undefined;
  private openName = "";
  private args: string[] = [];

  constructor(options: ParserOptions, defaultNewId: () => string = openAiToolCallId) {
    this.options = options;
    this.newId = options.newToolCallId ?? defaultNewId;
  }

  get isOpen(): boolean {
    return this.openIndex !== undefined;
  }

  /** Opens a call; `id` is the model's own id when the format carries one. */
  start(name: string, out: ParseEvent[], id?: string): void {
    const index = this.nextIndex++;
    this.openIndex = index;
    this.openName = name;
    this.args = [];
    out.push({ kind: "tool_call_start", index, id: id === undefined || id.length === 0 ? this.newId() : id, name });
  }

  /** Streams a fragment of the open call's arguments. */
  appendArgs(text: string, out: ParseEvent[]): void {
    if (this.openIndex === undefined || text.length === 0) return;
    this.args.push(text);
    const last = out[out.length - 1];
    if (last !== undefined && last.kind === "tool_call_args" && last.index === this.openIndex) last.text += text;
    else out.push({ kind: "tool_call_args", index: this.openIndex, text });
  }

  /** Closes the open call; a call without arguments gets `{}`, arguments that are not JSON get a warning. */
  end(out: ParseEvent[]): void {
    const index = this.openIndex;
    if (index === undefined) return;
    if (this.args.length === 0) this.appendArgs("{}", out);
    const args = this.args.join("");
    if (!isJson(args)) {
      this.warn("invalid_tool_arguments", `arguments of tool call ${index} (${this.openName}) are not valid JSON`, args);
    }
    out.push({ kind: "tool_call_end", index });
    this.openIndex = undefined;
    this.args = [];
  }

  warn(code: ParserWarningCode, message: string, text?: string): void {
    const onWarning = this.options.onWarning;
    if (onWarning === undefined) return;
    onWarning(text === undefined ? { code, message } : { code, message, excerpt: excerptOf(text) });
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
