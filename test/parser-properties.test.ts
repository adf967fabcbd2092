// Property-based tests: for every format, random replies rendered in the family's markup and cut at random places
// parse to the same events as the whole text, give back the payloads exactly, and never leak markup.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createParser, type ParseEvent } from "../src/parser/index.js";

// PARSER_PROPERTY_RUNS=5000 for a deeper search than CI needs.
const numRuns = Number(process.env.PARSER_PROPERTY_RUNS ?? 200);

// Every piece of markup of every family: no payload may contain one, and no reasoning or content may show one.
const markup = [
  "<think>",
  "</think>",
  "[THINK]",
  "[/THINK]",
  "<seed:think>",
  "</seed:think>",
  "<tool_call>",
  "</tool_call>",
  "[TOOL_CALLS]",
  "[ARGS]",
  "[CALL_ID]",
  "<|python_tag|>",
  "<|start|>",
  "<|channel|>",
  "<|message|>",
  "<|end|>",
  "<|call|>",
  "<|return|>",
  "<|constrain|>",
];

// Near misses of the markup, multi-byte characters, emoji (surrogate pairs, modifiers, flags) and JSON-ish text.
const atoms = [
  "<", ">", "</", "[", "]", "[/", "<|", "|>", "think", "THINK", "tool_call", "TOOL_CALLS", "ARGS", "seed:",
  "python_tag", "channel", "message", "end", "call", "{", "}", '"', "\\", ":", ",", " ", "  ", "\n", "\t",
  "é", "ß", "中文", "日本語", "😀", "👍🏽", "🇫🇷", "𝒳", "\u200d", "a", "Hello", "x = 1;", "```",
];

/** Breaks any whole markup the random pieces happened to form (dropping its last character). */
function withoutMarkup(text: string): string {
  let result = text;
  for (;;) {
    const found = markup.find((tag) => result.includes(tag));
    if (found === undefined) return result;
    result = result.split(found).join(found.slice(0, -1));
  }
}

const freeText = fc
  .array(fc.oneof(fc.constantFrom(...atoms), fc.string({ unit: "grapheme", maxLength: 8 })), { maxLength: 30 })
  .map((pieces) => withoutMarkup(pieces.join("")));

/** Content an answer may start with: not whitespace at either end, and not a `{` (a bare JSON tool call). */
const answerText = freeText.map((text) => {
  const trimmed = text.trim();
  return trimmed.startsWith("{") ? `a${trimmed}` : trimmed;
});

const jsonKey = fc.oneof(fc.constantFrom("city", "query", "a", "</tool_call>", "[ARGS]", "名前", "😀"), fc.string({ maxLength: 6 }));
const jsonString = fc.oneof(freeText, fc.constantFrom("</tool_call>", "[TOOL_CALLS]x[ARGS]{", "<think>", '"}', "\\"));
const jsonLeaf = fc.oneof(jsonString, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));
const { value: jsonValue } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: "small", withCrossShrink: true }, jsonLeaf, tie("array"), tie("object")),
  array: fc.array(tie("value"), { maxLength: 4 }),
  object: fc.dictionary(jsonKey, tie("value"), { maxKeys: 4 }),
}));
const argumentsObject = fc.dictionary(jsonKey, jsonValue, { maxKeys: 5 });

/** Harmony special tokens cannot appear in text (the tokenizer would have made them tokens), so keep them out. */
const harmonyArguments = argumentsObject.filter((args) => !markup.some((tag) => tag.startsWith("<|") && JSON.stringify(args).includes(tag)));

const toolName = fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,20}$/);

interface Call {
  name: string;
  args: Record<string, unknown>;
}

interface Reply {
  reasoning: string | undefined;
  content: string;
  calls: Call[];
}

const reply = (args: fc.Arbitrary<Record<string, unknown>>, maxCalls = 3): fc.Arbitrary<Reply> =>
  fc.record({
    reasoning: fc.option(freeText, { nil: undefined }),
    content: answerText,
    calls: fc.array(fc.record({ name: toolName, args }), { maxLength: maxCalls }),
  });

