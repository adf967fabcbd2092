// Edge cases of reasoning and tool-call parsing, each named by the behaviour the API layer relies on.

import { describe, expect, it } from "vitest";
import { createParser, type ParseEvent, type ParserWarning } from "../src/parser/index.js";

interface Parsed {
  events: ParseEvent[];
  unterminated: string | undefined;
  warnings: ParserWarning[];
}

function parse(format: string, chunks: readonly string[]): Parsed {
  const warnings: ParserWarning[] = [];
  const parser = createParser(format, { onWarning: (warning) => warnings.push(warning) });
  const events = chunks.flatMap((chunk) => parser.feed(chunk));
  events.push(...parser.finish());
  return { events, unterminated: parser.unterminated, warnings };
}

function textOf(events: readonly ParseEvent[], kind: "content" | "reasoning"): string {
  return events.map((event) => (event.kind === kind ? event.text : "")).join("");
}

function argsOf(events: readonly ParseEvent[], index: number): string {
  return events.map((event) => (event.kind === "tool_call_args" && event.index === index ? event.text : "")).join("");
}

/** Cuts text into pieces of `size` UTF-16 units. */
function chunked(text: string, size: number): string[] {
  const chunks: string[] = [];
  for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
  return chunks;
}

describe("reasoning sections", () => {
  it("counts an unclosed think at the end of the stream as reasoning and reports it unterminated", () => {
    // given a stream cut off (e.g. by max_tokens) while the model is still thinking
    for (const [format, text] of [
      ["think", "<think>Let me consider"],
      ["think-prefilled", "Let me consider"],
      ["mistral", "[THINK]Let me consider"],
      ["seed", "<seed:think>Let me consider"],
      ["harmony", "<|channel|>analysis<|message|>Let me consider"],
      ["auto", "<think>Let me consider"],
    ] as const) {
      // when it is parsed
      const { events, unterminated } = parse(format, chunked(text, 3));
      // then the text is reasoning, and finish() says the section never closed
      expect(textOf(events, "reasoning"), format).toBe("Let me consider");
      expect(textOf(events, "content"), format).toBe("");
      expect(unterminated, format).toBe("reasoning");
    }
  });

  it("keeps a partial close tag at the very end as reasoning text", () => {
    const { events, unterminated } = parse("think", ["<think>almost</thi"]);
    expect(textOf(events, "reasoning")).toBe("almost</thi");
    expect(unterminated).toBe("reasoning");
  });

  it("reads </think> without an opening tag in the prefilled variant", () => {
    const { events, warnings, unterminated } = parse("think-prefilled", chunked("The user wants 2+2.\n</think>\n\n4", 2));
    expect(events[0]?.kind).toBe("reasoning");
    expect(textOf(events, "reasoning")).toBe("The user wants 2+2.\n");
    expect(textOf(events, "content")).toBe("4");
    expect(warnings).toEqual([]);
    expect(unterminated).toBeUndefined();
  });

  it("swallows an opening tag the prefilled template did not in fact add", () => {
    const { events } = parse("think-prefilled", ["\n<thi", "nk>\nhmm</think>ok"]);
    expect(textOf(events, "reasoning")).toBe("\nhmm");
    expect(textOf(events, "content")).toBe("ok");
  });

  it("drops a stray </think> and warns when the format expected an opening tag", () => {
    // given a prefilled model served with the plain think format: its reasoning cannot be told apart in time
    const { events, warnings } = parse("auto", ["reasoning", "</think>", "answer"]);
    // then the tag never reaches content, and the API hears why
    expect(textOf(events, "content")).toBe("reasoninganswer");
    expect(warnings.map((w) => w.code)).toEqual(["unopened_reasoning_close"]);
  });

  it("gives text before <think> to content", () => {
    const { events } = parse("think", chunked("Sure. <think>check</think>Done.", 4));
    expect(textOf(events, "content")).toBe("Sure. Done.");
    expect(textOf(events, "reasoning")).toBe("check");
  });

  it("handles empty reasoning without an empty event", () => {
    const { events } = parse("think", ["<think>", "</think>", "\n\nHello"]);
    expect(events).toEqual([{ kind: "content", text: "Hello" }]);
  });

  it("keeps a literal <think> in a code block of the answer once reasoning has closed", () => {
    const answer = "Use it like this:\n```xml\n<think>draft</think>\n```\nand <seed:think> too.";
    const { events, unterminated } = parse("think", chunked(`<think>how to explain</think>${answer}`, 5));
    expect(textOf(events, "reasoning")).toBe("how to explain");
    expect(textOf(events, "content")).toBe(answer);
    expect(unterminated).toBeUndefined();
  });

  it("emits reasoning at once, holding back only what may be a tag", () => {
    const parser = createParser("think");
    expect(parser.feed("<think>one two <")).toEqual([{ kind: "reasoning", text: "one two " }]);
    expect(parser.feed("b>three")).toEqual([{ kind: "reasoning", text: "<b>three" }]);
    expect(parser.feed("</think>Answer")).toEqual([{ kind: "content", text: "Answer" }]);
  });

  it("never splits a surrogate pair between two events", () => {
    const parser = createParser("think");
    expect(parser.feed("<think>ok \uD83D")).toEqual([{ kind: "reasoning", text: "ok " }]);
    expect(parser.feed("\uDE00</think>")).toEqual([{ kind: "reasoning", text: "😀" }]);
  });
});

