// The simulator engine on its own: deterministic replies, stop strings across tokens, limits, failures, aborts.
import { describe, expect, it } from "vitest";
import { type GenerationRequest, textSink } from "../src/worker/engines/engine.js";
import { defaultSimulatorOptions, SimulatorEngine, simulatedReply } from "../src/worker/engines/simulator.js";

const messages = [{ role: "user" as const, content: "hi there" }];

async function run(engine: SimulatorEngine, params: GenerationRequest["params"] = {}, signal = new AbortController().signal) {
  let text = "";
  let chunks = 0;
  const result = await engine.generate({ taskId: "t", model: "simulator", messages, params }, textSink((t) => ((text += t), (chunks += 1))), signal);
  return { text, chunks, result };
}

const fast = (options: Partial<typeof defaultSimulatorOptions> = {}) =>
  new SimulatorEngine([], { ...defaultSimulatorOptions, prefillMs: 0, tokensPerSecond: 0, ...options });

describe("simulator engine", () => {
  it("streams its reasoning and answer, the same every time", async () => {
    const expected = simulatedReply(messages);
    const first = await run(fast());
    const second = await run(fast());

    expect(first.text).toBe(`<think>${expected.reasoning}</think>${expected.answer}`);
    expect(second.text).toBe(first.text);
    expect(first.result.finishReason).toBe("stop");
  });

  it("stops before a stop string, even one spanning tokens, and reports stop with the string that matched", async () => {
    const { text, result } = await run(fast({ replyTokens: 30 }), { stop: ["client. Tokens keep"] });

    expect(text.endsWith("from worker to ")).toBe(true);
    expect(text).not.toContain("client.");
    expect(result).toMatchObject({ finishReason: "stop", stopSequence: "client. Tokens keep" });
  });

  it("names the earliest stop in the text, whatever the order of the list; none when the reply just ended", async () => {
    const expected = simulatedReply(messages);
    const { text, result } = await run(fast(), { stop: ["canned", "simulated", "no such words"] });
    const natural = await run(fast(), { stop: ["no such words"] });

    expect(text).toBe(`<think>${expected.reasoning}</think>${expected.answer.slice(0, expected.answer.indexOf("simulated"))}`);
    expect(result).toMatchObject({ finishReason: "stop", stopSequence: "simulated" });
    expect(natural.result.finishReason).toBe("stop");
    expect(natural.result.stopSequence).toBeUndefined();
  });

  it("makes long replies on demand: a million tokens stream without building them first", async () => {
    const { result, chunks } = await run(fast({ replyTokens: 1_000_000 }));

    expect(result.usage.completionTokens).toBeGreaterThan(1_000_000);
    expect(chunks).toBeGreaterThan(1_000);
  });

  it("honours max_tokens with finish reason length", async () => {
    const { result } = await run(fast(), { maxTokens: 5 });

    expect(result).toMatchObject({ finishReason: "length", usage: { completionTokens: 5 } });
  });

  it("fails after --sim-fail-after tokens", async () => {
    await expect(run(fast({ failAfterTokens: 4 }))).rejects.toThrow("simulated engine failure after 4 tokens");
  });

  it("stops at once when aborted during a silence", async () => {
    const controller = new AbortController();
    const pending = run(fast({ prefillMs: 60_000 }), {}, controller.signal);
    controller.abort();

    await expect(pending).rejects.toThrow();
  });
});
