// The parser layer's entry point: the event types and a registry from format name to a fresh parser.

export type * from "./types.js";
export { createParser, parserFormats } from "./registry.js";
export { ThinkTagParser, THINK_TAGS, type ReasoningTags } from "./think.js";