const spacing = fc.constantFrom(undefined, 1, 2);

// ---- rendering each family's markup -------------------------------------------------------------------------

function hermesCalls(calls: Call[], indent: number | undefined): string {
  return calls
    .map((call) => `<tool_call>\n${JSON.stringify({ name: call.name, arguments: call.args }, null, indent)}\n</tool_call>`)
    .join("\n");
}

function renderThink(r: Reply, indent: number | undefined): string {
  const reasoning = r.reasoning === undefined ? "" : `<think>${r.reasoning}</think>\n\n`;
  return `${reasoning}${r.content}${r.content && r.calls.length > 0 ? "\n" : ""}${hermesCalls(r.calls, indent)}`;
}

function renderPrefilled(r: Reply & { reasoning: string }, indent: number | undefined): string {
  return `${r.reasoning}</think>${r.content}${r.content && r.calls.length > 0 ? "\n" : ""}${hermesCalls(r.calls, indent)}`;
}

type MistralStyle = "v11" | "call-id" | "array";

function renderMistral(r: Reply, style: MistralStyle): string {
  const reasoning = r.reasoning === undefined ? "" : `[THINK]${r.reasoning}[/THINK]`;
  let calls = "";
  if (r.calls.length > 0 && style === "array") {
    calls = `[TOOL_CALLS] ${JSON.stringify(r.calls.map((call) => ({ name: call.name, arguments: call.args })))}`;
  } else {
    calls = r.calls
      .map((call, i) => `[TOOL_CALLS]${call.name}${style === "call-id" ? `[CALL_ID]abc12345${i}` : ""}[ARGS]${JSON.stringify(call.args)}`)
      .join("");
  }
  return `${reasoning}${r.content}${calls}`;
}

function renderSeed(r: Reply): string {
  const reasoning = r.reasoning === undefined ? "" : `<seed:think>${r.reasoning}</seed:think>`;
  return `${reasoning}${r.content}`;
}

/** gpt-oss: the prompt ends with `<|start|>assistant`, so the first message starts at its channel. */
function renderHarmony(r: Reply, withConstrain: boolean): string {
  const messages: string[] = [];
  if (r.reasoning !== undefined) messages.push(`<|channel|>analysis<|message|>${r.reasoning}<|end|>`);
  if (r.calls.length === 0) messages.push(`<|channel|>final<|message|>${r.content}<|return|>`);
  else {
    if (r.content) messages.push(`<|channel|>commentary<|message|>${r.content}<|end|>`);
    for (const call of r.calls) {
      const constrain = withConstrain ? " <|constrain|>json" : " json";
      messages.push(`<|channel|>commentary to=functions.${call.name}${constrain}<|message|>${JSON.stringify(call.args)}<|call|>`);
    }
  }
  return messages.map((message, i) => (i === 0 ? message : `<|start|>assistant${message}`)).join("");
}

function renderLlama3(r: Reply, pythonTag: boolean): string {
  if (r.calls.length === 0) return r.content;
  const calls = r.calls.map((call) => JSON.stringify({ name: call.name, parameters: call.args })).join("; ");
  return `${pythonTag ? "<|python_tag|>" : ""}${calls}`;
}

// ---- parsing and comparing ----------------------------------------------------------------------------------

function parse(format: string, chunks: readonly string[]): { events: ParseEvent[]; unterminated: string | undefined; warnings: string[] } {
  const warnings: string[] = [];
  const parser = createParser(format, { onWarning: (warning) => warnings.push(warning.code) });
  const events = chunks.flatMap((chunk) => parser.feed(chunk));
  events.push(...parser.finish());
  return { events, unterminated: parser.unterminated, warnings };
}

/** Merges adjacent pieces of the same text or the same call's arguments, and replaces ids by a stable mark. */
function normalize(events: readonly ParseEvent[]): ParseEvent[] {
  const merged: ParseEvent[] = [];
  for (const event of events) {
    const last = merged[merged.length - 1];
    if (event.kind === "tool_call_start") merged.push({ ...event, id: "id" });
    else if (last !== undefined && event.kind !== "tool_call_end" && last.kind === event.kind && (event.kind !== "tool_call_args" || (last.kind === "tool_call_args" && last.index === event.index))) {
      last.text += event.text;
    } else merged.push({ ...event });
  }
  return merged;
}

