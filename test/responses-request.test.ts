// Responses API request validation and translation: 400s that name the field, never anything else, for any JSON;
// the conversation as the chat messages a worker's template renders.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InvalidRequestError } from "../src/api/errors.js";
import { parseResponsesRequest, toResponsesTask } from "../src/api/responses-request.js";

function paramOf(body: unknown, limits?: { maxMessages: number; maxPromptChars: number }): string | null {
  try {
    parseResponsesRequest(body, limits);
    return "accepted";
  } catch (error) {
    if (!(error instanceof InvalidRequestError)) throw error;
    return error.param;
  }
}

describe("parseResponsesRequest", () => {
  const ok = { model: "m", input: "hi" };

  it("names the offending field", () => {
    expect(paramOf({ input: "hi" })).toBe("model");
    expect(paramOf({ model: "m" })).toBe("input");
    expect(paramOf({ ...ok, input: [] })).toBe("input");
    expect(paramOf({ ...ok, input: [{ role: "wizard", content: "x" }] })).toBe("input[0].role");
    expect(paramOf({ ...ok, input: [{ role: "user", content: [{ type: "input_file", file_id: "f" }] }] })).toBe("input[0].content[0].type");
    expect(paramOf({ ...ok, input: [{ type: "item_reference", id: "msg_1" }] })).toBe("input[0].type");
    expect(paramOf({ ...ok, tools: [{ type: "function", name: "ok" }, { type: "custom", name: "apply_patch" }] })).toBe("tools[1].type");
    expect(paramOf({ ...ok, tools: [{ type: "function", name: "ok" }, { type: "code_interpreter" }] })).toBe("accepted");
    expect(paramOf({ ...ok, tool_choice: { type: "allowed_tools" } })).toBe("tool_choice");
    expect(paramOf({ ...ok, conversation: "conv_1" })).toBe("conversation");
    expect(paramOf({ ...ok, background: true })).toBe("background");
    expect(paramOf({ ...ok, temperature: 3 })).toBe("temperature");
    expect(paramOf({ ...ok, max_output_tokens: 0 })).toBe("max_output_tokens");
  });

  it("accepts what clients always send, and ignores fields it does not know", () => {
    const codexLike = {
      ...ok,
      store: false,
      include: ["reasoning.encrypted_content"],
      prompt_cache_key: "abc",
      stream_options: { include_obfuscation: false },
      text: { format: { type: "text" }, verbosity: "low" },
      truncation: "disabled",
      service_tier: "auto",
      metadata: { run: "1" },
      background: false,
      previous_response_id: null,
    };
    expect(paramOf(codexLike)).toBe("accepted");
  });

  it("applies the message and prompt limits to the conversation", () => {
    const input = [
      { role: "user", content: "12345" },
      { type: "function_call_output", call_id: "c", output: "67890" },
    ];
    expect(paramOf({ ...ok, input }, { maxMessages: 1, maxPromptChars: 100 })).toBe("input");
    expect(paramOf({ ...ok, input }, { maxMessages: 10, maxPromptChars: 9 })).toBe("input");
    expect(paramOf({ ...ok, input }, { maxMessages: 10, maxPromptChars: 10 })).toBe("accepted");
  });

  it("turns instructions and items into chat messages, calls joined to their assistant turn, old reasoning left out", () => {
    const request = parseResponsesRequest({
      model: "m",
      instructions: "Be brief.",
      input: [
        { role: "user", content: [{ type: "input_text", text: "Weather?" }] },
        { type: "reasoning", id: "rs_1", summary: [], content: [{ type: "reasoning_text", text: "think" }] },
        { type: "message", role: "assistant", content: [{ type: "output_text", text: "Checking." }] },
        { type: "function_call", call_id: "c1", name: "get_weather", arguments: '{"city":"Paris"}' },
        { type: "function_call_output", call_id: "c1", output: [{ type: "input_text", text: "18C" }] },
        { role: "developer", content: "Use Celsius." },
      ],
      max_output_tokens: 100,
      tools: [{ type: "function", name: "get_weather", parameters: { type: "object" } }],
      tool_choice: { type: "function", name: "get_weather" },
      reasoning: { effort: "high" },
    });

    expect(toResponsesTask(request)).toEqual({
      model: "m",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Weather?" },
        {
          role: "assistant",
          content: "Checking.",
          toolCalls: [{ id: "c1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }],
        },
        { role: "tool", content: "18C", toolCallId: "c1" },
        { role: "developer", content: "Use Celsius." },
      ],
      params: { maxTokens: 100 },
      tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }],
      toolChoice: { type: "function", function: { name: "get_weather" } },
      reasoningEffort: "high",
    });
  });

  it("never throws anything but InvalidRequestError, whatever JSON it gets (property)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        paramOf(value);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(
        fc.record({ model: fc.jsonValue(), input: fc.jsonValue(), tools: fc.jsonValue(), text: fc.jsonValue(), reasoning: fc.jsonValue() }, { requiredKeys: [] }),
        (value) => {
          paramOf(value);
        },
      ),
      { numRuns: 500 },
    );
  });
});
