// The parser layer's entry point: the event types and a registry from format name to a fresh parser.

export type * from "./types.js";
export { createParser, parserFormats, MISTRAL_THINK_TAGS, SEED_THINK_TAGS } from "./registry.js";
export { AutoParser } from "./auto.js";
export { ThinkTagParser, THINK_TAGS, type ReasoningTags } from "./think.js";
export { HarmonyParser } from "./harmony.js";
export { RawParser } from "./raw.js";