function textOf(events: readonly ParseEvent[], kind: "content" | "reasoning"): string {
  return events.map((event) => (event.kind === kind ? event.text : "")).join("");
}

function callsOf(events: readonly ParseEvent[]): { name: string; args: unknown; id: string }[] {
  const calls: { name: string; args: string; id: string }[] = [];
  for (const event of events) {
    if (event.kind === "tool_call_start") calls[event.index] = { name: event.name, args: "", id: event.id };
    else if (event.kind === "tool_call_args") {
      const call = calls[event.index];
      if (call !== undefined) call.args += event.text;
    }
  }
  return calls.map((call) => ({ ...call, args: JSON.parse(call.args) as unknown }));
}

/** Cuts text at the given positions (any positions: inside tags, inside surrogate pairs, empty chunks). */
function cut(text: string, positions: readonly number[]): string[] {
  const points = [...new Set(positions.map((p) => p % (text.length + 1)))].sort((a, b) => a - b);
  const chunks: string[] = [];
  let from = 0;
  for (const point of points) {
    chunks.push(text.slice(from, point));
    from = point;
  }
  chunks.push(text.slice(from));
  return chunks;
}

/** One UTF-16 code unit per chunk: every tag and every surrogate pair is cut. */
function unitByUnit(text: string): string[] {
  return Array.from({ length: text.length }, (_, i) => text[i] ?? "");
}

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The checks every format shares, for one rendered reply and one way of cutting it. */
function checkReply(format: string, text: string, positions: readonly number[], expected: Reply): void {
  const whole = parse(format, [text]);
  const split = parse(format, cut(text, positions));
  const byChar = parse(format, unitByUnit(text));

  // chunking does not change the result
  expect(normalize(split.events)).toEqual(normalize(whole.events));
  expect(normalize(byChar.events)).toEqual(normalize(whole.events));

  // the payloads come back exactly, and nothing is left open
  expect(textOf(whole.events, "reasoning")).toBe(expected.reasoning ?? "");
  expect(textOf(whole.events, "content")).toBe(expected.content);
  const calls = callsOf(split.events);
  // (through JSON once, as the model's text went: -0 is written as 0)
  const expectedCalls = expected.calls.map(({ name, args }) => ({ name, args: JSON.parse(JSON.stringify(args)) as unknown }));
  expect(calls.map(({ name, args }) => ({ name, args }))).toEqual(expectedCalls);
  expect(new Set(calls.map((call) => call.id)).size).toBe(calls.length);
  expect(whole.unterminated).toBeUndefined();
  expect(whole.warnings).toEqual([]);

  // no markup, and no half of a character, in any piece of reasoning or content
  const pieces = [...split.events, ...byChar.events].flatMap((event) => ("text" in event ? [event] : []));
  expect(pieces.filter((event) => loneSurrogate.test(event.text))).toEqual([]);
  const shown = pieces.filter((event) => event.kind !== "tool_call_args");
  expect(shown.filter((event) => markup.some((tag) => event.text.includes(tag)))).toEqual([]);
}

const cuts = fc.array(fc.nat(), { maxLength: 40 });