describe("tool calls", () => {
  const weather = '{"city": "Paris", "units": {"temp": "C"}, "note": "says \\"</tool_call>\\" 😀"}';

  it("streams a Hermes tool call split across dozens of chunks as argument fragments", () => {
    // given a call cut into 2-character chunks
    const text = `<tool_call>\n{"name": "get_weather", "arguments": ${weather}}\n</tool_call>`;
    const chunks = chunked(text, 2);
    expect(chunks.length).toBeGreaterThan(40);
    const parser = createParser("think");
    // when it is fed chunk by chunk
    const perChunk = chunks.map((chunk) => parser.feed(chunk));
    const events = [...perChunk.flat(), ...parser.finish()];
    // then the call starts once the name is known, and arguments arrive in many fragments before it ends
    const start = events.findIndex((e) => e.kind === "tool_call_start");
    expect(events[start]).toMatchObject({ kind: "tool_call_start", index: 0, name: "get_weather" });
    expect(events.filter((e) => e.kind === "tool_call_args").length).toBeGreaterThan(20);
    expect(JSON.parse(argsOf(events, 0))).toEqual(JSON.parse(weather));
    expect(events.at(-1)).toEqual({ kind: "tool_call_end", index: 0 });
    expect(textOf(events, "content")).toBe("");
    // and the first fragment went out long before the last chunk
    const firstArgsChunk = perChunk.findIndex((out) => out.some((e) => e.kind === "tool_call_args"));
    expect(firstArgsChunk).toBeLessThan(chunks.length / 2);
  });

  it("numbers two parallel tool calls and gives them distinct ids", () => {
    const text =
      '<think>Two cities.</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n' +
      '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo"}}\n</tool_call>';
    const { events, warnings } = parse("think", chunked(text, 7));
    const starts = events.filter((e) => e.kind === "tool_call_start");
    expect(starts.map((e) => e.index)).toEqual([0, 1]);
    expect(new Set(starts.map((e) => e.id)).size).toBe(2);
    for (const start of starts) expect(start.id).toMatch(/^call_[A-Za-z0-9]{24}$/);
    expect(JSON.parse(argsOf(events, 0))).toEqual({ city: "Paris" });
    expect(JSON.parse(argsOf(events, 1))).toEqual({ city: "Tokyo" });
    expect(events.filter((e) => e.kind === "tool_call_end").map((e) => e.index)).toEqual([0, 1]);
    // each call ends before the next starts
    expect(events.findIndex((e) => e.kind === "tool_call_end")).toBeLessThan(events.indexOf(starts[1] as ParseEvent));
    expect(textOf(events, "content")).toBe("");
    expect(warnings).toEqual([]);
  });

  it("treats tool-call markup inside reasoning as reasoning", () => {
    const thought = 'maybe <tool_call>{"name": "x", "arguments": {}}</tool_call>';
    for (const [format, text] of [
      ["think", `<think>${thought}</think>fine`],
      ["mistral", `[THINK]maybe [TOOL_CALLS]x[ARGS]{}[/THINK]fine`],
      ["harmony", `<|channel|>analysis to=python<|message|>${thought}<|end|><|start|>assistant<|channel|>final<|message|>fine`],
    ] as const) {
      const { events } = parse(format, chunked(text, 3));
      expect(events.some((e) => e.kind === "tool_call_start"), format).toBe(false);
      expect(textOf(events, "content"), format).toBe("fine");
    }
  });

  it("returns malformed tool-call JSON as content with a warning, never throwing", () => {
    const text = 'Let me check.<tool_call>{"name": get_weather, "arguments": {}}</tool_call>';
    const { events, warnings } = parse("think", chunked(text, 3));
    expect(events.some((e) => e.kind === "tool_call_start")).toBe(false);
    expect(textOf(events, "content")).toBe('Let me check.<tool_call>{"name": get_weather, "arguments": {}}</tool_call>');
    expect(warnings.map((w) => w.code)).toEqual(["malformed_tool_call"]);
  });

  it("delivers a call whose streamed arguments turn out invalid, with a warning", () => {
    const { events, warnings } = parse("mistral", ['[TOOL_CALLS]f[ARGS]{"a": tru}']);
    expect(events.map((e) => e.kind)).toEqual(["tool_call_start", "tool_call_args", "tool_call_end"]);
    expect(warnings.map((w) => w.code)).toEqual(["invalid_tool_arguments"]);
  });

  it("closes a tool call cut off by the end of the stream and reports it unterminated", () => {
    const { events, unterminated, warnings } = parse("think", ['<tool_call>{"name": "f", "arguments": {"a": [1, ']);
    expect(events.at(-1)).toEqual({ kind: "tool_call_end", index: 0 });
    expect(unterminated).toBe("tool_call");
    expect(warnings.map((w) => w.code)).toContain("unterminated_tool_call");
  });

  it("accepts arguments before the name, and arguments written as a JSON string", () => {
    const text =
      '<tool_call>{"arguments": {"q": 1}, "name": "first"}</tool_call>' +
      '<tool_call>{"name": "second", "arguments": "{\\"q\\": 2}"}</tool_call>';
    const { events, warnings } = parse("think", chunked(text, 4));
    expect(events.filter((e) => e.kind === "tool_call_start").map((e) => e.name)).toEqual(["first", "second"]);
    expect(JSON.parse(argsOf(events, 0))).toEqual({ q: 1 });
    expect(JSON.parse(argsOf(events, 1))).toEqual({ q: 2 });
    expect(warnings).toEqual([]);
  });

  it("gives a call without arguments {}", () => {
    const { events } = parse("think", ['<tool_call>{"name": "now"}</tool_call>']);
    expect(argsOf(events, 0)).toBe("{}");
  });

  it("uses Mistral's own call id, or a 9-character one its templates accept", () => {
    const { events } = parse("mistral", ["[TOOL_CALLS]a[CALL_ID]Ab3dE6gH9[ARGS]{}[TOOL_CALLS]b[ARGS]{}"]);
    const ids = events.flatMap((e) => (e.kind === "tool_call_start" ? [e.id] : []));
    expect(ids[0]).toBe("Ab3dE6gH9");
    expect(ids[1]).toMatch(/^[A-Za-z0-9]{9}$/);
  });

  it("makes ids with the caller's generator when given one", () => {
    let n = 0;
    const parser = createParser("harmony", { newToolCallId: () => `call_${++n}` });
    const events = parser.feed("<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}<|call|>");
    expect(events[0]).toEqual({ kind: "tool_call_start", index: 0, id: "call_1", name: "f" });
  });

  it("reads a Harmony preamble as content and the call after it", () => {
    const text =
      "<|channel|>analysis<|message|>Need weather.<|end|>" +
      "<|start|>assistant<|channel|>commentary<|message|>Checking the weather.<|end|>" +
      '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city":"Oslo"}<|call|>';
    const { events } = parse("harmony", chunked(text, 5));
    expect(textOf(events, "reasoning")).toBe("Need weather.");
    expect(textOf(events, "content")).toBe("Checking the weather.");
    expect(events.find((e) => e.kind === "tool_call_start")).toMatchObject({ name: "get_weather" });
    expect(JSON.parse(argsOf(events, 0))).toEqual({ city: "Oslo" });
  });

  it("leaves a Llama 3 JSON answer that is not a call as content, without a warning", () => {
    const answer = '{"name": "Ada", "born": 1815}';
    const { events, warnings } = parse("llama3", chunked(answer, 3));
    expect(events.some((e) => e.kind === "tool_call_start")).toBe(false);
    expect(textOf(events, "content")).toBe(answer);
    expect(warnings).toEqual([]);
  });

  it("drops the whitespace around tool calls so that a reply of calls has no content", () => {
    const text = '\n\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n\n<tool_call>{"name": "g", "arguments": {}}</tool_call>\n';
    const { events } = parse("auto", chunked(text, 1));
    expect(events.filter((e) => e.kind === "content")).toEqual([]);
  });
});

describe("format registry", () => {
  it("treats an undefined or unknown format as auto-detection", () => {
    const text = "<|channel|>analysis<|message|>hm<|end|><|start|>assistant<|channel|>final<|message|>Hi<|return|>";
    for (const format of [undefined, "no-such-format"]) {
      const parser = createParser(format);
      const events = [...chunked(text, 2).flatMap((chunk) => parser.feed(chunk)), ...parser.finish()];
      expect(textOf(events, "reasoning")).toBe("hm");
      expect(textOf(events, "content")).toBe("Hi");
    }
  });

  it("passes everything through in raw", () => {
    const text = "<think>x</think><tool_call>{}</tool_call>";
    expect(textOf(parse("raw", chunked(text, 3)).events, "content")).toBe(text);
  });
});
