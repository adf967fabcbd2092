// gpt-oss Harmony: messages on channels (analysis → reasoning, final → content, commentary → tool calls or preamble).

import { appendText } from "./events.js";
import { TagFinder } from "./tag-finder.js";
import { ToolCallEmitter } from "./tool-call-emitter.js";
import type { OpenSection, ParseEvent, ParserOptions, StreamParser } from "./types.js";

const START = "<|start|>";
const CHANNEL = "<|channel|>";
const MESSAGE = "<|message|>";
const END = "<|end|>";
const CALL = "<|call|>";
const RETURN = "<|return|>";
const CONSTRAIN = "<|constrain|>";

export const harmonyTokens = [START, CHANNEL, MESSAGE, END, CALL, RETURN, CONSTRAIN] as const;

const headerEnd = new TagFinder([MESSAGE]);
const bodyEnd = new TagFinder(harmonyTokens);
const anyToken = new TagFinder(harmonyTokens);
/** A header is a few words; anything longer is not Harmony markup. */
const maxHeaderLength = 512;

type Route = "reasoning" | "content" | "tool";

// opening: nothing yet (the template's `<|start|>assistant` is in the prompt).  header: between a message's start and
// `<|message|>`.  body: the message text.  between: after a message ended, before the next starts.
type Phase = "opening" | "header" | "body" | "between";

/** Where a message goes, from its header (e.g. `<|channel|>commentary to=functions.get_weather <|constrain|>json`). */
export function routeOf(header: string): { route: Route; toolName?: string } {
  const channel = /<\|channel\|>\s*([^\s<]+)/.exec(header)?.[1];
  const recipient = /\bto=([^\s<]+)/.exec(header)?.[1];
  if (channel === "analysis") return { route: "reasoning" };
  if (recipient !== undefined && recipient.length > 0) {
    const name = recipient.startsWith("functions.") ? recipient.slice("functions.".length) : recipient;
    return { route: "tool", toolName: name };
  }
  return { route: "content" };
}

export class HarmonyParser implements StreamParser {
  private readonly emitter: ToolCallEmitter;
  private phase: Phase = "opening";
  private header = "";
  private route: Route = "content";
  private held = "";
  /** Whitespace outside messages: dropped before markup, shown only if stray text follows. */
  private space = "";
  private ended: OpenSection | undefined;

  constructor(options: ParserOptions = {}) {
    this.emitter = new ToolCallEmitter(options);
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
    const held = this.held;
    this.held = "";
    if (this.phase === "body") {
      this.emit(held, out);
      if (this.route === "tool") {
        this.emitter.warn("unterminated_tool_call", "the stream ended inside a Harmony tool call");
        this.emitter.end(out);
        this.ended = "tool_call";
      } else if (this.route === "reasoning") this.ended = "reasoning";
    } else if (this.phase !== "header" && held.length > 0) {
      // Text outside messages that never became a token: the model's words after all.
      appendText(out, "content", this.space + held);
    }
    this.space = "";
    return out;
  }

  private step(text: string, pos: number, out: ParseEvent[]): number | undefined {
    switch (this.phase) {
      case "opening":
        return this.stepOpening(text, pos, out);
      case "header":
        return this.stepHeader(text, pos, out);
      case "body":
        return this.stepBody(text, pos, out);
      case "between":
        return this.stepBetween(text, pos, out);
    }
  }

  /** The first text decides: markup starts a header; plain text is taken as a final answer without markup. */
  private stepOpening(text: string, pos: number, out: ParseEvent[]): number | undefined {
    const i = this.skipSpace(text, pos);
    if (i === undefined) return undefined;
    if (text.startsWith("<|", i)) this.phase = "header";
    else this.openStray(out);
    return i;
  }

  private stepHeader(text: string, pos: number, out: ParseEvent[]): number | undefined {
    const match = headerEnd.find(text, pos);
    if (match === undefined) {
      const keep = headerEnd.holdBack(text, pos);
      this.header += text.slice(pos, text.length - keep);
      this.held = text.slice(text.length - keep);
      if (this.header.length > maxHeaderLength) this.abandonHeader(out);
      return undefined;
    }
    this.header += text.slice(pos, match.index);
    const { route, toolName } = routeOf(this.header);
    this.header = "";
    if (route === "tool" && toolName !== undefined) this.emitter.start(toolName, out);
    this.openBody(route);
    return match.index + match.tag.length;
  }

  private stepBody(text: string, pos: number, out: ParseEvent[]): number | undefined {
    const match = bodyEnd.find(text, pos);
    if (match === undefined) {
      const keep = bodyEnd.holdBack(text, pos);
      this.emit(text.slice(pos, text.length - keep), out);
      this.held = text.slice(text.length - keep);
      return undefined;
    }
    this.emit(text.slice(pos, match.index), out);
    // Header tokens have no place in a body: a model that writes one there gets it dropped, never shown.
    if (match.tag === MESSAGE || match.tag === CONSTRAIN) return match.index + match.tag.length;
    if (this.route === "tool") this.emitter.end(out);
    // A new message without an end token before it: its start or channel token begins the next header.
    if (match.tag === START || match.tag === CHANNEL) {
      this.phase = "header";
      return match.index;
    }
    this.phase = "between";
    return match.index + match.tag.length;
  }

  private stepBetween(text: string, pos: number, out: ParseEvent[]): number | undefined {
    const i = this.skipSpace(text, pos);
    if (i === undefined) return undefined;
    if (text.startsWith(START, i) || text.startsWith(CHANNEL, i)) this.phase = "header";
    else this.openStray(out); // stray text between messages is still the model talking
    return i;
  }

  /** Gathers whitespace; returns where other text starts, or undefined when the rest is space or a partial token. */
  private skipSpace(text: string, pos: number): number | undefined {
    let i = pos;
    while (i < text.length && isWhitespace(text.charCodeAt(i))) i++;
    this.space += text.slice(pos, i);
    if (i === text.length) return undefined;
    if (anyToken.holdBack(text, i) === text.length - i) {
      this.held = text.slice(i);
      return undefined;
    }
    if (text.startsWith("<|", i)) this.space = "";
    return i;
  }

  /** Text outside any message: shown as content, with the whitespace before it. */
  private openStray(out: ParseEvent[]): void {
    this.openBody("content");
    appendText(out, "content", this.space);
    this.space = "";
  }

  private openBody(route: Route): void {
    this.route = route;
    this.phase = "body";
  }

  private emit(text: string, out: ParseEvent[]): void {
    if (this.route === "tool") this.emitter.appendArgs(text, out);
    else appendText(out, this.route, text);
  }

  /** Far too long for a header: this was not Harmony markup, so it is shown as content. */
  private abandonHeader(out: ParseEvent[]): void {
    appendText(out, "content", this.header + this.held);
    this.header = "";
    this.held = "";
    this.openBody("content");
  }
}

function isWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}
