// The llama engine's stop matcher on its own: what it holds back, where it cuts, and which stop it names.
import { describe, expect, it } from "vitest";
import { StopMatcher } from "../src/worker/engines/llama/stop-matcher.js";

/** Pushes `pieces` one by one and returns what was released and what the matcher reports. */
function feed(matcher: StopMatcher, pieces: readonly string[]) {
  let text = "";
  for (const piece of pieces) {
    const pushed = matcher.push(piece);
    text += pushed.text;
    if (pushed.stopped) break;
  }
  if (!matcher.stopped) text += matcher.flush();
  return { text, stopped: matcher.stopped, stopSequence: matcher.stopSequence };
}

describe("llama stop matcher", () => {
  it("names a request's stop string that ended the text, even one split across pieces", () => {
    const result = feed(new StopMatcher(["\n\nUser:"], ["<|im_end|>"]), ["Sure.", "\n", "\nUs", "er: more"]);

    expect(result).toEqual({ text: "Sure.", stopped: true, stopSequence: "\n\nUser:" });
  });

  it("names nothing when a chat template's trigger ended the text", () => {
    const result = feed(new StopMatcher(["END"], ["<|im_end|>"]), ["Done", "<|im_", "end|>", "END"]);

    expect(result).toEqual({ text: "Done", stopped: true, stopSequence: undefined });
  });

  it("takes the earliest stop in the text, not the first listed; a request's stop wins a tie with a trigger", () => {
    const earliest = feed(new StopMatcher(["world", "hello"], []), ["say hello world"]);
    const trigger = feed(new StopMatcher(["world"], ["hello"]), ["say hello world"]);
    const tie = feed(new StopMatcher(["<|im_end|>"], ["<|im_end|>"]), ["ok<|im_end|>"]);

    expect(earliest).toEqual({ text: "say ", stopped: true, stopSequence: "hello" });
    expect(trigger).toEqual({ text: "say ", stopped: true, stopSequence: undefined });
    expect(tie).toEqual({ text: "ok", stopped: true, stopSequence: "<|im_end|>" });
  });

  it("releases held-back text and names nothing when no stop occurs", () => {
    const result = feed(new StopMatcher(["END", ""], ["<|im_end|>"]), ["The E", "N"]);

    expect(result).toEqual({ text: "The EN", stopped: false, stopSequence: undefined });
  });
});
