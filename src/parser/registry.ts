// Format names → parsers: each format is a reasoning splitter and a tool-call scanner for one model family.

import { AutoParser, type FamilyMarker, type ParserFactory } from "./auto.js";
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
import type { ParserOptions, StreamParser } from "./types.js";

export const MISTRAL_THINK_TAGS: ReasoningTags = { open: "[THINK]", close: "[/THINK]" };
export const SEED_THINK_TAGS: ReasoningTags = { open: "<seed:think>", close: "</seed:think>" };

function tools(syntaxes: readonly ToolCallSyntax[], options: ParserOptions, defaultId?: () => string): ToolCallScanner {
  return new ToolCallScanner(syntaxes, new ToolCallEmitter(options, defaultId));
}

const think: ParserFactory = (options) =>
  new ThinkTagParser({ ...options, content: tools([hermesToolCalls], options) });

const thinkPrefilled: ParserFactory = (options) =>
  new ThinkTagParser({ ...options, startsInReasoning: true, content: tools([hermesToolCalls], options) });

const mistral: ParserFactory = (options) =>
  new ThinkTagParser({
    ...options,
    tags: MISTRAL_THINK_TAGS,
    content: tools([mistralToolCalls], options, mistralToolCallId),
  });

const seed: ParserFactory = (options) =>
  new ThinkTagParser({ ...options, tags: SEED_THINK_TAGS, content: new PlainContent() });

const harmony: ParserFactory = (options) => new HarmonyParser(options);

const llama3: ParserFactory = (options) => new ContentStageParser(tools([llama3ToolCalls], options));

/** When nothing at the start gives the family away: think tags, and every tool-call markup we know. */
const generic: ParserFactory = (options) =>
  new ThinkTagParser({
    ...options,
    content: tools([hermesToolCalls, mistralToolCalls, llama3ToolCalls], options),
  });

/** Markup that, at the very start of a reply, names the family. */
const openings: readonly FamilyMarker[] = [
  ["<|channel|>", harmony],
  ["<|start|>", harmony],
  ["[THINK]", mistral],
  ["[TOOL_CALLS]", mistral],
  ["<seed:think>", seed],
];

const auto: ParserFactory = (options) => new AutoParser(options, openings, generic);

const formats = new Map<string, ParserFactory>([
  ["auto", auto],
  ["raw", () => new RawParser()],
  ["think", think],
  ["hermes", think],
  ["think-prefilled", thinkPrefilled],
  ["mistral", mistral],
  ["magistral", mistral],
  ["seed", seed],
  ["seed-oss", seed],
  ["harmony", harmony],
  ["gpt-oss", harmony],
  ["llama3", llama3],
]);

/** The format names createParser() knows. */
export const parserFormats: readonly string[] = [...formats.keys()];

/** A fresh parser for one reply; an undefined or unknown format gets auto-detection. */
export function createParser(format: string | undefined, options: ParserOptions = {}): StreamParser {
  const factory = format === undefined ? auto : (formats.get(format.trim().toLowerCase()) ?? auto);
  return new WholeCodePoints(factory(options));
}

