// The parser layer's entry point: the event types and a registry from format name to a fresh parser.

import { RawParser } from "./raw.js";
import { ThinkTagParser } from "./think.js";
import type { ParserOptions, StreamParser } from "./types.js";

export type * from "./types.js";
export { ThinkTagParser, THINK_TAGS, type ReasoningTags } from "./think.js";

type ParserFactory = (options: ParserOptions) => StreamParser;

const auto: ParserFactory = (options) => new ThinkTagParser(options);

const formats: Record<string, ParserFactory> = {
  auto,
  raw: () => new RawParser(),
  think: (options) => new ThinkTagParser(options),
  "think-prefilled": (options) => new ThinkTagParser({ ...options, startsInReasoning: true }),
};

/** The format names createParser() knows. */
export const parserFormats: readonly string[] = Object.keys(formats);

/** A fresh parser for one reply; an undefined or unknown format gets auto-detection. */
export function createParser(format: string | undefined, options: ParserOptions = {}): StreamParser {
  const factory = format === undefined ? auto : (formats[format.toLowerCase()] ?? auto);
  return factory(options);
}
