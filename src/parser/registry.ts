// Format names → parsers: each format is a reasoning splitter and a tool-call scanner for one model family.

import { WholeCodePoints } from "./code-points.js";
import { ContentStageParser, PlainContent } from "./content-stage.js";
import { HarmonyParser } from "./harmony.js";
import { hermesToolCalls } from "./hermes.js";
import { llama3ToolCalls } from "./llama3.js";
import { mistralToolCallId, mistralToolCalls } from "./mistral.js";
import { RawParser } from "./raw.js";
import { ThinkTagParser, type ReasoningTags } from "./think.js";
import { ToolCallEmitter } from "./tool-call-emitter.js";
import { ToolCallScanner, type ToolCallSyntax } from "./tool-call-scanner.js";
import type { OpenSection, ParseEvent, ParserOptions, StreamParser } from "./types.js";

export const MISTRAL_THINK_TAGS: ReasoningTags = { open: "[THINK]", close: "[/THINK]" };
export const SEED_THINK_TAGS: ReasoningTags = { open: "<seed:think>", close: "</seed:think>" };

type ParserFactory = (options: ParserOptions) => StreamParser;

function tools(syntaxes: readonly ToolCallSyntax[], options: ParserOptions, defaultId?: () => string): ToolCallScanner {
  return new ToolCallScanner(syntaxes, new ToolCallEmitter(options, defaultId));
}

const think: ParserFactory = (options) =>
  new ThinkTagParser({ ...options, content: tools([hermesToolCalls], options) });

const mistral: ParserFactory = (options) =>
  new ThinkTagParser({
    ...options,
    tags: MISTRAL_THINK_TAGS,
    content: tools([mistralToolCalls], options, mistralToolCallId),
  });

const seed: ParserFactory = (options) =>
  new ThinkTagParser({ ...options, tags: SEED_THINK_TAGS, content: new PlainContent() });

const harmony: ParserFactory = (options) => new HarmonyParser(options);

/** When nothing at the start gives the family away: think tags, and every tool-call markup we know. */
const generic: ParserFactory = (options) =>
  new ThinkTagParser({
    ...options,
    content: tools([hermesToolCalls, mistralToolCalls, llama3ToolCalls], options),
  });

/** Markup that, at the very start of a reply, names the family. */
const openings: readonly (readonly [string, ParserFactory])[] = [
  ["<|channel|>", harmony],
  ["<|start|>", harmony],
  ["[THINK]", mistral],
  ["[TOOL_CALLS]", mistral],
  ["<seed:think>", seed],
];

/** Chooses the family from the reply's first markup, holding back only leading whitespace and a partial marker. */
export class AutoParser implements StreamParser {
  private readonly options: ParserOptions;
  private delegate: StreamParser | undefined;
  private held = "";

  constructor(options: ParserOptions = {}) {
    this.options = options;
  }

  get unterminated(): OpenSection | undefined {
    return this.delegate?.unterminated;
  }

  feed(chunk: string): ParseEvent[] {
    if (this.delegate !== undefined) return this.delegate.feed(chunk);
    const text = this.held + chunk;
    const start = text.length - text.trimStart().length;
    const rest = text.length - start;
    let factory: ParserFactory | undefined = rest === 0 ? undefined : generic;
    for (const [marker, candidate] of openings) {
      if (text.startsWith(marker, start)) {
        factory = candidate;
        break;
      }
      if (rest < marker.length && text.startsWith(marker.slice(0, rest), start)) factory = undefined;
    }
    if (factory === undefined) {
      this.held = text;
      return [];
    }
    this.held = "";
    this.delegate = factory(this.options);
    return this.delegate.feed(text);
  }

  finish(): ParseEvent[] {
    this.delegate ??= generic(this.options);
    const out = this.held.length === 0 ? [] : this.delegate.feed(this.held);
    this.held = "";
    return [...out, ...this.delegate.finish()];
  }
}

const auto: ParserFactory = (options) => new AutoParser(options);

const formats = new Map<string, ParserFactory>([
  ["auto", auto],
  ["raw", () => new RawParser()],
  ["think", think],
  ["hermes", think],
  ["think-prefilled", (options) => new ThinkTagParser({ ...options, startsInReasoning: true, content: tools([hermesToolCalls], options) })],
  ["mistral", mistral],
  ["magistral", mistral],
  ["seed", seed],
  ["seed-oss", seed],
  ["harmony", harmony],
  ["gpt-oss", harmony],
  ["llama3", (options) => new ContentStageParser(tools([llama3ToolCalls], options))],
]);

/** The format names createParser() knows. */
export const parserFormats: readonly string[] = [...formats.keys()];

/** A fresh parser for one reply; an undefined or unknown format gets auto-detection. */
export function createParser(format: string | undefined, options: ParserOptions = {}): StreamParser {
  const factory = format === undefined ? auto : (formats.get(format.trim().toLowerCase()) ?? auto);
  return new WholeCodePoints(factory(options));
}

