import { describe, expect, it } from "vitest";
import { createParser, type ParseEvent, type StreamParser } from "../src/parser/index.js";

function run(parser: StreamParser, chunks: string[]): ParseEvent[] {
  const events = chunks.flatMap((chunk) => parser.feed(chunk));
  return [...events, ...parser.finish()];
}

function textOf(events: ParseEvent[], kind: "content" | "reasoning"): string {
  return events.map((e) => (e.kind === kind ? e.text : "")).join("");
}

describe("think tags", () => {
  it("splits reasoning from the answer when every tag is cut across chunks", () => {
    // given a reply split one character at a time
    const chunks = [..."<think>Let me see.</think>The answer is 4."];
    // when it is parsed
    const events = run(createParser("think"), chunks);
    // then reasoning and content are apart and no markup remains
    expect(textOf(events, "reasoning")).toBe("Let me see.");
    expect(textOf(events, "content")).toBe("The answer is 4.");
  });

  it("emits text at once, holding back only a possible partial tag", () => {
    const parser = createParser("think");
    expect(parser.feed("<think>abc</th")).toEqual([{ kind: "reasoning", text: "abc" }]);
    expect(parser.feed("ink>done")).toEqual([{ kind: "content", text: "done" }]);
  });

  it("treats text before <think> as content", () => {
    const events = run(createParser("think"), ["Hi <think>hmm</think> there"]);
    expect(textOf(events, "content")).toBe("Hi there");
    expect(textOf(events, "reasoning")).toBe("hmm");
    expect(events[0]).toEqual({ kind: "content", text: "Hi" });
  });

  it("reports an unclosed think at the end of the stream as unterminated reasoning", () => {
    const parser = createParser("think");
    const events = run(parser, ["<think>still thinking</thi"]);
    expect(textOf(events, "reasoning")).toBe("still thinking</thi");
    expect(parser.unterminated).toBe("reasoning");
  });

  it("starts inside reasoning in the prefilled variant", () => {
    const parser = createParser("think-prefilled");
    const events = run(parser, ["reasoning here</think>answer"]);
    expect(events).toEqual([
      { kind: "reasoning", text: "reasoning here" },
      { kind: "content", text: "answer" },
    ]);
    expect(parser.unterminated).toBeUndefined();
  });

  it("falls back to auto-detection for an unknown format", () => {
    const events = run(createParser("no-such-format"), ["<think>a</think>b"]);
    expect(events).toEqual([
      { kind: "reasoning", text: "a" },
      { kind: "content", text: "b" },
    ]);
  });
});