describe("parser properties", () => {
  it("think: <think> reasoning and Hermes tool calls", () => {
    fc.assert(
      fc.property(reply(argumentsObject), spacing, cuts, (r, indent, positions) => {
        checkReply("think", renderThink(r, indent), positions, r);
      }),
      { numRuns },
    );
  });

  it("think-prefilled: output starts inside reasoning, only </think> appears", () => {
    fc.assert(
      fc.property(reply(argumentsObject), freeText, spacing, cuts, (r, reasoning, indent, positions) => {
        const prefilled = { ...r, reasoning };
        checkReply("think-prefilled", renderPrefilled(prefilled, indent), positions, prefilled);
      }),
      { numRuns },
    );
  });

  it("mistral: [THINK] reasoning and [TOOL_CALLS] in the v11, call-id and array forms", () => {
    const style = fc.constantFrom<MistralStyle>("v11", "call-id", "array");
    fc.assert(
      fc.property(reply(argumentsObject), style, cuts, (r, s, positions) => {
        checkReply("mistral", renderMistral(r, s), positions, r);
      }),
      { numRuns },
    );
  });

  it("seed: <seed:think> reasoning", () => {
    fc.assert(
      fc.property(reply(argumentsObject, 0), cuts, (r, positions) => {
        checkReply("seed", renderSeed(r), positions, r);
      }),
      { numRuns },
    );
  });

  it("harmony: analysis, final and commentary channels with function calls", () => {
    fc.assert(
      fc.property(reply(harmonyArguments), fc.boolean(), cuts, (r, constrain, positions) => {
        checkReply("harmony", renderHarmony(r, constrain), positions, r);
      }),
      { numRuns },
    );
  });

  it("llama3: a plain answer, or JSON tool calls with or without <|python_tag|>", () => {
    fc.assert(
      fc.property(reply(argumentsObject), fc.boolean(), cuts, (r, tag, positions) => {
        const expected = { reasoning: undefined, content: r.calls.length > 0 ? "" : r.content, calls: r.calls };
        checkReply("llama3", renderLlama3(r, tag), positions, expected);
      }),
      { numRuns },
    );
  });

  it("auto: recognises each family from its output", () => {
    const family = fc.constantFrom("think", "mistral", "seed", "harmony", "llama3");
    fc.assert(
      fc.property(reply(harmonyArguments), family, cuts, (r, name, positions) => {
        const calls = name === "seed" ? [] : r.calls;
        const reasoning = name === "llama3" ? undefined : r.reasoning;
        const content = name === "llama3" && calls.length > 0 ? "" : r.content;
        const expected = { reasoning, content, calls };
        const render: Record<string, () => string> = {
          think: () => renderThink(expected, undefined),
          mistral: () => renderMistral(expected, "v11"),
          seed: () => renderSeed(expected),
          harmony: () => renderHarmony(expected, true),
          llama3: () => renderLlama3(expected, false),
        };
        checkReply("auto", render[name]?.() ?? "", positions, expected);
      }),
      { numRuns },
    );
  });

  it("any text, any format: chunking never changes the result and nothing throws", () => {
    // Markup in any order and any state of repair, JSON fragments, and text: the worst a model can do.
    const piece = fc.oneof(
      fc.constantFrom(...markup, ...atoms, '{"name": "f", "arguments": {"a": [1, "x"]}}', '{"name": ', '"arguments": {', "}", ";"),
      fc.string({ unit: "grapheme", maxLength: 6 }),
    );
    const format = fc.constantFrom("auto", "think", "think-prefilled", "mistral", "seed", "harmony", "llama3", "raw");
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 25 }), format, cuts, (pieces, name, positions) => {
        const text = pieces.join("");
        const whole = parse(name, [text]);
        expect(normalize(parse(name, cut(text, positions)).events)).toEqual(normalize(whole.events));
        expect(normalize(parse(name, unitByUnit(text)).events)).toEqual(normalize(whole.events));
        const texts = whole.events.flatMap((event) => ("text" in event ? [event.text] : []));
        expect(texts.filter((t) => loneSurrogate.test(t))).toEqual([]);
      }),
      { numRuns: numRuns * 5 },
    );
  });

  it("raw: everything is content, untouched", () => {
    const anything = fc.array(fc.oneof(fc.constantFrom(...markup, ...atoms), fc.string({ unit: "grapheme" })), { maxLength: 30 });
    fc.assert(
      fc.property(anything, cuts, (pieces, positions) => {
        const text = pieces.join("");
        const { events } = parse("raw", cut(text, positions));
        expect(textOf(events, "content")).toBe(text);
        expect(events.every((event) => event.kind === "content" && !loneSurrogate.test(event.text))).toBe(true);
      }),
      { numRuns },
    );
  });
});
